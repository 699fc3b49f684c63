-- Payment gateway webhooks: each event id is handled once.
CREATE TABLE gateway_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX gateway_events_received ON gateway_events (received_at);
