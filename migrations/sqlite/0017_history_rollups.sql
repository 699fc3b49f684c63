-- Rollups of the order history (`history::rollup`): what the analytics summary needs of
-- archived orders, per UTC day and per UTC month of creation (`grain` 1 and 2; `day`: the
-- period's first midnight, in microseconds), so that a long range reads a row per month and
-- its ends a row per day. They live in
-- the main file, beside the live tables, and change in the transaction that deletes orders
-- from the live tables after copying them into the history file (added) or copies them back
-- (subtracted): an order left in both files by a crash is counted live only. A summary over
-- a long history reads these rows for its whole days instead of every archived order.
CREATE TABLE history_rollup_orders (
    grain    INTEGER NOT NULL,
    day      INTEGER NOT NULL,
    status   TEXT NOT NULL,
    currency TEXT NOT NULL,
    orders   INTEGER NOT NULL,
    paid     INTEGER NOT NULL,
    revenue  INTEGER NOT NULL,
    PRIMARY KEY (grain, day, status, currency)
);

CREATE TABLE history_rollup_items (
    grain   INTEGER NOT NULL,
    day     INTEGER NOT NULL,
    item_id BLOB NOT NULL,
    sku     TEXT NOT NULL,
    name    TEXT NOT NULL,
    units   INTEGER NOT NULL,
    PRIMARY KEY (grain, day, item_id)
);

CREATE TABLE history_rollup_durations (
    kind   INTEGER NOT NULL,
    grain  INTEGER NOT NULL,
    day    INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    orders INTEGER NOT NULL,
    PRIMARY KEY (kind, grain, day, bucket)
);
CREATE TABLE history_durations (
    order_id BLOB NOT NULL,
    kind     INTEGER NOT NULL,
    day      INTEGER NOT NULL,
    bucket   INTEGER NOT NULL,
    us       INTEGER NOT NULL,
    PRIMARY KEY (order_id, kind)
);
CREATE INDEX history_durations_bucket ON history_durations (kind, bucket, day, us);

-- The history file is not attached while migrations run: the archive job rolls up whatever
-- it holds once (`HistoryStore::rebuild_rollups`); until then the summary reads archived
-- orders exactly.
CREATE TABLE history_rollup_state (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    built INTEGER NOT NULL
);
INSERT INTO history_rollup_state (id, built) VALUES (1, 0);
