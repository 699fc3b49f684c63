#!/usr/bin/env bash
# What the search triggers on `items` (migration 0013) cost placement: `ordo bench orders`
# and `checkout` at 64 clients on each backend, with the triggers as they are, then with
# them put back as before 0013 (text-only `UPDATE OF` trigger, no generation), then as
# they are again, all on one database and one binary.
# usage: scripts/bench-triggers.sh [seconds=10]   (ORDO_BIN as in bench.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
pg_admin=${ORDO_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
export ORDO_ADMIN_EMAIL=bench-admin@example.com ORDO_ADMIN_PASSWORD=bench-admin-password
export ORDO_LOG_FORMAT=json RUST_LOG=warn
if [ -z "${ORDO_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${ORDO_BIN:-target/release/ordo}
port=18185
tmp=$(mktemp -d)
db=ordo_bench_trg_$$
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  psql "$pg_admin/test" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
start() {
  DATABASE_URL="$1" "$bin" serve --listen 127.0.0.1:$port >>"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && return; sleep 0.1; done
  tail -20 "$tmp/server.log" >&2
  exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
round() {
  echo "-- $1"
  for w in orders checkout; do
    "$bin" bench $w --url http://127.0.0.1:$port --concurrency 64 --duration "$secs" --items 1000 --customers 64 2>/dev/null
  done
}
pg_before="DROP TRIGGER search_generation_changed ON items;
DROP TRIGGER item_search_update ON items;
CREATE TRIGGER item_search_update AFTER UPDATE OF name, sku, category, description, attributes ON items
    FOR EACH ROW EXECUTE FUNCTION item_search_sync();"
pg_after="DROP TRIGGER item_search_update ON items;
CREATE TRIGGER search_generation_changed AFTER UPDATE ON items FOR EACH ROW
    WHEN ((OLD.name, OLD.sku, OLD.category, OLD.description, OLD.attributes, OLD.price, OLD.currency)
          IS DISTINCT FROM (NEW.name, NEW.sku, NEW.category, NEW.description, NEW.attributes, NEW.price, NEW.currency)
          OR (OLD.stock > 0) <> (NEW.stock > 0))
    EXECUTE FUNCTION search_generation_bump();
CREATE TRIGGER item_search_update AFTER UPDATE ON items FOR EACH ROW
    WHEN ((OLD.name, OLD.sku, OLD.category, OLD.description, OLD.attributes, OLD.price)
          IS DISTINCT FROM (NEW.name, NEW.sku, NEW.category, NEW.description, NEW.attributes, NEW.price)
          OR (OLD.stock > 0) <> (NEW.stock > 0))
    EXECUTE FUNCTION item_search_sync();"
sqlite_trigger=$(sed -n '/CREATE TRIGGER search_generation_changed/,/^END;/p' migrations/sqlite/0013_search_generation.sql)

echo "== PostgreSQL (64 clients, $secs s each)"
psql "$pg_admin/test" -qc "CREATE DATABASE $db" >/dev/null
url="$pg_admin/$db?sslmode=disable"
start "$url"; round "with the 0013 triggers"; stop
psql "$url" -qc "$pg_before" >/dev/null
start "$url"; round "triggers as before 0013"; stop
psql "$url" -qc "$pg_after" >/dev/null
start "$url"; round "with the 0013 triggers again"; stop

echo "== SQLite (64 clients, $secs s each)"
file=$tmp/ordo.db
start "sqlite://$file"; round "with the 0013 triggers"; stop
sqlite3 "$file" "DROP TRIGGER search_generation_changed;"
start "sqlite://$file"; round "triggers as before 0013"; stop
sqlite3 "$file" "$sqlite_trigger"
start "sqlite://$file"; round "with the 0013 triggers again"; stop
