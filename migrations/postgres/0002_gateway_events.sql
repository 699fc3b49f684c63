-- Payment gateway webhooks (each event id handled once), and the refund retry queue.
CREATE TABLE gateway_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX gateway_events_received ON gateway_events (received_at);

-- Canceled orders whose money has not gone back yet: the refund job retries them.
CREATE INDEX orders_refund_due ON orders (updated_at) WHERE status = 'canceled' AND payment_status = 'paid';
