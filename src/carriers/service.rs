//! Carrier operations: applying a tracking update to its order (through the order state
//! machine, so notifications, webhooks and live push follow as for a staff change), and
//! delivery estimates (a prediction when an order ships, the delivery time when it is
//! delivered).

use std::sync::Arc;

use uuid::Uuid;

use super::domain::{
    PREDICTION_WINDOW, Tag, carrier_key, carrier_keys, format_date, median_seconds, plan,
    predicted_date, same_carrier,
};
use super::store::{CarrierScan, ScanOutcome};
use crate::clock::Clock;
use crate::orders::domain::{Command, OrderStatus};
use crate::orders::error::OrderError;
use crate::orders::service::{ChangeDetails, OrderService};
use crate::orders::store::{NewEvent, OrderRow, TRACKING_EVENT};
use crate::storage::{DynStore, Error as StoreError, Ts};

/// What can go wrong with a carrier's update, in the carriers' terms; an HTTP answer only
/// at the edge (`impl From<CarrierError> for ApiError` in `http.rs`).
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// The update says the order is further on than it can get from where it is.
    #[error("the order is {}; it cannot become {}", .status.as_str(), .target.as_str())]
    Behind {
        status: OrderStatus,
        target: OrderStatus,
    },
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type CarrierResult<T> = Result<T, CarrierError>;

/// The provider name under which AfterShip's event ids are kept.
pub const AFTERSHIP: &str = "aftership";
/// How long a handled event id is kept (AfterShip retries for far less).
pub const EVENT_RETENTION: time::Duration = time::Duration::days(30);
/// Who carrier changes are recorded as, on the timeline.
pub const ACTOR: &str = "carrier:aftership";

/// A checkpoint of a shipment: a scan somewhere, at some time.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    pub at: Option<Ts>,
    pub message: Option<String>,
    pub location: Option<String>,
}

/// One tracking update, as the webhook parsed it.
#[derive(Clone, Debug)]
pub struct TrackingUpdate {
    pub event_id: String,
    pub tracking_number: String,
    pub slug: String,
    /// `None`: a tag this server does not know.
    pub tag: Option<Tag>,
    pub subtag_message: Option<String>,
    /// The latest checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// The carrier's estimate, `YYYY-MM-DD`.
    pub estimate: Option<String>,
}

/// What an update came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// This event id was handled before.
    Duplicate,
    /// No order has this carrier and tracking number.
    UnknownTrackingNumber,
    /// Acknowledged, nothing to do (an order that is not shipping, an unknown tag, a
    /// `Pending` shipment).
    Ignored(Uuid),
    Applied {
        order_id: Uuid,
        status: OrderStatus,
        scan_added: bool,
    },
}

/// Orders move forward only; `canceled` is not on the way.
fn rank(s: OrderStatus) -> u8 {
    match s {
        OrderStatus::Created => 0,
        OrderStatus::Placed => 1,
        OrderStatus::Processing => 2,
        OrderStatus::Shipped => 3,
        OrderStatus::Delivered => 4,
        OrderStatus::Canceled => 5,
    }
}

#[derive(Clone)]
pub struct CarrierService {
    store: DynStore,
    clock: Arc<dyn Clock>,
    orders: OrderService,
}

