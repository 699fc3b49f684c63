-- Order core (SQLite): the same tables as on PostgreSQL. Money is integer minor units;
-- timestamps are integer microseconds since the epoch (UTC), written by the application clock.

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    name          text NOT NULL,
    phone         text,
    role          text NOT NULL CHECK (role IN ('customer', 'staff', 'admin')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
-- Prefix search on e-mail (`GET /v1/orders?q=`).
CREATE INDEX users_email_prefix ON users (email);

CREATE TABLE api_keys (
    id         BLOB PRIMARY KEY,
    name       text NOT NULL,
    key_hash   BLOB NOT NULL UNIQUE,
    scopes     text NOT NULL,
    created_by BLOB REFERENCES users (id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE login_failures (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    email text NOT NULL,
    ip    text NOT NULL,
    at    INTEGER NOT NULL
);
CREATE INDEX login_failures_email ON login_failures (email, at);
CREATE INDEX login_failures_ip ON login_failures (ip, at);

CREATE TABLE items (
    id          BLOB PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    category    text,
    description text,
    price       bigint NOT NULL CHECK (price >= 0),
    currency    text NOT NULL CHECK (length(currency) = 3),
    -- What can still be sold now; reserved units are not in it. Never negative.
    stock       bigint NOT NULL CHECK (stock >= 0 AND stock <= 1000000000),
    attributes  TEXT NOT NULL DEFAULT '{}',
    supplier_id text,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX items_name ON items (name, id);
CREATE INDEX items_price ON items (price, id);
CREATE INDEX items_category ON items (category, name, id);
CREATE INDEX items_supplier ON items (supplier_id, sku);

CREATE TABLE orders (
    id               BLOB PRIMARY KEY,
    customer_id      BLOB NOT NULL REFERENCES users (id),
    status           text NOT NULL CHECK (status IN ('created', 'placed', 'processing', 'shipped', 'delivered', 'canceled')),
    payment_status   text NOT NULL CHECK (payment_status IN ('pending', 'paid', 'failed', 'refunded')),
    total_amount     bigint NOT NULL CHECK (total_amount >= 0),
    currency         text NOT NULL,
    shipping_address TEXT,
    carrier          text,
    tracking_number  text,
    payment_method   text,
    payment_reference text,
    -- Set while a payment call is out, so that a second call for the same order is refused.
    payment_attempt_at INTEGER,
    -- Bumped on every change: compare-and-set instead of holding row locks across calls.
    version          bigint NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    expires_at       INTEGER
);
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_status ON orders (status, created_at DESC, id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_expiry ON orders (expires_at) WHERE status = 'created';

CREATE TABLE order_items (
    order_id   BLOB NOT NULL REFERENCES orders (id),
    line_no    integer NOT NULL,
    item_id    BLOB NOT NULL REFERENCES items (id),
    sku        text NOT NULL,
    name       text NOT NULL,
    quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    unit_price bigint NOT NULL CHECK (unit_price >= 0),
    line_total bigint NOT NULL CHECK (line_total >= 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_items_item ON order_items (item_id);

-- The order timeline, written in the same transaction as the change it records; later
-- issues publish it (transactional outbox). `id` is the monotonic event sequence.
CREATE TABLE order_events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id           BLOB NOT NULL REFERENCES orders (id),
    customer_id        BLOB NOT NULL,
    event              text NOT NULL CHECK (event IN ('order_status_update', 'order_tracking_update')),
    status             text NOT NULL,
    previous_status    text,
    note               text,
    location           text,
    carrier            text,
    tracking_number    text,
    description        text,
    carrier_status     text,
    estimated_delivery text,
    actor              text,
    at                 INTEGER NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);

CREATE TABLE idempotency_keys (
    principal    text NOT NULL,
    key          text NOT NULL,
    request_hash BLOB NOT NULL,
    -- NULL while the first request is in flight.
    status       integer,
    headers      text,
    body         BLOB,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
