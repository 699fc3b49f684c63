//! Deciding a batch of orders: which are placed and which are refused, and why.
//!
//! Both backends place a batch the same way: read the batch's items (PostgreSQL locks
//! them) and the carts being checked out, then decide each order in the order it came,
//! against what the orders before it left, exactly as if they had been placed one after
//! another. A refused order takes nothing. What the placed ones write is gathered in
//! [`Writes`], which each backend turns into one statement per table.

use std::collections::HashMap;

use uuid::Uuid;

use super::store::{NewOrder, PlaceOutcome, ReservedLine};
use crate::storage::{Error, Result, Ts};
use sqlx::types::Json;

/// A batch's items and carts, and what its placed orders write.
#[derive(Default)]
pub(super) struct Allocation {
    items: HashMap<Uuid, Stock>,
    carts: HashMap<Uuid, i64>,
    pub(super) w: Writes,
}

/// An item row as a batch reads it: id, stock, price, currency, SKU, name.
pub(super) type ItemRow = (Uuid, i64, i64, String, String, String);

impl Allocation {
    /// The batch's items (for their rows) and the customers checking out their carts,
    /// each sorted by id, once.
    pub(super) fn keys(batch: &[NewOrder]) -> (Vec<Uuid>, Vec<Uuid>) {
        let mut items: Vec<Uuid> = batch
            .iter()
            .flat_map(|o| o.lines.iter().map(|l| l.0))
            .collect();
        items.sort_unstable();
        items.dedup();
        let mut checkouts: Vec<Uuid> = batch
            .iter()
            .filter(|o| o.cart_version.is_some())
            .map(|o| o.customer_id)
            .collect();
        checkouts.sort_unstable();
        checkouts.dedup();
        (items, checkouts)
    }

    pub(super) fn new(items: Vec<ItemRow>, carts: Vec<(Uuid, i64)>) -> Self {
        let items = items
            .into_iter()
            .map(|(id, left, price, currency, sku, name)| {
                let stock = Stock {
                    left,
                    taken: 0,
                    price,
                    currency,
                    sku,
                    name,
                };
                (id, stock)
            })
            .collect();
        Allocation {
            items,
            carts: carts.into_iter().collect(),
            w: Writes::default(),
        }
    }

    /// Decides every order of the batch, in order.
    pub(super) fn decide(&mut self, batch: &[NewOrder]) -> Vec<PlaceOutcome> {
        batch
            .iter()
            .map(|o| decide(o, &mut self.items, &mut self.carts, &mut self.w))
            .collect()
    }

    /// What the placed orders took of each item (items they did not touch left out).
    pub(super) fn taken(&self) -> (Vec<Uuid>, Vec<i64>) {
        self.items
            .iter()
            .filter(|(_, s)| s.taken > 0)
            .map(|(id, s)| (*id, s.taken))
            .unzip()
    }

    /// The time the batch's writes carry (the latest order's), or `None` if every order
    /// was refused and there is nothing to write.
    pub(super) fn now(&self) -> Option<Ts> {
        self.w.at.iter().copied().max()
    }
}

/// An item as the batch found it (under its lock), and what the batch took of it.
pub(super) struct Stock {
    pub(super) left: i64,
    pub(super) taken: i64,
    pub(super) price: i64,
    pub(super) currency: String,
    pub(super) sku: String,
    pub(super) name: String,
}

/// The rows a batch writes, column by column (as PostgreSQL's arrays take them).
#[derive(Default)]
pub(super) struct Writes {
    pub(super) order_id: Vec<Uuid>,
    pub(super) customer_id: Vec<Uuid>,
    pub(super) total: Vec<i64>,
    pub(super) currency: Vec<String>,
    pub(super) shipping: Vec<Option<Json<serde_json::Value>>>,
    pub(super) method: Vec<Option<String>>,
    pub(super) at: Vec<Ts>,
    pub(super) expires: Vec<Ts>,
    pub(super) actor: Vec<String>,
    pub(super) charge_id: Vec<Uuid>,
    pub(super) charge_order: Vec<Uuid>,
    pub(super) charge_key: Vec<String>,
    pub(super) charge_method: Vec<String>,
    pub(super) charge_amount: Vec<i64>,
    pub(super) charge_currency: Vec<String>,
    pub(super) charge_due: Vec<Ts>,
    pub(super) charge_at: Vec<Ts>,
    pub(super) line_order: Vec<Uuid>,
    pub(super) line_no: Vec<i32>,
    pub(super) line_item: Vec<Uuid>,
    pub(super) line_sku: Vec<String>,
    pub(super) line_name: Vec<String>,
    pub(super) line_qty: Vec<i32>,
    pub(super) line_price: Vec<i64>,
    pub(super) line_total: Vec<i64>,
    pub(super) carts: Vec<Uuid>,
}

