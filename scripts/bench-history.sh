#!/usr/bin/env bash
# What a large order history costs (issue 15, item 6). For each backend, two fresh
# databases get the same: a warm-up `orders` run (WARMUP_SECS, 3) that leaves some 10,000 live orders of
# customers hist-0…49, then (the second database only) ARCHIVED orders cloned from them into
# the order history (scripts/bench-history/seed-*: delivered, created 40–400 days ago, with
# lines and four-step timelines) and rolled up by the archive job at the restart. Then,
# measured on each: placement (`orders`), a customer's list (`reads`, the same customers,
# whose lists now page over the history too) and the analytics summary (`analytics`, one
# client: all time, 30 days, a 90-day window with partial end days, a year).
# usage: scripts/bench-history.sh [seconds] [concurrency] [archived]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conc=${2:-64}
archived=${3:-1000000}
port=18191
db=ordo_bench_history_$$
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
seed_dir=scripts/bench-history

# sql URL STATEMENT: one value from the database at URL.
sql() {
  case $1 in
    sqlite:*) python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "${1#sqlite://}" "$2" ;;
    *) psql "$1" -Atqc "$2" ;;
  esac
}

bench() {
  "$bin" bench "$@" --url http://127.0.0.1:$port --customer-prefix hist --customers 50 --items 100
}

measure() {
  local name=$1 url=$2 seed=$3
  start "$url"
  bench orders --concurrency "$conc" --duration "${WARMUP_SECS:-3}" --warmup 0 >/dev/null
  stop
  if [ "$seed" = yes ]; then
    local t0=$SECONDS
    case $url in
      sqlite:*) python3 $seed_dir/seed-sqlite.py "${url#sqlite://}" $((archived / 100)) ;;
      *) psql "$url" -q -v n=$((archived / 100)) -f $seed_dir/seed-postgres.sql ;;
    esac
    echo "seeded in $((SECONDS - t0)) s"
  fi
  local t0=$SECONDS
  start "$url"
  for _ in $(seq 1800); do
    [ "$(sql "$url" 'SELECT CAST(built AS INTEGER) FROM history_rollup_state')" = 1 ] && break
    sleep 1
  done
  # The seed and the rollups' rebuild wrote millions of rows at once: settle first, as the
  # database would have by itself in the time a real history takes to grow (both variants).
  # PostgreSQL: vacuum and analyze (autovacuum's next look). SQLite: a truncating checkpoint
  # of the WAL the rebuild left.
  case $url in
    sqlite:*) python3 -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA wal_checkpoint(TRUNCATE)")' "${url#sqlite://}" ;;
    *) psql "$url" -qc "VACUUM ANALYZE" ;;
  esac
  echo "== $name: $(sql "$url" 'SELECT count(*) FROM orders') live orders, $(sql "$url" 'SELECT count(*) FROM history_durations') archived durations; rollups ready $((SECONDS - t0)) s after the start"
  # The summary first, over the live orders of the warm-up (the runs after it add more).
  echo "-- analytics ($secs s, 1 client)"
  bench analytics --concurrency 1 --duration "$secs"
  for w in orders reads; do
    echo "-- $w ($secs s, $conc clients)"
    bench $w --concurrency "$conc" --duration "$secs"
  done
  stop
}

for backend in ${ORDO_BENCH_BACKENDS:-postgres sqlite}; do
  for variant in empty history; do
    case $backend in
      postgres)
        psql "$pg_admin/test" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
        psql "$pg_admin/test" -qc "CREATE DATABASE $db" >/dev/null
        url="$pg_admin/$db?sslmode=disable" ;;
      sqlite)
        rm -f "$tmp"/ordo.db*
        url="sqlite://$tmp/ordo.db" ;;
    esac
    seed=no
    [ $variant = history ] && seed=yes
    measure "$backend, $variant" "$url" $seed
  done
done
