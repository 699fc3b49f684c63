//! SQL of the audit log, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::books::domain::{
    AuditCursor, AuditFilter, NewAudit, ORDER_REFUNDED, ORDER_STATUS_CHANGED, SOURCE_AUDIT,
    SOURCE_TIMELINE,
};
use crate::books::store::{
    AnalyticsStore, AuditRow, AuditStore, AuditTuple, Summary, SummaryParts, json_text,
};
use crate::history::rollup::{self, Durations, GRAIN_DAY, KIND_DELIVER, KIND_SHIP, duration_us};
use crate::storage::{Dialect, Error, Result, Ts};

/// Appends `e` through `ex`: the transaction of the change it records.
pub(crate) async fn append_audit<'e, E>(ex: E, e: &NewAudit) -> Result<()>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query::<Db>(
        "INSERT INTO audit_log (at, actor, action, target_type, target_id, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.at)
    .bind(&e.actor)
    .bind(e.action)
    .bind(e.target_type)
    .bind(&e.target_id)
    .bind(json_text(&e.before))
    .bind(json_text(&e.after))
    .execute(ex)
    .await?;
    Ok(())
}

/// Rows of `source` strictly after the cursor in the log's order (`at` DESC, source DESC, id DESC).
fn push_after(q: &mut QueryBuilder<Db>, source: i64, c: &AuditCursor) -> Result<()> {
    let at = Ts::from_micros(c.at_us).map_err(|_| Error::Corrupt("audit cursor".into()))?;
    match source.cmp(&c.source) {
        std::cmp::Ordering::Less => {
            q.push(" AND at <= ").push_bind(at);
        }
        std::cmp::Ordering::Equal => {
            q.push(" AND (at < ").push_bind(at);
            q.push(" OR (at = ").push_bind(at);
            q.push(" AND id < ").push_bind(c.id).push("))");
        }
        std::cmp::Ordering::Greater => {
            q.push(" AND at < ").push_bind(at);
        }
    }
    Ok(())
}

fn push_range(q: &mut QueryBuilder<Db>, f: &AuditFilter) {
    if let Some(from) = f.from {
        q.push(" AND at >= ").push_bind(from);
    }
    if let Some(to) = f.to {
        q.push(" AND at < ").push_bind(to);
    }
}

fn push_actors(q: &mut QueryBuilder<Db>, f: &AuditFilter) {
    if f.actors.is_empty() {
        return;
    }
    q.push(" AND actor IN (");
    let mut list = q.separated(", ");
    for a in &f.actors {
        list.push_bind(a.clone());
    }
    q.push(")");
}

type TimelineTuple = (
    i64,
    Ts,
    Option<String>,
    Uuid,
    String,
    String,
    Option<String>,
);

#[async_trait]
impl AuditStore for Backend {
    async fn append_audit(&self, e: &NewAudit) -> Result<()> {
        append_audit(self.writer(), e).await
    }

