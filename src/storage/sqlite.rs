//! Embedded SQLite backend: one writer connection (SQLite allows one writer at a time, so
//! writers queue in-process instead of spinning on `SQLITE_BUSY`) and a pool of readers.
//!
//! Durability: the writer runs with `synchronous=FULL` by default, so a commit (an order's
//! 201) is flushed to disk before it is acknowledged and survives a power cut, as on
//! PostgreSQL. Every write goes through the writer: the readers are opened read-only.
//!
//! The WAL: SQLite's own auto-checkpoint runs at commit and can never finish while a reader
//! still uses an old snapshot, and under constant readers (replays, SSE) it may never find
//! the moment. [`Checkpoints`] checkpoints passively every second, truncates the WAL
//! when the database has been idle for one period or the WAL passed its limit, and reports
//! the WAL's size and the last complete checkpoint in `/metrics`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio_util::sync::CancellationToken;

use super::{Dialect, Error, Store};
use crate::config::SqliteSync;
use crate::jobs::{Job, Tick};

pub type Db = sqlx::Sqlite;
pub const DIALECT: Dialect = Dialect::Sqlite;

/// Past this size the WAL is truncated even under load (a short pause of the writer), and
/// SQLite trims it back to this size whenever it starts over.
pub const WAL_LIMIT: u64 = 64 * 1024 * 1024;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a truncating checkpoint may wait for readers before it gives up for this round.
const TRUNCATE_WAIT_MS: u64 = 100;

#[derive(Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    /// The database file (`None` for an in-memory database).
    path: Option<PathBuf>,
    /// Held while a server uses the database, so that `ordo restore` refuses.
    serving: Arc<Mutex<Option<std::fs::File>>>,
    /// Orders waiting to be placed in the next group commit (started on first use).
    pub(crate) placer: Arc<OnceLock<crate::orders::place_sqlite::Placer>>,
    /// Transitions waiting for theirs (started on first use).
    transitioner: Arc<OnceLock<crate::orders::transition_sqlite::Transitioner>>,
    /// The attached history database every connection opens.
    history: Arc<HistorySetup>,
}

/// What every connection does when it opens: attach the order history (`history` module)
/// and, once the migrations ran, make the `*_all` views over live and archived rows
/// (temporary views: a view in the main database cannot name an attached one).
struct HistorySetup {
    file: String,
    synchronous: &'static str,
    views: OnceLock<String>,
}

type ConnectHook = Box<
    dyn Fn(
            &mut sqlx::SqliteConnection,
            sqlx::pool::PoolConnectionMetadata,
        ) -> BoxFuture<'_, Result<(), sqlx::Error>>
        + Send
        + Sync,
>;

impl HistorySetup {
    fn hook(self: Arc<Self>) -> ConnectHook {
        Box::new(move |c, _| {
            let me = self.clone();
            Box::pin(async move {
                sqlx::query("ATTACH DATABASE ?1 AS history")
                    .bind(&me.file)
                    .execute(&mut *c)
                    .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "PRAGMA history.synchronous = {}",
                    me.synchronous
                )))
                .execute(&mut *c)
                .await?;
                if let Some(views) = me.views.get() {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(views.clone()))
                        .execute(&mut *c)
                        .await?;
                }
                Ok(())
            })
        })
    }
}

/// The order history's database file beside the database at `db`.
pub fn history_path(db: &Path) -> PathBuf {
    with_suffix(db, ".history")
}

