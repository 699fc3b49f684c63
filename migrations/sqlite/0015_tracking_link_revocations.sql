-- An order's tracking links issued at or before `revoked_at` (unix seconds) are refused:
-- a customer who shared a link, or staff, can take every link of the order back at once.
CREATE TABLE tracking_link_revocations (
    order_id   BLOB PRIMARY KEY REFERENCES orders (id),
    revoked_at INTEGER NOT NULL
);
