//! Order placement on PostgreSQL in one statement: one round trip instead of six.
//!
//! Data-modifying CTEs reserve every line, insert the order, its lines and its `created`
//! event. If any line cannot be reserved (or the currencies differ), the order row gets
//! a negative total, which its CHECK constraint refuses: the whole statement, and with it
//! every reservation it made, is rolled back. Only then do we look at what went wrong.
//!
//! A checkout from a cart runs the same statement with two more steps (`PLACE_CART`): it
//! moves the cart's version on, but only from the version its lines were read at, and
//! deletes the cart's lines. A cart that changed meanwhile (a second checkout, an item
//! added) leaves no row to move on, and the order's total goes negative as for a line
//! that cannot be reserved. An order placed directly runs `PLACE` as it always did.

use std::sync::LazyLock;

use sqlx::types::Json;

use super::store::{NewOrder, PlaceOutcome, ReservedLine};
use crate::storage::postgres::PgStore;
use crate::storage::{Error, Result};

const PLACE: &str = "
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[]) AS t(item_id, qty, line_no)
), locked AS (
    -- Row locks in item id order, whatever plan the UPDATE gets: orders over the same
    -- items queue behind each other instead of deadlocking.
    SELECT i.id FROM items i WHERE i.id = ANY($1) ORDER BY i.id FOR NO KEY UPDATE
), upd AS (
    UPDATE items i SET stock = i.stock - input.qty, updated_at = $4
    FROM input JOIN locked ON locked.id = input.item_id
    WHERE i.id = input.item_id AND i.stock >= input.qty
    RETURNING input.line_no, i.id, i.sku, i.name, i.price, i.currency, input.qty
), ord AS (
    INSERT INTO orders (id, customer_id, status, payment_status, total_amount, currency, shipping_address,
                        payment_method, version, created_at, updated_at, expires_at)
    SELECT $5, $6, 'created', 'pending',
           CASE WHEN count(*) = $7 AND count(DISTINCT currency) = 1 THEN sum(price * qty) ELSE -1 END,
           coalesce(min(currency), 'XXX'), $8, $9, 0, $4, $4, $10
    FROM upd
    RETURNING id, total_amount, currency
), charge AS (
    -- Placing with a payment method starts the charge at once (the saga's first step).
    INSERT INTO payment_transactions (id, order_id, kind, idempotency_key, method, amount, currency, status,
                                      attempts, next_attempt_at, created_at, updated_at)
    SELECT $12, ord.id, 'charge', $13, $9, ord.total_amount, ord.currency, 'pending', 1, $14, $4, $4
    FROM ord WHERE $9::text IS NOT NULL
), lines AS (
    INSERT INTO order_items (order_id, line_no, item_id, sku, name, quantity, unit_price, line_total)
    SELECT ord.id, upd.line_no, upd.id, upd.sku, upd.name, upd.qty, upd.price, upd.price * upd.qty FROM upd, ord
), ev AS (
    INSERT INTO order_events (order_id, customer_id, event, status, actor, at)
    SELECT ord.id, $6, 'order_status_update', 'created', $11, $4 FROM ord
)
SELECT line_no, id AS item_id, sku, name, qty AS quantity, price AS unit_price, price * qty AS line_total, currency
FROM upd ORDER BY line_no";

/// `PLACE` for a checkout from the cart of the order's customer ($6) at version $15.
static PLACE_CART: LazyLock<String> = LazyLock::new(|| {
    PLACE
        .replacen(
            "), ord AS (",
            "), cart AS (
    -- The row lock queues a second checkout of this cart, which then finds the version
    -- moved on and fails.
    UPDATE carts SET version = version + 1, updated_at = $4
    WHERE customer_id = $6 AND version = $15
    RETURNING customer_id
), ord AS (",
            1,
        )
        .replacen(
            "count(DISTINCT currency) = 1 THEN",
            "count(DISTINCT currency) = 1 AND EXISTS (SELECT 1 FROM cart) THEN",
            1,
        )
        .replacen(
            "\n)\nSELECT line_no",
            "\n), emptied AS (
    DELETE FROM cart_items WHERE customer_id IN (SELECT customer_id FROM cart)
)
SELECT line_no",
            1,
        )
});

