//! SQL of notifications and webhooks, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::books::domain::NewAudit;
use crate::notifications::domain::Preferences;
use crate::notifications::store::{
    DELIVERY_COLUMNS, DeliveryRow, DeliveryUpdate, ENDPOINT_COLUMNS, EndpointRow, NewDelivery,
    NotificationStore, ShopMessageRow, message_event_id,
};
use crate::orders::store::{EVENT_COLUMNS, EventRow};
use crate::storage::{Dialect, Result, Ts};

#[async_trait]
impl NotificationStore for Backend {
    async fn insert_shop_message(
        &self,
        customer_id: Uuid,
        order_id: Option<Uuid>,
        message: &str,
        actor: &str,
        deliveries: &[NewDelivery],
        at: Ts,
    ) -> Result<(i64, Vec<DeliveryRow>)> {
        let mut tx = self.writer().begin().await?;
        let id = sqlx::query_scalar::<Db, i64>(
            "INSERT INTO shop_messages (customer_id, order_id, message, actor, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(customer_id)
        .bind(order_id)
        .bind(message)
        .bind(actor)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let mut rows = Vec::with_capacity(deliveries.len());
        for n in deliveries {
            let (status, due, sent_at) = match n.recorded {
                Some(_) => ("sent", None, Some(at)),
                None => ("pending", Some(n.due), None),
            };
            let sql = format!(
                "INSERT INTO deliveries (id, event_id, channel, recipient, target, kind, status, attempts, next_attempt_at, \
                 detail, sent_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, $11) \
                 RETURNING {DELIVERY_COLUMNS}"
            );
            rows.push(
                sqlx::query_as::<Db, DeliveryRow>(sqlx::AssertSqlSafe(sql))
                    .bind(Uuid::now_v7())
                    .bind(message_event_id(id))
                    .bind(n.channel)
                    .bind(n.recipient)
                    .bind(n.target.clone())
                    .bind(n.kind.clone())
                    .bind(status)
                    .bind(due)
                    .bind(n.recorded)
                    .bind(sent_at)
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await?,
            );
        }
        tx.commit().await?;
        Ok((id, rows))
    }

    async fn shop_message(&self, id: i64) -> Result<Option<ShopMessageRow>> {
        Ok(sqlx::query_as::<Db, ShopMessageRow>(
            "SELECT id, customer_id, order_id, message, actor, created_at FROM shop_messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn preferences(&self, user: Uuid) -> Result<Option<Preferences>> {
        let row = sqlx::query_as::<Db, (bool, bool, bool)>(
            "SELECT email, sms, push FROM notification_preferences WHERE user_id = $1",
        )
        .bind(user)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|(email, sms, push)| Preferences { email, sms, push }))
    }

    async fn set_preferences(&self, user: Uuid, p: Preferences, at: Ts) -> Result<()> {
        sqlx::query::<Db>(
            "INSERT INTO notification_preferences (user_id, email, sms, push, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, sms = excluded.sms, push = excluded.push, \
             updated_at = excluded.updated_at",
        )
        .bind(user)
        .bind(p.email)
        .bind(p.sms)
        .bind(p.push)
        .bind(at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn insert_deliveries(&self, d: &[NewDelivery], at: Ts) -> Result<u64> {
        if d.is_empty() {
            return Ok(0);
        }
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO deliveries (id, event_id, channel, recipient, target, kind, status, attempts, next_attempt_at, \
             detail, sent_at, created_at, updated_at) ",
        );
        q.push_values(d, |mut row, n| {
            let (status, due, sent_at) = match n.recorded {
                Some(_) => ("sent", None, Some(at)),
                None => ("pending", Some(n.due), None),
            };
            row.push_bind(Uuid::now_v7())
                .push_bind(n.event_id)
                .push_bind(n.channel)
                .push_bind(n.recipient)
                .push_bind(n.target.clone())
                .push_bind(n.kind.clone())
                .push_bind(status)
                .push_bind(0_i32)
                .push_bind(due)
                .push_bind(n.recorded)
                .push_bind(sent_at)
                .push_bind(at)
                .push_bind(at);
        });
        q.push(" ON CONFLICT (event_id, channel, recipient) DO NOTHING");
        Ok(q.build().execute(self.writer()).await?.rows_affected())
    }

    async fn take_due_deliveries(
        &self,
        now: Ts,
        lease_until: Ts,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>> {
        // Many nodes may look at once: on PostgreSQL each takes rows no other node holds.
        let lock = match DIALECT {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let due = DIALECT.id_in_claimed(&format!(
            "SELECT id FROM deliveries WHERE next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $3{lock}"
        ));
        let sql = format!(
            "UPDATE deliveries SET next_attempt_at = $2 WHERE {due} RETURNING {DELIVERY_COLUMNS}"
        );
        Ok(sqlx::query_as::<Db, DeliveryRow>(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit))
            .fetch_all(self.writer())
            .await?)
    }

    async fn update_delivery(&self, id: Uuid, u: &DeliveryUpdate, at: Ts) -> Result<()> {
        sqlx::query::<Db>(
            "UPDATE deliveries SET status = $2, attempts = attempts + $3, last_error = $4, \
             detail = coalesce($5, detail), next_attempt_at = $6, sent_at = coalesce($7, sent_at), updated_at = $8 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(u.status)
        .bind(u.attempts)
        .bind(&u.last_error)
        .bind(&u.detail)
        .bind(u.next_attempt_at)
        .bind(u.sent_at)
        .bind(at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRow>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        Ok(sqlx::query_as::<Db, DeliveryRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn deliveries_to(
        &self,
        recipient: Uuid,
        channel: Option<&str>,
        before: Option<(Ts, Uuid)>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE recipient = "
        ));
        q.push_bind(recipient);
        if let Some(c) = channel {
            q.push(" AND channel = ").push_bind(c.to_owned());
        }
        if let Some((t, id)) = before {
            q.push(" AND (created_at < ").push_bind(t);
            q.push(" OR (created_at = ")
                .push_bind(t)
                .push(" AND id < ")
                .push_bind(id)
                .push("))");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        Ok(q.build_query_as::<DeliveryRow>()
            .fetch_all(self.reader())
            .await?)
    }

    async fn requeue_delivery(&self, id: Uuid, now: Ts) -> Result<bool> {
        let r = sqlx::query::<Db>(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $2 \
             WHERE id = $1 AND status IN ('sent', 'dead')",
        )
        .bind(id)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn queue_depth(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as::<Db, (String, i64)>(
            "SELECT channel, count(*) FROM deliveries WHERE next_attempt_at IS NOT NULL GROUP BY channel",
        )
        .fetch_all(self.reader())
        .await?)
    }

    async fn record_push_receipts(&self, receipts: &[(i64, Uuid)], at: Ts) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut q = QueryBuilder::<Db>::new("INSERT INTO push_receipts (event_id, user_id, at) ");
        q.push_values(receipts, |mut row, (event, user)| {
            row.push_bind(*event).push_bind(*user).push_bind(at);
        });
        q.push(" ON CONFLICT (event_id, user_id) DO NOTHING");
        q.build().execute(self.writer()).await?;
        Ok(())
    }

    async fn push_received(&self, event_id: i64, user: Uuid) -> Result<bool> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT count(*) FROM push_receipts WHERE event_id = $1 AND user_id = $2",
        )
        .bind(event_id)
        .bind(user)
        .fetch_one(self.reader())
        .await?
            > 0)
    }

    async fn event(&self, id: i64) -> Result<Option<EventRow>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM order_events WHERE id = $1");
        Ok(sqlx::query_as::<Db, EventRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn insert_endpoint(&self, e: &EndpointRow, audit: &NewAudit) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(e.id)
            .bind(&e.url)
            .bind(e.events.to_json())
            .bind(&e.description)
            .bind(&e.secret)
            .bind(&e.previous_secret)
            .bind(e.previous_secret_expires_at)
            .bind(&e.created_by)
            .bind(e.created_at)
            .bind(e.updated_at)
            .bind(e.deleted_at)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn endpoint(&self, id: Uuid) -> Result<Option<EndpointRow>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        Ok(sqlx::query_as::<Db, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn endpoints(&self) -> Result<Vec<EndpointRow>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY created_at, id"
        );
        Ok(sqlx::query_as::<Db, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.reader())
            .await?)
    }

    async fn rotate_endpoint_secret(
        &self,
        id: Uuid,
        secret: &str,
        previous_until: Ts,
        at: Ts,
    ) -> Result<bool> {
        let r = sqlx::query::<Db>(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = $3, secret = $2, \
             updated_at = $4 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(secret)
        .bind(previous_until)
        .bind(at)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_endpoint(&self, id: Uuid, audit: &NewAudit) -> Result<bool> {
        let mut tx = self.writer().begin().await?;
        let r = sqlx::query::<Db>(
            "UPDATE webhook_endpoints SET deleted_at = $2, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(audit.at)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
