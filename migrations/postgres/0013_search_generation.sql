-- The search generation: one counter, bumped in the transaction of every item change that
-- can change a search's answer: an item added or removed; its name, SKU, category,
-- description, attributes, price or currency changed; its stock reaching or leaving zero.
-- A node caches a search's ranked ids and facets with the generation it read, and uses them
-- only while the generation it reads, in the same statement as the items' rows, is the same.
-- Stock changes that do not cross zero (nearly every order) leave it alone.
CREATE TABLE search_generation (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    n  bigint NOT NULL
);
INSERT INTO search_generation (id, n) VALUES (true, 0);

CREATE FUNCTION search_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_generation SET n = n + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER search_generation_added AFTER INSERT OR DELETE ON items
    FOR EACH STATEMENT EXECUTE FUNCTION search_generation_bump();
CREATE TRIGGER search_generation_changed AFTER UPDATE ON items
    FOR EACH ROW
    WHEN ((OLD.name, OLD.sku, OLD.category, OLD.description, OLD.attributes, OLD.price, OLD.currency)
              IS DISTINCT FROM
          (NEW.name, NEW.sku, NEW.category, NEW.description, NEW.attributes, NEW.price, NEW.currency)
          OR (OLD.stock > 0) <> (NEW.stock > 0))
    EXECUTE FUNCTION search_generation_bump();

-- What a search filters, sorts and counts by, beside the document, so that a search reads
-- only `item_search` for its thousands of hits and `items` only for the rows it shows:
-- name (sort), category (filter, facets), price (filter, sort), in_stock (filter). Kept by
-- the same trigger as the document, which now also fires on those changes: a price or
-- category change, stock reaching or leaving zero (never for other stock changes).
ALTER TABLE item_search ADD COLUMN name text, ADD COLUMN category text,
    ADD COLUMN price bigint, ADD COLUMN in_stock boolean;
UPDATE item_search s SET name = i.name, category = i.category, price = i.price, in_stock = i.stock > 0
FROM items i WHERE i.id = s.item_id;
ALTER TABLE item_search ALTER COLUMN name SET NOT NULL, ALTER COLUMN price SET NOT NULL,
    ALTER COLUMN in_stock SET NOT NULL;

CREATE OR REPLACE FUNCTION item_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_search (item_id, document, words, name, category, price, in_stock)
    VALUES (NEW.id, item_search_document(NEW), lower(NEW.name || ' ' || NEW.sku || ' ' || coalesce(NEW.category, '')),
            NEW.name, NEW.category, NEW.price, NEW.stock > 0)
    ON CONFLICT (item_id) DO UPDATE SET document = excluded.document, words = excluded.words,
        name = excluded.name, category = excluded.category, price = excluded.price, in_stock = excluded.in_stock;
    RETURN NULL;
END
$$;

DROP TRIGGER item_search_update ON items;
CREATE TRIGGER item_search_update AFTER UPDATE ON items
    FOR EACH ROW
    WHEN ((OLD.name, OLD.sku, OLD.category, OLD.description, OLD.attributes, OLD.price)
              IS DISTINCT FROM
          (NEW.name, NEW.sku, NEW.category, NEW.description, NEW.attributes, NEW.price)
          OR (OLD.stock > 0) <> (NEW.stock > 0))
    EXECUTE FUNCTION item_search_sync();

-- Every lexeme the item documents ever held (as SQLite's fts5vocab table does): a word of
-- a query that starts none of them may be a typo, and its neighbours one edit away are
-- found here through trigrams (a few thousand short terms) instead of by comparing it
-- with every item's words. Terms are only added: one left by a renamed item finds nothing.
CREATE TABLE search_terms (
    term text COLLATE "C" PRIMARY KEY
);
CREATE INDEX search_terms_trigrams ON search_terms USING gin (term gin_trgm_ops);
INSERT INTO search_terms (term) SELECT DISTINCT t.lexeme FROM item_search s, unnest(s.document) t;

CREATE FUNCTION search_terms_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_terms (term) SELECT t.lexeme FROM unnest(NEW.document) t
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER search_terms_insert AFTER INSERT ON item_search
    FOR EACH ROW EXECUTE FUNCTION search_terms_add();
CREATE TRIGGER search_terms_update AFTER UPDATE OF document ON item_search
    FOR EACH ROW WHEN (OLD.document IS DISTINCT FROM NEW.document)
    EXECUTE FUNCTION search_terms_add();
