-- The order history (API.md "History"): orders that ended longer than ORDO_ARCHIVE_AFTER ago
-- move here, with their lines, timeline, payment steps and link revocations, in one
-- transaction per batch (`history` module). The live tables stay small; every read goes
-- through the `*_all` views, which show live and archived rows alike (`archived` tells them
-- apart). A write to an archived order moves it back first, so nothing changes for callers.
--
-- A later migration that adds a column to one of these tables adds it to its history twin
-- and recreates the view.
CREATE TABLE orders_history (LIKE orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE orders_history ADD PRIMARY KEY (id);
CREATE INDEX orders_history_customer ON orders_history (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_history_status ON orders_history (status, created_at DESC, id DESC);
CREATE INDEX orders_history_created ON orders_history (created_at DESC, id DESC);
CREATE INDEX orders_history_tracking ON orders_history (tracking_number, carrier) WHERE tracking_number IS NOT NULL;

CREATE TABLE order_items_history (LIKE order_items INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE order_items_history ADD PRIMARY KEY (order_id, line_no);
CREATE INDEX order_items_history_item ON order_items_history (item_id);

CREATE TABLE order_events_history (LIKE order_events INCLUDING CONSTRAINTS);
ALTER TABLE order_events_history ADD PRIMARY KEY (id);
CREATE INDEX order_events_history_order ON order_events_history (order_id, id);
CREATE INDEX order_events_history_customer ON order_events_history (customer_id, id);

CREATE TABLE payment_transactions_history (LIKE payment_transactions INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE payment_transactions_history ADD PRIMARY KEY (id);
CREATE INDEX payment_transactions_history_order ON payment_transactions_history (order_id, created_at);

CREATE TABLE tracking_link_revocations_history (LIKE tracking_link_revocations);
ALTER TABLE tracking_link_revocations_history ADD PRIMARY KEY (order_id);

CREATE VIEW orders_all AS
    SELECT o.*, false AS archived FROM orders o
    UNION ALL
    SELECT h.*, true AS archived FROM orders_history h;
CREATE VIEW order_items_all AS
    SELECT * FROM order_items UNION ALL SELECT * FROM order_items_history;
CREATE VIEW order_events_all AS
    SELECT * FROM order_events UNION ALL SELECT * FROM order_events_history;
CREATE VIEW payment_transactions_all AS
    SELECT * FROM payment_transactions UNION ALL SELECT * FROM payment_transactions_history;
CREATE VIEW tracking_link_revocations_all AS
    SELECT * FROM tracking_link_revocations UNION ALL SELECT * FROM tracking_link_revocations_history;

-- Orders moved back from the history (a late change) stay live for another
-- ORDO_ARCHIVE_AFTER from this moment.
CREATE TABLE history_restored (
    order_id uuid PRIMARY KEY,
    at       timestamptz NOT NULL
);
