"""Clones the oldest 100 live orders (and their lines) N times each into the order history
file as delivered and paid orders created 40 to 400 days ago, with a four-step timeline
whose durations vary, then asks the archive job to roll the history up afresh. The SQLite
twin of seed-postgres.sql; used by scripts/bench-history.sh.

usage: seed-sqlite.py DB_PATH N
"""
import sqlite3
import sys
import time

path, n = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA busy_timeout = 60000")
db.execute("ATTACH DATABASE ? AS history", (path + ".history",))
now = int(time.time() * 1_000_000)
day, minute = 86_400_000_000, 60_000_000
db.execute("BEGIN IMMEDIATE")
db.execute(
    """CREATE TEMP TABLE tpl AS SELECT o.*, row_number() OVER (ORDER BY o.created_at, o.id) AS rn
       FROM (SELECT * FROM main.orders ORDER BY created_at, id LIMIT 100) o"""
)
db.execute(
    f"""CREATE TEMP TABLE m AS
        WITH RECURSIVE gen(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM gen WHERE g < {n})
        SELECT t.id AS old, t.rn AS rn, g, randomblob(16) AS new,
               {now} - 40 * {day} - ((g - 1) * 100 + t.rn) * (360 * {day} / ({n} * 100)) AS created,
               (30 + (g * 7 + t.rn * 13) % 2000) * {minute} AS ship,
               (600 + (g * 11 + t.rn * 17) % 5000) * {minute} AS deliver
        FROM tpl t, gen"""
)
db.execute(
    f"""INSERT INTO history.orders (id, customer_id, status, payment_status, total_amount, currency,
            shipping_address, carrier, tracking_number, payment_method, payment_reference, version,
            created_at, updated_at)
        SELECT m.new, t.customer_id, 'delivered', 'paid', t.total_amount, t.currency,
               t.shipping_address, 'UPS', '1ZH' || m.g || 'R' || m.rn, 'pm_card_visa', 'pi_seed', 4,
               m.created, m.created + 3600000000 + m.ship + m.deliver
        FROM m JOIN tpl t ON t.id = m.old"""
)
db.execute(
    """INSERT INTO history.order_items (order_id, line_no, item_id, sku, name, quantity, unit_price, line_total)
       SELECT m.new, l.line_no, l.item_id, l.sku, l.name, l.quantity, l.unit_price, l.line_total
       FROM m JOIN main.order_items l ON l.order_id = m.old"""
)
# Event ids after every live one; the live sequence moves past them.
base = db.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'order_events'").fetchone()[0]
db.execute(
    f"""INSERT INTO history.order_events (id, order_id, customer_id, event, status, previous_status, at, actor)
        SELECT {base} + m.rowid * 4 + s.k, m.new, t.customer_id, 'order_status_update', s.status,
               s.previous,
               m.created + CASE s.k WHEN 0 THEN 0 WHEN 1 THEN 3600000000
                                    WHEN 2 THEN 3600000000 + m.ship
                                    ELSE 3600000000 + m.ship + m.deliver END,
               'seed'
        FROM m JOIN tpl t ON t.id = m.old
        CROSS JOIN (SELECT 0 AS k, 'placed' AS status, 'created' AS previous
                    UNION ALL SELECT 1, 'processing', 'placed'
                    UNION ALL SELECT 2, 'shipped', 'processing'
                    UNION ALL SELECT 3, 'delivered', 'shipped') s"""
)
db.execute(
    "UPDATE sqlite_sequence SET seq = ? WHERE name = 'order_events'",
    (base + (100 * n + 1) * 4 + 4,),
)
db.execute("UPDATE main.history_rollup_state SET built = 0")
db.execute("COMMIT")
db.execute("ANALYZE")
print(db.execute("SELECT count(*) FROM history.orders").fetchone()[0], "orders in the history")
