# Shared by the benchmark scripts (sourced, not run): the release binary, a scratch folder
# and PostgreSQL database removed on exit, and one `ordo serve` at a time on $port.
# The caller sets `port` and `db` (a database name) before sourcing.
export ORDO_ADMIN_EMAIL=bench-admin@example.com ORDO_ADMIN_PASSWORD=bench-admin-password
export ORDO_LOG_FORMAT=json RUST_LOG=warn
pg_admin=${ORDO_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
if [ -z "${ORDO_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${ORDO_BIN:-target/release/ordo}
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql "$pg_admin/test" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# start URL [VAR=value ...]: serves the database at URL, with those settings, once ready.
start() {
  local url=$1
  shift
  env "$@" DATABASE_URL="$url" "$bin" serve --listen 127.0.0.1:$port >>"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && return; sleep 0.1; done
  echo "the server did not start:" >&2
  tail -20 "$tmp/server.log" >&2
  exit 1
}
stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}