/// The indexes of the history tables (the live tables' that reads use).
const HISTORY_INDEXES: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS history.orders_id ON orders (id);
CREATE INDEX IF NOT EXISTS history.orders_customer ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS history.orders_status ON orders (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS history.orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS history.orders_tracking ON orders (tracking_number, carrier) WHERE tracking_number IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS history.order_items_key ON order_items (order_id, line_no);
CREATE INDEX IF NOT EXISTS history.order_items_item ON order_items (item_id);
CREATE UNIQUE INDEX IF NOT EXISTS history.order_events_id ON order_events (id);
CREATE INDEX IF NOT EXISTS history.order_events_order ON order_events (order_id, id);
CREATE INDEX IF NOT EXISTS history.order_events_customer ON order_events (customer_id, id);
CREATE UNIQUE INDEX IF NOT EXISTS history.payment_transactions_id ON payment_transactions (id);
CREATE INDEX IF NOT EXISTS history.payment_transactions_order ON payment_transactions (order_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS history.tracking_link_revocations_order ON tracking_link_revocations (order_id);
";

/// Makes the history's tables like the live ones (a table is created from the live one's
/// columns; a column added to a live table is added to its twin), and returns the SQL of
/// the `*_all` views. A history row whose order is live too (a move cut short by a crash)
/// is not shown: the live copy is the order.
async fn sync_history(c: &mut sqlx::SqliteConnection) -> Result<String, Error> {
    sqlx::query("PRAGMA history.journal_mode = WAL")
        .fetch_optional(&mut *c)
        .await?;
    let new_file: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM history.sqlite_master WHERE name = 'orders'")
            .fetch_optional(&mut *c)
            .await?;
    if new_file.is_none() {
        // A history file made afresh (or lost): what the rollups hold is not in it.
        sqlx::query("UPDATE main.history_rollup_state SET built = 0")
            .execute(&mut *c)
            .await?;
    }
    let mut views = String::new();
    for (t, key) in crate::history::store::TABLES {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS history.{t} AS SELECT * FROM main.{t} WHERE 0"
        )))
        .execute(&mut *c)
        .await?;
        let live: Vec<(String, String)> =
            sqlx::query_as("SELECT name, type FROM pragma_table_info(?1, 'main') ORDER BY cid")
                .bind(t)
                .fetch_all(&mut *c)
                .await?;
        let have: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?1, 'history')")
                .bind(t)
                .fetch_all(&mut *c)
                .await?;
        for (name, ty) in live.iter().filter(|(n, _)| !have.contains(n)) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE history.{t} ADD COLUMN \"{name}\" {ty}"
            )))
            .execute(&mut *c)
            .await?;
        }
        let cols = live
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let (live_flag, history_flag) = if t == "orders" {
            (", false AS archived", ", true AS archived")
        } else {
            ("", "")
        };
        views.push_str(&format!(
            "CREATE TEMP VIEW IF NOT EXISTS {t}_all AS \
             SELECT {cols}{live_flag} FROM main.{t} \
             UNION ALL SELECT {cols}{history_flag} FROM history.{t} h \
             WHERE NOT EXISTS (SELECT 1 FROM main.orders m WHERE m.id = h.{key});\n"
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(HISTORY_INDEXES))
        .execute(&mut *c)
        .await?;
    Ok(views)
}

/// The options every Ordo connection to an embedded database uses.
pub fn connect_options(url: &str, sync: SqliteSync) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match sync {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Extra => SqliteSynchronous::Extra,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-32000")
        .pragma("journal_size_limit", WAL_LIMIT.to_string()))
}

/// The database file a `sqlite:` URL names (`None` for an in-memory database).
pub fn database_path(url: &str) -> anyhow::Result<Option<PathBuf>> {
    let opts = SqliteConnectOptions::from_str(url)?;
    let path = opts.get_filename();
    if path.as_os_str().is_empty() || path == Path::new(":memory:") || url.contains(":memory:") {
        return Ok(None);
    }
    Ok(Some(path.to_path_buf()))
}

/// The lock file that says a server uses the database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    with_suffix(db, ".lock")
}

/// The WAL file of the database at `db`.
pub fn wal_path(db: &Path) -> PathBuf {
    with_suffix(db, "-wal")
}

pub(crate) fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Takes the exclusive lock on `<db>.lock` without waiting: `None` if someone holds it.
pub fn try_lock(db: &Path) -> anyhow::Result<Option<std::fs::File>> {
    let path = lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::anyhow!("locking {}: {e}", path.display()))
        }
    }
}

/// Which checkpoint to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointMode {
    /// Copies what it can without waiting for anyone.
    Passive,
    /// Waits briefly for readers, copies everything and truncates the WAL to zero bytes.
    Truncate,
}

impl CheckpointMode {
    fn label(self) -> &'static str {
        match self {
            CheckpointMode::Passive => "passive",
            CheckpointMode::Truncate => "truncate",
        }
    }
}

