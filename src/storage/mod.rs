//! Storage: one `Store` interface, two backends (embedded SQLite, PostgreSQL).
//!
//! Each business module keeps its SQL in one `queries.rs` file that is compiled twice, once
//! per backend: it is the child module `queries` of both a `sqlite` and a `postgres` module
//! of the business module's `store.rs` (`#[path = "."]`), and takes `Db`, `DIALECT` and
//! `Backend` from its parent (`use super::*`). The SQL is written once;
//! the few places where the dialects differ branch on [`Dialect`]. Timestamps are stored as
//! `timestamptz` on PostgreSQL and as integer microseconds on SQLite (text timestamps do not
//! sort correctly), through the [`Ts`] wrapper.

pub mod backup;
pub mod copy;
pub mod postgres;
pub mod sqlite;
mod types;

use std::sync::Arc;

pub use types::Ts;
pub(crate) use types::text_column;

/// A table's column list, declared once as identifiers: the list (`id, customer_id, …`)
/// and, when a join needs it, the same list qualified by an alias (`o.id, o.customer_id,
/// …`). Both are `&'static str` built at compile time, so they cannot drift apart.
///
/// `columns!(pub(crate) ORDER_FIELDS, pub(crate) ORDER_COLUMNS = "o": id, customer_id);`
/// `columns!(pub(crate) USER_COLUMNS: id, email);`
macro_rules! columns {
    ($(#[$m:meta])* $vis:vis $name:ident, $qvis:vis $qualified:ident = $alias:literal:
     $first:ident $(, $col:ident)* $(,)?) => {
        $crate::storage::columns!($(#[$m])* $vis $name: $first $(, $col)*);
        /// The same columns, qualified by the table's alias.
        $qvis const $qualified: &str =
            concat!($alias, ".", stringify!($first) $(, ", ", $alias, ".", stringify!($col))*);
    };
    ($(#[$m:meta])* $vis:vis $name:ident: $first:ident $(, $col:ident)* $(,)?) => {
        $(#[$m])*
        $vis const $name: &str = concat!(stringify!($first) $(, ", ", stringify!($col))*);
    };
}
pub(crate) use columns;

use crate::auth::store::AuthStore;
use crate::books::store::{AnalyticsStore, AuditStore};
use crate::carriers::store::CarrierStore;
use crate::events::store::EventStore;
use crate::history::store::HistoryStore;
use crate::idempotency::store::IdempotencyStore;
use crate::inventory::store::ItemStore;
use crate::notifications::store::NotificationStore;
use crate::orders::store::OrderStore;
use crate::payments::store::PaymentStore;
use crate::privacy::store::PrivacyStore;
use crate::recommendations::store::RecommendationStore;
use crate::search::store::SearchStore;
use crate::shop::store::ShopStore;

/// The SQL dialect of a backend, for the few statements that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `id` among the rows `select` (`SELECT id … LIMIT $n …`) claims. On PostgreSQL
    /// `id = ANY (ARRAY(select))`, so the claimed ids are looked up by the primary key:
    /// with `id IN (select)` the generic plan (which cannot see the LIMIT's value and
    /// guesses a tenth of the table) hash-joins the claim with a sequential scan of the
    /// whole table, on every run of a periodic job over a table that only grows.
    pub fn id_in_claimed(self, select: &str) -> String {
        match self {
            Dialect::Postgres => format!("id = ANY (ARRAY({select}))"),
            Dialect::Sqlite => format!("id IN ({select})"),
        }
    }
}

/// Everything the application stores, behind one object-safe interface.
pub trait Store:
    AuthStore
    + ItemStore
    + OrderStore
    + PaymentStore
    + IdempotencyStore
    + EventStore
    + NotificationStore
    + ShopStore
    + CarrierStore
    + SearchStore
    + RecommendationStore
    + AuditStore
    + AnalyticsStore
    + PrivacyStore
    + HistoryStore
    + Send
    + Sync
{
    /// Cheap round trip for `/readyz`.
    fn ping(&self) -> futures::future::BoxFuture<'_, Result<(), Error>>;

    /// The embedded backend itself, for what only it has (checkpoints, its file).
    fn sqlite(&self) -> Option<&sqlite::SqliteStore> {
        None
    }
}

pub type DynStore = Arc<dyn Store>;

/// Storage errors. Constraint violations are told apart so that the edge can answer
/// 409/422 instead of 500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unique constraint violated: {0}")]
    Unique(String),
    #[error("foreign key violated")]
    ForeignKey,
    #[error("check constraint violated")]
    Check,
    #[error("database: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A race was lost in a way the database did not report as such; try again.
    #[error("lost a race; try again")]
    Retry,
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return Error::Unique(db.constraint().unwrap_or_default().to_owned());
            }
            if db.is_foreign_key_violation() {
                return Error::ForeignKey;
            }
            if db.is_check_violation() {
                return Error::Check;
            }
        }
        Error::Database(e)
    }
}

impl Error {
    /// Errors worth retrying the whole transaction for (lost races, deadlocks, busy SQLite).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(sqlx::Error::Database(db)) => {
                matches!(
                    db.code().as_deref(),
                    Some("40001" | "40P01" | "5" | "6" | "517")
                )
            }
            Error::Database(sqlx::Error::PoolTimedOut) | Error::Retry => true,
            _ => false,
        }
    }
}

impl Error {
    /// A row written beside an order found no order: it moved to the history meanwhile
    /// (SQLite: the foreign key; PostgreSQL: the statement that locks the order found none).
    pub fn order_gone(&self) -> bool {
        matches!(
            self,
            Error::ForeignKey | Error::Database(sqlx::Error::RowNotFound)
        )
    }
}

impl Error {
    /// The database is not there: the connection broke, cannot be made, or the server is
    /// shutting down or starting up. Such a failure is answered 503 with `Retry-After`.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // Class 08 (connection exception), 57P01..57P03 (shutdown, crash, starting up).
            Error::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|c| {
                c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
            }),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Opens the backend named by `url` and applies pending migrations.
pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<DynStore> {
    connect_with(url, pool_size, crate::config::SqliteSync::default(), 0).await
}

/// As [`connect`], with the embedded database's `synchronous` setting and the number of
/// group-commit workers on PostgreSQL (`0`: every order commits on its own).
pub async fn connect_with(
    url: &str,
    pool_size: u32,
    sqlite_sync: crate::config::SqliteSync,
    pg_group_commit: usize,
) -> anyhow::Result<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::connect(url, pool_size)
            .await?
            .with_group_commit(pg_group_commit);
        store.migrate().await?;
        Ok(Arc::new(store))
    } else if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::connect_with(url, pool_size, sqlite_sync).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://")
    }
}

/// Applies pending migrations only (the `ordo migrate` command), and returns once every
/// connection it opened has ended.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::connect(url, 1).await?;
        store.migrate().await?;
        store.close().await;
    } else if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::connect_with(url, 1, Default::default()).await?;
        store.migrate().await?;
        store.close().await;
    } else {
        anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://")
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    columns!(LIST, QUALIFIED = "o": id, customer_id, created_at);
    columns!(ONE: id);

    #[test]
    fn a_column_list_and_its_qualified_twin_come_from_one_declaration() {
        assert_eq!(LIST, "id, customer_id, created_at");
        assert_eq!(QUALIFIED, "o.id, o.customer_id, o.created_at");
        assert_eq!(ONE, "id");
        let fields: Vec<String> = crate::orders::store::ORDER_FIELDS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect();
        assert_eq!(crate::orders::store::ORDER_COLUMNS, fields.join(", "));
    }
}
