#!/usr/bin/env bash
# The shop front's speed (issue 12) on PostgreSQL and SQLite, in one run, after pgbench's
# limit for reference:
#   search over 100,000 items at 32 clients, with each node's answer cache and without it
#   (ORDO_SEARCH_CACHE_ENTRIES=0: every search ranks and counts its hits);
#   recommendations with 100,000 placed orders at 32 clients;
#   checkout (POST /v1/orders with a payment method) against cart checkout at 64 clients.
# usage: scripts/bench-shop.sh [seconds=10]
#   ORDO_BENCH_ITEMS (100000), ORDO_BENCH_ORDERS (100000), ORDO_BENCH_BACKENDS
#   ("postgres sqlite"), ORDO_BIN (default: a release build made here).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
items=${ORDO_BENCH_ITEMS:-100000}
orders=${ORDO_BENCH_ORDERS:-100000}
backends=${ORDO_BENCH_BACKENDS:-postgres sqlite}
pg_admin=${ORDO_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
limit=${PG_LIMIT:-../shared/bench/pg_limit/run}
export ORDO_ADMIN_EMAIL=bench-admin@example.com ORDO_ADMIN_PASSWORD=bench-admin-password
export ORDO_LOG_FORMAT=json RUST_LOG=warn
if [ -z "${ORDO_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${ORDO_BIN:-target/release/ordo}
port=18184
tmp=$(mktemp -d)
db=ordo_bench_shop_$$
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  psql "$pg_admin/test" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

start() { # url [VAR=value ...]
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
bench() { # workload concurrency [options]
  local w=$1 c=$2
  shift 2
  "$bin" bench "$w" --url http://127.0.0.1:$port --concurrency "$c" --duration "$secs" "$@"
}

echo "== PostgreSQL alone (pgbench, $secs s)"
if [ -x "$limit" ]; then PGSSLMODE=disable "$limit" "$secs"; else echo "($limit not found)"; fi

for backend in $backends; do
  case $backend in
    postgres)
      psql "$pg_admin/test" -qc "CREATE DATABASE $db" >/dev/null
      url="$pg_admin/$db?sslmode=disable"
      ;;
    sqlite) url="sqlite://$tmp/ordo.db" ;;
    *) echo "unknown backend $backend" >&2; exit 1 ;;
  esac
  start "$url"
  echo "== $backend: search over $items items, 32 clients, answer cache on"
  bench search 32 --items "$items"
  stop
  start "$url" ORDO_SEARCH_CACHE_ENTRIES=0
  echo "== $backend: search over $items items, 32 clients, answer cache off"
  bench search 32 --items 1
  stop
  start "$url"
  echo "== $backend: recommendations after $orders placed orders, 32 clients"
  bench recommendations 32 --orders "$orders"
  echo "== $backend: checkout, then cart checkout, 64 clients"
  bench checkout 64 --items 1000 --customers 64
  bench cart-checkout 64 --items 1000 --customers 64
  stop
done
