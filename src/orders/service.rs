//! Order operations: placing (atomic reservation), paying, moving through fulfilment,
//! cancelling, tracking scans, the timeline and search.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use super::domain::{Command, Event, OrderState, OrderStatus, PaymentStatus, decide, run};
use super::error::{OrderError, OrderResult};
use super::pages::{Listed, PageCache, PageKey, RenderedPage, etag_of, none_match};
use super::store::{
    EventRow, Expiry, NewEvent, NewOrder, OrderCursor, OrderFilter, OrderRecord, OrderUpdate,
    PlaceOutcome, STATUS_EVENT, TRACKING_EVENT, TransitionOutcome,
};
use crate::auth::domain::Principal;
use crate::carriers::service::Estimates;
use crate::clock::Clock;
use crate::payments::PaymentGateway;
use crate::payments::store::PaymentWrite;
use crate::storage::{DynStore, Error as StoreError, Ts};

/// How often a transaction that lost a race (deadlock, serialization, stale version) is
/// tried again before the caller gets 409.
const ATTEMPTS: usize = 8;

pub struct PlaceOrder {
    pub customer_id: Uuid,
    pub lines: Vec<(Uuid, i32)>,
    pub shipping_address: Option<serde_json::Value>,
    pub payment_method: Option<String>,
    /// Checkout from the cart: the version of the cart the lines were read from.
    pub cart_version: Option<i64>,
}

/// Optional details recorded with a status change.
#[derive(Clone, Debug, Default)]
pub struct ChangeDetails {
    pub note: Option<String>,
    pub location: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

/// One change asked of an order: the command, and what to record with it.
#[derive(Clone, Debug)]
pub(crate) struct Change<'a> {
    pub cmd: Command,
    /// Rejects the change if the order is no longer in this status.
    pub expected: Option<OrderStatus>,
    pub details: ChangeDetails,
    /// The gateway's reference of the order's payment, to store on the order.
    pub payment_reference: Option<String>,
    /// A payment step written in the same transaction.
    pub payment: Option<PaymentWrite>,
    pub actor: &'a str,
}

impl<'a> Change<'a> {
    pub(crate) fn new(cmd: Command, actor: &'a str) -> Self {
        Change {
            cmd,
            expected: None,
            details: ChangeDetails::default(),
            payment_reference: None,
            payment: None,
            actor,
        }
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.details.note = Some(note.into());
        self
    }
}

#[derive(Clone)]
pub struct OrderService {
    pub(super) store: DynStore,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) gateway: Arc<dyn PaymentGateway>,
    reservation_ttl: Duration,
    pub(super) payment_timeout: Duration,
    /// Predicted delivery dates and carriers' delivery times, kept up after each change.
    estimates: Estimates,
    /// Rendered pages of order lists (see `pages`).
    pages: Arc<PageCache>,
}

pub fn actor_of(p: &Principal) -> String {
    p.key()
}

impl OrderService {
    pub fn new(
        store: DynStore,
        clock: Arc<dyn Clock>,
        gateway: Arc<dyn PaymentGateway>,
        reservation_ttl: Duration,
        payment_timeout: Duration,
    ) -> Self {
        OrderService {
            estimates: Estimates::new(store.clone()),
            store,
            clock,
            gateway,
            reservation_ttl,
            payment_timeout,
            pages: Arc::new(PageCache::new(0)),
        }
    }

    /// Keeps up to `entries` rendered pages of order lists on this node (0: none).
    pub fn with_page_cache(mut self, entries: usize) -> Self {
        self.pages = Arc::new(PageCache::new(entries));
        self
    }

