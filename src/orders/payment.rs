//! The payment saga of an order: reserve (placement) → charge (prepare, then confirm) →
//! `placed`; its compensations: stock back (decline, expiry, cancel) → void → refund.
//!
//! Every step that moves money is a row of `payment_transactions`, written before its
//! gateway call and settled in the same transaction as the order change it causes. A step
//! whose answer is not known (no answer in time, the gateway failing, the process dying)
//! stays `pending` with a time to look again: the saga job then asks the gateway where the
//! payment stands, by reference and with the same idempotency key, and never charges
//! twice. A charge still out when its order ends is voided; money that moved anyway
//! (a late success) is refunded; a refund that fails is retried until it goes through.

use std::time::Duration;

use uuid::Uuid;

use super::domain::{Command, OrderStatus, PaymentStatus};
use super::error::{OrderError, OrderResult};
use super::service::{Change, OrderService};
use super::store::{NewOrder, OrderRecord};
use crate::payments::store::{PaymentRow, PaymentWrite, TxnKind, TxnStatus};
use crate::payments::{ChargeOutcome, ChargeRequest, GatewayError, RefundRequest, VoidOutcome};
use crate::storage::Ts;

/// The outcome of a payment attempt.
pub enum Payment {
    Paid(OrderRecord),
    Declined(OrderRecord),
    /// The gateway did not answer in time; the order is still `created`.
    Pending(OrderRecord),
    /// The reservation ran out while the gateway was silent: the order is `canceled`, its
    /// stock is back, and a charge that still comes in will be voided or refunded.
    Expired(OrderRecord),
}

/// How long past the gateway timeout a step stays with the request that started it,
/// before the saga job may take it over.
const TAKEOVER_GRACE: Duration = Duration::from_secs(1);
/// The first and the longest wait between two looks at a step that is not settled.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// The wait before the next look at a step tried `attempts` times: doubling from
/// `FIRST_RETRY` up to `LONGEST_RETRY`, ±20 % so that nodes do not ask in step.
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.clamp(0, 6)).unwrap_or(0);
    let wait = FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(LONGEST_RETRY);
    wait.mul_f64(0.8 + 0.4 * rand::random::<f64>())
}

/// The gateway call of an order's charge with this payment method. The key is the
/// charge's own, plus the method: every call for one method is the same payment to the
/// gateway, and a charge that was never sent may start again with another method without
/// the gateway taking it for a changed repeat of the first.
fn charge_request(rec: &OrderRecord, method: &str) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: format!("{}-{method}", NewOrder::charge_key(rec.order.id)),
        order_id: rec.order.id.to_string(),
        amount: rec.order.total_amount,
        currency: rec.order.currency.clone(),
        payment_method: method.to_owned(),
    }
}

/// The answer to a gateway call with a deadline: `Err` says why there is none.
fn answered<T>(
    r: Result<Result<T, GatewayError>, tokio::time::error::Elapsed>,
) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the gateway did not answer in time".into()),
    }
}

impl OrderService {
    fn at(&self, d: Duration) -> Ts {
        Ts::truncated(self.clock.now() + d)
    }

    /// Has the order's reservation run out (whether or not the sweeper got to it yet)?
    pub(super) fn reservation_over(&self, rec: &OrderRecord) -> bool {
        rec.order.expires_at.is_some_and(|t| t <= self.clock.ts())
    }

    /// When the saga may take over a step that a request starts now.
    pub(super) fn charge_lease(&self, now: Ts) -> Ts {
        Ts::truncated(now.0 + self.payment_timeout + TAKEOVER_GRACE)
    }

    fn charge_step(&self, rec: &OrderRecord, status: TxnStatus) -> PaymentWrite {
        PaymentWrite {
            order_id: rec.order.id,
            kind: TxnKind::Charge,
            idempotency_key: NewOrder::charge_key(rec.order.id),
            method: None,
            amount: rec.order.total_amount,
            currency: rec.order.currency.clone(),
            status,
            reference: None,
            attempts: 0,
            error: None,
            next_attempt_at: None,
        }
    }

    /// A charge that is still out: the saga looks at it again after `wait`.
    fn charge_unsettled(
        &self,
        rec: &OrderRecord,
        reference: Option<String>,
        attempts: i32,
        error: Option<String>,
        wait: Duration,
    ) -> PaymentWrite {
        PaymentWrite {
            reference,
            attempts,
            error,
            next_attempt_at: Some(self.at(wait)),
            ..self.charge_step(rec, TxnStatus::Pending)
        }
    }

