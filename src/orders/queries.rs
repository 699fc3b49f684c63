//! SQL of the orders module, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;
use sqlx::{FromRow, QueryBuilder, Row};
use uuid::Uuid;

use crate::orders::store::{
    EVENT_COLUMNS, EventRow, Expiry, NewEvent, NewOrder, ORDER_COLUMNS, ORDER_FIELDS, OrderCursor,
    OrderFilter, OrderLineRow, OrderRecord, OrderRow, OrderStore, OrderUpdate, PlaceOutcome,
    TransitionJob, TransitionOutcome,
};
use crate::payments::store::UPSERT_PAYMENT;
use crate::storage::{Dialect, Error, Result, Ts};

const LINE_COLUMNS: &str =
    "l.line_no, l.item_id, l.sku, l.name, l.quantity, l.unit_price, l.line_total";

/// Groups joined order × line rows (ordered by order) into records.
fn group(rows: Vec<<Db as sqlx::Database>::Row>) -> Result<Vec<OrderRecord>> {
    let mut out: Vec<OrderRecord> = Vec::new();
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        let line = OrderLineRow::from_row(&row)?;
        match out.last_mut() {
            Some(rec) if rec.order.id == id => rec.lines.push(line),
            _ => out.push(OrderRecord {
                order: OrderRow::from_row(&row)?,
                lines: vec![line],
            }),
        }
    }
    Ok(out)
}

pub(crate) async fn insert_event<'c, E>(
    ex: E,
    order: &OrderRow,
    e: &NewEvent,
    at: Ts,
) -> Result<EventRow>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    // On PostgreSQL the transaction must have its id before the event takes its number,
    // so that a reader of the log always sees who may still commit a number it skipped
    // (see `events::outbox`): the row lock on the order assigns it, and the event's number
    // is drawn for the locked row, after it.
    let (with, from) = match DIALECT {
        Dialect::Postgres => (
            "WITH o AS (SELECT id FROM orders WHERE id = $1 FOR KEY SHARE) ",
            " FROM o",
        ),
        Dialect::Sqlite => ("", ""),
    };
    let sql = format!(
        "{with}INSERT INTO order_events (order_id, customer_id, event, status, previous_status, note, location, carrier, \
         tracking_number, description, carrier_status, estimated_delivery, actor, at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14{from} RETURNING {EVENT_COLUMNS}"
    );
    Ok(sqlx::query_as::<Db, EventRow>(sqlx::AssertSqlSafe(sql))
        .bind(order.id)
        .bind(order.customer_id)
        .bind(e.event)
        .bind(&e.status)
        .bind(&e.previous_status)
        .bind(&e.note)
        .bind(&e.location)
        .bind(&e.carrier)
        .bind(&e.tracking_number)
        .bind(&e.description)
        .bind(&e.carrier_status)
        .bind(&e.estimated_delivery)
        .bind(&e.actor)
        .bind(e.at.unwrap_or(at))
        .fetch_one(ex)
        .await?)
}

