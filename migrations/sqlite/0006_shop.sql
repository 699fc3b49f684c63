-- Shop front (SQLite): carts, wishlists, the full-text item index and co-purchase counts.

-- A customer's cart. `version` moves on with every change to the cart's lines; checkout
-- places the order only if the cart is still at the version it read (see `orders`).
CREATE TABLE carts (
    customer_id BLOB PRIMARY KEY REFERENCES users (id),
    version     INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE cart_items (
    customer_id BLOB NOT NULL REFERENCES carts (customer_id),
    item_id     BLOB NOT NULL REFERENCES items (id),
    quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    added_at    INTEGER NOT NULL,
    PRIMARY KEY (customer_id, item_id)
);

CREATE TABLE wishlist_items (
    customer_id BLOB NOT NULL REFERENCES users (id),
    item_id     BLOB NOT NULL REFERENCES items (id),
    added_at    INTEGER NOT NULL,
    PRIMARY KEY (customer_id, item_id)
);
CREATE INDEX wishlist_items_added ON wishlist_items (customer_id, added_at DESC);

-- The item index. Items have no integer key (and VACUUM may renumber implicit rowids), so
-- each item gets a stable document number here, and the FTS5 table keeps its own copy of
-- the text under that number. Triggers keep it in the item's own transaction; they fire
-- only when indexed text changes, never for stock (order placement writes only stock).
CREATE TABLE item_docs (
    docid   INTEGER PRIMARY KEY,
    item_id BLOB NOT NULL UNIQUE REFERENCES items (id)
);

CREATE VIRTUAL TABLE items_fts USING fts5 (
    name, sku, category, description, attributes,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
-- Every distinct term, for "did you mean" look-ups of words with a typo.
CREATE VIRTUAL TABLE items_fts_terms USING fts5vocab (items_fts, 'row');

CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
    INSERT INTO item_docs (item_id) VALUES (new.id);
    INSERT INTO items_fts (rowid, name, sku, category, description, attributes)
    VALUES ((SELECT docid FROM item_docs WHERE item_id = new.id),
            new.name, new.sku, coalesce(new.category, ''), coalesce(new.description, ''), new.attributes);
END;

CREATE TRIGGER items_fts_update AFTER UPDATE OF name, sku, category, description, attributes ON items BEGIN
    UPDATE items_fts SET name = new.name, sku = new.sku, category = coalesce(new.category, ''),
                         description = coalesce(new.description, ''), attributes = new.attributes
    WHERE rowid = (SELECT docid FROM item_docs WHERE item_id = new.id);
END;

CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
    DELETE FROM items_fts WHERE rowid = (SELECT docid FROM item_docs WHERE item_id = old.id);
    DELETE FROM item_docs WHERE item_id = old.id;
END;

INSERT INTO item_docs (item_id) SELECT id FROM items ORDER BY created_at, id;
INSERT INTO items_fts (rowid, name, sku, category, description, attributes)
SELECT d.docid, i.name, i.sku, coalesce(i.category, ''), coalesce(i.description, ''), i.attributes
FROM items i JOIN item_docs d ON d.item_id = i.id;

-- Co-purchase counts, kept by the recommendations consumer of the event log: in how many
-- placed orders each item was, and each ordered pair of items together (both directions
-- are stored, so an item's partners are one key range).
CREATE TABLE item_order_counts (
    item_id BLOB PRIMARY KEY REFERENCES items (id),
    orders  INTEGER NOT NULL
);
CREATE INDEX item_order_counts_popular ON item_order_counts (orders DESC);

CREATE TABLE item_pairs (
    item_id  BLOB NOT NULL REFERENCES items (id),
    other_id BLOB NOT NULL REFERENCES items (id),
    orders   INTEGER NOT NULL,
    PRIMARY KEY (item_id, other_id)
);
