//! Order operations: placing (atomic reservation), paying, moving through fulfilment,
//! cancelling, tracking scans, the timeline and search.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::domain::{Command, Event, OrderState, OrderStatus, PaymentStatus, TransitionError, run};
use super::store::{
    EventRow, NewEvent, NewOrder, OrderCursor, OrderFilter, OrderRecord, OrderUpdate, PlaceOutcome,
    STATUS_EVENT, TRACKING_EVENT, TransitionOutcome,
};
use crate::auth::domain::Principal;
use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};
use crate::payments::{ChargeOutcome, ChargeRequest, PaymentGateway, RefundRequest};
use crate::storage::{DynStore, Error as StoreError, Ts};

/// How often a transaction that lost a race (deadlock, serialization, stale version) is
/// tried again before the caller gets 409.
const ATTEMPTS: usize = 8;

pub struct PlaceOrder {
    pub customer_id: Uuid,
    pub lines: Vec<(Uuid, i32)>,
    pub shipping_address: Option<serde_json::Value>,
    pub payment_method: Option<String>,
}

/// Optional details recorded with a status change.
#[derive(Clone, Debug, Default)]
pub struct ChangeDetails {
    pub note: Option<String>,
    pub location: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

/// The outcome of a payment attempt.
pub enum Payment {
    Paid(OrderRecord),
    Declined(OrderRecord),
    /// The gateway did not answer in time; the order is still `created`.
    Pending(OrderRecord),
}

#[derive(Clone)]
pub struct OrderService {
    store: DynStore,
    clock: Arc<dyn Clock>,
    gateway: Arc<dyn PaymentGateway>,
    reservation_ttl: Duration,
    payment_timeout: Duration,
}

fn state_of(rec: &OrderRecord) -> ApiResult<OrderState> {
    let corrupt = || {
        ApiError::internal(anyhow::anyhow!(
            "order {} has an unknown status",
            rec.order.id
        ))
    };
    Ok(OrderState {
        status: OrderStatus::parse(&rec.order.status).ok_or_else(corrupt)?,
        payment_status: PaymentStatus::parse(&rec.order.payment_status).ok_or_else(corrupt)?,
    })
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        ApiError::InvalidTransition(e.to_string())
    }
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
            store,
            clock,
            gateway,
            reservation_ttl,
            payment_timeout,
        }
    }

    /// Reserves every line in one transaction; either all are reserved or nothing is.
    pub async fn place(&self, req: PlaceOrder, actor: &str) -> ApiResult<OrderRecord> {
        let now = self.clock.ts();
        let ttl = time::Duration::try_from(self.reservation_ttl).map_err(ApiError::internal)?;
        let order = NewOrder {
            id: Uuid::now_v7(),
            customer_id: req.customer_id,
            lines: req.lines,
            shipping_address: req.shipping_address,
            payment_method: req.payment_method,
            created_at: now,
            expires_at: Ts::truncated(now.0 + ttl),
            actor: actor.to_owned(),
        };
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.store.place_order(&order).await {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => continue,
                Err(StoreError::ForeignKey) => {
                    return Err(ApiError::validation("customer_id", "no such customer"));
                }
                other => break other?,
            }
        };
        match outcome {
            PlaceOutcome::Placed(rec) => {
                metrics::counter!("ordo_orders_placed_total").increment(1);
                Ok(rec)
            }
            PlaceOutcome::UnknownItem(i) => Err(ApiError::validation(
                format!("items[{i}].item_id"),
                "no such item",
            )),
            PlaceOutcome::InsufficientStock(i) => {
                metrics::counter!("ordo_stock_outs_total").increment(1);
                Err(ApiError::InsufficientStock {
                    item_id: order.lines[i].0.to_string(),
                    field: format!("items[{i}].quantity"),
                })
            }
            PlaceOutcome::MixedCurrencies => Err(ApiError::validation(
                "items",
                "all items of one order must have the same currency",
            )),
        }
    }

    /// An order the caller may see; anybody else's is "not found".
    pub async fn get(&self, caller: &Principal, id: Uuid) -> ApiResult<OrderRecord> {
        let rec = self.store.order(id).await?.ok_or(ApiError::NotFound)?;
        match caller.own_customer_id() {
            Some(own) if own != rec.order.customer_id => Err(ApiError::NotFound),
            _ => Ok(rec),
        }
    }

    /// Runs `cmd` against the stored order, retrying when another change won the race.
    /// `expected` rejects the change if the order is no longer in that status.
    pub async fn apply(
        &self,
        id: Uuid,
        cmd: Command,
        expected: Option<OrderStatus>,
        details: &ChangeDetails,
        payment_reference: Option<String>,
        actor: &str,
    ) -> ApiResult<(OrderRecord, Vec<Event>)> {
        self.apply_known(id, None, cmd, expected, details, payment_reference, actor)
            .await
    }

    /// `apply`, starting from a copy of the order the caller already holds (saving a read);
    /// if that copy turns out to be stale, the stored order is read and judged instead.
    #[expect(clippy::too_many_arguments)]
    async fn apply_known(
        &self,
        id: Uuid,
        mut known: Option<OrderRecord>,
        cmd: Command,
        expected: Option<OrderStatus>,
        details: &ChangeDetails,
        payment_reference: Option<String>,
        actor: &str,
    ) -> ApiResult<(OrderRecord, Vec<Event>)> {
        for _ in 0..ATTEMPTS {
            let (current, from_memory) = match known.take() {
                Some(rec) => (rec, true),
                None => (
                    self.store.order(id).await?.ok_or(ApiError::NotFound)?,
                    false,
                ),
            };
            let state = state_of(&current)?;
            if let Some(exp) = expected
                && exp != state.status
            {
                if from_memory {
                    continue;
                }
                return Err(ApiError::Conflict(format!(
                    "the order is {}, not {}",
                    state.status.as_str(),
                    exp.as_str()
                )));
            }
            let (next, events) = match run(state, cmd) {
                Ok(r) => r,
                Err(_) if from_memory => continue,
                Err(e) => return Err(e.into()),
            };
            let timeline: Vec<NewEvent> = events
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
                .collect();
            let update = OrderUpdate {
                status: next.status.as_str().to_owned(),
                payment_status: next.payment_status.as_str().to_owned(),
                carrier: details.carrier.clone(),
                tracking_number: details.tracking_number.clone(),
                payment_reference: payment_reference.clone(),
            };
            let release = events.contains(&Event::StockReleased);
            match self
                .store
                .transition(&current, &update, release, &timeline, self.clock.ts())
                .await
            {
                Ok(TransitionOutcome::Applied(order)) => {
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
        Err(ApiError::Conflict(
            "the order is changing too fast; try again".into(),
        ))
    }

    /// Cancels (customer or staff); a paid order's money goes back through the gateway.
    /// `known` is the order as the caller last read it (saves a read); `expected` rejects
    /// the cancel if the order has moved on from that status.
    pub async fn cancel(
        &self,
        id: Uuid,
        known: Option<OrderRecord>,
        expected: Option<OrderStatus>,
        details: &ChangeDetails,
        actor: &str,
    ) -> ApiResult<OrderRecord> {
        let (rec, events) = self
            .apply_known(id, known, Command::Cancel, expected, details, None, actor)
            .await?;
        if events.contains(&Event::RefundRequested) {
            return self.refund(rec, actor).await;
        }
        Ok(rec)
    }

    /// Refunds a canceled, paid order. If the gateway fails, the order stays canceled with
    /// `payment_status` `paid`, and the failure is logged.
    async fn refund(&self, rec: OrderRecord, actor: &str) -> ApiResult<OrderRecord> {
        let req = RefundRequest {
            idempotency_key: format!("refund-{}", rec.order.id),
            reference: rec.order.payment_reference.clone().unwrap_or_default(),
            amount: rec.order.total_amount,
            currency: rec.order.currency.clone(),
        };
        match tokio::time::timeout(self.payment_timeout, self.gateway.refund(&req)).await {
            Ok(Ok(_)) => {
                metrics::counter!("ordo_refunds_total").increment(1);
                let (rec, _) = self
                    .apply(
                        rec.order.id,
                        Command::ConfirmRefund,
                        None,
                        &ChangeDetails::default(),
                        None,
                        actor,
                    )
                    .await?;
                Ok(rec)
            }
            Ok(Err(e)) => {
                tracing::error!(order_id = %rec.order.id, error = %e, "refund failed");
                Ok(rec)
            }
            Err(_) => {
                tracing::error!(order_id = %rec.order.id, "refund timed out");
                Ok(rec)
            }
        }
    }

    /// Charges a `created` order. Gateway latency holds no database connection and no lock:
    /// the reservation was committed before, the outcome is committed after.
    pub async fn pay(
        &self,
        rec: OrderRecord,
        payment_method: String,
        actor: &str,
    ) -> ApiResult<Payment> {
        let state = state_of(&rec)?;
        if state.status != OrderStatus::Created {
            return Err(ApiError::InvalidTransition(format!(
                "an order that is {} cannot be paid",
                state.status.as_str()
            )));
        }
        // One payment call per order at a time: a second one gets 409 instead of charging
        // again. A claim older than the gateway timeout is abandoned and may be retaken.
        let now = self.clock.now();
        let timeout = time::Duration::try_from(self.payment_timeout).map_err(ApiError::internal)?;
        let claimed = self
            .store
            .claim_payment(
                rec.order.id,
                Ts::truncated(now),
                Ts::truncated(now - timeout),
            )
            .await?;
        if !claimed {
            let current = self.get_any(rec.order.id).await?;
            return Err(if current.order.status == OrderStatus::Created.as_str() {
                ApiError::Conflict("a payment for this order is already in progress".into())
            } else {
                ApiError::InvalidTransition(format!(
                    "an order that is {} cannot be paid",
                    current.order.status
                ))
            });
        }
        self.charge(rec, payment_method, actor).await
    }

    /// Charges an order whose payment call is already claimed: by `pay`, or by placing it
    /// with a `payment_method` (the claim is taken in the placement itself).
    pub async fn charge(
        &self,
        rec: OrderRecord,
        payment_method: String,
        actor: &str,
    ) -> ApiResult<Payment> {
        let req = ChargeRequest {
            idempotency_key: format!("charge-{}", rec.order.id),
            order_id: rec.order.id.to_string(),
            amount: rec.order.total_amount,
            currency: rec.order.currency.clone(),
            payment_method,
        };
        let outcome = match tokio::time::timeout(self.payment_timeout, self.gateway.charge(&req))
            .await
        {
            Err(_) => {
                metrics::counter!("ordo_payments_total", "outcome" => "timeout").increment(1);
                return Ok(Payment::Pending(rec));
            }
            Ok(Err(e)) => {
                metrics::counter!("ordo_payments_total", "outcome" => "unavailable").increment(1);
                // No answer to wait for: the next attempt (same idempotency key) may go ahead.
                self.store.release_payment(rec.order.id).await?;
                return Err(ApiError::Unavailable(format!(
                    "the payment gateway is unavailable: {e}"
                )));
            }
            Ok(Ok(o)) => o,
        };
        let details = ChangeDetails::default();
        match outcome {
            ChargeOutcome::Succeeded { reference } => {
                metrics::counter!("ordo_payments_total", "outcome" => "succeeded").increment(1);
                let note = ChangeDetails {
                    note: Some("payment succeeded".into()),
                    ..details
                };
                match self
                    .apply_known(
                        rec.order.id,
                        Some(rec.clone()),
                        Command::ConfirmPayment,
                        None,
                        &note,
                        Some(reference.clone()),
                        "system:payment",
                    )
                    .await
                {
                    Ok((rec, _)) => Ok(Payment::Paid(rec)),
                    // Canceled or expired while the gateway was busy: the money goes back.
                    Err(ApiError::InvalidTransition(_)) => {
                        let gone = self.refund_late(rec.order.id, reference).await?;
                        Err(ApiError::Conflict(format!(
                            "the order is {} and the payment was refunded",
                            gone.order.status
                        )))
                    }
                    Err(e) => Err(e),
                }
            }
            ChargeOutcome::Pending { reference } => {
                metrics::counter!("ordo_payments_total", "outcome" => "pending").increment(1);
                tracing::info!(order_id = %rec.order.id, %reference, "payment pending at the gateway");
                Ok(Payment::Pending(rec))
            }
            ChargeOutcome::Declined { reason } => {
                metrics::counter!("ordo_payments_total", "outcome" => "declined").increment(1);
                let note = ChangeDetails {
                    note: Some(format!("payment declined: {reason}")),
                    ..details
                };
                let (rec, _) = self
                    .apply_known(
                        rec.order.id,
                        Some(rec.clone()),
                        Command::FailPayment,
                        None,
                        &note,
                        None,
                        actor,
                    )
                    .await?;
                Ok(Payment::Declined(rec))
            }
        }
    }

    /// A payment the gateway reports as succeeded after the fact (a webhook). A `created`
    /// order becomes `placed`; an order that ended meanwhile gets its money back.
    pub async fn settle_success(&self, id: Uuid, reference: String) -> ApiResult<OrderRecord> {
        let note = ChangeDetails {
            note: Some("payment succeeded".into()),
            ..ChangeDetails::default()
        };
        let applied = self
            .apply(
                id,
                Command::ConfirmPayment,
                None,
                &note,
                Some(reference.clone()),
                "system:payment",
            )
            .await;
        match applied {
            Ok((rec, _)) => Ok(rec),
            Err(ApiError::InvalidTransition(_)) => self.refund_late(id, reference).await,
            Err(e) => Err(e),
        }
    }

    /// A payment the gateway reports as failed after the fact: a `created` order is
    /// canceled and its stock returns; any other order is left as it is.
    pub async fn settle_failure(&self, id: Uuid, reason: &str) -> ApiResult<OrderRecord> {
        let note = ChangeDetails {
            note: Some(format!("payment declined: {reason}")),
            ..ChangeDetails::default()
        };
        match self
            .apply(
                id,
                Command::FailPayment,
                None,
                &note,
                None,
                "system:payment",
            )
            .await
        {
            Ok((rec, _)) => Ok(rec),
            Err(ApiError::InvalidTransition(_)) => self.get_any(id).await,
            Err(e) => Err(e),
        }
    }

    /// Refunds a payment that succeeded after its order was canceled or expired; the order
    /// stays `canceled`, `payment_status` becomes `refunded`, and the timeline says so.
    /// Paid orders (already `placed`, or canceled and refunded by `cancel`) are left alone.
    async fn refund_late(&self, id: Uuid, reference: String) -> ApiResult<OrderRecord> {
        let rec = self.get_any(id).await?;
        let state = state_of(&rec)?;
        if state.status != OrderStatus::Canceled
            || !matches!(
                state.payment_status,
                PaymentStatus::Pending | PaymentStatus::Failed
            )
        {
            return Ok(rec);
        }
        tracing::warn!(order_id = %id, "payment succeeded after the order ended; refunding");
        let req = RefundRequest {
            idempotency_key: format!("refund-{id}"),
            reference: reference.clone(),
            amount: rec.order.total_amount,
            currency: rec.order.currency.clone(),
        };
        self.gateway
            .refund(&req)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        metrics::counter!("ordo_refunds_total").increment(1);
        let note = ChangeDetails {
            note: Some("late payment refunded".into()),
            ..ChangeDetails::default()
        };
        let (rec, _) = self
            .apply(
                id,
                Command::RefundLatePayment,
                None,
                &note,
                Some(reference),
                "system:payment",
            )
            .await?;
        Ok(rec)
    }

    /// Retries the refunds of canceled, paid orders (a refund that failed stays due until
    /// it succeeds). Returns how many went through.
    pub async fn retry_refunds(&self, batch: u32) -> ApiResult<usize> {
        let mut done = 0;
        for id in self.store.refunds_due(batch).await? {
            let rec = self.get_any(id).await?;
            match self.refund(rec, "system:refund").await {
                Ok(r) if r.order.payment_status == PaymentStatus::Refunded.as_str() => done += 1,
                Ok(_) => {}
                // Refunded meanwhile by another node: nothing left to do.
                Err(ApiError::InvalidTransition(_)) => {}
                Err(e) => tracing::warn!(order_id = %id, error = %e, "refund retry failed"),
            }
        }
        Ok(done)
    }

    async fn get_any(&self, id: Uuid) -> ApiResult<OrderRecord> {
        self.store.order(id).await?.ok_or(ApiError::NotFound)
    }

    pub async fn add_tracking(&self, rec: &OrderRecord, event: NewEvent) -> ApiResult<EventRow> {
        let state = state_of(rec)?;
        if matches!(state.status, OrderStatus::Created | OrderStatus::Canceled) {
            return Err(ApiError::InvalidTransition(format!(
                "an order that is {} has no shipment to track",
                state.status.as_str()
            )));
        }
        let event = NewEvent {
            event: TRACKING_EVENT,
            status: state.status.as_str().to_owned(),
            ..event
        };
        Ok(self
            .store
            .append_event(
                &rec.order,
                &NewEvent {
                    at: Some(event.at.unwrap_or_else(|| self.clock.ts())),
                    ..event
                },
            )
            .await?)
    }

    pub async fn events(&self, order_id: Uuid) -> ApiResult<Vec<EventRow>> {
        Ok(self.store.events(order_id).await?)
    }

    pub async fn list(
        &self,
        filter: &OrderFilter,
        after: Option<&OrderCursor>,
        limit: u32,
    ) -> ApiResult<(Vec<OrderRecord>, Option<OrderCursor>)> {
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

    /// Cancels `created` orders whose reservation ran out and returns their stock. Safe on
    /// many nodes at once: each cancellation is a compare-and-set on the order's version.
    pub async fn expire_due(&self, batch: u32) -> ApiResult<usize> {
        let ids = self.store.expired_orders(self.clock.ts(), batch).await?;
        let mut done = 0;
        for id in ids {
            let details = ChangeDetails {
                note: Some("reservation expired".into()),
                ..ChangeDetails::default()
            };
            match self
                .apply(
                    id,
                    Command::Expire,
                    Some(OrderStatus::Created),
                    &details,
                    None,
                    "system:expiry",
                )
                .await
            {
                Ok(_) => done += 1,
                // Paid or canceled meanwhile, by another node or a request.
                Err(
                    ApiError::Conflict(_) | ApiError::InvalidTransition(_) | ApiError::NotFound,
                ) => {}
                Err(e) => return Err(e),
            }
        }
        if done > 0 {
            metrics::counter!("ordo_reservations_expired_total").increment(done as u64);
        }
        Ok(done)
    }
}
