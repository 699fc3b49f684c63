//! SQL of privacy, compiled once per backend (see `storage`). `Db`, `DIALECT` and `Backend`
//! come from the including module.

use super::*;

use async_trait::async_trait;
use uuid::Uuid;

use crate::auth::store::{USER_COLUMNS, UserRow};
use crate::books::store::{AuditRow, AuditTuple};
use crate::notifications::domain::Preferences;
use crate::notifications::store::{DELIVERY_COLUMNS, DeliveryRow, ShopMessageRow};
use crate::orders::store::{EVENT_COLUMNS, EventRow, ORDER_FIELDS, OrderRow};
use crate::payments::store::{PAYMENT_COLUMNS, PaymentRow};
use crate::privacy::store::{
    Erased, Erasure, OwnedLineRow, PersonRecords, PrivacyStore, SavedItemRow,
};
use crate::storage::{Dialect, Result, Ts};

#[async_trait]
impl PrivacyStore for Backend {
    async fn erased_after(&self, at: Ts, id: Uuid, limit: u32) -> Result<Vec<(Ts, Uuid)>> {
        // Index `users_erased` (erased accounts only).
        Ok(sqlx::query_as::<Db, (Ts, Uuid)>(
            "SELECT erased_at, id FROM users WHERE erased_at IS NOT NULL \
             AND (erased_at > $1 OR (erased_at = $1 AND id > $2)) \
             ORDER BY erased_at, id LIMIT $3",
        )
        .bind(at)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?)
    }

