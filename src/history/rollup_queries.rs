//! SQL of the history rollups (`history::rollup`), compiled once per backend (see `storage`).

use std::collections::BTreeMap;

use sqlx::QueryBuilder;
use uuid::Uuid;

use super::{DIALECT, Db};
use crate::history::rollup::{Delta, LineFacts, OrderFacts};
use crate::storage::{Error, Result, Ts};

type Conn = <Db as sqlx::Database>::Connection;

/// Rows per multi-row statement (well under either backend's limit on bound values).
const CHUNK: usize = 400;

fn ts(us: i64) -> Result<Ts> {
    Ts::from_micros(us).map_err(|_| Error::Corrupt(format!("rollup day {us}")))
}

fn push_ids(q: &mut QueryBuilder<Db>, ids: &[Uuid]) {
    q.push("(");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    q.push(")");
}

type FactTuple = (Uuid, Ts, String, String, String, i64);
/// When an order was placed, shipped and delivered.
type Milestones = (Option<Ts>, Option<Ts>, Option<Ts>);
type MilestoneTuple = (Uuid, Option<Ts>, Option<Ts>, Option<Ts>);
type LineTuple = (Uuid, Uuid, String, String, i64);

/// The orders `ids` as the tables named by `table` hold them, with their milestones and lines.
pub(crate) async fn facts(
    c: &mut Conn,
    table: fn(&str) -> String,
    ids: &[Uuid],
) -> Result<(Vec<OrderFacts>, Vec<LineFacts>)> {
    if ids.is_empty() {
        return Ok((vec![], vec![]));
    }
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT id, created_at, status, currency, payment_status, total_amount FROM {} WHERE id IN ",
        table("orders")
    ));
    push_ids(&mut q, ids);
    let orders = q.build_query_as::<FactTuple>().fetch_all(&mut *c).await?;

    // The first time each milestone was reached (as the summary reads the timeline).
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT order_id, min(CASE WHEN status = 'placed' THEN at END), \
         min(CASE WHEN status = 'shipped' THEN at END), \
         min(CASE WHEN status = 'delivered' THEN at END) FROM {} \
         WHERE event = 'order_status_update' AND previous_status IS NOT NULL \
         AND status <> previous_status AND status IN ('placed', 'shipped', 'delivered') \
         AND order_id IN ",
        table("order_events")
    ));
    push_ids(&mut q, ids);
    q.push(" GROUP BY order_id");
    let milestones: BTreeMap<Uuid, Milestones> = q
        .build_query_as::<MilestoneTuple>()
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .map(|(id, p, s, d)| (id, (p, s, d)))
        .collect();

    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT order_id, item_id, sku, name, CAST(quantity AS BIGINT) FROM {} WHERE order_id IN ",
        table("order_items")
    ));
    push_ids(&mut q, ids);
    let lines = q
        .build_query_as::<LineTuple>()
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .map(|(order_id, item_id, sku, name, quantity)| LineFacts {
            order_id,
            item_id,
            sku,
            name,
            quantity,
        })
        .collect();

    let orders = orders
        .into_iter()
        .map(|(id, created_at, status, currency, payment, total)| {
            let (placed, shipped, delivered) = milestones.get(&id).copied().unwrap_or_default();
            OrderFacts {
                id,
                created_at,
                status,
                currency,
                paid: payment == "paid",
                total,
                placed,
                shipped,
                delivered,
            }
        })
        .collect();
    Ok((orders, lines))
}