/// Places `o` against what the batch has left of each item, or says why not (the same
/// answers, in the same order of precedence, as an order placed on its own).
fn decide(
    o: &NewOrder,
    items: &mut HashMap<Uuid, Stock>,
    carts: &mut HashMap<Uuid, i64>,
    w: &mut Writes,
) -> PlaceOutcome {
    if let Some(version) = o.cart_version
        && carts.get(&o.customer_id) != Some(&version)
    {
        return PlaceOutcome::CartChanged;
    }
    let found: Vec<Option<(i64, &str)>> = o
        .lines
        .iter()
        .map(|(id, _)| items.get(id).map(|s| (s.left, s.currency.as_str())))
        .collect();
    if let Some(refused) = refusal(o, &found) {
        return refused;
    }
    let mut rows: Vec<ReservedLine> = Vec::with_capacity(o.lines.len());
    for (i, (id, qty)) in o.lines.iter().enumerate() {
        let Some(s) = items.get_mut(id) else {
            // `refusal` found every item.
            return PlaceOutcome::UnknownItem(i);
        };
        s.left -= i64::from(*qty);
        s.taken += i64::from(*qty);
        let line_total = s.price * i64::from(*qty);
        rows.push((
            i as i32 + 1,
            *id,
            s.sku.clone(),
            s.name.clone(),
            *qty,
            s.price,
            line_total,
            s.currency.clone(),
        ));
    }
    if let Some(version) = o.cart_version {
        carts.insert(o.customer_id, version + 1);
        w.carts.push(o.customer_id);
    }
    let placed = o.placed(rows);
    let order = &placed.order;
    w.order_id.push(o.id);
    w.customer_id.push(o.customer_id);
    w.total.push(order.total_amount);
    w.currency.push(order.currency.clone());
    w.shipping.push(order.shipping_address.clone());
    w.method.push(o.payment_method.clone());
    w.at.push(o.created_at);
    w.expires.push(o.expires_at);
    w.actor.push(o.actor.clone());
    if let Some(method) = &o.payment_method {
        w.charge_id.push(Uuid::now_v7());
        w.charge_order.push(o.id);
        w.charge_key.push(NewOrder::charge_key(o.id));
        w.charge_method.push(method.clone());
        w.charge_amount.push(order.total_amount);
        w.charge_currency.push(order.currency.clone());
        w.charge_due.push(o.charge_due_at);
        w.charge_at.push(o.created_at);
    }
    for l in &placed.lines {
        w.line_order.push(o.id);
        w.line_no.push(l.line_no);
        w.line_item.push(l.item_id);
        w.line_sku.push(l.sku.clone());
        w.line_name.push(l.name.clone());
        w.line_qty.push(l.quantity);
        w.line_price.push(l.unit_price);
        w.line_total.push(l.line_total);
    }
    PlaceOutcome::Placed(placed)
}

/// Why an order was refused, given each line's item as it is now (`None`: no such item).
/// Unknown items come first (422), then stock (409), then currencies (422). If every
/// line looks fine now, stock moved back meanwhile: the caller tries again.
pub(super) fn explain_refusal(o: &NewOrder, found: &[Option<(i64, &str)>]) -> Result<PlaceOutcome> {
    refusal(o, found).ok_or(Error::Retry)
}

/// Why an order cannot be placed against `found` (each line's item: its stock and
/// currency), or `None` if it can.
fn refusal(o: &NewOrder, found: &[Option<(i64, &str)>]) -> Option<PlaceOutcome> {
    if let Some(i) = found.iter().position(Option::is_none) {
        return Some(PlaceOutcome::UnknownItem(i));
    }
    let items: Vec<(i64, &str)> = found.iter().flatten().copied().collect();
    if let Some(i) = o
        .lines
        .iter()
        .zip(&items)
        .position(|((_, qty), (stock, _))| *stock < i64::from(*qty))
    {
        return Some(PlaceOutcome::InsufficientStock(i));
    }
    if items.iter().any(|(_, cur)| *cur != items[0].1) {
        return Some(PlaceOutcome::MixedCurrencies);
    }
    None
}
