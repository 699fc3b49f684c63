#!/usr/bin/env bash
# The shop front's speed (issue 12) on PostgreSQL and SQLite, in one run, after pgbench's
# limit for reference:
#   search over 100,000 items at 32 clients, with each node's answer cache and without it
#   (ORDO_SEARCH_CACHE_ENTRIES=0: every search ranks and counts its hits);
#   recommendations with 100,000 placed orders at 32 clients;
#   checkout (POST /v1/orders with a payment method) against cart checkout at 64 clients
#   (its `tps` is the checkouts' own rate, the carts filled between rounds; `flow_tps`
#   counts the adds' time too).
# usage: scripts/bench-shop.sh [seconds=10]
#   ORDO_BENCH_ITEMS (100000), ORDO_BENCH_ORDERS (100000), ORDO_BENCH_BACKENDS
#   ("postgres sqlite"), ORDO_BIN (default: a release build made here).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
items=${ORDO_BENCH_ITEMS:-100000}
orders=${ORDO_BENCH_ORDERS:-100000}
backends=${ORDO_BENCH_BACKENDS:-postgres sqlite}
limit=${PG_LIMIT:-../shared/bench/pg_limit/run}
port=18184
db=ordo_bench_shop_$$
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
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
