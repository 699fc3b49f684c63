//! Embedded SQLite backend: one writer connection (SQLite allows one writer at a time, so
//! writers queue in-process instead of spinning on `SQLITE_BUSY`) and a pool of readers.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Dialect, Error, Store};

pub type Db = sqlx::Sqlite;
pub const DIALECT: Dialect = Dialect::Sqlite;

#[derive(Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    /// Orders waiting to be placed in the next group commit (started on first use).
    pub(crate) placer: Arc<OnceLock<crate::orders::place_sqlite::Placer>>,
}

impl SqliteStore {
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(pool_size.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self {
            read,
            write,
            placer: Arc::default(),
        })
    }

    pub async fn migrate(&self) -> Result<(), Error> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.write)
            .await?;
        Ok(())
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.read
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.write
    }
}

impl Store for SqliteStore {
    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        async move {
            sqlx::query("SELECT 1").execute(&self.read).await?;
            Ok(())
        }
        .boxed()
    }
}
