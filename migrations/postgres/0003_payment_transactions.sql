-- The payment saga's durable state: one row per step that moves money (a charge of an
-- order, the refund of it). A row is written before its gateway call, so that after a
-- crash the saga knows what may have happened and asks the gateway by reference.
-- `next_attempt_at` is when the saga looks at the row again (NULL: nothing left to do);
-- a node that takes a row moves it forward first, so that no two nodes work on one row.
CREATE TABLE payment_transactions (
    id                uuid PRIMARY KEY,
    order_id          uuid NOT NULL REFERENCES orders (id),
    kind              text NOT NULL CHECK (kind IN ('charge', 'refund')),
    -- Sent with every gateway call of this step: the gateway moves money at most once.
    idempotency_key   text NOT NULL UNIQUE,
    method            text,
    amount            bigint NOT NULL CHECK (amount >= 0),
    currency          text NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'voided')),
    gateway_reference text,
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text,
    next_attempt_at   timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX payment_transactions_order ON payment_transactions (order_id, created_at);
CREATE INDEX payment_transactions_due ON payment_transactions (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- Refunds are driven by their transaction rows now.
DROP INDEX orders_refund_due;

-- Refunds owed from before this table existed (canceled orders whose money is still in).
INSERT INTO payment_transactions (id, order_id, kind, idempotency_key, method, amount, currency, status,
                                  gateway_reference, attempts, next_attempt_at, created_at, updated_at)
SELECT gen_random_uuid(), id, 'refund', 'refund-' || id::text, payment_method, total_amount, currency, 'pending',
       payment_reference, 0, updated_at, updated_at, updated_at
FROM orders WHERE status = 'canceled' AND payment_status = 'paid';
