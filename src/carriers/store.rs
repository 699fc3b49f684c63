//! Storage of carrier updates: the event ids already handled, the scan and the carrier's
//! estimate written with the event id in one transaction, orders by tracking number,
//! delivery times per carrier and predicted dates.

use async_trait::async_trait;
use uuid::Uuid;

use crate::orders::store::{EventRow, NewEvent, OrderRow};
use crate::storage::{Result, Ts};

/// A carrier update for one order, written in one transaction.
#[derive(Clone, Debug)]
pub struct CarrierScan<'a> {
    pub provider: &'static str,
    pub event_id: &'a str,
    pub order_id: Uuid,
    /// A timeline entry, unless a tracking event with the same time and description is
    /// on the timeline already.
    pub scan: Option<NewEvent>,
    /// The carrier's own estimate, `YYYY-MM-DD`.
    pub estimate: Option<String>,
    pub outcome: &'static str,
    pub at: Ts,
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a short-lived return value, moved once"
)]
pub enum ScanOutcome {
    /// This event id was handled before: nothing was written.
    Duplicate,
    Applied {
        order: Option<OrderRow>,
        /// The new timeline entry (none when it was there already).
        event: Option<EventRow>,
    },
}

#[async_trait]
pub trait CarrierStore {
    async fn carrier_event_seen(&self, provider: &str, event_id: &str) -> Result<bool>;
    /// Records an event id as handled; false if it was already.
    async fn record_carrier_event(
        &self,
        provider: &str,
        event_id: &str,
        order_id: Option<Uuid>,
        outcome: &str,
        at: Ts,
    ) -> Result<bool>;
    /// The event id, the scan (if new) and the estimate, all or nothing.
    async fn apply_carrier_scan(&self, s: &CarrierScan<'_>) -> Result<ScanOutcome>;
    /// Orders with this tracking number, newest first.
    async fn orders_by_tracking_number(&self, tracking_number: &str) -> Result<Vec<OrderRow>>;
    /// Sets a predicted date, unless the carrier gave its own.
    async fn set_predicted_delivery(&self, order_id: Uuid, date: &str) -> Result<Option<OrderRow>>;
    /// When the order was last shipped (its timeline).
    async fn shipped_at(&self, order_id: Uuid) -> Result<Option<Ts>>;
    /// Records how long a delivered order took (once per order).
    async fn record_delivery_time(
        &self,
        order_id: Uuid,
        carrier_key: &str,
        shipped_at: Ts,
        delivered_at: Ts,
    ) -> Result<()>;
    /// Seconds from shipped to delivered of the latest `limit` deliveries by these
    /// carrier keys, newest first.
    async fn delivery_seconds(&self, keys: &[String], limit: u32) -> Result<Vec<i64>>;
    /// Forgets event ids received before `before`.
    async fn prune_carrier_events(&self, before: Ts) -> Result<u64>;
}

#[path = "."]
mod sqlite {
    use crate::orders::store::sqlite::insert_event;
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}

#[path = "."]
mod postgres {
    use crate::orders::store::postgres::insert_event;
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}
