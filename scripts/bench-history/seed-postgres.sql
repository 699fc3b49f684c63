-- Clones the oldest 100 live orders (and their lines) :n times each into the order history
-- as delivered and paid orders created 40 to 400 days ago, with a four-step timeline
-- (placed, processing, shipped, delivered) whose durations vary, then asks the archive job
-- to roll the history up afresh. Used by scripts/bench-history.sh.
\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE tpl ON COMMIT DROP AS
    SELECT o.*, row_number() OVER (ORDER BY o.created_at, o.id) AS rn
    FROM (SELECT * FROM orders ORDER BY created_at, id LIMIT 100) o;
CREATE TEMP TABLE m ON COMMIT DROP AS
    SELECT t.id AS old, t.rn, g,
           md5(t.id::text || g)::uuid AS new,
           now() - interval '40 days'
               - ((g - 1) * 100 + t.rn) * (interval '360 days' / (:n * 100)) AS created,
           (30 + (g * 7 + t.rn * 13) % 2000) * interval '1 minute' AS ship,
           (600 + (g * 11 + t.rn * 17) % 5000) * interval '1 minute' AS deliver
    FROM tpl t, generate_series(1, :n) g;
INSERT INTO orders_history (id, customer_id, status, payment_status, total_amount, currency,
        shipping_address, carrier, tracking_number, payment_method, payment_reference, version,
        created_at, updated_at)
    SELECT m.new, t.customer_id, 'delivered', 'paid', t.total_amount, t.currency,
           t.shipping_address, 'UPS', '1ZH' || m.g || 'R' || m.rn, 'pm_card_visa', 'pi_seed', 4,
           m.created, m.created + interval '1 hour' + m.ship + m.deliver
    FROM m JOIN tpl t ON t.id = m.old;
INSERT INTO order_items_history (order_id, line_no, item_id, sku, name, quantity, unit_price, line_total)
    SELECT m.new, l.line_no, l.item_id, l.sku, l.name, l.quantity, l.unit_price, l.line_total
    FROM m JOIN order_items l ON l.order_id = m.old;
INSERT INTO order_events_history (id, order_id, customer_id, event, status, previous_status, at, actor)
    SELECT nextval(pg_get_serial_sequence('order_events', 'id')), m.new, t.customer_id,
           'order_status_update', s.status, s.previous, m.created + s.after, 'seed'
    FROM m JOIN tpl t ON t.id = m.old
    CROSS JOIN LATERAL (VALUES
        ('placed', 'created', interval '0'),
        ('processing', 'placed', interval '1 hour'),
        ('shipped', 'processing', interval '1 hour' + m.ship),
        ('delivered', 'shipped', interval '1 hour' + m.ship + m.deliver)
    ) AS s (status, previous, after)
    ORDER BY m.new, s.after;
UPDATE history_rollup_state SET built = false;
COMMIT;
ANALYZE;
