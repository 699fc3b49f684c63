-- What a search filters, sorts and counts by, beside the full-text row's key, as
-- PostgreSQL's `item_search` keeps them (migration 0013 there): name (sort), category
-- (filter, facets), price (filter, sort), in_stock (filter). A search then reads one
-- `item_docs` row per hit, by its rowid, instead of `item_docs` and then `items` through
-- its primary-key index; `items` is read only for the rows it shows.
--
-- Kept by triggers in the item's transaction: every insert, and an update only when one of
-- these columns changes; stock changes fire it only when stock reaches or leaves zero, so a
-- placement's decrement costs the trigger's WHEN and nothing else.
ALTER TABLE item_docs ADD COLUMN name text NOT NULL DEFAULT '';
ALTER TABLE item_docs ADD COLUMN category text;
ALTER TABLE item_docs ADD COLUMN price bigint NOT NULL DEFAULT 0;
ALTER TABLE item_docs ADD COLUMN in_stock INTEGER NOT NULL DEFAULT 0;

UPDATE item_docs SET (name, category, price, in_stock) =
    (SELECT i.name, i.category, i.price, i.stock > 0 FROM items i WHERE i.id = item_docs.item_id);

DROP TRIGGER items_fts_insert;
CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
    INSERT INTO item_docs (item_id, name, category, price, in_stock)
    VALUES (new.id, new.name, new.category, new.price, new.stock > 0);
    INSERT INTO items_fts (rowid, name, sku, category, description, attributes)
    VALUES ((SELECT docid FROM item_docs WHERE item_id = new.id),
            new.name, new.sku, coalesce(new.category, ''), coalesce(new.description, ''), new.attributes);
END;

CREATE TRIGGER item_docs_columns AFTER UPDATE ON items
    WHEN OLD.name IS NOT NEW.name OR OLD.category IS NOT NEW.category
      OR OLD.price IS NOT NEW.price OR (OLD.stock > 0) IS NOT (NEW.stock > 0)
BEGIN
    UPDATE item_docs SET name = new.name, category = new.category, price = new.price,
                         in_stock = new.stock > 0
    WHERE item_id = new.id;
END;
