//! Storage of orders, their lines and their timeline (the `order_events` table, which is
//! also the outbox later stages publish from).

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use crate::orders::domain::{OrderState, OrderStatus, PaymentStatus};
use crate::payments::store::PaymentWrite;
use crate::storage::{Result, Ts};

// Statuses decode into the state machine's types (see `storage::text_column`).
crate::storage::text_column!(OrderStatus, PaymentStatus);

crate::storage::columns!(
    /// The columns of `OrderRow`, in order.
    pub(crate) ORDER_FIELDS, pub(crate) ORDER_COLUMNS = "o":
    id, customer_id, status, payment_status, total_amount, currency, shipping_address, carrier,
    tracking_number, payment_method, payment_reference, version, created_at, updated_at,
    expires_at, estimated_delivery, estimated_delivery_source
);

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub total_amount: i64,
    pub currency: String,
    pub shipping_address: Option<Json<serde_json::Value>>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub payment_method: Option<String>,
    pub payment_reference: Option<String>,
    /// Moves with every change of the row (every `UPDATE orders` sets `version = version +
    /// 1`), so `(id, version)` names one state of the order: the key of cached pages and of
    /// `ETag`s. Lines never change after placement.
    pub version: i64,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub expires_at: Option<Ts>,
    /// `YYYY-MM-DD`: the carrier's estimate, or a prediction (see `carriers`).
    pub estimated_delivery: Option<String>,
    /// `carrier` or `predicted`.
    pub estimated_delivery_source: Option<String>,
    /// Read from the order history (`history`): a change moves it back first. Not part of
    /// the order as callers see it.
    #[sqlx(default)]
    pub archived: bool,
}