    /// Reserves every line in one transaction; either all are reserved or nothing is.
    #[tracing::instrument(skip_all, fields(order_id = tracing::field::Empty, lines = req.lines.len()))]
    pub async fn place(&self, req: PlaceOrder, actor: &str) -> OrderResult<OrderRecord> {
        let now = self.clock.ts();
        let ttl = time::Duration::try_from(self.reservation_ttl).map_err(OrderError::internal)?;
        let order = NewOrder {
            id: Uuid::now_v7(),
            customer_id: req.customer_id,
            lines: req.lines,
            shipping_address: req.shipping_address,
            payment_method: req.payment_method,
            created_at: now,
            expires_at: Ts::truncated(now.0 + ttl),
            charge_due_at: self.charge_lease(now),
            actor: actor.to_owned(),
            cart_version: req.cart_version,
        };
        tracing::Span::current().record("order_id", tracing::field::display(order.id));
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.store.place_order(&order).await {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => continue,
                Err(StoreError::ForeignKey) => return Err(OrderError::UnknownCustomer),
                other => break other?,
            }
        };
        match outcome {
            PlaceOutcome::Placed(rec) => {
                metrics::counter!("ordo_orders_placed_total").increment(1);
                Ok(rec)
            }
            PlaceOutcome::UnknownItem(line) => Err(OrderError::UnknownItem { line }),
            PlaceOutcome::InsufficientStock(line) => {
                metrics::counter!("ordo_stock_outs_total").increment(1);
                Err(OrderError::InsufficientStock {
                    line,
                    item_id: order.lines[line].0,
                })
            }
            PlaceOutcome::MixedCurrencies => Err(OrderError::MixedCurrencies),
            PlaceOutcome::CartChanged => Err(OrderError::CartChanged),
        }
    }

    /// An order the caller may see; anybody else's is "not found". (The reads' spans are
    /// at DEBUG: they are the hottest calls, and following an order takes its changes, not
    /// its reads.)
    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %id))]
    pub async fn get(&self, caller: &Principal, id: Uuid) -> OrderResult<OrderRecord> {
        let rec = self.store.order(id).await?.ok_or(OrderError::NotFound)?;
        if caller.sees_order(rec.order.id, rec.order.customer_id) {
            Ok(rec)
        } else {
            Err(OrderError::NotFound)
        }
    }

    /// Runs `cmd` against the stored order, retrying when another change won the race.
    /// `expected` rejects the change if the order is no longer in that status.
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn apply(
        &self,
        id: Uuid,
        cmd: Command,
        expected: Option<OrderStatus>,
        details: &ChangeDetails,
        actor: &str,
    ) -> OrderResult<OrderRecord> {
        let change = Change {
            expected,
            details: details.clone(),
            ..Change::new(cmd, actor)
        };
        Ok(self.change(id, None, change).await?.0)
    }

    /// Applies `change` to the order, starting from a copy the caller already holds
    /// (`known`, saving a read); if that copy turns out to be stale, the stored order is
    /// read and judged instead.
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub(crate) async fn change(
        &self,
        id: Uuid,
        mut known: Option<OrderRecord>,
        change: Change<'_>,
    ) -> OrderResult<(OrderRecord, Vec<Event>)> {
        let Change {
            cmd,
            expected,
            details,
            payment_reference,
            payment,
            actor,
        } = change;
        for _ in 0..ATTEMPTS {
            let (current, from_memory) = match known.take() {
                Some(rec) => (rec, true),
                None => (
                    self.store.order(id).await?.ok_or(OrderError::NotFound)?,
                    false,
                ),
            };
            // An archived order changes in the live tables: moved back, then read again.
            if current.order.archived {
                self.store.restore_order(id, self.clock.ts()).await?;
                continue;
            }
            let state = current.order.state();
            if let Some(exp) = expected
                && exp != state.status
            {
                if from_memory {
                    continue;
                }
                return Err(OrderError::Conflict(format!(
                    "the order is {}, not {}",
                    state.status.as_str(),
                    exp.as_str()
                )));
            }
            // Money that comes in after the reservation ran out does not place the order
            // (even before the sweeper cancels it): the saga gives it back instead.
            if cmd == Command::ConfirmPayment
                && state.status == OrderStatus::Created
                && self.reservation_over(&current)
            {
                return Err(OrderError::Refused(
                    "the order's reservation has expired".into(),
                ));
            }
            let (next, events) = match run(state, cmd) {
                Ok(r) => r,
                Err(_) if from_memory => continue,
                Err(e) => return Err(e.into()),
            };
            let timeline = timeline_of(&events, next, &current, &details, actor);
            // A paid order that is canceled owes a refund: the saga's refund step is
            // recorded with the cancel, and paid by `refund`.
            let payment = payment.clone().or_else(|| {
                events
                    .contains(&Event::RefundRequested)
                    .then(|| self.refund_step(&current, current.order.payment_reference.clone()))
            });
            let update = OrderUpdate {
                status: next.status.as_str().to_owned(),
                payment_status: next.payment_status.as_str().to_owned(),
                carrier: details.carrier.clone(),
                tracking_number: details.tracking_number.clone(),
                payment_reference: payment_reference.clone(),
                payment,
            };
            let release = events.contains(&Event::StockReleased);
            match self
                .store
                .transition(&current, &update, release, &timeline, self.clock.ts())
                .await
            {
                Ok(TransitionOutcome::Applied(mut order)) => {
                    if let Some(to) = events.iter().find_map(|e| match e {
                        Event::StatusChanged {
                            to: to @ (OrderStatus::Shipped | OrderStatus::Delivered),
                            ..
                        } => Some(*to),
                        _ => None,
                    }) && let Some(o) = self.estimates.after_change(&order, to).await
                    {
                        order = o;
                    }
                    return Ok((
                        OrderRecord {
                            order,
                            lines: current.lines,
                        },
                        events,
                    ));
                }
                Ok(TransitionOutcome::Stale) => continue,
                Err(e) if e.is_transient() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OrderError::Conflict(
            "the order is changing too fast; try again".into(),
        ))
    }

    /// Cancels (customer or staff); a paid order's money goes back through the gateway.
    /// `known` is the order as the caller last read it (saves a read); `expected` rejects
    /// the cancel if the order has moved on from that status.
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn cancel(
        &self,
        id: Uuid,
        known: Option<OrderRecord>,
        expected: Option<OrderStatus>,
        details: &ChangeDetails,
        actor: &str,
    ) -> OrderResult<OrderRecord> {
        let change = Change {
            expected,
            details: details.clone(),
            ..Change::new(Command::Cancel, actor)
        };
        let (rec, events) = self.change(id, known, change).await?;
        if events.contains(&Event::RefundRequested) {
            return self.refund(rec, actor).await;
        }
        // Canceled before it was paid: a charge may still be out (3-D Secure, no answer
        // yet): call it off now.
        self.store.nudge_pending_charge(id, self.clock.ts()).await?;
        Ok(rec)
    }

    pub(super) async fn get_any(&self, id: Uuid) -> OrderResult<OrderRecord> {
        self.store.order(id).await?.ok_or(OrderError::NotFound)
    }

    #[tracing::instrument(skip_all, fields(order_id = %rec.order.id))]
    pub async fn add_tracking(&self, rec: &OrderRecord, event: NewEvent) -> OrderResult<EventRow> {
        let state = rec.order.state();
        if matches!(state.status, OrderStatus::Created | OrderStatus::Canceled) {
            return Err(OrderError::Refused(format!(
                "an order that is {} has no shipment to track",
                state.status.as_str()
            )));
        }
        let event = NewEvent {
            event: TRACKING_EVENT,
            status: state.status.as_str().to_owned(),
            ..event
        };
        let event = NewEvent {
            at: Some(event.at.unwrap_or_else(|| self.clock.ts())),
            ..event
        };
        // A late scan of an archived order is written beside the order, live again; so is
        // one whose order was archived after the caller read it.
        for again in [false, true] {
            if rec.order.archived || again {
                self.store
                    .restore_order(rec.order.id, self.clock.ts())
                    .await?;
            }
            match self.store.append_event(&rec.order, &event).await {
                Err(e) if !again && e.order_gone() => continue,
                done => return Ok(done?),
            }
        }
        unreachable!("the second attempt returns")
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub async fn events(&self, order_id: Uuid) -> OrderResult<Vec<EventRow>> {
        Ok(self.store.events(order_id).await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list(
        &self,
        filter: &OrderFilter,
        after: Option<&OrderCursor>,
        limit: u32,
    ) -> OrderResult<(Vec<OrderRecord>, Option<OrderCursor>)> {
        let rows = self.store.list_orders(filter, after, limit).await?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last())
            .flatten()
            .map(|last| OrderCursor {
                created_at_us: last.order.created_at.micros(),
                id: last.order.id,
            });
        Ok((rows, next))
    }

    /// A page of a list, rendered by `render` into what is sent, or `NotModified` when
    /// `if_none_match` names it. Checked against the orders' versions in the database on
    /// every call, so a page kept from an earlier call is never stale (see `pages`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_page(
        &self,
        filter: OrderFilter,
        after: Option<OrderCursor>,
        limit: u32,
        if_none_match: Option<&str>,
        render: impl FnOnce(Vec<OrderRecord>, Option<OrderCursor>) -> OrderResult<Bytes>,
    ) -> OrderResult<Listed> {
        let key = PageKey {
            filter,
            after,
            limit,
        };
        let caching = self.pages.enabled();
        if caching {
            let versions = self
                .store
                .list_versions(&key.filter, key.after.as_ref(), limit)
                .await?;
            let etag = etag_of(&versions);
            if if_none_match.is_some_and(|h| none_match(h, &etag)) {
                metrics::counter!("ordo_order_pages_total", "outcome" => "not_modified")
                    .increment(1);
                return Ok(Listed::NotModified { etag });
            }
            if let Some(page) = self.pages.get(&key, &versions) {
                metrics::counter!("ordo_order_pages_total", "outcome" => "hit").increment(1);
                return Ok(Listed::Page(page));
            }
        }
        let (rows, next) = self.list(&key.filter, key.after.as_ref(), limit).await?;
        let versions: Vec<(Uuid, i64)> =
            rows.iter().map(|r| (r.order.id, r.order.version)).collect();
        let etag = etag_of(&versions);
        if if_none_match.is_some_and(|h| none_match(h, &etag)) {
            metrics::counter!("ordo_order_pages_total", "outcome" => "not_modified").increment(1);
            return Ok(Listed::NotModified { etag });
        }
        metrics::counter!("ordo_order_pages_total", "outcome" => "rendered").increment(1);
        let page = Arc::new(RenderedPage {
            etag,
            body: render(rows, next)?,
        });
        if caching {
            self.pages.put(key, versions, page.clone());
        }
        Ok(Listed::Page(page))
    }

    /// List pages this node served from its cache.
    pub fn page_hits(&self) -> u64 {
        self.pages.hits()
    }

    /// The order's current tag when `if_none_match` names it and `caller` may see the
    /// order: one small read instead of the order, its lines and a body.
    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %id))]
    pub async fn not_modified(
        &self,
        caller: &Principal,
        id: Uuid,
        if_none_match: &str,
    ) -> OrderResult<Option<String>> {
        let Some((customer, version)) = self.store.order_version(id).await? else {
            return Ok(None);
        };
        let etag = etag_of(&[(id, version)]);
        Ok((caller.sees_order(id, customer) && none_match(if_none_match, &etag)).then_some(etag))
    }

    /// Cancels `created` orders whose reservation ran out and returns their stock; a charge
    /// still out is then voided by the payment saga. Safe on many nodes at once.
    #[tracing::instrument(skip_all, fields(expired = tracing::field::Empty))]
    pub async fn expire_due(&self, batch: u32) -> OrderResult<usize> {
        let expiry = expiry_change();
        let ids = self
            .store
            .expire_orders(self.clock.ts(), batch, &expiry)
            .await?;
        if !ids.is_empty() {
            metrics::counter!("ordo_reservations_expired_total").increment(ids.len() as u64);
        }
        tracing::Span::current().record("expired", ids.len());
        Ok(ids.len())
    }
}