impl CarrierService {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, orders: OrderService) -> Self {
        CarrierService {
            store,
            clock,
            orders,
        }
    }

    /// The order an update is about: the newest with this tracking number whose carrier
    /// is the update's (by any of its names), preferring one that is shipping.
    async fn find_order(&self, u: &TrackingUpdate) -> CarrierResult<Option<OrderRow>> {
        let mut found: Vec<OrderRow> = self
            .store
            .orders_by_tracking_number(&u.tracking_number)
            .await?
            .into_iter()
            .filter(|o| {
                o.carrier
                    .as_deref()
                    .is_some_and(|c| same_carrier(&u.slug, c))
            })
            .collect();
        let live = found
            .iter()
            .position(|o| !matches!(o.status, OrderStatus::Created | OrderStatus::Canceled));
        let order = match live {
            Some(i) => Some(found.swap_remove(i)),
            None => found.into_iter().next(),
        };
        // A late update for an archived order: back to the live tables, where it changes.
        if let Some(o) = &order
            && o.archived
        {
            self.store.restore_order(o.id, self.clock.ts()).await?;
        }
        Ok(order)
    }

    /// Applies one tracking update. Safe to run twice (the event id, the order's status
    /// and the timeline's checkpoints are all checked), and on many nodes at once.
    #[tracing::instrument(skip_all, fields(event_id = %u.event_id, order_id = tracing::field::Empty))]
    pub async fn apply(&self, u: &TrackingUpdate) -> CarrierResult<Handled> {
        if self
            .store
            .carrier_event_seen(AFTERSHIP, &u.event_id)
            .await?
        {
            return Ok(Handled::Duplicate);
        }
        let now = self.clock.ts();
        let Some(mut order) = self.find_order(u).await? else {
            tracing::info!(
                event_id = %u.event_id, slug = %u.slug, tracking_number = %u.tracking_number,
                "carrier update for an unknown tracking number; acknowledged"
            );
            let new = self
                .store
                .record_carrier_event(AFTERSHIP, &u.event_id, None, "unknown_tracking_number", now)
                .await?;
            return Ok(if new {
                Handled::UnknownTrackingNumber
            } else {
                Handled::Duplicate
            });
        };
        let order_id = order.id;
        tracing::Span::current().record("order_id", tracing::field::display(order_id));
        let Some(tag) = u.tag else {
            tracing::warn!(
                event_id = %u.event_id, slug = %u.slug,
                "carrier update with a tag this server does not know; acknowledged"
            );
            return self.ignore(u, order_id, "unknown_tag").await;
        };
        let status = order.status;
        let p = plan(status, tag);
        if p.advance.is_empty() && !p.scan {
            if matches!(status, OrderStatus::Created | OrderStatus::Canceled) {
                tracing::info!(order_id = %order_id, status = status.as_str(), "carrier update for an order that is not shipping; acknowledged");
            }
            return self.ignore(u, order_id, "ignored").await;
        }
        let cp = u.checkpoint.clone().unwrap_or_default();
        for target in p.advance {
            let details = ChangeDetails {
                note: match target {
                    OrderStatus::Delivered => cp
                        .message
                        .clone()
                        .or_else(|| u.subtag_message.clone())
                        .or_else(|| Some(tag.words().to_owned())),
                    _ => Some("the carrier has the parcel".to_owned()),
                },
                location: (target == OrderStatus::Delivered)
                    .then(|| cp.location.clone())
                    .flatten(),
                ..ChangeDetails::default()
            };
            match self
                .orders
                .apply(order_id, Command::Advance(target), None, &details, ACTOR)
                .await
            {
                Ok(rec) => order = rec.order,
                // Someone (staff, another delivery of this update) moved it meanwhile.
                Err(OrderError::Refused(_) | OrderError::Conflict(_)) => {
                    order = self
                        .store
                        .order(order_id)
                        .await?
                        .ok_or(OrderError::NotFound)?
                        .order;
                    if rank(order.status) < rank(target) {
                        return Err(CarrierError::Behind {
                            status: order.status,
                            target,
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let status = order.status;
        let scan = p.scan.then(|| NewEvent {
            event: TRACKING_EVENT,
            status: status.as_str().to_owned(),
            description: cp
                .message
                .clone()
                .or_else(|| u.subtag_message.clone())
                .or_else(|| Some(tag.words().to_owned())),
            location: cp.location.clone(),
            carrier_status: tag.carrier_status().map(|c| c.as_str().to_owned()),
            estimated_delivery: u.estimate.clone(),
            carrier: order.carrier.clone(),
            tracking_number: order.tracking_number.clone(),
            actor: Some(ACTOR.to_owned()),
            at: Some(cp.at.unwrap_or(now)),
            ..NewEvent::default()
        });
        // A delivered order keeps the estimate it had.
        let estimate = u
            .estimate
            .clone()
            .filter(|_| status != OrderStatus::Delivered);
        let outcome = self
            .store
            .apply_carrier_scan(&CarrierScan {
                provider: AFTERSHIP,
                event_id: &u.event_id,
                order_id,
                scan,
                estimate,
                outcome: "applied",
                at: now,
            })
            .await?;
        Ok(match outcome {
            ScanOutcome::Duplicate => Handled::Duplicate,
            ScanOutcome::Applied { order: o, event } => Handled::Applied {
                order_id,
                status: o.map_or(order.status, |o| o.status),
                scan_added: event.is_some(),
            },
        })
    }

    async fn ignore(
        &self,
        u: &TrackingUpdate,
        order_id: Uuid,
        why: &str,
    ) -> CarrierResult<Handled> {
        let new = self
            .store
            .record_carrier_event(AFTERSHIP, &u.event_id, Some(order_id), why, self.clock.ts())
            .await?;
        Ok(if new {
            Handled::Ignored(order_id)
        } else {
            Handled::Duplicate
        })
    }
}

/// Delivery estimates, kept up by the order service after each status change: a shipped
/// order without the carrier's own estimate gets a prediction, and a delivered order adds
/// how long it took to its carrier's history. Neither is on the path of placing an order;
/// neither fails the change that caused it (a failure is logged).
#[derive(Clone)]
pub struct Estimates {
    store: DynStore,
}

impl Estimates {
    pub fn new(store: DynStore) -> Self {
        Estimates { store }
    }

    /// After `order` became `to`; returns the order again if its estimate changed.
    #[tracing::instrument(skip_all, fields(order_id = %order.id, to = to.as_str()))]
    pub async fn after_change(&self, order: &OrderRow, to: OrderStatus) -> Option<OrderRow> {
        let result = match to {
            OrderStatus::Shipped => self.predict(order).await,
            OrderStatus::Delivered => self.record(order).await.map(|()| None),
            _ => Ok(None),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(order_id = %order.id, error = %e, "keeping the delivery estimate failed");
            None
        })
    }

    /// The median time from shipped to delivered of the carrier's latest
    /// `PREDICTION_WINDOW` deliveries, from the time the order shipped; nothing with
    /// fewer than three of them, or when the carrier gave its own estimate.
    async fn predict(&self, order: &OrderRow) -> crate::storage::Result<Option<OrderRow>> {
        if order.estimated_delivery_source.as_deref() == Some("carrier") {
            return Ok(None);
        }
        let Some(carrier) = order.carrier.as_deref() else {
            return Ok(None);
        };
        let seconds = self
            .store
            .delivery_seconds(&carrier_keys(carrier), PREDICTION_WINDOW)
            .await?;
        let Some(date) =
            median_seconds(seconds).and_then(|m| predicted_date(order.updated_at.0, m))
        else {
            return Ok(None);
        };
        self.store
            .set_predicted_delivery(order.id, &format_date(date))
            .await
    }

    async fn record(&self, order: &OrderRow) -> crate::storage::Result<()> {
        let Some(key) = order
            .carrier
            .as_deref()
            .map(carrier_key)
            .filter(|k| !k.is_empty())
        else {
            return Ok(());
        };
        let Some(shipped_at) = self.store.shipped_at(order.id).await? else {
            return Ok(());
        };
        self.store
            .record_delivery_time(order.id, &key, shipped_at, order.updated_at)
            .await
    }
}
