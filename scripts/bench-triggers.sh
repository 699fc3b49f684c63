#!/usr/bin/env bash
# What the search triggers on `items` (migration 0013) cost placement: `ordo bench orders`
# and `checkout` at 64 clients on each backend, with the triggers as they are, then with
# them put back as before 0013 (text-only `UPDATE OF` trigger, no generation), then as
# they are again, all on one database and one binary.
# usage: scripts/bench-triggers.sh [seconds=10]   (ORDO_BIN as in bench.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
port=18185
db=ordo_bench_trg_$$
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
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
