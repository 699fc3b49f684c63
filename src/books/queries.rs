// SQL of the audit log, compiled once per backend (see `storage`).

use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::{AnalyticsStore, AuditRow, AuditStore, AuditTuple, SummaryRows, json_text};
use crate::books::domain::{
    AuditCursor, AuditFilter, NewAudit, ORDER_REFUNDED, ORDER_STATUS_CHANGED, SOURCE_AUDIT,
    SOURCE_TIMELINE,
};
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
        let timeline_action = matches!(f.action, None | Some(ORDER_STATUS_CHANGED | ORDER_REFUNDED));
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
            let rows = q.build_query_as::<AuditTuple>().fetch_all(self.reader()).await?;
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

#[async_trait]
impl AnalyticsStore for Backend {
    async fn summary_rows(
        &self,
        from: Option<Ts>,
        to: Option<Ts>,
        top: u32,
    ) -> Result<SummaryRows> {
        // Every statement reads orders through their creation time (index `orders_created`),
        // so a call costs what the range holds, not the whole history.
        let mut q = QueryBuilder::<Db>::new("SELECT status, count(*) FROM orders_all WHERE 1 = 1");
        push_created(&mut q, "created_at", from, to);
        q.push(" GROUP BY status");
        let by_status = q
            .build_query_as::<(String, i64)>()
            .fetch_all(self.reader())
            .await?;

        let mut q = QueryBuilder::<Db>::new(
            "SELECT currency, CAST(sum(total_amount) AS BIGINT) FROM orders_all WHERE payment_status = 'paid'",
        );
        push_created(&mut q, "created_at", from, to);
        q.push(" GROUP BY currency ORDER BY currency");
        let revenue = q
            .build_query_as::<(String, i64)>()
            .fetch_all(self.reader())
            .await?;

        let day = match DIALECT {
            Dialect::Sqlite => "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')",
            Dialect::Postgres => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        };
        let mut q = QueryBuilder::<Db>::new(format!("SELECT {day} AS day, count(*) FROM orders_all WHERE 1 = 1"));
        push_created(&mut q, "created_at", from, to);
        q.push(" GROUP BY day ORDER BY day");
        let per_day = q
            .build_query_as::<(String, i64)>()
            .fetch_all(self.reader())
            .await?;

        // The first time each milestone was reached, per order (index `order_events_order`).
        let mut q = QueryBuilder::<Db>::new(
            "SELECT min(CASE WHEN e.status = 'placed' THEN e.at END), \
             min(CASE WHEN e.status = 'shipped' THEN e.at END), \
             min(CASE WHEN e.status = 'delivered' THEN e.at END) \
             FROM orders_all o JOIN order_events_all e ON e.order_id = o.id \
             WHERE e.event = 'order_status_update' AND e.previous_status IS NOT NULL \
             AND e.status <> e.previous_status AND e.status IN ('placed', 'shipped', 'delivered')",
        );
        push_created(&mut q, "o.created_at", from, to);
        q.push(" GROUP BY o.id");
        let milestones = q
            .build_query_as::<(Option<Ts>, Option<Ts>, Option<Ts>)>()
            .fetch_all(self.reader())
            .await?;

        let mut q = QueryBuilder::<Db>::new(
            "SELECT l.item_id, max(l.sku), max(l.name), CAST(sum(l.quantity) AS BIGINT) AS units \
             FROM orders_all o JOIN order_items_all l ON l.order_id = o.id WHERE o.payment_status = 'paid'",
        );
        push_created(&mut q, "o.created_at", from, to);
        q.push(" GROUP BY l.item_id ORDER BY units DESC, l.item_id LIMIT ")
            .push_bind(i64::from(top));
        let top_items = q
            .build_query_as::<(Uuid, String, String, i64)>()
            .fetch_all(self.reader())
            .await?;

        Ok(SummaryRows {
            by_status,
            revenue,
            per_day,
            milestones,
            top_items,
        })
    }
}