/// What a checkpoint did: whether it was held up, the WAL's frames, and how many of them
/// are now in the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub busy: bool,
    pub wal_frames: i64,
    pub checkpointed: i64,
}

impl Checkpoint {
    /// Every frame of the WAL is in the database file.
    pub fn complete(&self) -> bool {
        !self.busy && self.checkpointed >= self.wal_frames
    }
}

/// The compile-time options Ordo's SQLite is built with (`.cargo/config.toml`), as
/// `PRAGMA compile_options` names them.
const COMPILE_OPTIONS: [&str; 2] = ["ENABLE_QPSG", "DEFAULT_MEMSTATUS=0"];

/// Which of [`COMPILE_OPTIONS`] the linked SQLite lacks.
async fn missing_compile_options(pool: &SqlitePool) -> Result<Vec<&'static str>, sqlx::Error> {
    let have: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
        .fetch_all(pool)
        .await?;
    Ok(COMPILE_OPTIONS
        .into_iter()
        .filter(|o| !have.iter().any(|h| h == o))
        .collect())
}

impl SqliteStore {
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        Self::connect_with(url, pool_size, SqliteSync::default()).await
    }

    pub async fn connect_with(url: &str, pool_size: u32, sync: SqliteSync) -> anyhow::Result<Self> {
        let opts = connect_options(url, sync)?;
        let path = database_path(url)?;
        let history = Arc::new(HistorySetup {
            file: path.as_deref().map_or_else(
                || ":memory:".to_owned(),
                |p| history_path(p).to_string_lossy().into_owned(),
            ),
            synchronous: match sync {
                SqliteSync::Full => "FULL",
                SqliteSync::Extra => "EXTRA",
                SqliteSync::Normal => "NORMAL",
            },
            views: OnceLock::new(),
        });
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(history.clone().hook())
            .connect_with(opts.clone())
            .await?;
        // Readers open when first used, after `migrate` has made the history's views.
        let read = SqlitePoolOptions::new()
            .max_connections(pool_size.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(history.clone().hook())
            .connect_lazy_with(opts.read_only(true));
        let missing = missing_compile_options(&write).await?;
        if !missing.is_empty() {
            tracing::warn!(
                ?missing,
                "the bundled SQLite was built without these options (see .cargo/config.toml): \
                 reads and writes re-plan their statements and run several times slower"
            );
        }
        Ok(Self {
            read,
            write,
            path,
            history,
            serving: Arc::default(),
            placer: Arc::default(),
            transitioner: Arc::default(),
        })
    }

    /// Closes both pools and waits until every connection has ended: the last one to close
    /// checkpoints the WAL, so the files are whole and still once this returns.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// Applies the migrations, then brings the history database's tables in line with the
    /// live ones (new tables and columns) and makes the `*_all` views.
    pub async fn migrate(&self) -> Result<(), Error> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.write)
            .await?;
        let mut c = self.write.acquire().await?;
        let views = sync_history(&mut c).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(views.clone()))
            .execute(&mut *c)
            .await?;
        let _ = self.history.views.set(views);
        Ok(())
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.read
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// The group-commit queue for transitions.
    pub(crate) fn transitioner(&self) -> &crate::orders::transition_sqlite::Transitioner {
        self.transitioner.get_or_init(|| {
            crate::orders::transition_sqlite::spawn_transitioner(self.write.clone())
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Marks the database as used by this server until the process ends: `ordo restore`
    /// refuses to replace it meanwhile. A second server on the same file is refused too.
    pub fn hold_serving_lock(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut held = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return Ok(());
        }
        match try_lock(path)? {
            Some(file) => {
                *held = Some(file);
                Ok(())
            }
            None => anyhow::bail!(
                "another ordo server uses {} (it holds {})",
                path.display(),
                lock_path(path).display()
            ),
        }
    }

    /// The WAL file's size in bytes (0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        self.path
            .as_deref()
            .and_then(|p| std::fs::metadata(wal_path(p)).ok())
            .map_or(0, |m| m.len())
    }

    /// Rows changed through the writer since it was opened: every write of this process
    /// goes through it, so an unchanged count means no commit happened in between.
    pub async fn writes(&self) -> Result<i64, Error> {
        Ok(sqlx::query_scalar::<Db, i64>("SELECT total_changes()")
            .fetch_one(&self.write)
            .await?)
    }

    /// Runs a checkpoint on the writer connection (it queues behind the write running now).
    pub async fn checkpoint(&self, mode: CheckpointMode) -> Result<Checkpoint, Error> {
        let mut conn = self.write.acquire().await?;
        let row: (i64, i64, i64) = match mode {
            CheckpointMode::Passive => {
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut *conn)
                    .await?
            }
            CheckpointMode::Truncate => {
                // A long reader must not stall every write for the whole busy timeout:
                // wait for readers only briefly, then try again next round.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "PRAGMA busy_timeout = {TRUNCATE_WAIT_MS}"
                )))
                .execute(&mut *conn)
                .await?;
                let row = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&mut *conn)
                    .await;
                let restored = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "PRAGMA busy_timeout = {}",
                    BUSY_TIMEOUT.as_millis()
                )))
                .execute(&mut *conn)
                .await;
                if restored.is_err() {
                    // Never leave the writer with the short timeout.
                    conn.close_on_drop();
                }
                restored?;
                row?
            }
        };
        Ok(Checkpoint {
            busy: row.0 != 0,
            wal_frames: row.1,
            checkpointed: row.2,
        })
    }

    /// The writer's `synchronous` level as SQLite reports it (1 normal, 2 full, 3 extra).
    pub async fn synchronous(&self) -> Result<i64, Error> {
        Ok(sqlx::query_scalar::<Db, i64>("PRAGMA synchronous")
            .fetch_one(&self.write)
            .await?)
    }

    /// Publishes the WAL's size to `/metrics`.
    pub fn record_wal_size(&self) {
        metrics::gauge!("ordo_sqlite_wal_bytes").set(self.wal_bytes() as f64);
    }
}