/// The portable transition, inside the caller's transaction: the compare-and-set on the
/// order's version, the stock given back (in item id order), the timeline rows and the
/// payment step. A stale version writes nothing.
pub(crate) async fn apply_transition(
    conn: &mut <Db as sqlx::Database>::Connection,
    job: &TransitionJob,
) -> Result<TransitionOutcome> {
    let (u, at) = (&job.update, job.at);
    let sql = format!(
        "UPDATE orders SET status = $1, payment_status = $2, carrier = coalesce($3, carrier), \
         tracking_number = coalesce($4, tracking_number), payment_reference = coalesce($5, payment_reference), \
         version = version + 1, updated_at = $6 WHERE id = $7 AND version = $8 RETURNING {ORDER_FIELDS}"
    );
    let row = sqlx::query_as::<Db, OrderRow>(sqlx::AssertSqlSafe(sql))
        .bind(&u.status)
        .bind(&u.payment_status)
        .bind(&u.carrier)
        .bind(&u.tracking_number)
        .bind(&u.payment_reference)
        .bind(at)
        .bind(job.id)
        .bind(job.version)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(TransitionOutcome::Stale);
    };
    for (item_id, qty) in &job.release {
        sqlx::query::<Db>("UPDATE items SET stock = stock + $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(*qty))
            .bind(at)
            .bind(item_id)
            .execute(&mut *conn)
            .await?;
    }
    for e in &job.events {
        insert_event(&mut *conn, &row, e, at).await?;
    }
    if let Some(w) = &u.payment {
        bind_write(sqlx::query::<Db>(UPSERT_PAYMENT), w, at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(TransitionOutcome::Applied(row))
}

#[async_trait]
impl OrderStore for Backend {
    async fn place_order(&self, o: &NewOrder) -> Result<PlaceOutcome> {
        // Each backend places an order in as few trips to the database as it can; see
        // `place_pg.rs` and `place_sqlite.rs`.
        self.place_order_native(o).await
    }

    async fn place_orders(&self, batch: Vec<NewOrder>) -> Vec<Result<PlaceOutcome>> {
        self.place_orders_native(batch).await
    }

    async fn order(&self, id: Uuid) -> Result<Option<OrderRecord>> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS}, o.archived, {LINE_COLUMNS} FROM orders_all o \
             JOIN order_items_all l ON l.order_id = o.id WHERE o.id = $1 AND l.order_id = $1 ORDER BY l.line_no"
        );
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(self.reader())
            .await?;
        Ok(group(rows)?.pop())
    }

    async fn transition(
        &self,
        current: &OrderRecord,
        u: &OrderUpdate,
        release_stock: bool,
        events: &[NewEvent],
        at: Ts,
    ) -> Result<TransitionOutcome> {
        if let Some(done) = self
            .transition_fast(current, u, release_stock, events, at)
            .await
        {
            return done;
        }
        let job = TransitionJob::new(current, u, release_stock, events, at);
        let mut tx = self.writer().begin().await?;
        let outcome = apply_transition(&mut tx, &job).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn append_event(&self, order: &OrderRow, e: &NewEvent) -> Result<EventRow> {
        insert_event(self.writer(), order, e, e.at.unwrap_or(order.updated_at)).await
    }

    async fn events(&self, order_id: Uuid) -> Result<Vec<EventRow>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM order_events_all WHERE order_id = $1 ORDER BY id");
        Ok(sqlx::query_as::<Db, EventRow>(sqlx::AssertSqlSafe(sql))
            .bind(order_id)
            .fetch_all(self.reader())
            .await?)
    }

    async fn list_orders(
        &self,
        f: &OrderFilter,
        after: Option<&OrderCursor>,
        limit: u32,
    ) -> Result<Vec<OrderRecord>> {
        // The page is made once (MATERIALIZED: SQLite would otherwise make it again for
        // each half of the lines' view).
        let mut q = QueryBuilder::<Db>::new("WITH o AS MATERIALIZED (");
        push_list(&mut q, "*", f, after, limit)?;
        q.push(format_args!(
            ") SELECT {ORDER_COLUMNS}, o.archived, {LINE_COLUMNS} FROM o"
        ));
        // PostgreSQL's generic plan for a plain join may hash all of `order_items`; a LATERAL
        // subquery that cannot be flattened (OFFSET 0) pins it to one index lookup per order
        // on the page. SQLite always loops.
        q.push(match DIALECT {
            Dialect::Postgres => {
                " CROSS JOIN LATERAL (SELECT * FROM order_items_all l WHERE l.order_id = o.id OFFSET 0) l"
            }
            Dialect::Sqlite => " JOIN order_items_all l ON l.order_id = o.id",
        });
        q.push(" ORDER BY o.created_at DESC, o.id DESC, l.line_no");
        let rows = q.build().fetch_all(self.reader()).await?;
        group(rows)
    }

    async fn list_versions(
        &self,
        f: &OrderFilter,
        after: Option<&OrderCursor>,
        limit: u32,
    ) -> Result<Vec<(Uuid, i64)>> {
        let mut q = QueryBuilder::<Db>::new("");
        push_list(&mut q, "id, version", f, after, limit)?;
        Ok(q.build_query_as().fetch_all(self.reader()).await?)
    }

    async fn order_version(&self, id: Uuid) -> Result<Option<(Uuid, i64)>> {
        Ok(sqlx::query_as::<Db, (Uuid, i64)>(
            "SELECT customer_id, version FROM orders_all WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn expire_orders(&self, now: Ts, limit: u32, expiry: &Expiry) -> Result<Vec<Uuid>> {
        let mut tx = self.writer().begin().await?;
        // Many nodes sweep at once: on PostgreSQL each takes orders no other node holds,
        // and a payment or cancel that holds an order's row is not waited for (the next
        // sweep looks again).
        let lock = match DIALECT {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "SELECT {ORDER_FIELDS} FROM orders WHERE status = 'created' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2{lock}"
        );
        let due = sqlx::query_as::<Db, OrderRow>(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = due.iter().map(|o| o.id).collect();
        // Stock back, item rows in id order (as every writer takes them).
        let mut q = QueryBuilder::<Db>::new(
            "SELECT item_id, sum(quantity) FROM order_items WHERE order_id IN (",
        );
        let mut sep = q.separated(", ");
        for id in &ids {
            sep.push_bind(*id);
        }
        q.push(") GROUP BY item_id ORDER BY item_id");
        let units: Vec<(Uuid, i64)> = q.build_query_as().fetch_all(&mut *tx).await?;
        for (item, qty) in units {
            sqlx::query::<Db>("UPDATE items SET stock = stock + $1, updated_at = $2 WHERE id = $3")
                .bind(qty)
                .bind(now)
                .bind(item)
                .execute(&mut *tx)
                .await?;
        }
        for o in &due {
            sqlx::query::<Db>(
                "UPDATE orders SET status = $1, payment_status = $4, version = version + 1, \
                 updated_at = $2 WHERE id = $3",
            )
            .bind(expiry.status)
            .bind(now)
            .bind(o.id)
            .bind(expiry.payment_status)
            .execute(&mut *tx)
            .await?;
            insert_event(&mut *tx, o, &expiry.event, now).await?;
            // A charge still out is called off by the payment saga, at once.
            sqlx::query::<Db>(
                "UPDATE payment_transactions SET next_attempt_at = $2 \
                 WHERE order_id = $1 AND kind = 'charge' AND status = 'pending'",
            )
            .bind(o.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }
}

/// `SELECT columns FROM (live ∪ archived orders) WHERE (the filter) ORDER BY (newest first)
/// LIMIT limit`: a page of a list, whole or as its ids and versions only. Each half reads
/// its own table through its own index, newest first, at most `limit` rows; the page is
/// the newest `limit` of both.
fn push_list(
    q: &mut QueryBuilder<Db>,
    columns: &str,
    f: &OrderFilter,
    after: Option<&OrderCursor>,
    limit: u32,
) -> Result<()> {
    let (live, history, hidden) = match DIALECT {
        Dialect::Postgres => ("orders", "orders_history", ""),
        // A history row whose order is live too is a move cut short (see `history`).
        Dialect::Sqlite => (
            "main.orders",
            "history.orders",
            " AND NOT EXISTS (SELECT 1 FROM main.orders m WHERE m.id = o.id)",
        ),
    };
    q.push(format_args!("SELECT {columns} FROM (SELECT * FROM ("));
    q.push(format_args!(
        "SELECT {ORDER_COLUMNS}, false AS archived FROM {live} o WHERE 1 = 1"
    ));
    push_filter(q, f, after)?;
    q.push(" ORDER BY o.created_at DESC, o.id DESC LIMIT ")
        .push_bind(i64::from(limit));
    q.push(") a UNION ALL SELECT * FROM (");
    q.push(format_args!(
        "SELECT {ORDER_COLUMNS}, true AS archived FROM {history} o WHERE 1 = 1{hidden}"
    ));
    push_filter(q, f, after)?;
    // When the live half fills the page, only archived orders at least as new as its last
    // one can make it: an index bound, so a customer with years of history reads none of
    // it for a page of recent orders.
    q.push(
        " AND o.created_at >= COALESCE((SELECT e.created_at FROM (SELECT o.created_at, o.id FROM ",
    )
    .push(live)
    .push(" o WHERE 1 = 1");
    push_filter(q, f, after)?;
    q.push(" ORDER BY o.created_at DESC, o.id DESC LIMIT 1 OFFSET ")
        .push_bind(i64::from(limit.max(1) - 1))
        .push(") e), ")
        .push_bind(Ts(time::macros::datetime!(0001-01-01 0:00 UTC)))
        .push(")");
    q.push(" ORDER BY o.created_at DESC, o.id DESC LIMIT ")
        .push_bind(i64::from(limit));
    q.push(") b) o ORDER BY o.created_at DESC, o.id DESC LIMIT ")
        .push_bind(i64::from(limit));
    Ok(())
}

/// The conditions of a list's filter and cursor on the orders `o` of one half.
fn push_filter(
    q: &mut QueryBuilder<Db>,
    f: &OrderFilter,
    after: Option<&OrderCursor>,
) -> Result<()> {
    if !f.statuses.is_empty() {
        q.push(" AND o.status IN (");
        let mut sep = q.separated(", ");
        for s in &f.statuses {
            sep.push_bind(s.clone());
        }
        q.push(")");
    }
    if let Some(c) = f.customer_id {
        q.push(" AND o.customer_id = ").push_bind(c);
    }
    if let Some(t) = f.created_after {
        q.push(" AND o.created_at > ").push_bind(t);
    }
    if let Some(t) = f.created_before {
        q.push(" AND o.created_at < ").push_bind(t);
    }
    if let Some(id) = f.order_id {
        q.push(" AND o.id = ").push_bind(id);
    }
    if let Some(p) = &f.email_prefix {
        let mut pat: String = p
            .chars()
            .flat_map(|c| {
                let esc = matches!(c, '%' | '_' | '\\');
                esc.then_some('\\').into_iter().chain(std::iter::once(c))
            })
            .collect();
        pat.push('%');
        q.push(" AND o.customer_id IN (SELECT id FROM users WHERE email LIKE ")
            .push_bind(pat)
            .push(" ESCAPE '\\')");
    }
    if let Some(c) = after {
        let t = Ts::from_micros(c.created_at_us).map_err(|e| Error::Corrupt(e.to_string()))?;
        q.push(" AND (o.created_at < ").push_bind(t);
        q.push(" OR (o.created_at = ")
            .push_bind(t)
            .push(" AND o.id < ")
            .push_bind(c.id)
            .push("))");
    }
    Ok(())
}