    async fn audit_log(
        &self,
        f: &AuditFilter,
        after: Option<&AuditCursor>,
        limit: u32,
    ) -> Result<Vec<AuditRow>> {
        let timeline_action =
            matches!(f.action, None | Some(ORDER_STATUS_CHANGED | ORDER_REFUNDED));
        let own_action = f
            .action
            .is_none_or(|a| a != ORDER_STATUS_CHANGED && a != ORDER_REFUNDED);
        let mut out = Vec::new();

        if own_action {
            let mut q = QueryBuilder::<Db>::new(
                "SELECT id, at, actor, action, target_type, target_id, before, after \
                 FROM audit_log WHERE 1 = 1",
            );
            if let Some(a) = f.action {
                q.push(" AND action = ").push_bind(a);
            }
            if let Some((kind, id)) = &f.target {
                q.push(" AND target_type = ").push_bind(*kind);
                q.push(" AND target_id = ").push_bind(id.clone());
            }
            push_actors(&mut q, f);
            push_range(&mut q, f);
            if let Some(c) = after {
                push_after(&mut q, SOURCE_AUDIT, c)?;
            }
            q.push(" ORDER BY at DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit));
            let rows = q
                .build_query_as::<AuditTuple>()
                .fetch_all(self.reader())
                .await?;
            out.extend(rows.into_iter().map(AuditRow::from));
        }

        // Entries about a customer come from the audit log only: its orders' timelines are
        // in the export with the orders.
        if timeline_action && f.target.is_none() {
            let mut q = QueryBuilder::<Db>::new(
                "SELECT id, at, actor, order_id, status, previous_status, note FROM order_events_all \
                 WHERE previous_status IS NOT NULL AND event = 'order_status_update'",
            );
            match f.action {
                Some(ORDER_STATUS_CHANGED) => {
                    q.push(" AND status <> previous_status");
                }
                Some(ORDER_REFUNDED) => {
                    q.push(" AND status = previous_status");
                }
                _ => {}
            }
            push_actors(&mut q, f);
            push_range(&mut q, f);
            if let Some(c) = after {
                push_after(&mut q, SOURCE_TIMELINE, c)?;
            }
            q.push(" ORDER BY at DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit));
            let rows = q
                .build_query_as::<TimelineTuple>()
                .fetch_all(self.reader())
                .await?;
            out.extend(rows.into_iter().map(
                |(id, at, actor, order_id, status, previous, note)| {
                    let refunded = status == previous;
                    AuditRow {
                        source: SOURCE_TIMELINE,
                        id,
                        at,
                        actor: actor.unwrap_or_else(|| "system".to_owned()),
                        action: if refunded { ORDER_REFUNDED } else { ORDER_STATUS_CHANGED }
                            .to_owned(),
                        target_type: "order".to_owned(),
                        target_id: order_id.to_string(),
                        before: Some(serde_json::json!({"status": previous})),
                        after: Some(if refunded {
                            serde_json::json!({"status": status, "payment_status": "refunded", "note": note})
                        } else {
                            serde_json::json!({"status": status, "note": note})
                        }),
                    }
                },
            ));
        }

        // Merge the two newest-first lists into the log's order.
        out.sort_by_key(|r| std::cmp::Reverse(r.cursor().cmp_key()));
        out.truncate(limit as usize);
        Ok(out)
    }
}

/// `AND <col> >= from AND <col> < to` for the ends that are given.
fn push_created(q: &mut QueryBuilder<Db>, col: &str, from: Option<Ts>, to: Option<Ts>) {
    if let Some(f) = from {
        q.push(format!(" AND {col} >= ")).push_bind(f);
    }
    if let Some(t) = to {
        q.push(format!(" AND {col} < ")).push_bind(t);
    }
}

type Conn = <Db as sqlx::Database>::Connection;

/// The name of `table` in the live tables or in the history.
fn table(archived: bool, table: &str) -> String {
    match (archived, DIALECT) {
        (false, _) => table.to_owned(),
        (true, Dialect::Sqlite) => format!("history.{table}"),
        (true, Dialect::Postgres) => format!("{table}_history"),
    }
}

/// Adds the orders created in `[from, to)` exactly: the live ones, and with `all` the
/// archived ones too. Each half is read on its own (rather than through the `*_all` views,
/// whose joins a planner cannot always push a range into), by creation time (indexes
/// `orders_created`, `orders_history_created`), so a call costs what the range holds.
async fn add_exact(
    c: &mut Conn,
    all: bool,
    from: Option<Ts>,
    to: Option<Ts>,
    s: &mut SummaryParts,
) -> Result<()> {
    add_half(c, false, from, to, s).await?;
    if all {
        add_half(c, true, from, to, s).await?;
    }
    Ok(())
}

async fn add_half(
    c: &mut Conn,
    archived: bool,
    from: Option<Ts>,
    to: Option<Ts>,
    s: &mut SummaryParts,
) -> Result<()> {
    let orders = table(archived, "orders");
    let events = table(archived, "order_events");
    let items = table(archived, "order_items");
    // On SQLite an order left in both files by a crash is the live one.
    let only = if archived && DIALECT == Dialect::Sqlite {
        " AND NOT EXISTS (SELECT 1 FROM main.orders m WHERE m.id = o.id)"
    } else {
        ""
    };
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT status, count(*) FROM {orders} o WHERE 1 = 1{only}"
    ));
    push_created(&mut q, "created_at", from, to);
    q.push(" GROUP BY status");
    for (status, n) in q
        .build_query_as::<(String, i64)>()
        .fetch_all(&mut *c)
        .await?
    {
        *s.by_status.entry(status).or_default() += n;
    }

    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT currency, CAST(sum(total_amount) AS BIGINT) FROM {orders} o WHERE payment_status = 'paid'{only}"
    ));
    push_created(&mut q, "created_at", from, to);
    q.push(" GROUP BY currency");
    for (currency, n) in q
        .build_query_as::<(String, i64)>()
        .fetch_all(&mut *c)
        .await?
    {
        *s.revenue.entry(currency).or_default() += n;
    }

    let day = match DIALECT {
        Dialect::Sqlite => "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')",
        Dialect::Postgres => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    };
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {day} AS day, count(*) FROM {orders} o WHERE 1 = 1{only}"
    ));
    push_created(&mut q, "created_at", from, to);
    q.push(" GROUP BY day");
    for (day, n) in q
        .build_query_as::<(String, i64)>()
        .fetch_all(&mut *c)
        .await?
    {
        *s.per_day.entry(day).or_default() += n;
    }

    // The first time each milestone was reached, per order (index `order_events_order`).
    // `CROSS JOIN` keeps SQLite's planner on the orders of the range first (it would
    // rather walk every order by id for the grouping); PostgreSQL plans it as a join.
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT min(CASE WHEN e.status = 'placed' THEN e.at END), \
         min(CASE WHEN e.status = 'shipped' THEN e.at END), \
         min(CASE WHEN e.status = 'delivered' THEN e.at END) \
         FROM {orders} o CROSS JOIN {events} e \
         WHERE e.order_id = o.id AND e.event = 'order_status_update' AND e.previous_status IS NOT NULL \
         AND e.status <> e.previous_status AND e.status IN ('placed', 'shipped', 'delivered'){only}"
    ));
    push_created(&mut q, "o.created_at", from, to);
    q.push(" GROUP BY e.order_id");
    for (placed, shipped, delivered) in q
        .build_query_as::<(Option<Ts>, Option<Ts>, Option<Ts>)>()
        .fetch_all(&mut *c)
        .await?
    {
        s.ship.exact.extend(duration_us(placed, shipped));
        s.deliver.exact.extend(duration_us(shipped, delivered));
    }

    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT l.item_id, max(l.sku), max(l.name), CAST(sum(l.quantity) AS BIGINT) \
         FROM {orders} o CROSS JOIN {items} l WHERE l.order_id = o.id AND o.payment_status = 'paid'{only}"
    ));
    push_created(&mut q, "o.created_at", from, to);
    q.push(" GROUP BY l.item_id");
    for row in q
        .build_query_as::<(Uuid, String, String, i64)>()
        .fetch_all(&mut *c)
        .await?
    {
        s.add_item(row);
    }
    Ok(())
}

