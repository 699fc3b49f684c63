-- Carriers and delivery estimates: the estimate on the order, AfterShip's event ids
-- (each handled once), how long each carrier took to deliver (for predictions), and
-- messages from the shop to a customer.

-- `YYYY-MM-DD`, and where it came from: the carrier's own estimate, or our prediction.
ALTER TABLE orders ADD COLUMN estimated_delivery text;
ALTER TABLE orders ADD COLUMN estimated_delivery_source text
    CHECK (estimated_delivery_source IN ('carrier', 'predicted'));
-- The carrier webhook finds an order by its tracking number, then checks the carrier.
CREATE INDEX orders_tracking ON orders (tracking_number, carrier) WHERE tracking_number IS NOT NULL;

-- Inbound carrier events already handled (provider, the provider's event id).
CREATE TABLE carrier_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    order_id    uuid,
    outcome     text NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX carrier_events_received ON carrier_events (received_at);

-- One row per delivered order that had a carrier: how long it took from `shipped` to
-- `delivered`. `carrier_key` is the carrier's name in lower case without spaces, dots,
-- hyphens or underscores.
CREATE TABLE delivery_times (
    order_id     uuid PRIMARY KEY,
    carrier_key  text NOT NULL,
    shipped_at   timestamptz NOT NULL,
    delivered_at timestamptz NOT NULL,
    seconds      bigint NOT NULL CHECK (seconds >= 0)
);
CREATE INDEX delivery_times_carrier ON delivery_times (carrier_key, delivered_at DESC);

-- Orders delivered before this migration count too.
INSERT INTO delivery_times (order_id, carrier_key, shipped_at, delivered_at, seconds)
SELECT o.id,
       replace(replace(replace(replace(lower(trim(o.carrier)), ' ', ''), '-', ''), '.', ''), '_', ''),
       s.at, d.at, extract(epoch FROM d.at - s.at)::bigint
FROM orders o
JOIN (SELECT order_id, max(at) AS at FROM order_events
      WHERE event = 'order_status_update' AND status = 'shipped' GROUP BY order_id) s ON s.order_id = o.id
JOIN (SELECT order_id, max(at) AS at FROM order_events
      WHERE event = 'order_status_update' AND status = 'delivered' GROUP BY order_id) d ON d.order_id = o.id
WHERE o.status = 'delivered' AND o.carrier IS NOT NULL AND trim(o.carrier) <> '' AND d.at >= s.at;

-- (No foreign keys to orders or users: archiving and erasure may remove those rows.)

-- A message from the shop to one customer (optionally about one of its orders). Its
-- deliveries go through the same queue as notifications, with `event_id` = -id (the
-- queue's key is (event_id, channel, recipient); order events have positive ids).
CREATE TABLE shop_messages (
    id          bigserial PRIMARY KEY,
    customer_id uuid NOT NULL,
    order_id    uuid,
    message     text NOT NULL,
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX shop_messages_customer ON shop_messages (customer_id, id);
