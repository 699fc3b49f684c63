//! The order state machine, as pure functions: `decide` says what a command does to an
//! order (or why it may not), `apply` folds the resulting events into the state. No I/O.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Created,
    Placed,
    Processing,
    Shipped,
    Delivered,
    Canceled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Created,
        OrderStatus::Placed,
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Placed => "placed",
            OrderStatus::Processing => "processing",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    Pending,
    Paid,
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            PaymentStatus::Pending,
            PaymentStatus::Paid,
            PaymentStatus::Failed,
            PaymentStatus::Refunded,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// The part of an order the state machine judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
}

/// Something asked of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The gateway took the money.
    ConfirmPayment,
    /// The gateway declined.
    FailPayment,
    /// The unpaid reservation ran out.
    Expire,
    /// A customer (own order) or staff cancels.
    Cancel,
    /// Staff or an integration moves the order through fulfilment.
    Advance(OrderStatus),
    /// The refund of a canceled, paid order went through.
    ConfirmRefund,
    /// A payment that succeeded after the order was canceled (or expired) was refunded.
    RefundLatePayment,
}

/// What happened to an order; each one is applied to the state, and status changes are
/// written to the timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    StatusChanged {
        from: OrderStatus,
        to: OrderStatus,
    },
    PaymentStatusChanged {
        to: PaymentStatus,
    },
    /// The order's reserved units go back to stock.
    StockReleased,
    /// Money was taken and must go back through the gateway.
    RefundRequested,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {} cannot become {}", from.as_str(), to)]
pub struct TransitionError {
    pub from: OrderStatus,
    pub to: &'static str,
}

/// The order's status after a successful `Command`, for error messages.
fn target(cmd: Command) -> &'static str {
    match cmd {
        Command::ConfirmPayment => "placed",
        Command::FailPayment | Command::Expire | Command::Cancel => "canceled",
        Command::Advance(to) => to.as_str(),
        Command::ConfirmRefund | Command::RefundLatePayment => "refunded",
    }
}

/// The transition table of API.md.
pub fn decide(state: OrderState, cmd: Command) -> Result<Vec<Event>, TransitionError> {
    use OrderStatus as S;
    let refused = || TransitionError {
        from: state.status,
        to: target(cmd),
    };
    let to_canceled = |from| Event::StatusChanged {
        from,
        to: S::Canceled,
    };
    match (state.status, cmd) {
        (S::Created, Command::ConfirmPayment) => Ok(vec![
            Event::StatusChanged {
                from: S::Created,
                to: S::Placed,
            },
            Event::PaymentStatusChanged {
                to: PaymentStatus::Paid,
            },
        ]),
        (S::Created, Command::FailPayment) => Ok(vec![
            to_canceled(S::Created),
            Event::PaymentStatusChanged {
                to: PaymentStatus::Failed,
            },
            Event::StockReleased,
        ]),
        // No money was taken: the payment settles as `failed` (a charge that still comes
        // in is refunded, and the payment becomes `refunded`).
        (S::Created, Command::Expire | Command::Cancel | Command::Advance(S::Canceled)) => {
            Ok(vec![
                to_canceled(S::Created),
                Event::PaymentStatusChanged {
                    to: PaymentStatus::Failed,
                },
                Event::StockReleased,
            ])
        }
        (from @ (S::Placed | S::Processing), Command::Cancel | Command::Advance(S::Canceled)) => {
            let mut events = vec![to_canceled(from), Event::StockReleased];
            if state.payment_status == PaymentStatus::Paid {
                events.push(Event::RefundRequested);
            }
            Ok(events)
        }
        (S::Placed, Command::Advance(to @ (S::Processing | S::Shipped)))
        | (S::Processing, Command::Advance(to @ S::Shipped))
        | (S::Shipped, Command::Advance(to @ S::Delivered)) => Ok(vec![Event::StatusChanged {
            from: state.status,
            to,
        }]),
        (S::Canceled, Command::ConfirmRefund) if state.payment_status == PaymentStatus::Paid => {
            Ok(vec![Event::PaymentStatusChanged {
                to: PaymentStatus::Refunded,
            }])
        }
        (S::Canceled, Command::RefundLatePayment)
            if matches!(
                state.payment_status,
                PaymentStatus::Pending | PaymentStatus::Failed
            ) =>
        {
            Ok(vec![Event::PaymentStatusChanged {
                to: PaymentStatus::Refunded,
            }])
        }
        _ => Err(refused()),
    }
}