/// Adds `d` to the rollups (`sign` 1: the orders `ids` moved into the history) or takes
/// it away (`sign` -1: they moved back), in the caller's transaction.
pub(crate) async fn apply(c: &mut Conn, d: &Delta, ids: &[Uuid], sign: i64) -> Result<()> {
    let greatest = match DIALECT {
        crate::storage::Dialect::Sqlite => "max",
        crate::storage::Dialect::Postgres => "GREATEST",
    };
    let orders = d
        .orders
        .iter()
        .map(|((grain, day, status, currency), n)| Ok((*grain, ts(*day)?, status, currency, n)))
        .collect::<Result<Vec<_>>>()?;
    for chunk in orders.chunks(CHUNK) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO history_rollup_orders (grain, day, status, currency, orders, paid, revenue) ",
        );
        q.push_values(chunk, |mut b, (grain, day, status, currency, n)| {
            b.push_bind(*grain)
                .push_bind(*day)
                .push_bind((*status).clone())
                .push_bind((*currency).clone())
                .push_bind(sign * n.orders)
                .push_bind(sign * n.paid)
                .push_bind(sign * n.revenue);
        });
        q.push(
            " ON CONFLICT (grain, day, status, currency) DO UPDATE SET \
             orders = history_rollup_orders.orders + excluded.orders, \
             paid = history_rollup_orders.paid + excluded.paid, \
             revenue = history_rollup_orders.revenue + excluded.revenue",
        );
        q.build().execute(&mut *c).await?;
    }

    let items = d
        .items
        .iter()
        .map(|((grain, day, item), line)| Ok((*grain, ts(*day)?, *item, line)))
        .collect::<Result<Vec<_>>>()?;
    for chunk in items.chunks(CHUNK) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO history_rollup_items (grain, day, item_id, sku, name, units) ",
        );
        q.push_values(chunk, |mut b, (grain, day, item, (sku, name, units))| {
            b.push_bind(*grain)
                .push_bind(*day)
                .push_bind(*item)
                .push_bind(sku.clone())
                .push_bind(name.clone())
                .push_bind(sign * units);
        });
        q.push(format!(
            " ON CONFLICT (grain, day, item_id) DO UPDATE SET \
             units = history_rollup_items.units + excluded.units, \
             sku = {greatest}(history_rollup_items.sku, excluded.sku), \
             name = {greatest}(history_rollup_items.name, excluded.name)"
        ));
        q.build().execute(&mut *c).await?;
    }

    let durations = d
        .durations
        .iter()
        .map(|((kind, grain, day, bucket), n)| Ok((*kind, *grain, ts(*day)?, *bucket, *n)))
        .collect::<Result<Vec<_>>>()?;
    for chunk in durations.chunks(CHUNK) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO history_rollup_durations (kind, grain, day, bucket, orders) ",
        );
        q.push_values(chunk, |mut b, (kind, grain, day, bucket, n)| {
            b.push_bind(*kind)
                .push_bind(*grain)
                .push_bind(*day)
                .push_bind(*bucket)
                .push_bind(sign * n);
        });
        q.push(
            " ON CONFLICT (kind, grain, day, bucket) DO UPDATE SET \
             orders = history_rollup_durations.orders + excluded.orders",
        );
        q.build().execute(&mut *c).await?;
    }

    if sign < 0 {
        for chunk in ids.chunks(CHUNK) {
            let mut q = QueryBuilder::<Db>::new("DELETE FROM history_durations WHERE order_id IN ");
            push_ids(&mut q, chunk);
            q.build().execute(&mut *c).await?;
        }
        return Ok(());
    }
    insert_rows(c, &d.rows).await
}

/// Adds each archived order's durations.
async fn insert_rows(c: &mut Conn, rows: &[crate::history::rollup::DurationRow]) -> Result<()> {
    let rows = rows
        .iter()
        .map(|r| Ok((r, ts(r.day)?)))
        .collect::<Result<Vec<_>>>()?;
    for chunk in rows.chunks(CHUNK) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO history_durations (order_id, kind, day, bucket, us) ",
        );
        q.push_values(chunk, |mut b, (r, day)| {
            b.push_bind(r.order_id)
                .push_bind(r.kind)
                .push_bind(*day)
                .push_bind(r.bucket)
                .push_bind(r.us);
        });
        q.build().execute(&mut *c).await?;
    }
    Ok(())
}

/// Moves of `ids` out of (`sign` 1) or back into (`sign` -1) the live tables: reads what
/// they add from the tables named by `from` and applies it.
pub(crate) async fn roll(
    c: &mut Conn,
    from: fn(&str) -> String,
    ids: &[Uuid],
    sign: i64,
) -> Result<()> {
    let (orders, lines) = facts(c, from, ids).await?;
    apply(c, &Delta::of(&orders, &lines), ids, sign).await
}

/// Whether the rollups cover the whole history.
pub(crate) async fn built(c: &mut Conn) -> Result<bool> {
    Ok(
        sqlx::query_scalar::<Db, bool>("SELECT built FROM history_rollup_state WHERE id = 1")
            .fetch_optional(&mut *c)
            .await?
            .unwrap_or(false),
    )
}

/// Rolls up the whole history afresh (the orders in `history` tables that are not also in
/// `live` ones), in the caller's transaction; returns how many orders it read.
pub(crate) async fn rebuild(
    c: &mut Conn,
    live: fn(&str) -> String,
    history: fn(&str) -> String,
) -> Result<u64> {
    for t in [
        "history_rollup_orders",
        "history_rollup_items",
        "history_rollup_durations",
        "history_durations",
    ] {
        sqlx::query::<Db>(sqlx::AssertSqlSafe(format!("DELETE FROM {t}")))
            .execute(&mut *c)
            .await?;
    }
    let page = format!(
        "SELECT h.id FROM {} h WHERE h.id > $1 \
         AND NOT EXISTS (SELECT 1 FROM {} m WHERE m.id = h.id) ORDER BY h.id LIMIT 1000",
        history("orders"),
        live("orders")
    );
    let mut after = Uuid::nil();
    let mut read = 0;
    // The counts add up in memory and are written once at the end (an upsert per page
    // would rewrite each month's rows a thousand times); the durations go page by page.
    let mut total = Delta::default();
    loop {
        let ids: Vec<Uuid> = sqlx::query_scalar::<Db, Uuid>(sqlx::AssertSqlSafe(page.clone()))
            .bind(after)
            .fetch_all(&mut *c)
            .await?;
        let Some(last) = ids.last() else { break };
        after = *last;
        read += ids.len() as u64;
        let (orders, lines) = facts(c, history, &ids).await?;
        let mut d = Delta::of(&orders, &lines);
        insert_rows(c, &std::mem::take(&mut d.rows)).await?;
        total.absorb(d);
    }
    apply(c, &total, &[], 1).await?;
    sqlx::query::<Db>("UPDATE history_rollup_state SET built = $1 WHERE id = 1")
        .bind(true)
        .execute(&mut *c)
        .await?;
    Ok(read)
}