impl PgStore {
    pub(crate) async fn place_order_native(&self, o: &NewOrder) -> Result<PlaceOutcome> {
        // Lines go in item id order, so that concurrent orders lock shared items in the
        // same order.
        let mut sorted: Vec<(usize, &(uuid::Uuid, i32))> = o.lines.iter().enumerate().collect();
        sorted.sort_by_key(|(_, (id, _))| *id);
        let ids: Vec<uuid::Uuid> = sorted.iter().map(|(_, l)| l.0).collect();
        let qtys: Vec<i32> = sorted.iter().map(|(_, l)| l.1).collect();
        let line_nos: Vec<i32> = sorted.iter().map(|(i, _)| *i as i32 + 1).collect();
        let shipping = o.shipping_address.clone().map(Json);
        let sql = match o.cart_version {
            None => sqlx::AssertSqlSafe(PLACE),
            Some(_) => sqlx::AssertSqlSafe(PLACE_CART.as_str()),
        };
        let mut q = sqlx::query_as::<sqlx::Postgres, ReservedLine>(sql)
            .bind(&ids)
            .bind(&qtys)
            .bind(&line_nos)
            .bind(o.created_at)
            .bind(o.id)
            .bind(o.customer_id)
            .bind(o.lines.len() as i64)
            .bind(&shipping)
            .bind(&o.payment_method)
            .bind(o.expires_at)
            .bind(&o.actor)
            .bind(uuid::Uuid::now_v7())
            .bind(NewOrder::charge_key(o.id))
            .bind(o.charge_due_at);
        if let Some(version) = o.cart_version {
            q = q.bind(version);
        }
        let rows = q.fetch_all(self.writer()).await;
        let rows = match rows.map_err(Error::from) {
            Ok(rows) => rows,
            Err(Error::Check) => return self.diagnose(o).await,
            Err(e) => return Err(e),
        };
        Ok(PlaceOutcome::Placed(o.placed(rows)))
    }

    /// Says why an order could not be placed. Stock may have moved since; if every line
    /// looks fine now, the caller's retry loop simply tries again.
    async fn diagnose(&self, o: &NewOrder) -> Result<PlaceOutcome> {
        if let Some(version) = o.cart_version {
            let now = sqlx::query_scalar::<sqlx::Postgres, i64>(
                "SELECT version FROM carts WHERE customer_id = $1",
            )
            .bind(o.customer_id)
            .fetch_optional(self.reader())
            .await?;
            if now != Some(version) {
                return Ok(PlaceOutcome::CartChanged);
            }
        }
        let ids: Vec<uuid::Uuid> = o.lines.iter().map(|l| l.0).collect();
        let found = sqlx::query_as::<sqlx::Postgres, (uuid::Uuid, i64, String)>(
            "SELECT id, stock, currency FROM items WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(self.reader())
        .await?;
        let by_line: Vec<Option<(i64, String)>> = o
            .lines
            .iter()
            .map(|(id, _)| {
                found
                    .iter()
                    .find(|f| f.0 == *id)
                    .map(|f| (f.1, f.2.clone()))
            })
            .collect();
        explain_refusal(o, &by_line)
    }
}

/// Why an order was refused, given each line's item as it is now (`None`: no such item).
/// Unknown items come first (422), then stock (409), then currencies (422). If every
/// line looks fine now, stock moved back meanwhile: the caller tries again.
pub(super) fn explain_refusal(
    o: &NewOrder,
    found: &[Option<(i64, String)>],
) -> Result<PlaceOutcome> {
    if let Some(i) = found.iter().position(Option::is_none) {
        return Ok(PlaceOutcome::UnknownItem(i));
    }
    let items: Vec<&(i64, String)> = found.iter().flatten().collect();
    if let Some(i) = o
        .lines
        .iter()
        .zip(&items)
        .position(|((_, qty), (stock, _))| *stock < i64::from(*qty))
    {
        return Ok(PlaceOutcome::InsufficientStock(i));
    }
    if items.iter().any(|(_, cur)| *cur != items[0].1) {
        return Ok(PlaceOutcome::MixedCurrencies);
    }
    Err(Error::Retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkout_statement_claims_and_empties_the_cart() {
        let sql = PLACE_CART.as_str();
        assert!(sql.contains("WHERE customer_id = $6 AND version = $15"));
        assert!(sql.contains("AND EXISTS (SELECT 1 FROM cart) THEN"));
        assert!(sql.contains("DELETE FROM cart_items"));
        assert!(!PLACE.contains("carts"));
    }
}
