-- The books: the audit log of staff and system actions.
--
-- Each row is written in the same transaction as the change it records. Order status
-- changes and refunds are not copied here: the order timeline (`order_events`, with its
-- `actor`) already records them in the order's own transaction, and the audit log reads
-- them from there, so placing an order writes nothing more than before.
-- Append-only: a trigger refuses every UPDATE and DELETE. Rows carry no personal data (no
-- names, e-mails, phones or addresses), so an erasure has nothing to rewrite here.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    -- `user:<id>`, `key:<id>` or `system:<job>`.
    actor       text NOT NULL,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   text NOT NULL,
    before      text,
    after       text
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor, at DESC, id DESC);
CREATE INDEX audit_log_action ON audit_log (action, at DESC, id DESC);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Status changes and refunds in the timeline, newest first, for the audit log. Partial:
-- placement writes its first event with no previous status, so it never touches this index.
CREATE INDEX order_events_changes ON order_events (at DESC, id DESC)
    WHERE previous_status IS NOT NULL;
