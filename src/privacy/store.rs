//! Storage side of privacy: everything held about one person, read in one snapshot.

use async_trait::async_trait;
use uuid::Uuid;

use crate::auth::store::UserRow;
use crate::books::domain::NewAudit;
use crate::books::store::AuditRow;
use crate::notifications::domain::Preferences;
use crate::notifications::store::{DeliveryRow, ShopMessageRow};
use crate::orders::store::{EventRow, OrderLineRow, OrderRow};
use crate::payments::store::PaymentRow;
use crate::storage::{Result, Ts};

/// A line of an order, with the order it belongs to.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OwnedLineRow {
    pub order_id: Uuid,
    #[sqlx(flatten)]
    pub line: OrderLineRow,
}

/// A line of the cart or an entry of the wishlist (quantity 1), with its item's SKU and name.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SavedItemRow {
    pub item_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub added_at: Ts,
}

/// Everything Ordo holds about one person. Orders come with their lines, timelines and
/// payment steps; the audit entries are those about the person and those it made.
#[derive(Clone, Debug)]
pub struct PersonRecords {
    pub user: UserRow,
    /// `None`: never set (the defaults apply).
    pub preferences: Option<Preferences>,
    pub orders: Vec<OrderRow>,
    pub lines: Vec<OwnedLineRow>,
    pub events: Vec<EventRow>,
    pub payments: Vec<PaymentRow>,
    pub cart: Vec<SavedItemRow>,
    pub wishlist: Vec<SavedItemRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub messages: Vec<ShopMessageRow>,
    /// (event id, when a live connection of the person received it).
    pub push_receipts: Vec<(i64, Ts)>,
    /// (when, from which address) a sign-in with the person's e-mail failed.
    pub failed_logins: Vec<(Ts, String)>,
    pub audit: Vec<AuditRow>,
}

/// An erasure to carry out, with the values that replace the person's data.
#[derive(Clone, Debug)]
pub struct Erasure {
    pub id: Uuid,
    pub at: Ts,
    pub email: String,
    pub name: &'static str,
    pub password_hash: &'static str,
    /// What free text about the person becomes (shop messages).
    pub text: &'static str,
    /// `last_error` of the deliveries it drops.
    pub dropped: &'static str,
    pub audit: NewAudit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Erased {
    /// Erased now (and audited).
    Now,
    /// It was erased before: nothing changed, nothing audited.
    Already,
    NoSuchUser,
}

#[async_trait]
pub trait PrivacyStore {
    /// Everything about the user `id`, oldest first in every list, read in one snapshot;
    /// `None` when there is no such user.
    async fn person_records(&self, id: Uuid) -> Result<Option<PersonRecords>>;
    /// Erases the person everywhere it is stored, and appends the audit entry, in one
    /// transaction.
    async fn erase_person(&self, e: &Erasure) -> Result<Erased>;
    /// Accounts erased after `(at, id)` (in that order), at most `limit`, oldest first: what
    /// every node follows to end the sessions of people erased on another node.
    async fn erased_after(&self, at: Ts, id: Uuid, limit: u32) -> Result<Vec<(Ts, Uuid)>>;
}

#[path = "."]
pub(crate) mod sqlite {
    use crate::books::store::sqlite::append_audit;
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}

#[path = "."]
pub(crate) mod postgres {
    use crate::books::store::postgres::append_audit;
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}
