//! SQL of the event log as a source, compiled once per backend (see `storage`). The few
//! statements that differ live beside `mod queries;`, in `store.rs`.

use super::*;

use async_trait::async_trait;

use crate::events::store::{Audience, EventStore, Lease, OutboxRead};
use crate::orders::store::{EVENT_COLUMNS, EventRow};
use crate::storage::{Dialect, Result, Ts};

#[async_trait]
impl EventStore for Backend {
    async fn events_after(&self, after: i64, limit: u32) -> Result<OutboxRead> {
        self.read_after(after, limit).await
    }

    async fn transactions_ended(&self, xids: &[i64]) -> Result<bool> {
        if xids.is_empty() {
            return Ok(true);
        }
        self.ended(xids).await
    }

    async fn ours(&self, xids: Vec<i64>) -> Result<Vec<i64>> {
        if xids.is_empty() {
            return Ok(xids);
        }
        self.local(xids).await
    }

    async fn last_event(&self) -> Result<OutboxRead> {
        self.read_last().await
    }

    async fn replay(
        &self,
        audience: Audience,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>> {
        let rows = match audience {
            Audience::Customer(c) => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM order_events WHERE customer_id = $1 AND id > $2 AND id <= $3 \
                     ORDER BY id LIMIT $4"
                );
                sqlx::query_as::<Db, EventRow>(sqlx::AssertSqlSafe(sql))
                    .bind(c)
                    .bind(after)
                    .bind(upto)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
            }
            Audience::Everyone => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM order_events WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3"
                );
                sqlx::query_as::<Db, EventRow>(sqlx::AssertSqlSafe(sql))
                    .bind(after)
                    .bind(upto)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
            }
        };
        Ok(rows)
    }

    async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar::<Db, i64>("SELECT position FROM outbox_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(self.reader())
                .await?,
        )
    }

    async fn shop_id(&self) -> Result<String> {
        Ok(sqlx::query_scalar::<Db, String>(
            "SELECT shop_id FROM shop_identity WHERE singleton = 1",
        )
        .fetch_one(self.reader())
        .await?)
    }

    async fn save_cursor(&self, name: &str, position: i64, at: Ts) -> Result<()> {
        let greatest = match DIALECT {
            Dialect::Postgres => "greatest",
            Dialect::Sqlite => "max",
        };
        let sql = format!(
            "INSERT INTO outbox_cursors (name, position, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET position = {greatest}(outbox_cursors.position, excluded.position), \
             updated_at = excluded.updated_at"
        );
        sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(position)
            .bind(at)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn try_lead(&self, name: &str) -> Result<Option<Box<dyn Lease>>> {
        self.lead(name).await
    }

    async fn bench_insert_events(&self, scans: &[(uuid::Uuid, uuid::Uuid)], at: Ts) -> Result<()> {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO order_events (order_id, customer_id, event, status, description, carrier_status, actor, at) ",
        );
        q.push_values(scans, |mut row, (order, customer)| {
            row.push_bind(*order)
                .push_bind(*customer)
                .push_bind("order_tracking_update")
                .push_bind("placed")
                .push_bind("in transit")
                .push_bind("in_transit")
                .push_bind("bench")
                .push_bind(at);
        });
        q.build().execute(self.writer()).await?;
        Ok(())
    }
}
