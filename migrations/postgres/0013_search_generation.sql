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
