# Sourced by scripts/test.sh (and by .ci/run): makes sure every real peer the test suite
# talks to is there, installing or starting what it can, and stops at once with one clear
# line for what it cannot have. Nothing here waits long: a peer that is missing is a
# failure in seconds, never a time-out per test.
#
# - Python peers (localstripe, aiosmtpd, schemathesis): a virtual environment of the
#   project's own, .venv-test/, made and filled once; its bin/ goes first on PATH.
# - chromium + chromedriver (browser tests): Debian's packages, installed when missing and
#   this runs as root with apt-get; else the line says what to install.
# - PostgreSQL at $ORDO_TEST_PG_URL, and NATS with JetStream at 127.0.0.1:4222: started with
#   this machine kind's commands when they are down.
# - initdb/pg_ctl (the PostgreSQL-restart test starts a private server) and nats-server
#   (the NATS-restart test starts a private one).

peers_fail() {
  echo "test setup: $*" >&2
  exit 1
}

peers_root=$(pwd)
export ORDO_TEST_PG_URL=${ORDO_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}

# --- Python test peers, pinned --------------------------------------------------------
PY_PEERS=(localstripe==1.15.10 aiosmtpd==1.4.6 schemathesis==4.32.5)
venv="$peers_root/.venv-test"
if [ ! -x "$venv/bin/python3" ]; then
  python3 -m venv "$venv" >/dev/null 2>&1 || peers_fail "python3 -m venv failed (install python3 and python3-venv)"
fi
if ! "$venv/bin/python3" -c 'import localstripe, aiosmtpd, schemathesis' >/dev/null 2>&1; then
  echo "test setup: installing ${PY_PEERS[*]} into .venv-test"
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "${PY_PEERS[@]}" \
    || peers_fail "pip could not install ${PY_PEERS[*]} into .venv-test"
fi
export PATH="$venv/bin:$PATH"
command -v localstripe >/dev/null || peers_fail "localstripe is not on PATH after installing it"

# --- Chromium and its WebDriver -------------------------------------------------------
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test setup: installing chromium and chromium-driver (Debian packages)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends chromium chromium-driver) >/dev/null 2>&1 \
      || peers_fail "apt-get could not install chromium chromium-driver"
  else
    peers_fail "chromium and chromedriver are needed for the browser tests: apt-get install chromium chromium-driver"
  fi
fi

# --- PostgreSQL -------------------------------------------------------------------------
pg_hostport=${ORDO_TEST_PG_URL#*@}
pg_hostport=${pg_hostport%%/*}
pg_host=${pg_hostport%%:*}
pg_port=${pg_hostport##*:}
[ "$pg_port" = "$pg_hostport" ] && pg_port=5432
if ! pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "test setup: PostgreSQL is not answering; starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
    for _ in $(seq 30); do pg_isready -q -h "$pg_host" -p "$pg_port" && break; sleep 1; done
  fi
  pg_isready -q -h "$pg_host" -p "$pg_port" || peers_fail "no PostgreSQL answers at $pg_host:$pg_port (set ORDO_TEST_PG_URL)"
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then
  export ORDO_TEST_PG_BIN=${ORDO_TEST_PG_BIN:-$pg_bin}
fi
[ -n "${ORDO_TEST_PG_BIN:-}" ] || peers_fail "initdb and pg_ctl were not found (the PostgreSQL server package)"
command -v pg_dump >/dev/null || peers_fail "pg_dump and psql are needed (the PostgreSQL client package)"

# --- NATS with JetStream ----------------------------------------------------------------
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
nats_bin=$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true)
if [ -z "$nats_bin" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >/dev/null 2>&1 \
      || peers_fail "apt-get could not install nats-server"
    nats_bin=$(command -v nats-server || ls /usr/sbin/nats-server)
  else
    peers_fail "nats-server is needed: apt-get install nats-server"
  fi
fi
if ! nats_up; then
  echo "test setup: NATS is not answering; starting it"
  mkdir -p /var/lib/nats-server 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec "$nats_bin" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log >/dev/null 2>&1 \
    || ("$nats_bin" -a 127.0.0.1 -p 4222 -js -sd "${TMPDIR:-/tmp}/ordo-nats" >/dev/null 2>&1 &)
  for _ in $(seq 30); do nats_up && break; sleep 1; done
  nats_up || peers_fail "NATS did not start on 127.0.0.1:4222"
fi
export PATH="$PATH:$(dirname "$nats_bin")"