    /// The refund of an order's payment, owed from now on; `reference` is the charge's.
    pub(super) fn refund_step(&self, rec: &OrderRecord, reference: Option<String>) -> PaymentWrite {
        PaymentWrite {
            order_id: rec.order.id,
            kind: TxnKind::Refund,
            idempotency_key: format!("refund-{}", rec.order.id),
            method: None,
            amount: rec.order.total_amount,
            currency: rec.order.currency.clone(),
            status: TxnStatus::Pending,
            reference,
            attempts: 0,
            error: None,
            next_attempt_at: Some(self.at(self.payment_timeout + TAKEOVER_GRACE)),
        }
    }

    /// Charges a `created` order. Gateway latency holds no database connection and no lock:
    /// the reservation was committed before, the outcome is committed after.
    #[tracing::instrument(skip_all, fields(order_id = %rec.order.id))]
    pub async fn pay(
        &self,
        rec: OrderRecord,
        payment_method: String,
        actor: &str,
    ) -> OrderResult<Payment> {
        let not_payable = |status: OrderStatus| {
            OrderError::Refused(format!(
                "an order that is {} cannot be paid",
                status.as_str()
            ))
        };
        if rec.order.status != OrderStatus::Created {
            return Err(not_payable(rec.order.status));
        }
        if self.reservation_over(&rec) {
            return Err(OrderError::Refused(
                "the order's reservation has expired; it cannot be paid".into(),
            ));
        }
        // One charge per order: a second call while it is out gets 409 instead of
        // charging again.
        let now = self.clock.ts();
        let step = PaymentWrite {
            method: Some(payment_method.clone()),
            attempts: 1,
            next_attempt_at: Some(self.charge_lease(now)),
            ..self.charge_step(&rec, TxnStatus::Pending)
        };
        if !self.store.start_charge(&step, now).await? {
            let current = self.get_any(rec.order.id).await?;
            return Err(if current.order.status == OrderStatus::Created {
                OrderError::Conflict("a payment for this order is already in progress".into())
            } else {
                not_payable(current.order.status)
            });
        }
        self.charge(rec, payment_method, actor).await
    }

    /// Charges an order whose charge step is already recorded: by `pay`, or by placing it
    /// with a `payment_method` (the step is written by the placement itself).
    #[tracing::instrument(skip_all, fields(order_id = %rec.order.id))]
    pub async fn charge(
        &self,
        rec: OrderRecord,
        payment_method: String,
        actor: &str,
    ) -> OrderResult<Payment> {
        let req = charge_request(&rec, &payment_method);
        // A gateway call never outlives the reservation: past `expires_at` the answer could
        // no longer place the order.
        let left = rec.order.expires_at.map_or(self.payment_timeout, |t| {
            (t.0 - self.clock.now())
                .try_into()
                .unwrap_or(Duration::ZERO)
                .min(self.payment_timeout)
        });
        let deadline = tokio::time::Instant::now() + left;
        // Preparing moves no money: if it fails, the charge may simply start again.
        let reference =
            match answered(tokio::time::timeout_at(deadline, self.gateway.prepare(&req)).await) {
                Ok(r) => r,
                Err(why) => {
                    metrics::counter!("ordo_payments_total", "outcome" => "unavailable")
                        .increment(1);
                    let step = PaymentWrite {
                        error: Some(why.clone()),
                        ..self.charge_step(&rec, TxnStatus::Failed)
                    };
                    self.store.write_payment(&step, self.clock.ts()).await?;
                    return Err(OrderError::GatewayUnavailable(why.to_string()));
                }
            };
        if self.gateway.store_reference_before_confirm() {
            // From here on money may move: whatever happens, the saga can find it.
            let lease = self.charge_lease(self.clock.ts());
            let step = PaymentWrite {
                reference: Some(reference.clone()),
                next_attempt_at: Some(lease),
                ..self.charge_step(&rec, TxnStatus::Pending)
            };
            self.store.write_payment(&step, self.clock.ts()).await?;
        }
        crate::failpoint::hit("before_confirm");
        let answer =
            tokio::time::timeout_at(deadline, self.gateway.confirm(&req, &reference)).await;
        crate::failpoint::hit("after_confirm");
        match answer {
            Err(_) => {
                metrics::counter!("ordo_payments_total", "outcome" => "timeout").increment(1);
                let step = self.charge_unsettled(
                    &rec,
                    Some(reference),
                    0,
                    Some("the gateway did not answer in time".into()),
                    FIRST_RETRY,
                );
                self.store.write_payment(&step, self.clock.ts()).await?;
                self.unanswered(rec).await
            }
            Ok(Err(e)) => {
                metrics::counter!("ordo_payments_total", "outcome" => "unavailable").increment(1);
                // A breaker that is open sent nothing: the charge may start again. Any other
                // failure may have reached the gateway: the saga asks it what happened.
                let step = match e {
                    GatewayError::CircuitOpen => PaymentWrite {
                        error: Some(e.to_string()),
                        ..self.charge_step(&rec, TxnStatus::Failed)
                    },
                    GatewayError::Unavailable(_) => self.charge_unsettled(
                        &rec,
                        Some(reference),
                        0,
                        Some(e.to_string()),
                        FIRST_RETRY,
                    ),
                };
                self.store.write_payment(&step, self.clock.ts()).await?;
                Err(OrderError::GatewayUnavailable(e.to_string()))
            }
            Ok(Ok(outcome)) => self.settle(rec, outcome, actor, None).await,
        }
    }

