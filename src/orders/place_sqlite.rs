//! Order placement on SQLite: a batch of orders per command, one commit per batch.
//!
//! sqlx runs each SQLite connection on its own thread. Every statement is a hand-off
//! between threads, and on a busy machine those hand-offs cost more than SQLite's own
//! work. So concurrent orders share one transaction (group commit, as on PostgreSQL): the
//! writer reads the batch's items and carts in two statements, decides every order in
//! Rust (`allocate`: each as if placed alone, in the order they came; a refused order
//! takes nothing), and writes the placed ones with one multi-statement command whose rows
//! travel as JSON arrays (`json_each`): the same five or six statements whatever the
//! number of orders. SQLite has one writer, so nothing changes between the read and the
//! write.

use serde_json::{Value, json};
use sqlx::SqlitePool;
use uuid::Uuid;

use super::allocate::{Allocation, ItemRow};
use super::group_commit::{GroupCommit, together_or_alone};
use super::store::{NewOrder, PlaceOutcome};
use crate::storage::sqlite::SqliteStore;
use crate::storage::{Error, Result};

/// The batch's items, by id (hex): the same statement text whatever the batch's size.
const READ_ITEMS: &str = "SELECT id, stock, price, currency, sku, name FROM items \
     WHERE id IN (SELECT unhex(value) FROM json_each($1))";
const READ_CARTS: &str = "SELECT customer_id, version FROM carts \
     WHERE customer_id IN (SELECT unhex(value) FROM json_each($1))";

/// Every placed order of a batch. `$1` the time; `$2` [item, units taken]; `$3` orders
/// [id, customer, total, currency, shipping address, payment method, created, expires];
/// `$4` charges [id, order, key, method, amount, currency, due, created]; `$5` lines
/// [order, line no, item, SKU, name, quantity, unit price, total]; `$6` `created` events
/// [order, customer, actor, at]; `$7` the customers whose carts were checked out.
const WRITE_BATCH: &str = "\
UPDATE items SET stock = stock - s.qty, updated_at = $1
FROM (SELECT unhex(value ->> 0) AS id, value ->> 1 AS qty FROM json_each($2)) AS s
WHERE items.id = s.id;
INSERT INTO orders (id, customer_id, status, payment_status, total_amount, currency, shipping_address,
                    payment_method, version, created_at, updated_at, expires_at)
SELECT unhex(value ->> 0), unhex(value ->> 1), 'created', 'pending', value ->> 2, value ->> 3,
       CASE json_type(value, '$[4]') WHEN 'null' THEN NULL ELSE value -> 4 END,
       value ->> 5, 0, value ->> 6, value ->> 6, value ->> 7
FROM json_each($3) ORDER BY key;
INSERT INTO payment_transactions (id, order_id, kind, idempotency_key, method, amount, currency, status,
                                  attempts, next_attempt_at, created_at, updated_at)
SELECT unhex(value ->> 0), unhex(value ->> 1), 'charge', value ->> 2, value ->> 3, value ->> 4, value ->> 5,
       'pending', 1, value ->> 6, value ->> 7, value ->> 7
FROM json_each($4) ORDER BY key;
INSERT INTO order_items (order_id, line_no, item_id, sku, name, quantity, unit_price, line_total)
SELECT unhex(value ->> 0), value ->> 1, unhex(value ->> 2), value ->> 3, value ->> 4, value ->> 5,
       value ->> 6, value ->> 7
FROM json_each($5) ORDER BY key;
INSERT INTO order_events (order_id, customer_id, event, status, actor, at)
SELECT unhex(value ->> 0), unhex(value ->> 1), 'order_status_update', 'created', value ->> 2, value ->> 3
FROM json_each($6) ORDER BY key;
UPDATE carts SET version = version + 1, updated_at = $1
WHERE customer_id IN (SELECT unhex(value) FROM json_each($7));
DELETE FROM cart_items WHERE customer_id IN (SELECT unhex(value) FROM json_each($7))";

pub(crate) type Placer = GroupCommit<NewOrder, PlaceOutcome>;

fn hex(id: &Uuid) -> String {
    id.simple().to_string()
}

fn ids(ids: &[Uuid]) -> String {
    Value::from(ids.iter().map(hex).collect::<Vec<_>>()).to_string()
}

