-- Real-time push: replays read a customer's events after an id, and every consumer of the
-- event log (the relay to NATS, the notifier) keeps its position here, durably.
CREATE INDEX order_events_customer ON order_events (customer_id, id);

CREATE TABLE outbox_cursors (
    name       text PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
