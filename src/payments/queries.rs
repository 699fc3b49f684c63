//! SQL of the payment saga and gateway events, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;
use uuid::Uuid;

use crate::payments::store::{
    PAYMENT_COLUMNS, PaymentRow, PaymentStore, PaymentWrite, UPSERT_PAYMENT,
};
use crate::storage::{Dialect, Result, Ts};

/// Binds a `PaymentWrite` to `UPSERT_PAYMENT`'s parameters.
pub(crate) fn bind_write<'q>(
    q: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>,
    w: &'q PaymentWrite,
    at: Ts,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments> {
    q.bind(Uuid::now_v7())
        .bind(w.order_id)
        .bind(w.kind.as_str())
        .bind(&w.idempotency_key)
        .bind(&w.method)
        .bind(w.amount)
        .bind(&w.currency)
        .bind(w.status.as_str())
        .bind(&w.reference)
        .bind(w.attempts)
        .bind(&w.error)
        .bind(w.next_attempt_at)
        .bind(at)
}

#[async_trait]
impl PaymentStore for Backend {
    async fn record_gateway_event(&self, id: &str, kind: &str, at: Ts) -> Result<bool> {
        let r = sqlx::query::<Db>(
            "INSERT INTO gateway_events (id, type, received_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(kind)
        .bind(at)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn forget_gateway_event(&self, id: &str) -> Result<()> {
        sqlx::query::<Db>("DELETE FROM gateway_events WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn write_payment(&self, w: &PaymentWrite, at: Ts) -> Result<()> {
        bind_write(sqlx::query::<Db>(UPSERT_PAYMENT), w, at)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn start_charge(&self, w: &PaymentWrite, at: Ts) -> Result<bool> {
        // The same upsert, but only for a `created` order, and only over a charge that
        // was never sent.
        let r = sqlx::query::<Db>(
            "INSERT INTO payment_transactions (id, order_id, kind, idempotency_key, method, amount, currency, status, \
             gateway_reference, attempts, last_error, next_attempt_at, created_at, updated_at) \
             SELECT $1, id, 'charge', $3, $4, total_amount, currency, 'pending', NULL, 1, NULL, $5, $6, $6 \
             FROM orders WHERE id = $2 AND status = 'created' \
             ON CONFLICT (idempotency_key) DO UPDATE SET status = 'pending', method = excluded.method, \
             gateway_reference = NULL, attempts = payment_transactions.attempts + 1, last_error = NULL, \
             next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at \
             WHERE payment_transactions.status = 'failed'",
        )
        .bind(Uuid::now_v7())
        .bind(w.order_id)
        .bind(&w.idempotency_key)
        .bind(&w.method)
        .bind(w.next_attempt_at)
        .bind(at)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn take_due_payments(
        &self,
        now: Ts,
        lease_until: Ts,
        limit: u32,
    ) -> Result<Vec<PaymentRow>> {
        // Many nodes may look at once: on PostgreSQL each takes rows no other node holds.
        let lock = match DIALECT {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let due = DIALECT.id_in_claimed(&format!(
            "SELECT id FROM payment_transactions WHERE next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $3{lock}"
        ));
        let sql = format!(
            "UPDATE payment_transactions SET next_attempt_at = $2 WHERE {due} RETURNING {PAYMENT_COLUMNS}"
        );
        Ok(sqlx::query_as::<Db, PaymentRow>(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit))
            .fetch_all(self.writer())
            .await?)
    }

    async fn nudge_pending_charge(&self, order_id: Uuid, now: Ts) -> Result<()> {
        sqlx::query::<Db>(
            "UPDATE payment_transactions SET next_attempt_at = $2 \
             WHERE order_id = $1 AND kind = 'charge' AND status = 'pending'",
        )
        .bind(order_id)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn payments_of(&self, order_id: Uuid) -> Result<Vec<PaymentRow>> {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payment_transactions_all WHERE order_id = $1 ORDER BY created_at, id"
        );
        Ok(sqlx::query_as::<Db, PaymentRow>(sqlx::AssertSqlSafe(sql))
            .bind(order_id)
            .fetch_all(self.reader())
            .await?)
    }
}
