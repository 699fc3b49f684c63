-- Erased accounts, in the order they were erased: every node follows them (the
-- `erasure_watch` job) to end the erased person's sessions and connections there too.
CREATE INDEX users_erased ON users (erased_at, id) WHERE erased_at IS NOT NULL;
