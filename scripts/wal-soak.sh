#!/usr/bin/env bash
# The embedded database's WAL under sustained order load with long-lived readers: runs
# `ordo bench orders` for N seconds against a fresh SQLite file while two SSE clients replay
# the whole event log and stay connected, samples the WAL's size every second, and prints
# the largest size seen and the checkpoint metrics at the end.
# usage: scripts/wal-soak.sh [seconds=600] [clients=32]
#   ORDO_BIN=target/debug/ordo scripts/wal-soak.sh 5 4   (a smoke test without a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
conc=${2:-32}
port=${ORDO_SOAK_PORT:-18183}
if [ -z "${ORDO_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${ORDO_BIN:-target/release/ordo}
export ORDO_ADMIN_EMAIL=bench-admin@example.com ORDO_ADMIN_PASSWORD=bench-admin-password
export ORDO_LOG_FORMAT=json RUST_LOG=warn
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

DATABASE_URL=sqlite://$dir/ordo.db $bin serve --listen 127.0.0.1:$port >"$dir/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
token=$(curl -sf http://127.0.0.1:$port/v1/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"$ORDO_ADMIN_EMAIL\",\"password\":\"$ORDO_ADMIN_PASSWORD\"}" |
  sed -E 's/.*"access_token":"([^"]+)".*/\1/')
for _ in 1 2; do
  curl -sN -H "authorization: Bearer $token" "http://127.0.0.1:$port/v1/events?since=0" >/dev/null &
  pids+=($!)
done
(
  max=0
  while true; do
    size=$(stat -c %s "$dir/ordo.db-wal" 2>/dev/null || echo 0)
    if [ "$size" -gt "$max" ]; then max=$size; echo "$max" >"$dir/wal-max"; fi
    sleep 1
  done
) &
pids+=($!)

echo "== Ordo on sqlite, orders for $secs s, $conc clients, 2 SSE readers"
$bin bench orders --url http://127.0.0.1:$port --concurrency "$conc" --duration "$secs" --items 1000 --customers 50
sleep 3
echo "largest WAL: $(cat "$dir/wal-max" 2>/dev/null || echo 0) bytes"
echo "WAL now: $(stat -c %s "$dir/ordo.db-wal" 2>/dev/null || echo 0) bytes"
curl -sf http://127.0.0.1:$port/metrics | grep '^ordo_sqlite' || true