pub fn apply(state: OrderState, event: &Event) -> OrderState {
    match *event {
        Event::StatusChanged { to, .. } => OrderState {
            status: to,
            ..state
        },
        Event::PaymentStatusChanged { to } => OrderState {
            payment_status: to,
            ..state
        },
        Event::StockReleased | Event::RefundRequested => state,
    }
}

/// `decide`, then `apply` every event.
pub fn run(state: OrderState, cmd: Command) -> Result<(OrderState, Vec<Event>), TransitionError> {
    let events = decide(state, cmd)?;
    let next = events.iter().fold(state, apply);
    Ok((next, events))
}

/// A quantity of one order line: 1..=1000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity(i32);

impl Quantity {
    pub fn parse(v: i64) -> Option<Self> {
        (1..=1000).contains(&v).then_some(Quantity(v as i32))
    }
    pub fn get(self) -> i32 {
        self.0
    }
}

pub const MAX_LINES: usize = 100;

/// Carrier codes of a tracking scan; delivery services' own codes are mapped onto these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CarrierStatus {
    InfoReceived,
    InTransit,
    OutForDelivery,
    AttemptFailed,
    AvailableForPickup,
    Exception,
}

impl CarrierStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CarrierStatus::InfoReceived => "info_received",
            CarrierStatus::InTransit => "in_transit",
            CarrierStatus::OutForDelivery => "out_for_delivery",
            CarrierStatus::AttemptFailed => "attempt_failed",
            CarrierStatus::AvailableForPickup => "available_for_pickup",
            CarrierStatus::Exception => "exception",
        }
    }

    /// Accepts our codes and common synonyms used by carriers' APIs.
    pub fn parse(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Some(match norm.as_str() {
            "info_received" | "pre_transit" | "label_created" | "inforeceived" => {
                CarrierStatus::InfoReceived
            }
            "in_transit" | "intransit" | "transit" | "picked_up" => CarrierStatus::InTransit,
            "out_for_delivery" | "outfordelivery" => CarrierStatus::OutForDelivery,
            "attempt_failed" | "failed_attempt" | "attemptfail" | "delivery_attempted" => {
                CarrierStatus::AttemptFailed
            }
            "available_for_pickup" | "availableforpickup" | "ready_for_pickup" => {
                CarrierStatus::AvailableForPickup
            }
            "exception" | "failure" | "returned" | "return_to_sender" => CarrierStatus::Exception,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus as S;

    fn st(status: OrderStatus, payment_status: PaymentStatus) -> OrderState {
        OrderState {
            status,
            payment_status,
        }
    }

    /// Every (from, to) pair through `Advance`: exactly the fulfilment rows of the table
    /// (plus cancel) are allowed.
    #[test]
    fn advance_follows_the_table() {
        let allowed = [
            (S::Created, S::Canceled),
            (S::Placed, S::Processing),
            (S::Placed, S::Shipped),
            (S::Placed, S::Canceled),
            (S::Processing, S::Shipped),
            (S::Processing, S::Canceled),
            (S::Shipped, S::Delivered),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let pay = if from == S::Created {
                    PaymentStatus::Pending
                } else {
                    PaymentStatus::Paid
                };
                let result = run(st(from, pay), Command::Advance(to));
                if allowed.contains(&(from, to)) {
                    let (next, _) =
                        result.unwrap_or_else(|e| panic!("{from:?} -> {to:?} refused: {e}"));
                    assert_eq!(next.status, to);
                } else {
                    assert_eq!(
                        result,
                        Err(TransitionError {
                            from,
                            to: to.as_str()
                        }),
                        "{from:?} -> {to:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn staff_cannot_mark_an_order_placed() {
        assert!(
            decide(
                st(S::Created, PaymentStatus::Pending),
                Command::Advance(S::Placed)
            )
            .is_err()
        );
    }

    #[test]
    fn payment_succeeds_only_on_created_orders() {
        let (next, events) = run(
            st(S::Created, PaymentStatus::Pending),
            Command::ConfirmPayment,
        )
        .unwrap();
        assert_eq!(next, st(S::Placed, PaymentStatus::Paid));
        assert!(!events.contains(&Event::StockReleased));
        for from in [
            S::Placed,
            S::Processing,
            S::Shipped,
            S::Delivered,
            S::Canceled,
        ] {
            assert!(
                decide(st(from, PaymentStatus::Pending), Command::ConfirmPayment).is_err(),
                "{from:?}"
            );
        }
    }

    #[test]
    fn declined_payment_cancels_and_releases_stock() {
        let (next, events) =
            run(st(S::Created, PaymentStatus::Pending), Command::FailPayment).unwrap();
        assert_eq!(next, st(S::Canceled, PaymentStatus::Failed));
        assert!(events.contains(&Event::StockReleased));
        assert!(decide(st(S::Placed, PaymentStatus::Paid), Command::FailPayment).is_err());
    }

    #[test]
    fn expiry_cancels_only_created_orders() {
        let (next, events) = run(st(S::Created, PaymentStatus::Pending), Command::Expire).unwrap();
        assert_eq!(next, st(S::Canceled, PaymentStatus::Failed));
        assert_eq!(
            events
                .iter()
                .filter(|e| **e == Event::StockReleased)
                .count(),
            1
        );
        for from in [
            S::Placed,
            S::Processing,
            S::Shipped,
            S::Delivered,
            S::Canceled,
        ] {
            assert!(
                decide(st(from, PaymentStatus::Paid), Command::Expire).is_err(),
                "{from:?}"
            );
        }
    }

    #[test]
    fn cancel_releases_stock_once_and_refunds_paid_orders() {
        let (next, events) = run(st(S::Placed, PaymentStatus::Paid), Command::Cancel).unwrap();
        assert_eq!(next.status, S::Canceled);
        assert!(events.contains(&Event::StockReleased));
        assert!(events.contains(&Event::RefundRequested));
        // A second cancel is refused, so stock cannot come back twice.
        assert!(decide(next, Command::Cancel).is_err());
        let (_, events) = run(st(S::Created, PaymentStatus::Pending), Command::Cancel).unwrap();
        assert!(!events.contains(&Event::RefundRequested));
        for from in [S::Shipped, S::Delivered, S::Canceled] {
            assert!(
                decide(st(from, PaymentStatus::Paid), Command::Cancel).is_err(),
                "{from:?}"
            );
        }
    }

    #[test]
    fn refunds_are_confirmed_once() {
        let (next, _) = run(st(S::Canceled, PaymentStatus::Paid), Command::ConfirmRefund).unwrap();
        assert_eq!(next.payment_status, PaymentStatus::Refunded);
        assert!(decide(next, Command::ConfirmRefund).is_err());
        assert!(decide(st(S::Placed, PaymentStatus::Paid), Command::ConfirmRefund).is_err());
    }

    #[test]
    fn late_payments_are_refunded_only_on_unpaid_canceled_orders() {
        let (next, _) = run(
            st(S::Canceled, PaymentStatus::Pending),
            Command::RefundLatePayment,
        )
        .unwrap();
        assert_eq!(next, st(S::Canceled, PaymentStatus::Refunded));
        assert!(decide(next, Command::RefundLatePayment).is_err());
        assert!(
            decide(
                st(S::Canceled, PaymentStatus::Paid),
                Command::RefundLatePayment
            )
            .is_err()
        );
        assert!(
            decide(
                st(S::Created, PaymentStatus::Pending),
                Command::RefundLatePayment
            )
            .is_err()
        );
    }

    #[test]
    fn quantities_are_bounded() {
        assert!(Quantity::parse(0).is_none());
        assert!(Quantity::parse(1001).is_none());
        assert_eq!(Quantity::parse(1000).map(Quantity::get), Some(1000));
    }

    #[test]
    fn carrier_codes_map_onto_ours() {
        assert_eq!(
            CarrierStatus::parse("Out-For-Delivery"),
            Some(CarrierStatus::OutForDelivery)
        );
        assert_eq!(
            CarrierStatus::parse("pre_transit"),
            Some(CarrierStatus::InfoReceived)
        );
        assert_eq!(CarrierStatus::parse("teleported"), None);
    }
}
