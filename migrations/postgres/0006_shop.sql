-- Shop front (PostgreSQL): carts, wishlists, the full-text item index and co-purchase counts.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- A customer's cart. `version` moves on with every change to the cart's lines; checkout
-- places the order only if the cart is still at the version it read (see `orders`).
CREATE TABLE carts (
    customer_id uuid PRIMARY KEY REFERENCES users (id),
    version     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE cart_items (
    customer_id uuid NOT NULL REFERENCES carts (customer_id),
    item_id     uuid NOT NULL REFERENCES items (id),
    quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    added_at    timestamptz NOT NULL,
    PRIMARY KEY (customer_id, item_id)
);

CREATE TABLE wishlist_items (
    customer_id uuid NOT NULL REFERENCES users (id),
    item_id     uuid NOT NULL REFERENCES items (id),
    added_at    timestamptz NOT NULL,
    PRIMARY KEY (customer_id, item_id)
);
CREATE INDEX wishlist_items_added ON wishlist_items (customer_id, added_at DESC);

-- The item index, beside `items` rather than in it: a generated column would be
-- recomputed by every stock change, and order placement changes stock on every order.
-- A trigger that fires only when indexed text changes keeps it in the item's transaction.
-- Weights: name A, SKU and category B, description and attributes C.
CREATE TABLE item_search (
    item_id  uuid PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    document tsvector NOT NULL,
    -- Name, SKU and category in lower case, for trigram matching (typos, partial SKUs).
    words    text NOT NULL
);
CREATE INDEX item_search_document ON item_search USING gin (document);
CREATE INDEX item_search_words ON item_search USING gin (words gin_trgm_ops);

CREATE FUNCTION item_search_document(i items) RETURNS tsvector LANGUAGE sql IMMUTABLE AS $$
    SELECT setweight(to_tsvector('simple', i.name), 'A')
        || setweight(to_tsvector('simple', regexp_replace(i.sku, '[^[:alnum:]]+', ' ', 'g')), 'B')
        || setweight(to_tsvector('simple', coalesce(i.category, '')), 'B')
        || setweight(to_tsvector('simple', coalesce(i.description, '')), 'C')
        || setweight(jsonb_to_tsvector('simple', i.attributes, '["string", "numeric"]'), 'C')
$$;

CREATE FUNCTION item_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_search (item_id, document, words)
    VALUES (NEW.id, item_search_document(NEW), lower(NEW.name || ' ' || NEW.sku || ' ' || coalesce(NEW.category, '')))
    ON CONFLICT (item_id) DO UPDATE SET document = excluded.document, words = excluded.words;
    RETURN NULL;
END
$$;

CREATE TRIGGER item_search_insert AFTER INSERT ON items
    FOR EACH ROW EXECUTE FUNCTION item_search_sync();
CREATE TRIGGER item_search_update AFTER UPDATE OF name, sku, category, description, attributes ON items
    FOR EACH ROW EXECUTE FUNCTION item_search_sync();

INSERT INTO item_search (item_id, document, words)
SELECT i.id, item_search_document(i), lower(i.name || ' ' || i.sku || ' ' || coalesce(i.category, ''))
FROM items i;

-- Co-purchase counts, kept by the recommendations consumer of the event log: in how many
-- placed orders each item was, and each ordered pair of items together (both directions
-- are stored, so an item's partners are one key range).
CREATE TABLE item_order_counts (
    item_id uuid PRIMARY KEY REFERENCES items (id),
    orders  bigint NOT NULL
);
CREATE INDEX item_order_counts_popular ON item_order_counts (orders DESC);

CREATE TABLE item_pairs (
    item_id  uuid NOT NULL REFERENCES items (id),
    other_id uuid NOT NULL REFERENCES items (id),
    orders   bigint NOT NULL,
    PRIMARY KEY (item_id, other_id)
);