/// `AND (<rows of the segments>)`: the rollup rows that cover the whole days `[from, to)`.
fn push_segments(q: &mut QueryBuilder<Db>, from: Option<Ts>, to: Option<Ts>) {
    q.push(" AND (");
    for (i, (grain, f, t)) in rollup::segments(from, to).into_iter().enumerate() {
        if i > 0 {
            q.push(" OR ");
        }
        q.push("(grain = ").push_bind(grain);
        push_created(q, "day", f, t);
        q.push(")");
    }
    q.push(")");
}

/// Adds the archived orders created on the days `[from, to)` from the rollups: whole
/// months from month rows, the other days from day rows.
async fn add_rolled_up(
    c: &mut Conn,
    from: Option<Ts>,
    to: Option<Ts>,
    s: &mut SummaryParts,
) -> Result<()> {
    let mut q = QueryBuilder::<Db>::new(
        "SELECT status, currency, CAST(sum(orders) AS BIGINT), CAST(sum(paid) AS BIGINT), \
         CAST(sum(revenue) AS BIGINT) FROM history_rollup_orders WHERE 1 = 1",
    );
    push_segments(&mut q, from, to);
    q.push(" GROUP BY status, currency");
    for (status, currency, orders, paid, revenue) in q
        .build_query_as::<(String, String, i64, i64, i64)>()
        .fetch_all(&mut *c)
        .await?
    {
        *s.by_status.entry(status).or_default() += orders;
        if paid > 0 {
            *s.revenue.entry(currency).or_default() += revenue;
        }
    }

    // Orders per day: the day rows, whatever the range.
    let mut q = QueryBuilder::<Db>::new(
        "SELECT day, CAST(sum(orders) AS BIGINT) FROM history_rollup_orders WHERE grain = ",
    );
    q.push_bind(GRAIN_DAY);
    push_created(&mut q, "day", from, to);
    q.push(" GROUP BY day");
    for (day, n) in q.build_query_as::<(Ts, i64)>().fetch_all(&mut *c).await? {
        if n != 0 {
            let d = day.0.date();
            let key = format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
            *s.per_day.entry(key).or_default() += n;
        }
    }

    let mut q = QueryBuilder::<Db>::new(
        "SELECT kind, bucket, CAST(sum(orders) AS BIGINT) AS n FROM history_rollup_durations WHERE 1 = 1",
    );
    push_segments(&mut q, from, to);
    q.push(" GROUP BY kind, bucket");
    for (kind, bucket, n) in q
        .build_query_as::<(i16, i32, i64)>()
        .fetch_all(&mut *c)
        .await?
    {
        let d = if kind == KIND_SHIP {
            &mut s.ship
        } else {
            &mut s.deliver
        };
        if n != 0 {
            d.archived.insert(bucket, n);
        }
    }

    let mut q = QueryBuilder::<Db>::new(
        "SELECT item_id, max(sku), max(name), CAST(sum(units) AS BIGINT) FROM history_rollup_items WHERE 1 = 1",
    );
    push_segments(&mut q, from, to);
    q.push(" GROUP BY item_id");
    for row in q
        .build_query_as::<(Uuid, String, String, i64)>()
        .fetch_all(&mut *c)
        .await?
    {
        if row.3 != 0 {
            s.add_item(row);
        }
    }
    Ok(())
}