/// Places the batch together; if that fails as a whole (an order for a customer who does
/// not exist), each order on its own.
async fn place_batch(writer: &SqlitePool, batch: &[NewOrder]) -> Vec<Result<PlaceOutcome>> {
    together_or_alone(
        "place",
        batch.len(),
        place_together(writer, batch),
        |i| async move {
            let mut one = place_together(writer, std::slice::from_ref(&batch[i])).await?;
            // A batch of one has one outcome.
            one.pop().ok_or(Error::Retry)
        },
    )
    .await
}

async fn place_together(writer: &SqlitePool, batch: &[NewOrder]) -> Result<Vec<PlaceOutcome>> {
    let (item_ids, checkouts) = Allocation::keys(batch);
    let mut tx = writer.begin().await?;
    let items = sqlx::query_as::<sqlx::Sqlite, ItemRow>(READ_ITEMS)
        .bind(ids(&item_ids))
        .fetch_all(&mut *tx)
        .await?;
    let carts = if checkouts.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as::<sqlx::Sqlite, (Uuid, i64)>(READ_CARTS)
            .bind(ids(&checkouts))
            .fetch_all(&mut *tx)
            .await?
    };
    let mut a = Allocation::new(items, carts);
    let outcomes = a.decide(batch);
    let Some(now) = a.now() else {
        // Every order was refused: nothing to write.
        return Ok(outcomes);
    };
    let (stock_ids, stock_taken) = a.taken();
    let w = &a.w;
    let stock: Vec<Value> = stock_ids
        .iter()
        .zip(&stock_taken)
        .map(|(id, qty)| json!([hex(id), qty]))
        .collect();
    let orders: Vec<Value> = (0..w.order_id.len())
        .map(|i| {
            json!([
                hex(&w.order_id[i]),
                hex(&w.customer_id[i]),
                w.total[i],
                w.currency[i],
                w.shipping[i].as_ref().map(|j| &j.0),
                w.method[i],
                w.at[i].micros(),
                w.expires[i].micros(),
            ])
        })
        .collect();
    let charges: Vec<Value> = (0..w.charge_id.len())
        .map(|i| {
            json!([
                hex(&w.charge_id[i]),
                hex(&w.charge_order[i]),
                w.charge_key[i],
                w.charge_method[i],
                w.charge_amount[i],
                w.charge_currency[i],
                w.charge_due[i].micros(),
                w.charge_at[i].micros(),
            ])
        })
        .collect();
    let lines: Vec<Value> = (0..w.line_order.len())
        .map(|i| {
            json!([
                hex(&w.line_order[i]),
                w.line_no[i],
                hex(&w.line_item[i]),
                w.line_sku[i],
                w.line_name[i],
                w.line_qty[i],
                w.line_price[i],
                w.line_total[i],
            ])
        })
        .collect();
    let events: Vec<Value> = (0..w.order_id.len())
        .map(|i| {
            json!([
                hex(&w.order_id[i]),
                hex(&w.customer_id[i]),
                w.actor[i],
                w.at[i].micros()
            ])
        })
        .collect();
    sqlx::query(WRITE_BATCH)
        .bind(now)
        .bind(Value::from(stock).to_string())
        .bind(Value::from(orders).to_string())
        .bind(Value::from(charges).to_string())
        .bind(Value::from(lines).to_string())
        .bind(Value::from(events).to_string())
        .bind(ids(&w.carts))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(outcomes)
}

impl SqliteStore {
    pub(crate) async fn place_order_native(&self, o: &NewOrder) -> Result<PlaceOutcome> {
        let placer = self.placer.get_or_init(|| {
            // SQLite has one writer: one worker. It holds only the pool, and ends when the
            // store (and with it the queue) is dropped.
            let writer = self.writer().clone();
            GroupCommit::spawn("place", 1, move |batch| {
                let writer = writer.clone();
                async move { place_batch(&writer, &batch).await }
            })
        });
        placer.submit(o.clone()).await
    }

    pub(crate) async fn place_orders_native(
        &self,
        batch: Vec<NewOrder>,
    ) -> Vec<Result<PlaceOutcome>> {
        place_batch(self.writer(), &batch).await
    }
}
