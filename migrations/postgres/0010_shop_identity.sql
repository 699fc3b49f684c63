-- The identity of this database: made once, when the database is created, and copied
-- with it by a backup. The NATS stream is named after it and carries it, so that shops
-- (databases) sharing one NATS server never read each other's events.
CREATE TABLE shop_identity (
    singleton integer PRIMARY KEY CHECK (singleton = 1),
    shop_id   text NOT NULL
);
INSERT INTO shop_identity (singleton, shop_id) VALUES (1, replace(gen_random_uuid()::text, '-', ''));