/// The median of `d` in minutes, reading the exact archived durations it needs (one or
/// two buckets of the days `[from, to)`).
async fn median(
    c: &mut Conn,
    d: &Durations,
    kind: i16,
    from: Option<Ts>,
    to: Option<Ts>,
) -> Result<Option<f64>> {
    let mut read = std::collections::BTreeMap::new();
    for bucket in d.buckets_needed() {
        let mut q = QueryBuilder::<Db>::new("SELECT us FROM history_durations WHERE kind = ");
        q.push_bind(kind).push(" AND bucket = ").push_bind(bucket);
        push_created(&mut q, "day", from, to);
        read.insert(
            bucket,
            q.build_query_scalar::<i64>().fetch_all(&mut *c).await?,
        );
    }
    d.median_minutes(&read).map_err(Error::Corrupt)
}

#[async_trait]
impl AnalyticsStore for Backend {
    async fn summary(&self, from: Option<Ts>, to: Option<Ts>, top: u32) -> Result<Summary> {
        // One snapshot: the rollups and the live and archived orders agree.
        let mut tx = self.reader().begin().await?;
        if DIALECT == Dialect::Postgres {
            sqlx::query::<Db>("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let mut s = SummaryParts::default();
        let split = if history_sql::built(&mut tx).await? {
            rollup::split(from, to)
        } else {
            rollup::Split {
                exact: vec![(from, to)],
                days: None,
            }
        };
        for (f, t) in &split.exact {
            add_exact(&mut tx, true, *f, *t, &mut s).await?;
        }
        let days = split.days.unwrap_or((None, None));
        if split.days.is_some() {
            add_exact(&mut tx, false, days.0, days.1, &mut s).await?;
            add_rolled_up(&mut tx, days.0, days.1, &mut s).await?;
        }
        let ship = median(&mut tx, &s.ship, KIND_SHIP, days.0, days.1).await?;
        let deliver = median(&mut tx, &s.deliver, KIND_DELIVER, days.0, days.1).await?;
        tx.commit().await?;
        Ok(s.finish(ship, deliver, top))
    }
}
