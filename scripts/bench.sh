#!/usr/bin/env bash
# Measures Ordo against PostgreSQL's own limit on this machine, in one run:
#   1. ../shared/bench/pg_limit/run   (pgbench: the database alone, Ordo's transaction shapes)
#   2. ordo on PostgreSQL (a fresh database) and on SQLite, driven by `ordo bench` over HTTP.
# usage: scripts/bench.sh [seconds] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conc=${2:-32}
pg_admin=${ORDO_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
limit=${PG_LIMIT:-../shared/bench/pg_limit/run}
export ORDO_ADMIN_EMAIL=bench-admin@example.com ORDO_ADMIN_PASSWORD=bench-admin-password
export ORDO_LOG_FORMAT=json RUST_LOG=warn

cargo build --release --quiet
bin=target/release/ordo

# TLS to a database on the same host only burns CPU on both sides; both pgbench and Ordo
# connect without it (ORDO_BENCH_SSLMODE=prefer measures both with it).
sslmode=${ORDO_BENCH_SSLMODE:-disable}
echo "== PostgreSQL alone (pgbench, $secs s, sslmode=$sslmode)"
if [ -x "$limit" ]; then PGSSLMODE=$sslmode "$limit" "$secs"; else echo "($limit not found)"; fi

run_backend() {
  local name=$1 url=$2 port=$3
  DATABASE_URL=$url $bin serve --listen 127.0.0.1:$port >/tmp/ordo-bench-$name.log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
  echo "== Ordo on $name ($secs s, $conc clients)"
  for w in orders hot checkout reads; do
    if [ "$w" = reads ] && [ "$name" = postgres ]; then
      # The write phases just added some 200,000 orders, faster than autovacuum's next
      # look (once a minute): without statistics PostgreSQL plans a customer's list as a
      # sequential scan. Analyze now, as autovacuum would have within the minute.
      psql "$url" -qc ANALYZE
    fi
    $bin bench $w --url http://127.0.0.1:$port --concurrency "$conc" --duration "$secs" --items 1000 --customers 50
  done
  kill $pid; wait $pid 2>/dev/null || true
}

db=ordo_bench_$$
psql "$pg_admin/test" -qc "CREATE DATABASE $db" >/dev/null
trap 'psql "$pg_admin/test" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT
run_backend postgres "$pg_admin/$db?sslmode=$sslmode" 18181

tmp=$(mktemp -d)
run_backend sqlite "sqlite://$tmp/ordo.db" 18182
rm -rf "$tmp"
