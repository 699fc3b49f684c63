//! Storage of notification preferences, webhook endpoints, the delivery queue and push
//! receipts.

use async_trait::async_trait;
use uuid::Uuid;

use super::domain::{Channel, DeliveryStatus, Preferences};
use crate::books::domain::NewAudit;
use crate::orders::store::EventRow;
use crate::storage::{Result, Ts};

crate::storage::text_column!(Channel, DeliveryStatus);

/// A row of the delivery queue.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: i64,
    pub channel: Channel,
    pub recipient: Uuid,
    pub target: Option<String>,
    pub kind: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub detail: Option<String>,
    pub next_attempt_at: Option<Ts>,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub sent_at: Option<Ts>,
}

pub(crate) const DELIVERY_COLUMNS: &str = "id, event_id, channel, recipient, target, kind, status, attempts, \
     last_error, detail, next_attempt_at, created_at, updated_at, sent_at";

/// A delivery to make (`pending`, due at `due`), or one settled as it is queued
/// (`recorded`: no provider is configured, so it is recorded instead of sent).
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub event_id: i64,
    pub channel: &'static str,
    pub recipient: Uuid,
    pub target: Option<String>,
    pub kind: String,
    pub due: Ts,
    pub recorded: Option<&'static str>,
}

/// The outcome of an attempt (or a look, which does not count as one).
#[derive(Clone, Debug)]
pub struct DeliveryUpdate {
    pub status: DeliveryStatus,
    /// Added to the stored count.
    pub attempts: i32,
    pub last_error: Option<String>,
    pub detail: Option<String>,
    pub next_attempt_at: Option<Ts>,
    pub sent_at: Option<Ts>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub url: String,
    /// The event types it wants (`*`: all), stored as a JSON array.
    #[sqlx(try_from = "String")]
    pub events: EventTypes,
    pub description: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<Ts>,
    pub created_by: String,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub deleted_at: Option<Ts>,
}

pub(crate) const ENDPOINT_COLUMNS: &str = "id, url, events, description, secret, previous_secret, \
     previous_secret_expires_at, created_by, created_at, updated_at, deleted_at";

/// A webhook endpoint's event types, decoded once at the store. A stored text that is not
/// a JSON array of strings is kept as it is, as an error: reading that endpoint is a 500
/// (`list`), and the notifier gives it nothing, logged and counted
/// (`ordo_webhook_endpoints_unreadable_total`), while every other endpoint and customer
/// goes on being notified. Never an endpoint that silently wants nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventTypes(Result<Vec<String>, String>);

impl From<String> for EventTypes {
    fn from(stored: String) -> Self {
        EventTypes(serde_json::from_str(&stored).map_err(|_| stored))
    }
}

impl EventTypes {
    pub fn new(types: Vec<String>) -> Self {
        EventTypes(Ok(types))
    }

    /// The types, or the store's error for a stored text that is not a list of them.
    pub fn list(&self) -> Result<&[String], crate::storage::Error> {
        self.0.as_deref().map_err(|stored| {
            crate::storage::Error::Corrupt(format!("webhook event types {stored:?}"))
        })
    }

    /// The stored form, a JSON array (or the unreadable text, unchanged).
    pub fn to_json(&self) -> String {
        match &self.0 {
            Ok(types) => serde_json::Value::from(types.clone()).to_string(),
            Err(stored) => stored.clone(),
        }
    }
}

impl EndpointRow {
    pub fn wants(&self, kind: &str) -> bool {
        match self.events.list() {
            Ok(types) => types.iter().any(|t| t == "*" || t == kind),
            Err(e) => {
                tracing::error!(endpoint_id = %self.id, error = %e, "a webhook endpoint cannot be read; it gets nothing until mended");
                metrics::counter!("ordo_webhook_endpoints_unreadable_total").increment(1);
                false
            }
        }
    }
}

/// A message from the shop to one customer.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ShopMessageRow {
    pub id: i64,
    pub customer_id: Uuid,
    pub order_id: Option<Uuid>,
    pub message: String,
    pub actor: String,
    pub created_at: Ts,
}

/// Shop messages' deliveries take `event_id` = -(the message's id): order events have
/// positive ids, so the queue's key (event, channel, recipient) keeps both apart.
pub fn message_event_id(message_id: i64) -> i64 {
    -message_id
}

/// The message a delivery carries, if it carries one.
pub fn message_id_of(d: &DeliveryRow) -> Option<i64> {
    (d.event_id < 0).then_some(-d.event_id)
}

#[async_trait]
pub trait NotificationStore {
    /// Records a shop message and queues its deliveries (their `event_id` is set here), in
    /// one transaction; returns the message's id and the deliveries.
    async fn insert_shop_message(
        &self,
        customer_id: Uuid,
        order_id: Option<Uuid>,
        message: &str,
        actor: &str,
        deliveries: &[NewDelivery],
        at: Ts,
    ) -> Result<(i64, Vec<DeliveryRow>)>;
    async fn shop_message(&self, id: i64) -> Result<Option<ShopMessageRow>>;
    async fn preferences(&self, user: Uuid) -> Result<Option<Preferences>>;
    async fn set_preferences(&self, user: Uuid, p: Preferences, at: Ts) -> Result<()>;
    /// Queues deliveries; one that exists already (same event, channel and recipient) is
    /// left alone. Returns how many were new.
    async fn insert_deliveries(&self, d: &[NewDelivery], at: Ts) -> Result<u64>;
    /// Takes up to `limit` deliveries due at `now`, moving their next look to
    /// `lease_until` so that no other node takes them meanwhile.
    async fn take_due_deliveries(
        &self,
        now: Ts,
        lease_until: Ts,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>>;
    async fn update_delivery(&self, id: Uuid, u: &DeliveryUpdate, at: Ts) -> Result<()>;
    async fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRow>>;
    /// Deliveries to `recipient`, newest first, after the cursor (created_at, id).
    async fn deliveries_to(
        &self,
        recipient: Uuid,
        channel: Option<&str>,
        before: Option<(Ts, Uuid)>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>>;
    /// Makes a delivery that ended (`sent` or `dead`) pending again and due now (by hand);
    /// the same id is kept. False for one still being tried.
    async fn requeue_delivery(&self, id: Uuid, now: Ts) -> Result<bool>;
    /// Waiting deliveries per channel.
    async fn queue_depth(&self) -> Result<Vec<(String, i64)>>;
    async fn record_push_receipts(&self, receipts: &[(i64, Uuid)], at: Ts) -> Result<()>;
    async fn push_received(&self, event_id: i64, user: Uuid) -> Result<bool>;
    async fn event(&self, id: i64) -> Result<Option<EventRow>>;
    /// Inserts the endpoint and its audit entry in one transaction.
    async fn insert_endpoint(&self, e: &EndpointRow, audit: &NewAudit) -> Result<()>;
    async fn endpoint(&self, id: Uuid) -> Result<Option<EndpointRow>>;
    /// Endpoints not deleted, oldest first.
    async fn endpoints(&self) -> Result<Vec<EndpointRow>>;
    async fn rotate_endpoint_secret(
        &self,
        id: Uuid,
        secret: &str,
        previous_until: Ts,
        at: Ts,
    ) -> Result<bool>;
    async fn delete_endpoint(&self, id: Uuid, audit: &NewAudit) -> Result<bool>;
}

#[path = "."]
mod sqlite {
    use crate::books::store::sqlite::append_audit;
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}

#[path = "."]
mod postgres {
    use crate::books::store::postgres::append_audit;
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}
