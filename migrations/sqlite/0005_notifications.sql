-- Notifications to customers (e-mail, SMS, push) and webhooks to integrations: one
-- durable delivery queue for both. A delivery is made once per (event, channel,
-- recipient) however many nodes look at the event; it is retried on the schedule until it
-- is sent, or it is `dead`.

CREATE TABLE notification_preferences (
    user_id    BLOB PRIMARY KEY REFERENCES users (id),
    email      INTEGER NOT NULL,
    sms        INTEGER NOT NULL,
    push       INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE webhook_endpoints (
    id          BLOB PRIMARY KEY,
    url         text NOT NULL,
    -- JSON array of the event types it wants.
    events      text NOT NULL,
    description text,
    secret      text NOT NULL,
    -- After a rotation the old secret signs too, until it expires.
    previous_secret            text,
    previous_secret_expires_at INTEGER,
    created_by  text NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);

CREATE TABLE deliveries (
    id              BLOB PRIMARY KEY,
    event_id        INTEGER NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webhook')),
    -- The customer (a user id) or the webhook endpoint (its id).
    recipient       BLOB NOT NULL,
    -- The address it goes to: e-mail, phone number or URL (null for push).
    target          text,
    -- The webhook event type, or the notification's kind (placed, shipped, …).
    kind            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    -- What the provider said (an SMTP answer, a message id, an HTTP status).
    detail          text,
    next_attempt_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    UNIQUE (event_id, channel, recipient)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX deliveries_recipient ON deliveries (recipient, created_at DESC, id DESC);

-- A real-time connection of this customer received this event (push delivered).
CREATE TABLE push_receipts (
    event_id INTEGER NOT NULL,
    user_id  BLOB NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (event_id, user_id)
);

-- The notifier starts after the events that exist now: they are history, not news.
INSERT INTO outbox_cursors (name, position, updated_at)
SELECT 'notifier', coalesce(max(id), 0), CAST(strftime('%s', 'now') AS INTEGER) * 1000000 FROM order_events WHERE true
ON CONFLICT (name) DO NOTHING;