    async fn person_records(&self, id: Uuid) -> Result<Option<PersonRecords>> {
        let mut tx = self.reader().begin().await?;
        // One snapshot for the whole document (SQLite's read transaction is one already).
        if DIALECT == Dialect::Postgres {
            sqlx::query::<Db>("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let Some(user) = sqlx::query_as::<Db, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let preferences = sqlx::query_as::<Db, (bool, bool, bool)>(
            "SELECT email, sms, push FROM notification_preferences WHERE user_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|(email, sms, push)| Preferences { email, sms, push });

        let sql = format!(
            "SELECT {ORDER_FIELDS} FROM orders_all WHERE customer_id = $1 ORDER BY created_at, id"
        );
        let orders = sqlx::query_as::<Db, OrderRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let lines = sqlx::query_as::<Db, OwnedLineRow>(
            "SELECT l.order_id, l.line_no, l.item_id, l.sku, l.name, l.quantity, l.unit_price, l.line_total \
             FROM orders_all o JOIN order_items_all l ON l.order_id = o.id \
             WHERE o.customer_id = $1 ORDER BY o.created_at, o.id, l.line_no",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM order_events_all WHERE customer_id = $1 ORDER BY id"
        );
        let events = sqlx::query_as::<Db, EventRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payment_transactions_all \
             WHERE order_id IN (SELECT id FROM orders_all WHERE customer_id = $1) ORDER BY created_at, id"
        );
        let payments = sqlx::query_as::<Db, PaymentRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;

        let cart = sqlx::query_as::<Db, SavedItemRow>(
            "SELECT c.item_id, i.sku, i.name, c.quantity, c.added_at \
             FROM cart_items c JOIN items i ON i.id = c.item_id \
             WHERE c.customer_id = $1 ORDER BY c.added_at, c.item_id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let wishlist = sqlx::query_as::<Db, SavedItemRow>(
            "SELECT w.item_id, i.sku, i.name, 1 AS quantity, w.added_at \
             FROM wishlist_items w JOIN items i ON i.id = w.item_id \
             WHERE w.customer_id = $1 ORDER BY w.added_at, w.item_id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;

        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries \
             WHERE recipient = $1 AND channel <> 'webhook' ORDER BY created_at, id"
        );
        let deliveries = sqlx::query_as::<Db, DeliveryRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let messages = sqlx::query_as::<Db, ShopMessageRow>(
            "SELECT id, customer_id, order_id, message, actor, created_at \
             FROM shop_messages WHERE customer_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let push_receipts = sqlx::query_as::<Db, (i64, Ts)>(
            "SELECT event_id, at FROM push_receipts WHERE user_id = $1 ORDER BY event_id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let failed_logins = sqlx::query_as::<Db, (Ts, String)>(
            "SELECT at, ip FROM login_failures WHERE email = $1 ORDER BY at, id",
        )
        .bind(&user.email)
        .fetch_all(&mut *tx)
        .await?;

        let audit = sqlx::query_as::<Db, AuditTuple>(
            "SELECT id, at, actor, action, target_type, target_id, before, after FROM audit_log \
             WHERE (target_type = 'user' AND target_id = $1) OR actor = $2 ORDER BY at, id",
        )
        .bind(id.to_string())
        .bind(format!("user:{id}"))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(AuditRow::from)
        .collect();
        tx.commit().await?;
        Ok(Some(PersonRecords {
            user,
            preferences,
            orders,
            lines,
            events,
            payments,
            cart,
            wishlist,
            deliveries,
            messages,
            push_receipts,
            failed_logins,
            audit,
        }))
    }

    async fn erase_person(&self, e: &Erasure) -> Result<Erased> {
        let mut tx = self.writer().begin().await?;
        let lock = match DIALECT {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let sql = format!("SELECT email, phone, erased_at FROM users WHERE id = $1{lock}");
        let found =
            sqlx::query_as::<Db, (String, Option<String>, Option<Ts>)>(sqlx::AssertSqlSafe(sql))
                .bind(e.id)
                .fetch_optional(&mut *tx)
                .await?;
        let (email, phone) = match found {
            None => return Ok(Erased::NoSuchUser),
            Some((_, _, Some(_))) => return Ok(Erased::Already),
            Some((email, phone, None)) => (email, phone),
        };
        let id = e.id;

        // The account: nothing personal left, no password that verifies.
        sqlx::query::<Db>(
            "UPDATE users SET email = $2, name = $3, phone = NULL, password_hash = $4, \
             erased_at = $5, updated_at = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(&e.email)
        .bind(e.name)
        .bind(e.password_hash)
        .bind(e.at)
        .execute(&mut *tx)
        .await?;
        sqlx::query::<Db>("DELETE FROM login_failures WHERE email = $1")
            .bind(&email)
            .execute(&mut *tx)
            .await?;

        // Orders stay, with their lines, amounts and statuses (the books); where they were
        // sent and every free text on their timelines (notes, scan locations, descriptions
        // — staff and carriers write names and streets there) go.
        // Live and archived alike (the order history, see `history`).
        let (orders, events) = match DIALECT {
            Dialect::Postgres => (
                ["orders", "orders_history"],
                ["order_events", "order_events_history"],
            ),
            Dialect::Sqlite => (
                ["main.orders", "history.orders"],
                ["main.order_events", "history.order_events"],
            ),
        };
        for t in orders {
            sqlx::query::<Db>(sqlx::AssertSqlSafe(format!(
                "UPDATE {t} SET shipping_address = NULL, version = version + 1 \
                 WHERE customer_id = $1 AND shipping_address IS NOT NULL"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        for t in events {
            sqlx::query::<Db>(sqlx::AssertSqlSafe(format!(
                "UPDATE {t} SET note = NULL, location = NULL, description = NULL \
                 WHERE customer_id = $1 AND (note IS NOT NULL OR location IS NOT NULL OR description IS NOT NULL)"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }

        // Notifications: the addresses and what providers answered go; what was still to
        // be sent is dropped.
        sqlx::query::<Db>("UPDATE shop_messages SET message = $2 WHERE customer_id = $1")
            .bind(id)
            .bind(e.text)
            .execute(&mut *tx)
            .await?;
        sqlx::query::<Db>(
            "UPDATE deliveries SET target = NULL, detail = NULL, \
             last_error = CASE WHEN status IN ('pending', 'failed') THEN $2 ELSE NULL END, \
             status = CASE WHEN status IN ('pending', 'failed') THEN 'dead' ELSE status END, \
             next_attempt_at = NULL, updated_at = $3 \
             WHERE recipient = $1 AND channel <> 'webhook'",
        )
        .bind(id)
        .bind(e.dropped)
        .bind(e.at)
        .execute(&mut *tx)
        .await?;
        for sql in [
            "DELETE FROM notification_preferences WHERE user_id = $1",
            "DELETE FROM push_receipts WHERE user_id = $1",
            "DELETE FROM cart_items WHERE customer_id = $1",
            "DELETE FROM carts WHERE customer_id = $1",
            "DELETE FROM wishlist_items WHERE customer_id = $1",
        ] {
            sqlx::query::<Db>(sql).bind(id).execute(&mut *tx).await?;
        }

        // Stored idempotent answers (kept a day to answer retries) of the person's own
        // requests, and any other caller's that show its id, e-mail or phone.
        let contains = match DIALECT {
            Dialect::Sqlite => "instr(body, $",
            Dialect::Postgres => "position($",
        };
        let within = match DIALECT {
            Dialect::Sqlite => ") > 0",
            Dialect::Postgres => " IN body) > 0",
        };
        let sql = format!(
            "DELETE FROM idempotency_keys WHERE principal = $1 OR (body IS NOT NULL AND \
             ({contains}2{within} OR {contains}3{within} OR ($4 AND {contains}5{within})))"
        );
        let user_key = format!("user:{id}");
        sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(&user_key)
            .bind(id.to_string().into_bytes())
            .bind(email.clone().into_bytes())
            .bind(phone.is_some())
            .bind(phone.unwrap_or_default().into_bytes())
            .execute(&mut *tx)
            .await?;

        append_audit(&mut *tx, &e.audit).await?;
        tx.commit().await?;
        Ok(Erased::Now)
    }
}