impl OrderRow {
    /// The part of the order the state machine judges.
    pub fn state(&self) -> OrderState {
        OrderState {
            status: self.status,
            payment_status: self.payment_status,
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OrderLineRow {
    pub line_no: i32,
    pub item_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub unit_price: i64,
    pub line_total: i64,
}

/// An order with its lines.
#[derive(Clone, Debug)]
pub struct OrderRecord {
    pub order: OrderRow,
    pub lines: Vec<OrderLineRow>,
}

/// The columns of `EventRow`, in order.
pub(crate) const EVENT_COLUMNS: &str = "id, order_id, customer_id, event, status, previous_status, note, location, carrier, \
     tracking_number, description, carrier_status, estimated_delivery, actor, at";

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub event: String,
    pub status: String,
    pub previous_status: Option<String>,
    pub note: Option<String>,
    pub location: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub description: Option<String>,
    pub carrier_status: Option<String>,
    pub estimated_delivery: Option<String>,
    pub actor: Option<String>,
    pub at: Ts,
}

pub const STATUS_EVENT: &str = "order_status_update";
pub const TRACKING_EVENT: &str = "order_tracking_update";

/// A timeline entry to append.
#[derive(Clone, Debug, Default)]
pub struct NewEvent {
    pub event: &'static str,
    pub status: String,
    pub previous_status: Option<String>,
    pub note: Option<String>,
    pub location: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub description: Option<String>,
    pub carrier_status: Option<String>,
    pub estimated_delivery: Option<String>,
    pub actor: Option<String>,
    pub at: Option<Ts>,
}

/// An order to place. Lines are in the customer's order; the store reserves them in item
/// id order, so that two orders over the same items never wait on each other in a cycle.
#[derive(Clone, Debug)]
pub struct NewOrder {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub lines: Vec<(Uuid, i32)>,
    pub shipping_address: Option<serde_json::Value>,
    pub payment_method: Option<String>,
    pub created_at: Ts,
    pub expires_at: Ts,
    /// With a payment method, placing starts the charge: when the saga looks at it, if
    /// nothing answered by then.
    pub charge_due_at: Ts,
    pub actor: String,
    /// A checkout from the customer's cart: the cart version its lines were read at. The
    /// order is placed only if the cart is still at that version, and the cart is emptied
    /// in the same transaction (`None`: an order placed directly, which costs nothing more).
    pub cart_version: Option<i64>,
}

impl NewOrder {
    /// The idempotency key of an order's charge: the same for every call of it.
    pub fn charge_key(id: Uuid) -> String {
        format!("charge-{id}")
    }
}

/// A reserved line as both native placements return it: line number, item id, SKU, name,
/// quantity, unit price, line total, currency.
pub(crate) type ReservedLine = (i32, Uuid, String, String, i32, i64, i64, String);

impl NewOrder {
    /// The order as a successful placement stored it, from its reserved lines.
    pub(crate) fn placed(&self, rows: Vec<ReservedLine>) -> OrderRecord {
        let currency = rows.first().map(|r| r.7.clone()).unwrap_or_default();
        let lines: Vec<OrderLineRow> = rows
            .into_iter()
            .map(
                |(line_no, item_id, sku, name, quantity, unit_price, line_total, _)| OrderLineRow {
                    line_no,
                    item_id,
                    sku,
                    name,
                    quantity,
                    unit_price,
                    line_total,
                },
            )
            .collect();
        let order = OrderRow {
            id: self.id,
            customer_id: self.customer_id,
            status: OrderStatus::Created,
            payment_status: PaymentStatus::Pending,
            total_amount: lines.iter().map(|l| l.line_total).sum(),
            currency,
            shipping_address: self.shipping_address.clone().map(Json),
            carrier: None,
            tracking_number: None,
            payment_method: self.payment_method.clone(),
            payment_reference: None,
            version: 0,
            created_at: self.created_at,
            updated_at: self.created_at,
            expires_at: Some(self.expires_at),
            estimated_delivery: None,
            estimated_delivery_source: None,
            archived: false,
        };
        OrderRecord { order, lines }
    }
}

/// A transition as the group-commit workers take it: the order's id and the version it
/// was read at, the update, the lines to give back to stock (in item id order) and the
/// timeline rows.
#[derive(Debug)]
pub(crate) struct TransitionJob {
    pub(crate) id: Uuid,
    pub(crate) version: i64,
    pub(crate) update: OrderUpdate,
    pub(crate) release: Vec<(Uuid, i32)>,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) at: Ts,
}

impl TransitionJob {
    pub(crate) fn new(
        current: &OrderRecord,
        u: &OrderUpdate,
        release_stock: bool,
        events: &[NewEvent],
        at: Ts,
    ) -> Self {
        let mut release: Vec<(Uuid, i32)> = if release_stock {
            current
                .lines
                .iter()
                .map(|l| (l.item_id, l.quantity))
                .collect()
        } else {
            Vec::new()
        };
        release.sort_by_key(|l| l.0);
        TransitionJob {
            id: current.order.id,
            version: current.order.version,
            update: u.clone(),
            release,
            events: events.to_vec(),
            at,
        }
    }
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a short-lived return value, moved once"
)]
pub enum PlaceOutcome {
    Placed(OrderRecord),
    /// The item of this line (index into `NewOrder::lines`) does not exist.
    UnknownItem(usize),
    /// This line cannot be reserved; nothing was.
    InsufficientStock(usize),
    /// The items are priced in more than one currency.
    MixedCurrencies,
    /// A checkout whose cart changed after its lines were read (another checkout, or a
    /// change to the cart); nothing was reserved.
    CartChanged,
}

/// New values of an order after a transition; `None` keeps the stored value.
#[derive(Clone, Debug, Default)]
pub struct OrderUpdate {
    pub status: String,
    pub payment_status: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub payment_reference: Option<String>,
    /// A payment step written in the same transaction.
    pub payment: Option<PaymentWrite>,
}

/// What the expiry sweeper writes for each order whose reservation ran out.
#[derive(Clone, Debug)]
pub struct Expiry {
    pub status: &'static str,
    pub payment_status: &'static str,
    pub event: NewEvent,
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a short-lived return value, moved once"
)]
pub enum TransitionOutcome {
    Applied(OrderRow),
    /// The order changed since it was read (its version moved on): read it again.
    Stale,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OrderFilter {
    pub statuses: Vec<String>,
    pub customer_id: Option<Uuid>,
    pub created_after: Option<Ts>,
    pub created_before: Option<Ts>,
    /// An order id.
    pub order_id: Option<Uuid>,
    /// A prefix of the customer's e-mail (lower case).
    pub email_prefix: Option<String>,
}

/// Where the previous page ended (lists are newest first).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCursor {
    #[serde(rename = "t")]
    pub created_at_us: i64,
    pub id: Uuid,
}

