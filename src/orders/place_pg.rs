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

use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use super::allocate::{Allocation, ItemRow};
use super::group_commit::{GroupCommit, together_or_alone};
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
        match self.placer() {
            Some(placer) => placer.submit(o.clone()).await,
            None => place_one(self.writer(), o).await,
        }
    }

    pub(crate) async fn place_orders_native(
        &self,
        batch: Vec<NewOrder>,
    ) -> Vec<Result<PlaceOutcome>> {
        place_batch(self.writer(), batch).await
    }
}

/// Group commit on PostgreSQL: the workers that place concurrent orders together.
pub(crate) type Placer = GroupCommit<NewOrder, PlaceOutcome>;

/// Starts `workers` group-commit workers over `pool`. They hold only the pool: they end
/// when the store (and with it the queue) is dropped.
pub(crate) fn spawn_placer(pool: PgPool, workers: usize) -> Placer {
    GroupCommit::spawn("place", workers, move |batch| {
        let pool = pool.clone();
        async move { place_batch(&pool, batch).await }
    })
}

/// Places one order on its own: one statement (`PLACE` or `PLACE_CART`), one round trip.
async fn place_one(pool: &PgPool, o: &NewOrder) -> Result<PlaceOutcome> {
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
    let rows = q.fetch_all(pool).await;
    let rows = match rows.map_err(Error::from) {
        Ok(rows) => rows,
        Err(Error::Check) => return diagnose(pool, o).await,
        Err(e) => return Err(e),
    };
    Ok(PlaceOutcome::Placed(o.placed(rows)))
}

/// Says why an order could not be placed. Stock may have moved since; if every line
/// looks fine now, the caller's retry loop simply tries again.
async fn diagnose(pool: &PgPool, o: &NewOrder) -> Result<PlaceOutcome> {
    if let Some(version) = o.cart_version {
        let now = sqlx::query_scalar::<sqlx::Postgres, i64>(
            "SELECT version FROM carts WHERE customer_id = $1",
        )
        .bind(o.customer_id)
        .fetch_optional(pool)
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
    .fetch_all(pool)
    .await?;
    let by_line: Vec<Option<(i64, &str)>> = o
        .lines
        .iter()
        .map(|(id, _)| {
            found
                .iter()
                .find(|f| f.0 == *id)
                .map(|f| (f.1, f.2.as_str()))
        })
        .collect();
    super::allocate::explain_refusal(o, &by_line)
}

/// Places a batch: together when there are several, falling back to one by one when
/// the shared transaction fails.
async fn place_batch(pool: &PgPool, batch: Vec<NewOrder>) -> Vec<Result<PlaceOutcome>> {
    together_or_alone("place", batch.len(), place_together(pool, &batch), |i| {
        place_one(pool, &batch[i])
    })
    .await
}

/// Locks every item of the batch (in id order, as `PLACE` does) and the carts being
/// checked out.
const LOCK_ITEMS: &str = "SELECT id, stock, price, currency, sku, name FROM items WHERE id = ANY($1) \
     ORDER BY id FOR NO KEY UPDATE";
const LOCK_CARTS: &str = "SELECT customer_id, version FROM carts WHERE customer_id = ANY($1) \
     ORDER BY customer_id FOR UPDATE";

/// Writes every accepted order of a batch: one statement over arrays, whatever the
/// number of orders and lines.
const WRITE_BATCH: &str = "
WITH stock AS (
    UPDATE items i SET stock = i.stock - u.qty, updated_at = $3
    FROM unnest($1::uuid[], $2::bigint[]) AS u(id, qty)
    WHERE i.id = u.id
), ord AS (
    INSERT INTO orders (id, customer_id, status, payment_status, total_amount, currency, shipping_address,
                        payment_method, version, created_at, updated_at, expires_at)
    SELECT id, customer_id, 'created', 'pending', total, currency, shipping, method, 0, at, at, expires
    FROM unnest($4::uuid[], $5::uuid[], $6::bigint[], $7::text[], $8::jsonb[], $9::text[],
                $10::timestamptz[], $11::timestamptz[])
         AS t(id, customer_id, total, currency, shipping, method, at, expires)
), charge AS (
    INSERT INTO payment_transactions (id, order_id, kind, idempotency_key, method, amount, currency, status,
                                      attempts, next_attempt_at, created_at, updated_at)
    SELECT id, order_id, 'charge', key, method, amount, currency, 'pending', 1, due, at, at
    FROM unnest($12::uuid[], $13::uuid[], $14::text[], $15::text[], $16::bigint[], $17::text[],
                $18::timestamptz[], $19::timestamptz[])
         AS t(id, order_id, key, method, amount, currency, due, at)
), lines AS (
    INSERT INTO order_items (order_id, line_no, item_id, sku, name, quantity, unit_price, line_total)
    SELECT * FROM unnest($20::uuid[], $21::int[], $22::uuid[], $23::text[], $24::text[], $25::int[],
                         $26::bigint[], $27::bigint[])
), ev AS (
    -- In the batch's order: the timeline's ids follow the order in which orders came.
    INSERT INTO order_events (order_id, customer_id, event, status, actor, at)
    SELECT order_id, customer_id, 'order_status_update', 'created', actor, at
    FROM unnest($4::uuid[], $5::uuid[], $28::text[], $10::timestamptz[]) WITH ORDINALITY
         AS t(order_id, customer_id, actor, at, n)
    ORDER BY n
), cart AS (
    UPDATE carts SET version = version + 1, updated_at = $3 WHERE customer_id = ANY($29)
)
DELETE FROM cart_items WHERE customer_id = ANY($29)";

/// One transaction for the whole batch: lock the items (and carts), decide every order in
/// the order it came, as if they had been placed one after another, write the accepted
/// ones in one statement, commit. A refused order reserves nothing and does not stop the
/// others.
async fn place_together(pool: &PgPool, batch: &[NewOrder]) -> Result<Vec<PlaceOutcome>> {
    let (ids, checkouts) = Allocation::keys(batch);
    let mut tx = pool.begin().await?;
    let items = sqlx::query_as::<sqlx::Postgres, ItemRow>(LOCK_ITEMS)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
    let carts = if checkouts.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as::<sqlx::Postgres, (Uuid, i64)>(LOCK_CARTS)
            .bind(&checkouts)
            .fetch_all(&mut *tx)
            .await?
    };
    let mut a = Allocation::new(items, carts);
    let outcomes = a.decide(batch);
    let Some(now) = a.now() else {
        // Every order was refused: nothing to write (dropping `tx` rolls it back).
        return Ok(outcomes);
    };
    let (stock_ids, stock_taken) = a.taken();
    let w = &a.w;
    sqlx::query(WRITE_BATCH)
        .bind(&stock_ids)
        .bind(&stock_taken)
        .bind(now)
        .bind(&w.order_id)
        .bind(&w.customer_id)
        .bind(&w.total)
        .bind(&w.currency)
        .bind(&w.shipping)
        .bind(&w.method)
        .bind(&w.at)
        .bind(&w.expires)
        .bind(&w.charge_id)
        .bind(&w.charge_order)
        .bind(&w.charge_key)
        .bind(&w.charge_method)
        .bind(&w.charge_amount)
        .bind(&w.charge_currency)
        .bind(&w.charge_due)
        .bind(&w.charge_at)
        .bind(&w.line_order)
        .bind(&w.line_no)
        .bind(&w.line_item)
        .bind(&w.line_sku)
        .bind(&w.line_name)
        .bind(&w.line_qty)
        .bind(&w.line_price)
        .bind(&w.line_total)
        .bind(&w.actor)
        .bind(&w.carts)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(outcomes)
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
