-- The search generation: one counter, bumped in the transaction of every item change that
-- can change a search's answer (see the PostgreSQL migration of the same number).
CREATE TABLE search_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO search_generation (id, n) VALUES (1, 0);

CREATE TRIGGER search_generation_added AFTER INSERT ON items BEGIN
    UPDATE search_generation SET n = n + 1;
END;
CREATE TRIGGER search_generation_removed AFTER DELETE ON items BEGIN
    UPDATE search_generation SET n = n + 1;
END;
CREATE TRIGGER search_generation_changed AFTER UPDATE ON items
    WHEN OLD.name IS NOT NEW.name OR OLD.sku IS NOT NEW.sku OR OLD.category IS NOT NEW.category
      OR OLD.description IS NOT NEW.description OR OLD.attributes IS NOT NEW.attributes
      OR OLD.price IS NOT NEW.price OR OLD.currency IS NOT NEW.currency
      OR (OLD.stock > 0) IS NOT (NEW.stock > 0)
BEGIN
    UPDATE search_generation SET n = n + 1;
END;