/// The timeline rows of a transition's events.
fn timeline_of(
    events: &[Event],
    next: OrderState,
    current: &OrderRecord,
    details: &ChangeDetails,
    actor: &str,
) -> Vec<NewEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StatusChanged { from, to } => Some(NewEvent {
                event: STATUS_EVENT,
                status: to.as_str().to_owned(),
                previous_status: Some(from.as_str().to_owned()),
                note: details.note.clone(),
                location: details.location.clone(),
                carrier: details
                    .carrier
                    .clone()
                    .or_else(|| current.order.carrier.clone()),
                tracking_number: details
                    .tracking_number
                    .clone()
                    .or_else(|| current.order.tracking_number.clone()),
                actor: Some(actor.to_owned()),
                ..NewEvent::default()
            }),
            Event::PaymentStatusChanged {
                to: PaymentStatus::Refunded,
            } => Some(NewEvent {
                event: STATUS_EVENT,
                status: next.status.as_str().to_owned(),
                previous_status: Some(next.status.as_str().to_owned()),
                note: Some(
                    details
                        .note
                        .clone()
                        .unwrap_or_else(|| "payment refunded".to_owned()),
                ),
                actor: Some(actor.to_owned()),
                ..NewEvent::default()
            }),
            _ => None,
        })
        .collect()
}

