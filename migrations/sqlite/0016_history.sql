-- Orders moved back from the order history (a late change, see the `history` module) stay
-- live for another ORDO_ARCHIVE_AFTER from this moment. The history's tables themselves live
-- in the attached `<db>.history` file, made at start from the live tables.
CREATE TABLE history_restored (
    order_id BLOB PRIMARY KEY,
    at       INTEGER NOT NULL
);