#[async_trait]
pub trait OrderStore {
    /// Reserves every line and records the order and its `created` event in one
    /// transaction: all or nothing.
    async fn place_order(&self, order: &NewOrder) -> Result<PlaceOutcome>;
    /// Places the orders in one transaction (group commit), deciding each as if they
    /// had been placed one after another in this order: a refused order reserves nothing
    /// and does not stop the others. One outcome per order, in order. The group-commit
    /// workers run this; it is public so that tests can form a batch of their choosing.
    async fn place_orders(&self, batch: Vec<NewOrder>) -> Vec<Result<PlaceOutcome>>;
    async fn order(&self, id: Uuid) -> Result<Option<OrderRecord>>;
    /// Compare-and-set on `expected_version`; optionally returns the order's units to
    /// stock; appends `events`; all in one transaction.
    async fn transition(
        &self,
        current: &OrderRecord,
        update: &OrderUpdate,
        release_stock: bool,
        events: &[NewEvent],
        at: Ts,
    ) -> Result<TransitionOutcome>;
    async fn append_event(&self, order: &OrderRow, event: &NewEvent) -> Result<EventRow>;
    async fn events(&self, order_id: Uuid) -> Result<Vec<EventRow>>;
    async fn list_orders(
        &self,
        filter: &OrderFilter,
        after: Option<&OrderCursor>,
        limit: u32,
    ) -> Result<Vec<OrderRecord>>;
    /// The ids and versions of the orders `list_orders` would return, in its order: what a
    /// cached page is checked against.
    async fn list_versions(
        &self,
        filter: &OrderFilter,
        after: Option<&OrderCursor>,
        limit: u32,
    ) -> Result<Vec<(Uuid, i64)>>;
    /// An order's customer and version, for a conditional read.
    async fn order_version(&self, id: Uuid) -> Result<Option<(Uuid, i64)>>;
    /// Ends up to `limit` `created` orders whose reservation ran out, in one transaction:
    /// status, stock back, the timeline, and any pending charge made due (to be voided).
    /// On PostgreSQL, rows another node is expiring are skipped (`SKIP LOCKED`).
    async fn expire_orders(&self, now: Ts, limit: u32, expiry: &Expiry) -> Result<Vec<Uuid>>;
}

#[path = "."]
pub(crate) mod sqlite {
    use super::{NewEvent, OrderRecord, OrderUpdate, TransitionJob, TransitionOutcome};
    use crate::payments::store::sqlite::bind_write;
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    use crate::storage::{Result, Ts};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
    pub(crate) use queries::{apply_transition, insert_event};

    impl Backend {
        /// SQLite has no data-modifying CTEs: transitions use the portable transaction,
        /// shared by concurrent transitions (`transition_sqlite`).
        async fn transition_fast(
            &self,
            current: &OrderRecord,
            u: &OrderUpdate,
            release_stock: bool,
            events: &[NewEvent],
            at: Ts,
        ) -> Option<Result<TransitionOutcome>> {
            let job = TransitionJob::new(current, u, release_stock, events, at);
            Some(self.transitioner().submit(job).await)
        }
    }
}

#[path = "."]
pub(crate) mod postgres {
    use super::{NewEvent, OrderRecord, OrderUpdate, TransitionOutcome};
    use crate::payments::store::postgres::bind_write;
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    use crate::storage::{Result, Ts};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
    pub(crate) use queries::insert_event;

    impl Backend {
        async fn transition_fast(
            &self,
            current: &OrderRecord,
            u: &OrderUpdate,
            release_stock: bool,
            events: &[NewEvent],
            at: Ts,
        ) -> Option<Result<TransitionOutcome>> {
            Some(
                self.transition_single_statement(current, u, release_stock, events, at)
                    .await,
            )
        }
    }
}
