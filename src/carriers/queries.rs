//! SQL of carrier updates and delivery estimates, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::carriers::store::{CarrierScan, CarrierStore, ScanOutcome};
use crate::orders::store::{ORDER_FIELDS, OrderRow, TRACKING_EVENT};
use crate::storage::{Dialect, Result, Ts};

#[async_trait]
impl CarrierStore for Backend {
    async fn carrier_event_seen(&self, provider: &str, event_id: &str) -> Result<bool> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT count(*) FROM carrier_events WHERE provider = $1 AND event_id = $2",
        )
        .bind(provider)
        .bind(event_id)
        .fetch_one(self.reader())
        .await?
            > 0)
    }

    async fn record_carrier_event(
        &self,
        provider: &str,
        event_id: &str,
        order_id: Option<Uuid>,
        outcome: &str,
        at: Ts,
    ) -> Result<bool> {
        let r = sqlx::query::<Db>(
            "INSERT INTO carrier_events (provider, event_id, order_id, outcome, received_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(provider)
        .bind(event_id)
        .bind(order_id)
        .bind(outcome)
        .bind(at)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn apply_carrier_scan(&self, s: &CarrierScan<'_>) -> Result<ScanOutcome> {
        let mut tx = self.writer().begin().await?;
        let claimed = sqlx::query::<Db>(
            "INSERT INTO carrier_events (provider, event_id, order_id, outcome, received_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(s.provider)
        .bind(s.event_id)
        .bind(s.order_id)
        .bind(s.outcome)
        .bind(s.at)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(ScanOutcome::Duplicate);
        }
        // Scans of one order queue behind each other (PostgreSQL; SQLite has one writer),
        // so that two updates carrying the same checkpoint cannot both add it.
        let lock = match DIALECT {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let sql = format!("SELECT {ORDER_FIELDS} FROM orders WHERE id = $1{lock}");
        let Some(mut order) = sqlx::query_as::<Db, OrderRow>(sqlx::AssertSqlSafe(sql))
            .bind(s.order_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.commit().await?;
            return Ok(ScanOutcome::Applied {
                order: None,
                event: None,
            });
        };
        if let Some(date) = &s.estimate
            && (order.estimated_delivery.as_deref() != Some(date.as_str())
                || order.estimated_delivery_source.as_deref() != Some("carrier"))
        {
            let sql = format!(
                "UPDATE orders SET estimated_delivery = $2, estimated_delivery_source = 'carrier', updated_at = $3, \
                 version = version + 1 \
                 WHERE id = $1 RETURNING {ORDER_FIELDS}"
            );
            order = sqlx::query_as::<Db, OrderRow>(sqlx::AssertSqlSafe(sql))
                .bind(s.order_id)
                .bind(date)
                .bind(s.at)
                .fetch_one(&mut *tx)
                .await?;
        }
        let mut event = None;
        if let Some(scan) = &s.scan {
            let at = scan.at.unwrap_or(s.at);
            let seen = sqlx::query_scalar::<Db, i64>(
                "SELECT count(*) FROM order_events WHERE order_id = $1 AND event = $2 AND at = $3 \
                 AND coalesce(description, '') = $4",
            )
            .bind(s.order_id)
            .bind(TRACKING_EVENT)
            .bind(at)
            .bind(scan.description.clone().unwrap_or_default())
            .fetch_one(&mut *tx)
            .await?;
            if seen == 0 {
                event = Some(insert_event(&mut *tx, &order, scan, at).await?);
            }
        }
        tx.commit().await?;
        Ok(ScanOutcome::Applied {
            order: Some(order),
            event,
        })
    }

    async fn orders_by_tracking_number(&self, tracking_number: &str) -> Result<Vec<OrderRow>> {
        let sql = format!(
            "SELECT {ORDER_FIELDS}, archived FROM orders_all WHERE tracking_number = $1 \
             ORDER BY created_at DESC, id DESC LIMIT 20"
        );
        Ok(sqlx::query_as::<Db, OrderRow>(sqlx::AssertSqlSafe(sql))
            .bind(tracking_number)
            .fetch_all(self.reader())
            .await?)
    }

    async fn set_predicted_delivery(&self, order_id: Uuid, date: &str) -> Result<Option<OrderRow>> {
        let sql = format!(
            "UPDATE orders SET estimated_delivery = $2, estimated_delivery_source = 'predicted', \
             version = version + 1 \
             WHERE id = $1 AND (estimated_delivery_source IS NULL OR estimated_delivery_source = 'predicted') \
             RETURNING {ORDER_FIELDS}"
        );
        Ok(sqlx::query_as::<Db, OrderRow>(sqlx::AssertSqlSafe(sql))
            .bind(order_id)
            .bind(date)
            .fetch_optional(self.writer())
            .await?)
    }

    async fn shipped_at(&self, order_id: Uuid) -> Result<Option<Ts>> {
        Ok(sqlx::query_scalar::<Db, Ts>(
            "SELECT at FROM order_events WHERE order_id = $1 AND event = 'order_status_update' AND status = 'shipped' \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(order_id)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn record_delivery_time(
        &self,
        order_id: Uuid,
        carrier_key: &str,
        shipped_at: Ts,
        delivered_at: Ts,
    ) -> Result<()> {
        let seconds = (delivered_at.0 - shipped_at.0).whole_seconds().max(0);
        sqlx::query::<Db>(
            "INSERT INTO delivery_times (order_id, carrier_key, shipped_at, delivered_at, seconds) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id)
        .bind(carrier_key)
        .bind(shipped_at)
        .bind(delivered_at)
        .bind(seconds)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn delivery_seconds(&self, keys: &[String], limit: u32) -> Result<Vec<i64>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut q =
            QueryBuilder::<Db>::new("SELECT seconds FROM delivery_times WHERE carrier_key IN (");
        let mut sep = q.separated(", ");
        for k in keys {
            sep.push_bind(k.clone());
        }
        q.push(") ORDER BY delivered_at DESC LIMIT ")
            .push_bind(i64::from(limit));
        Ok(q.build_query_scalar::<i64>()
            .fetch_all(self.reader())
            .await?)
    }

    async fn prune_carrier_events(&self, before: Ts) -> Result<u64> {
        Ok(
            sqlx::query::<Db>("DELETE FROM carrier_events WHERE received_at < $1")
                .bind(before)
                .execute(self.writer())
                .await?
                .rows_affected(),
        )
    }
}
