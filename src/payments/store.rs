//! Storage of the payment saga (`payment_transactions`) and of the gateway's webhook
//! events (handled once per event id).

use async_trait::async_trait;
use uuid::Uuid;

use crate::storage::{Result, Ts};

/// A step of the saga that moves money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnKind {
    Charge,
    Refund,
}

impl TxnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnKind::Charge => "charge",
            TxnKind::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [TxnKind::Charge, TxnKind::Refund]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a step stands: `pending` until the gateway's answer is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    Pending,
    Succeeded,
    /// Declined, or never sent (a charge that may be tried again).
    Failed,
    /// A charge that was called off before money moved.
    Voided,
}

impl TxnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnStatus::Pending => "pending",
            TxnStatus::Succeeded => "succeeded",
            TxnStatus::Failed => "failed",
            TxnStatus::Voided => "voided",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TxnStatus::Pending,
            TxnStatus::Succeeded,
            TxnStatus::Failed,
            TxnStatus::Voided,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

crate::storage::text_column!(TxnKind, TxnStatus);

/// A row of `payment_transactions`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub kind: TxnKind,
    pub idempotency_key: String,
    pub method: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub status: TxnStatus,
    pub gateway_reference: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Ts>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

pub(crate) const PAYMENT_COLUMNS: &str = "id, order_id, kind, idempotency_key, method, amount, currency, status, \
     gateway_reference, attempts, last_error, next_attempt_at, created_at, updated_at";

/// Writes a step: inserted the first time its idempotency key is seen, updated after that
/// (`attempts` is added to the stored count; a `None` reference or method keeps the
/// stored one).
#[derive(Clone, Debug)]
pub struct PaymentWrite {
    pub order_id: Uuid,
    pub kind: TxnKind,
    pub idempotency_key: String,
    pub method: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub status: TxnStatus,
    pub reference: Option<String>,
    pub attempts: i32,
    pub error: Option<String>,
    pub next_attempt_at: Option<Ts>,
}

macro_rules! payment_insert_into {
    () => {
        "INSERT INTO payment_transactions (id, order_id, kind, idempotency_key, method, amount, currency, status, \
         gateway_reference, attempts, last_error, next_attempt_at, created_at, updated_at) "
    };
}

/// A settled step (succeeded, voided) is never reopened by a late `pending` write: a
/// request that gave up waiting on the gateway after the saga voided its charge, say.
macro_rules! payment_on_conflict {
    () => {
        " ON CONFLICT (idempotency_key) DO UPDATE SET status = excluded.status, \
         gateway_reference = coalesce(excluded.gateway_reference, payment_transactions.gateway_reference), \
         method = coalesce(excluded.method, payment_transactions.method), \
         attempts = payment_transactions.attempts + excluded.attempts, last_error = excluded.last_error, \
         next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at \
         WHERE NOT (excluded.status = 'pending' AND payment_transactions.status IN ('succeeded', 'voided'))"
    };
}

/// What a payment write does to a step already recorded under its key.
pub(crate) const PAYMENT_ON_CONFLICT: &str = payment_on_conflict!();

/// The upsert behind every `PaymentWrite`; `$1` … `$13` in the order of `bind_write`.
pub(crate) const UPSERT_PAYMENT: &str = concat!(
    payment_insert_into!(),
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    payment_on_conflict!()
);

/// The same upsert inside PostgreSQL's one-statement transition: written only if the
/// order's row was (`upd`); the write's parameters are `$23` … `$34`, the time is `$6`.
pub(crate) const UPSERT_PAYMENT_AFTER_UPDATE: &str = concat!(
    payment_insert_into!(),
    "SELECT $23, upd.id, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $6, $6 FROM upd WHERE $25::text IS NOT NULL",
    payment_on_conflict!()
);

#[async_trait]
pub trait PaymentStore {
    /// Records a gateway event; false if it was recorded before (a replay).
    async fn record_gateway_event(&self, id: &str, kind: &str, at: Ts) -> Result<bool>;
    /// Forgets an event whose handling failed, so that the gateway's retry is handled.
    async fn forget_gateway_event(&self, id: &str) -> Result<()>;
    async fn write_payment(&self, w: &PaymentWrite, at: Ts) -> Result<()>;
    /// Starts the charge of a `created` order (`w` is a pending charge): false if the
    /// order is not `created` or a charge of it is pending or done. A charge that was
    /// never sent (`failed` while the order is still `created`) may start again.
    async fn start_charge(&self, w: &PaymentWrite, at: Ts) -> Result<bool>;
    /// Takes up to `limit` steps that are due at `now`, and moves each one's next look to
    /// `lease_until`, so that no other node takes them meanwhile.
    async fn take_due_payments(
        &self,
        now: Ts,
        lease_until: Ts,
        limit: u32,
    ) -> Result<Vec<PaymentRow>>;
    /// Makes an order's pending charge due now (its order ended: the charge is voided).
    async fn nudge_pending_charge(&self, order_id: Uuid, now: Ts) -> Result<()>;
    /// An order's payment steps, oldest first.
    async fn payments_of(&self, order_id: Uuid) -> Result<Vec<PaymentRow>>;
}

#[path = "."]
pub(crate) mod sqlite {
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
    pub(crate) use queries::bind_write;
}

#[path = "."]
pub(crate) mod postgres {
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
    pub(crate) use queries::bind_write;
}