    /// The answer to a charge the gateway left unanswered: the order as it is now. If the
    /// wait ended with the reservation, the order is expired here and then (as the sweeper
    /// would a moment later), so that the caller is never told it still holds stock.
    async fn unanswered(&self, rec: OrderRecord) -> OrderResult<Payment> {
        if self.reservation_over(&rec) {
            self.expire_due(100).await?;
        }
        let now = self.get_any(rec.order.id).await?;
        Ok(if now.order.status == OrderStatus::Created {
            Payment::Pending(now)
        } else {
            Payment::Expired(now)
        })
    }

    /// Records the gateway's answer about an order's charge. `poll` is the saga's row when
    /// the answer came from looking again (it counts as an attempt).
    async fn settle(
        &self,
        rec: OrderRecord,
        outcome: ChargeOutcome,
        actor: &str,
        poll: Option<&PaymentRow>,
    ) -> OrderResult<Payment> {
        let attempts = i32::from(poll.is_some());
        let id = rec.order.id;
        match outcome {
            ChargeOutcome::Succeeded { reference } => {
                metrics::counter!("ordo_payments_total", "outcome" => "succeeded").increment(1);
                let change = Change {
                    payment_reference: Some(reference.clone()),
                    payment: Some(PaymentWrite {
                        reference: Some(reference.clone()),
                        attempts,
                        ..self.charge_step(&rec, TxnStatus::Succeeded)
                    }),
                    ..Change::new(Command::ConfirmPayment, "system:payment")
                        .note("payment succeeded")
                };
                match self.change(id, Some(rec), change).await {
                    Ok((rec, _)) => Ok(Payment::Paid(rec)),
                    // Canceled or expired while the gateway was busy: the money goes back.
                    Err(OrderError::Refused(_)) => {
                        self.late_success(id, reference).await?;
                        Err(OrderError::Conflict(
                            "the order ended (canceled, or its reservation ran out) before the payment \
                             went through; the money is refunded"
                                .into(),
                        ))
                    }
                    Err(e) => Err(e),
                }
            }
            ChargeOutcome::Pending { reference } | ChargeOutcome::Unconfirmed { reference } => {
                metrics::counter!("ordo_payments_total", "outcome" => "pending").increment(1);
                tracing::info!(order_id = %id, %reference, "payment pending at the gateway");
                let wait = poll.map_or(FIRST_RETRY, |row| backoff(row.attempts));
                let step = self.charge_unsettled(&rec, Some(reference), attempts, None, wait);
                self.store.write_payment(&step, self.clock.ts()).await?;
                Ok(Payment::Pending(rec))
            }
            ChargeOutcome::Declined { reason } => {
                metrics::counter!("ordo_payments_total", "outcome" => "declined").increment(1);
                let step = PaymentWrite {
                    attempts,
                    error: Some(reason.clone()),
                    ..self.charge_step(&rec, TxnStatus::Failed)
                };
                let change = Change {
                    payment: Some(step.clone()),
                    ..Change::new(Command::FailPayment, actor)
                        .note(format!("payment declined: {reason}"))
                };
                match self.change(id, Some(rec), change).await {
                    Ok((rec, _)) => Ok(Payment::Declined(rec)),
                    // The order ended meanwhile; the decline only closes the charge.
                    Err(OrderError::Refused(_)) => {
                        self.store.write_payment(&step, self.clock.ts()).await?;
                        Ok(Payment::Declined(self.get_any(id).await?))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// A payment the gateway reports as succeeded after the fact (a webhook). A `created`
    /// order becomes `placed`; an order that ended meanwhile gets its money back.
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn settle_success(&self, id: Uuid, reference: String) -> OrderResult<OrderRecord> {
        let rec = self.get_any(id).await?;
        match self
            .settle(
                rec,
                ChargeOutcome::Succeeded { reference },
                "system:payment",
                None,
            )
            .await
        {
            Ok(
                Payment::Paid(rec)
                | Payment::Declined(rec)
                | Payment::Pending(rec)
                | Payment::Expired(rec),
            ) => Ok(rec),
            // Refunded: the order ended before the money came in.
            Err(OrderError::Conflict(_)) => self.get_any(id).await,
            Err(e) => Err(e),
        }
    }

    /// A payment the gateway reports as failed after the fact: a `created` order is
    /// canceled and its stock returns; any other order is left as it is.
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn settle_failure(&self, id: Uuid, reason: &str) -> OrderResult<OrderRecord> {
        let rec = self.get_any(id).await?;
        let outcome = ChargeOutcome::Declined {
            reason: reason.to_owned(),
        };
        if rec.order.status != OrderStatus::Created {
            return Ok(rec);
        }
        match self.settle(rec, outcome, "system:payment", None).await? {
            Payment::Paid(rec)
            | Payment::Declined(rec)
            | Payment::Pending(rec)
            | Payment::Expired(rec) => Ok(rec),
        }
    }

    /// Money that moved for an order that had ended (canceled or expired) goes back: the
    /// order stays `canceled`, `payment_status` becomes `refunded`, and the timeline says
    /// so. Orders whose payment is settled otherwise (placed, or refunded) are left alone.
    async fn late_success(&self, id: Uuid, reference: String) -> OrderResult<OrderRecord> {
        let rec = self.get_any(id).await?;
        let state = rec.order.state();
        if state.status != OrderStatus::Canceled
            || !matches!(
                state.payment_status,
                PaymentStatus::Pending | PaymentStatus::Failed
            )
        {
            return Ok(rec);
        }
        tracing::warn!(order_id = %id, "payment succeeded after the order ended; refunding");
        let now = self.clock.ts();
        // The refund is owed before the charge counts as settled: if the process stops
        // between the two writes, the saga still finds one or the other to act on.
        self.store
            .write_payment(&self.refund_step(&rec, Some(reference.clone())), now)
            .await?;
        let charge = PaymentWrite {
            reference: Some(reference.clone()),
            ..self.charge_step(&rec, TxnStatus::Succeeded)
        };
        self.store.write_payment(&charge, now).await?;
        self.pay_back(rec, reference, 0).await
    }

    /// Refunds a canceled, paid order. If the gateway fails, the order stays canceled with
    /// `payment_status` `paid`, and the saga retries the refund until it goes through.
    #[tracing::instrument(skip_all, fields(order_id = %rec.order.id))]
    pub(super) async fn refund(&self, rec: OrderRecord, _actor: &str) -> OrderResult<OrderRecord> {
        let Some(reference) = rec.order.payment_reference.clone() else {
            // A broken row: paid, with no charge to refund. The cancel is committed and
            // the refund step recorded; nothing is sent to the gateway (no empty
            // reference), and the saga reports the step as failing on every look
            // (`resume_refund`), logged and counted, until an operator mends the row.
            let e = corrupt(&rec, "paid without a payment reference");
            tracing::error!(error = %e, "a refund cannot be sent");
            metrics::counter!("ordo_refunds_unsendable_total").increment(1);
            return Ok(rec);
        };
        self.pay_back(rec, reference, 0).await
    }

    /// Sends the money of a canceled order back (`reference`: the charge), after
    /// `attempts` earlier tries; on success the order's payment becomes `refunded`.
    async fn pay_back(
        &self,
        rec: OrderRecord,
        reference: String,
        attempts: i32,
    ) -> OrderResult<OrderRecord> {
        let id = rec.order.id;
        let step = self.refund_step(&rec, None);
        let req = RefundRequest {
            idempotency_key: step.idempotency_key.clone(),
            reference: reference.clone(),
            amount: rec.order.total_amount,
            currency: rec.order.currency.clone(),
        };
        let answer =
            answered(tokio::time::timeout(self.payment_timeout, self.gateway.refund(&req)).await);
        let refund_id = match answer {
            Ok(refund_id) => refund_id,
            Err(why) => {
                tracing::error!(order_id = %id, error = %why, "refund failed; it will be retried");
                let retry = PaymentWrite {
                    attempts: 1,
                    error: Some(why),
                    next_attempt_at: Some(self.at(backoff(attempts))),
                    ..step
                };
                self.store.write_payment(&retry, self.clock.ts()).await?;
                return Ok(rec);
            }
        };
        metrics::counter!("ordo_refunds_total").increment(1);
        let done = PaymentWrite {
            status: TxnStatus::Succeeded,
            reference: Some(refund_id),
            attempts: 1,
            next_attempt_at: None,
            ..step
        };
        // Money taken for an order that was never placed (a late success) is a different
        // command from the refund of a paid order that was canceled.
        let late = rec.order.payment_status != PaymentStatus::Paid;
        let change = if late {
            Change {
                payment_reference: Some(reference),
                ..Change::new(Command::RefundLatePayment, "system:payment")
                    .note("late payment refunded")
            }
        } else {
            Change::new(Command::ConfirmRefund, "system:refund")
        };
        let change = Change {
            payment: Some(done.clone()),
            ..change
        };
        match self.change(id, None, change).await {
            Ok((rec, _)) => Ok(rec),
            // Refunded meanwhile (by another node): the step is done all the same.
            Err(OrderError::Refused(_)) => {
                self.store.write_payment(&done, self.clock.ts()).await?;
                self.get_any(id).await
            }
            Err(e) => Err(e),
        }
    }

    /// The saga job: takes the steps that are due (no answer yet, or a retry owed) and
    /// moves each one on. Safe on many nodes at once. Returns how many it looked at.
    #[tracing::instrument(skip_all)]
    pub async fn run_due_payments(&self, batch: u32) -> OrderResult<usize> {
        use futures::StreamExt;
        let now = self.clock.ts();
        // A step may take up to three gateway calls (prepare, retrieve, confirm), each
        // with its timeout: the lease covers them all, so no other node takes it meanwhile.
        let lease = Ts::truncated(now.0 + 3 * self.payment_timeout + TAKEOVER_GRACE);
        let rows = self.store.take_due_payments(now, lease, batch).await?;
        // Steps of different orders do not wait for each other (a gateway that hangs on
        // one does not hold up the rest).
        futures::stream::iter(&rows)
            .for_each_concurrent(16, |row| async move {
                let done = match row.kind.as_str() {
                    "charge" => self.resume_charge(row).await,
                    _ => self.resume_refund(row).await,
                };
                if let Err(e) = done {
                    tracing::warn!(order_id = %row.order_id, kind = row.kind.as_str(), error = %e, "payment step failed; it will be retried");
                }
            })
            .await;
        Ok(rows.len())
    }

    /// A charge nobody knows the outcome of: ask the gateway (the order is still
    /// `created`), or call it off (the order ended).
    async fn resume_charge(&self, row: &PaymentRow) -> OrderResult<()> {
        let rec = self.get_any(row.order_id).await?;
        let method = row
            .method
            .clone()
            .ok_or_else(|| corrupt(&rec, "a charge without a payment method"))?;
        let req = charge_request(&rec, &method);
        let status = rec.order.status;
        if !matches!(status, OrderStatus::Created | OrderStatus::Canceled) {
            // Settled otherwise (a webhook placed it): nothing left to ask.
            let step = self.charge_step(&rec, TxnStatus::Succeeded);
            self.store.write_payment(&step, self.clock.ts()).await?;
            return Ok(());
        }
        if status == OrderStatus::Created && self.reservation_over(&rec) {
            // The reservation ran out: the sweeper cancels the order first, and the charge
            // is voided after that. A success found now would place an expired order.
            return Ok(());
        }
        // Preparing again with the same key finds the same payment; it moves no money.
        let reference = match &row.gateway_reference {
            Some(r) => Ok(r.clone()),
            None => answered(
                tokio::time::timeout(self.payment_timeout, self.gateway.prepare(&req)).await,
            ),
        };
        let unsettled = |reference: Option<String>, why: String| {
            self.charge_unsettled(&rec, reference, 1, Some(why), backoff(row.attempts))
        };
        let reference = match reference {
            Ok(r) => r,
            Err(why) => {
                self.store
                    .write_payment(&unsettled(None, why), self.clock.ts())
                    .await?;
                return Ok(());
            }
        };
        if status == OrderStatus::Canceled {
            return self.void_charge(rec, &req, reference, row).await;
        }
        let timeout = self.payment_timeout;
        let mut answer =
            answered(tokio::time::timeout(timeout, self.gateway.retrieve(&req, &reference)).await);
        if let Ok(ChargeOutcome::Unconfirmed { .. }) = answer {
            // Prepared but never confirmed (the process stopped between the two): go on.
            answer = answered(
                tokio::time::timeout(timeout, self.gateway.confirm(&req, &reference)).await,
            );
        }
        match answer {
            Ok(outcome) => match self.settle(rec, outcome, "system:payment", Some(row)).await {
                Ok(_) | Err(OrderError::Conflict(_)) => Ok(()),
                Err(e) => Err(e),
            },
            Err(why) => {
                self.store
                    .write_payment(&unsettled(Some(reference), why), self.clock.ts())
                    .await?;
                Ok(())
            }
        }
    }

    /// Calls off the charge of an order that ended before it settled; if the money moved
    /// anyway, it is refunded.
    async fn void_charge(
        &self,
        rec: OrderRecord,
        req: &ChargeRequest,
        reference: String,
        row: &PaymentRow,
    ) -> OrderResult<()> {
        let answer = answered(
            tokio::time::timeout(self.payment_timeout, self.gateway.void(req, &reference)).await,
        );
        match answer {
            Ok(VoidOutcome::Voided) => {
                let step = PaymentWrite {
                    reference: Some(reference),
                    attempts: 1,
                    ..self.charge_step(&rec, TxnStatus::Voided)
                };
                self.store.write_payment(&step, self.clock.ts()).await?;
                tracing::info!(order_id = %rec.order.id, "charge voided");
            }
            Ok(VoidOutcome::Captured { reference }) => {
                self.late_success(rec.order.id, reference).await?;
            }
            Err(why) => {
                let step = self.charge_unsettled(
                    &rec,
                    Some(reference),
                    1,
                    Some(why),
                    backoff(row.attempts),
                );
                self.store.write_payment(&step, self.clock.ts()).await?;
            }
        }
        Ok(())
    }

    /// A refund still owed: try it again.
    async fn resume_refund(&self, row: &PaymentRow) -> OrderResult<()> {
        let rec = self.get_any(row.order_id).await?;
        let state = rec.order.state();
        let owed = state.status == OrderStatus::Canceled
            && state.payment_status != PaymentStatus::Refunded;
        if !owed {
            let done = PaymentWrite {
                status: TxnStatus::Succeeded,
                next_attempt_at: None,
                ..self.refund_step(&rec, None)
            };
            self.store.write_payment(&done, self.clock.ts()).await?;
            return Ok(());
        }
        let reference = row
            .gateway_reference
            .clone()
            .or_else(|| rec.order.payment_reference.clone())
            .ok_or_else(|| corrupt(&rec, "a refund owed without a charge reference"))?;
        self.pay_back(rec, reference, row.attempts).await?;
        Ok(())
    }

    /// An order's payment steps (the caller may see the order).
    #[tracing::instrument(skip_all, fields(order_id = %rec.order.id))]
    pub async fn payments_of(&self, rec: &OrderRecord) -> OrderResult<Vec<PaymentRow>> {
        Ok(self.store.payments_of(rec.order.id).await?)
    }
}

/// A stored order that breaks an invariant of the payment saga: an error of the store's
/// data, never a guess (an empty reference sent to the gateway).
fn corrupt(rec: &OrderRecord, what: &str) -> OrderError {
    OrderError::Store(crate::storage::Error::Corrupt(format!(
        "order {}: {what}",
        rec.order.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute_with_jitter() {
        for (attempts, base) in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (40, 60.0)] {
            let w = backoff(attempts).as_secs_f64();
            assert!(
                w >= base * 0.8 - 1e-9 && w <= base * 1.2 + 1e-9,
                "{attempts}: {w}"
            );
        }
    }
}
