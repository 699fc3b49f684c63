-- Rollups of the order history (`history::rollup`): what the analytics summary needs of
-- archived orders, per UTC day and per UTC month of creation (`grain` 1 and 2; `day` is the
-- period's first midnight), so that a long range reads a row per month and its ends a row
-- per day. They change in the transaction that moves orders
-- into the history (added) or back out of it (subtracted), so a summary over a long history
-- reads these rows for its whole days instead of every archived order. Live orders and a
-- range's partial first and last days are still read exactly.
CREATE TABLE history_rollup_orders (
    grain    smallint NOT NULL,
    day      timestamptz NOT NULL,
    status   text NOT NULL,
    currency text NOT NULL,
    orders   bigint NOT NULL,
    -- Orders whose money was kept (payment_status = 'paid'), and their totals.
    paid     bigint NOT NULL,
    revenue  bigint NOT NULL,
    PRIMARY KEY (grain, day, status, currency)
);

-- Units sold per item (paid orders).
CREATE TABLE history_rollup_items (
    grain   smallint NOT NULL,
    day     timestamptz NOT NULL,
    item_id uuid NOT NULL,
    sku     text NOT NULL,
    name    text NOT NULL,
    units   bigint NOT NULL,
    PRIMARY KEY (grain, day, item_id)
);

-- How many placed→shipped (kind 1) and shipped→delivered (kind 2) durations fall in each
-- bucket (2 % wide, `rollup::bucket`), and each archived order's exact durations: a median
-- finds its bucket from the counts, then reads the exact values of that one bucket (from the
-- index alone: it holds the values).
CREATE TABLE history_rollup_durations (
    kind   smallint NOT NULL,
    grain  smallint NOT NULL,
    day    timestamptz NOT NULL,
    bucket integer NOT NULL,
    orders bigint NOT NULL,
    PRIMARY KEY (kind, grain, day, bucket)
);
CREATE TABLE history_durations (
    order_id uuid NOT NULL,
    kind     smallint NOT NULL,
    day      timestamptz NOT NULL,
    bucket   integer NOT NULL,
    us       bigint NOT NULL,
    PRIMARY KEY (order_id, kind)
);
CREATE INDEX history_durations_bucket ON history_durations (kind, bucket, day, us);

-- Whether the rollups cover the whole history: a history archived before this migration is
-- rolled up once by the archive job (`HistoryStore::rebuild_rollups`); until then the
-- summary reads archived orders exactly.
CREATE TABLE history_rollup_state (
    id    integer PRIMARY KEY CHECK (id = 1),
    built boolean NOT NULL
);
INSERT INTO history_rollup_state (id, built)
    SELECT 1, NOT EXISTS (SELECT 1 FROM orders_history);