/// Keeps the WAL small, a job of the node (`jobs.rs`): a passive checkpoint every period;
/// a truncating one when no commit happened during the last period (idle) or the WAL
/// passed [`WAL_LIMIT`].
pub struct Checkpoints(SqliteStore);

impl Checkpoints {
    pub fn new(store: SqliteStore) -> Self {
        Checkpoints(store)
    }
}

impl Job for Checkpoints {
    /// The writer's count of changes at the last tick.
    type Run = Option<i64>;

    async fn begin(&mut self) -> anyhow::Result<Option<i64>> {
        Ok(None)
    }

    async fn tick(
        &mut self,
        last_writes: &mut Option<i64>,
        _: &CancellationToken,
    ) -> anyhow::Result<Tick> {
        let store = &self.0;
        let writes = store.writes().await.context("reading the write count")?;
        let idle = *last_writes == Some(writes);
        *last_writes = Some(writes);
        let wal = store.wal_bytes();
        let mode = if wal > 0 && (idle || wal > WAL_LIMIT) {
            CheckpointMode::Truncate
        } else {
            CheckpointMode::Passive
        };
        let done = store.checkpoint(mode).await;
        store.record_wal_size();
        let c = done.with_context(|| format!("{} checkpoint", mode.label()))?;
        let complete = c.complete();
        metrics::counter!(
            "ordo_sqlite_checkpoints_total",
            "mode" => mode.label(),
            "complete" => if complete { "true" } else { "false" }
        )
        .increment(1);
        metrics::gauge!("ordo_sqlite_wal_frames_not_checkpointed")
            .set((c.wal_frames - c.checkpointed).max(0) as f64);
        if complete {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            metrics::gauge!("ordo_sqlite_last_checkpoint_timestamp_seconds").set(now);
        }
        Ok(Tick::Idle)
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

    fn sqlite(&self) -> Option<&SqliteStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without these every statement with a `LIMIT ?` is parsed and planned again on each
    /// execution, and every allocation takes a global mutex (see `.cargo/config.toml`).
    #[tokio::test]
    async fn sqlite_is_built_with_our_compile_options() {
        let store = SqliteStore::connect("sqlite::memory:", 2).await.unwrap();
        assert_eq!(
            missing_compile_options(store.reader()).await.unwrap(),
            Vec::<&str>::new()
        );
    }
}