/// What expiring a `created`, unpaid order does, as the state machine decides it: the
/// sweeper writes this for many orders at once.
fn expiry_change() -> Expiry {
    let created = OrderState {
        status: OrderStatus::Created,
        payment_status: PaymentStatus::Pending,
    };
    // Constant input, checked by the test `expiry_cancels_and_returns_stock`.
    let events = decide(created, Command::Expire)
        .expect("the state machine lets a created, unpaid order expire");
    let to = events
        .iter()
        .find_map(|e| match e {
            Event::StatusChanged { to, .. } => Some(*to),
            _ => None,
        })
        .expect("expiry changes the status");
    debug_assert!(events.contains(&Event::StockReleased));
    let payment = events
        .iter()
        .find_map(|e| match e {
            Event::PaymentStatusChanged { to } => Some(*to),
            _ => None,
        })
        .expect("expiry changes the payment status");
    Expiry {
        status: to.as_str(),
        payment_status: payment.as_str(),
        event: NewEvent {
            event: STATUS_EVENT,
            status: to.as_str().to_owned(),
            previous_status: Some(OrderStatus::Created.as_str().to_owned()),
            note: Some("reservation expired".into()),
            actor: Some("system:expiry".into()),
            ..NewEvent::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_cancels_and_returns_stock() {
        let created = OrderState {
            status: OrderStatus::Created,
            payment_status: PaymentStatus::Pending,
        };
        assert_eq!(
            decide(created, Command::Expire),
            Ok(vec![
                Event::StatusChanged {
                    from: OrderStatus::Created,
                    to: OrderStatus::Canceled
                },
                Event::PaymentStatusChanged {
                    to: PaymentStatus::Failed
                },
                Event::StockReleased
            ])
        );
        let e = expiry_change();
        assert_eq!(e.status, "canceled");
        assert_eq!(e.payment_status, "failed");
        assert_eq!(e.event.previous_status.as_deref(), Some("created"));
    }
}
