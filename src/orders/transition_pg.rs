//! An order transition on PostgreSQL in one statement: the compare-and-set on the order's
//! version, the stock release (rows locked in item id order) and the timeline rows, in
//! one round trip instead of a four-statement transaction. When the version moved on,
//! nothing matches and nothing is written.

use super::store::{NewEvent, OrderRecord, OrderRow, OrderUpdate, TransitionOutcome};
use crate::storage::postgres::PgStore;
use crate::storage::{Result, Ts};

/// Built once: the statement text is the same for every transition.
static TRANSITION_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(transition_sql);

fn transition_sql() -> String {
    let fields = super::store::ORDER_FIELDS;
    format!(
        "WITH upd AS (
            UPDATE orders SET status = $1, payment_status = $2, carrier = coalesce($3, carrier),
                   tracking_number = coalesce($4, tracking_number),
                   payment_reference = coalesce($5, payment_reference), version = version + 1, updated_at = $6
            WHERE id = $7 AND version = $8
            RETURNING {fields}
        ), locked AS (
            SELECT i.id FROM items i WHERE i.id = ANY($9) AND EXISTS (SELECT 1 FROM upd)
            ORDER BY i.id FOR NO KEY UPDATE
        ), rel AS (
            UPDATE items i SET stock = i.stock + r.qty, updated_at = $6
            FROM unnest($9::uuid[], $10::int[]) AS r(item_id, qty) JOIN locked ON locked.id = r.item_id
            WHERE i.id = r.item_id
        ), ev AS (
            INSERT INTO order_events (order_id, customer_id, event, status, previous_status, note, location, carrier,
                                      tracking_number, description, carrier_status, estimated_delivery, actor, at)
            SELECT upd.id, upd.customer_id, e.event, e.status, e.previous_status, e.note, e.location, e.carrier,
                   e.tracking_number, e.description, e.carrier_status, e.estimated_delivery, e.actor, coalesce(e.at, $6)
            FROM upd CROSS JOIN unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                                       $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
                                       $22::timestamptz[])
                 WITH ORDINALITY AS e(event, status, previous_status, note, location, carrier, tracking_number,
                                      description, carrier_status, estimated_delivery, actor, at, n)
            ORDER BY e.n
        ), pay AS (
            {pay}
        )
        SELECT {fields} FROM upd",
        pay = crate::payments::store::UPSERT_PAYMENT_AFTER_UPDATE
    )
}

impl PgStore {
    pub(crate) async fn transition_single_statement(
        &self,
        current: &OrderRecord,
        u: &OrderUpdate,
        release_stock: bool,
        events: &[NewEvent],
        at: Ts,
    ) -> Result<TransitionOutcome> {
        let (ids, qtys): (Vec<uuid::Uuid>, Vec<i32>) = if release_stock {
            let mut lines: Vec<(uuid::Uuid, i32)> = current
                .lines
                .iter()
                .map(|l| (l.item_id, l.quantity))
                .collect();
            lines.sort_by_key(|l| l.0);
            lines.into_iter().unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        let col = |f: fn(&NewEvent) -> Option<String>| {
            events.iter().map(f).collect::<Vec<Option<String>>>()
        };
        let row = sqlx::query_as::<sqlx::Postgres, OrderRow>(sqlx::AssertSqlSafe(
            TRANSITION_SQL.as_str(),
        ))
        .bind(&u.status)
        .bind(&u.payment_status)
        .bind(&u.carrier)
        .bind(&u.tracking_number)
        .bind(&u.payment_reference)
        .bind(at)
        .bind(current.order.id)
        .bind(current.order.version)
        .bind(&ids)
        .bind(&qtys)
        .bind(col(|e| Some(e.event.to_owned())))
        .bind(col(|e| Some(e.status.clone())))
        .bind(col(|e| e.previous_status.clone()))
        .bind(col(|e| e.note.clone()))
        .bind(col(|e| e.location.clone()))
        .bind(col(|e| e.carrier.clone()))
        .bind(col(|e| e.tracking_number.clone()))
        .bind(col(|e| e.description.clone()))
        .bind(col(|e| e.carrier_status.clone()))
        .bind(col(|e| e.estimated_delivery.clone()))
        .bind(col(|e| e.actor.clone()))
        .bind(events.iter().map(|e| e.at).collect::<Vec<Option<Ts>>>());
        let w = u.payment.as_ref();
        let row = row
            .bind(uuid::Uuid::now_v7())
            .bind(w.map(|w| w.kind.as_str()))
            .bind(w.map(|w| w.idempotency_key.as_str()))
            .bind(w.and_then(|w| w.method.as_deref()))
            .bind(w.map(|w| w.amount))
            .bind(w.map(|w| w.currency.as_str()))
            .bind(w.map(|w| w.status.as_str()))
            .bind(w.and_then(|w| w.reference.as_deref()))
            .bind(w.map(|w| w.attempts))
            .bind(w.and_then(|w| w.error.as_deref()))
            .bind(w.and_then(|w| w.next_attempt_at))
            .fetch_optional(self.writer())
            .await?;
        Ok(match row {
            Some(order) => TransitionOutcome::Applied(order),
            None => TransitionOutcome::Stale,
        })
    }
}
