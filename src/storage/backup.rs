//! `ordo backup` and `ordo restore` for the embedded database.
//!
//! A backup is `VACUUM INTO` on a read transaction of its own: a consistent snapshot of
//! the live database, taken while the server keeps serving (its writer is never blocked;
//! the WAL only cannot be checkpointed past the snapshot until the copy is done). It is
//! written beside the target, flushed, checked with `PRAGMA integrity_check` and only then
//! renamed into place, so a file at the target is always a whole backup.
//!
//! A restore refuses while a server holds the database's lock file (`<db>.lock`, taken by
//! `ordo serve`), and holds the lock itself so that no server starts meanwhile. The database
//! it replaces is kept beside it (`<db>.replaced-<unix time>`, with its WAL). The event
//! log's sequence (and every other AUTOINCREMENT sequence) continues after the highest
//! number the replaced database had handed out: a client that saw events of the replaced
//! database resumes (`?since=`) at a position no new event is given again, so it misses
//! nothing new and gets nothing twice.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::sqlite::{database_path, try_lock, with_suffix};

/// What a backup or restore wrote.
#[derive(Debug)]
pub struct Summary {
    pub path: PathBuf,
    pub bytes: u64,
    pub orders: i64,
    pub last_event: i64,
    /// Restore only: where the database it replaced was moved.
    pub replaced: Option<PathBuf>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} bytes): {} orders, events up to {}",
            self.path.display(),
            self.bytes,
            self.orders,
            self.last_event
        )?;
        if let Some(r) = &self.replaced {
            write!(f, "; the database it replaced is kept as {}", r.display())?;
        }
        Ok(())
    }
}

fn embedded_path(url: &str, what: &str) -> anyhow::Result<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        anyhow::bail!(
            "ordo {what} works on the embedded database; for PostgreSQL use pg_dump / pg_restore or a base backup (see the README)"
        );
    }
    if !url.starts_with("sqlite:") {
        anyhow::bail!("DATABASE_URL must be sqlite://<path>");
    }
    database_path(url)?
        .ok_or_else(|| anyhow::anyhow!("an in-memory database cannot be backed up or restored"))
}

async fn open(path: &Path, read_only: bool) -> anyhow::Result<SqliteConnection> {
    let conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(read_only)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    Ok(conn)
}

/// Checks a database file and counts what it holds; `ordo` asks for an Ordo database (the
/// order history's file has no migrations of its own).
async fn inspect(path: &Path, ordo: bool) -> anyhow::Result<Summary> {
    let mut conn = open(path, true).await?;
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await?;
    if check != ["ok"] {
        anyhow::bail!(
            "{} fails the integrity check: {}",
            path.display(),
            check.join("; ")
        );
    }
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut conn)
            .await?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    if ordo && !has("_sqlx_migrations") {
        anyhow::bail!("{} is not an Ordo database", path.display());
    }
    let orders = if has("orders") {
        sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut conn)
            .await?
    } else {
        0
    };
    let last_event = if has("order_events") {
        sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM order_events")
            .fetch_one(&mut conn)
            .await?
    } else {
        0
    };
    conn.close().await?;
    Ok(Summary {
        bytes: std::fs::metadata(path)?.len(),
        path: path.to_path_buf(),
        orders,
        last_event,
        replaced: None,
    })
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}

fn sync_dir_of(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// `VACUUM <schema> INTO path` on `conn`; a failed copy is removed.
async fn vacuum_into(conn: &mut SqliteConnection, schema: &str, path: &Path) -> anyhow::Result<()> {
    let target = path
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the backup path must be UTF-8"))?
        .to_owned();
    let _ = std::fs::remove_file(path);
    let copied = sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM {schema} INTO $1")))
        .bind(target)
        .execute(&mut *conn)
        .await;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(path);
        anyhow::bail!("copying the {schema} database failed: {e}");
    }
    // VACUUM INTO does not flush what it wrote.
    sync_file(path)
}

/// Orders of `early` (a copy of the main file taken before the history's) that neither the
/// later copy of the main file nor the history's holds: moved into the history between the
/// two copies of the history and the main file. They go into the backup's history, with all
/// their rows; the later main copy's rollups count them already.
async fn recover_moved(main: &Path, history: &Path, early: &Path) -> anyhow::Result<u64> {
    let mut conn = open(main, false).await?;
    for (file, name) in [(history, "history"), (early, "early")] {
        sqlx::query(sqlx::AssertSqlSafe(format!("ATTACH DATABASE $1 AS {name}")))
            .bind(file.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await?;
    }
    sqlx::query("BEGIN").execute(&mut conn).await?;
    sqlx::query(
        "CREATE TEMP TABLE moved AS SELECT e.id FROM early.orders e \
         WHERE NOT EXISTS (SELECT 1 FROM main.orders m WHERE m.id = e.id) \
         AND NOT EXISTS (SELECT 1 FROM history.orders h WHERE h.id = e.id)",
    )
    .execute(&mut conn)
    .await?;
    let moved: i64 = sqlx::query_scalar("SELECT count(*) FROM temp.moved")
        .fetch_one(&mut conn)
        .await?;
    for (table, key) in crate::history::store::TABLES {
        let cols: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1, 'early') ORDER BY cid")
                .bind(table)
                .fetch_all(&mut conn)
                .await?;
        let cols = cols
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO history.{table} ({cols}) SELECT {cols} FROM early.{table} \
             WHERE {key} IN (SELECT id FROM temp.moved)"
        )))
        .execute(&mut conn)
        .await?;
    }
    sqlx::query("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    Ok(moved as u64)
}

/// `ordo backup --to FILE`: a consistent copy of the live database at `url`, and of its
/// order history (`FILE.history`) when it has one.
///
/// Two files cannot be copied in one snapshot, and orders move between them while the
/// server runs (copied into one file, then deleted from the other). So the main file is
/// copied before and after the history: an order moved back to the live tables meanwhile is
/// in the history's copy or the later main copy; an order moved into the history meanwhile
/// is in the history's copy, the later main copy, or else the earlier main copy, from which
/// it is put into the backup's history ([`recover_moved`]). No order is missing; one in both
/// files reads as the live one, as after a crash.
pub async fn backup(url: &str, to: &Path) -> anyhow::Result<Summary> {
    let db = embedded_path(url, "backup")?;
    if !db.is_file() {
        anyhow::bail!("there is no database at {}", db.display());
    }
    let history_to = super::sqlite::history_path(to);
    for t in [to, history_to.as_path()] {
        if t.exists() {
            anyhow::bail!("{} exists already; choose a new file", t.display());
        }
    }
    let history_db = super::sqlite::history_path(&db);
    let has_history = history_db.is_file();
    let partial = with_suffix(to, ".partial");
    let history_partial = with_suffix(&history_to, ".partial");
    let early = with_suffix(to, ".partial-early");
    let mut conn = open(&db, true).await?;
    let copied = async {
        if has_history {
            sqlx::query("ATTACH DATABASE $1 AS history")
                .bind(history_db.to_string_lossy().into_owned())
                .execute(&mut conn)
                .await?;
            vacuum_into(&mut conn, "main", &early).await?;
            vacuum_into(&mut conn, "history", &history_partial).await?;
        }
        vacuum_into(&mut conn, "main", &partial).await?;
        if has_history {
            let moved = recover_moved(&partial, &history_partial, &early).await?;
            if moved > 0 {
                tracing::info!(
                    moved,
                    "orders moved into the history during the backup are in its copy"
                );
            }
            sync_file(&history_partial)?;
            sync_file(&partial)?;
            inspect(&history_partial, false).await?;
        }
        inspect(&partial, true).await
    }
    .await;
    let _ = conn.close().await;
    let _ = std::fs::remove_file(&early);
    let summary = match copied {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(&history_partial);
            return Err(e);
        }
    };
    // The history first: a backup file at `to` always has its history beside it.
    if has_history {
        std::fs::rename(&history_partial, &history_to)?;
    }
    std::fs::rename(&partial, to)?;
    sync_dir_of(to)?;
    Ok(Summary {
        path: to.to_path_buf(),
        ..summary
    })
}

/// The highest number each AUTOINCREMENT sequence of the database at `db` handed out.
async fn sequences(db: &Path) -> anyhow::Result<Vec<(String, i64)>> {
    let mut conn = open(db, true).await?;
    let has: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'",
    )
    .fetch_optional(&mut conn)
    .await?;
    let rows = if has.is_some() {
        sqlx::query_as("SELECT name, seq FROM sqlite_sequence")
            .fetch_all(&mut conn)
            .await?
    } else {
        Vec::new()
    };
    conn.close().await?;
    Ok(rows)
}

/// `ordo restore --from FILE`: puts a backup in place of the database at `url`.
pub async fn restore(url: &str, from: &Path) -> anyhow::Result<Summary> {
    let db = embedded_path(url, "restore")?;
    if !from.is_file() {
        anyhow::bail!("there is no backup at {}", from.display());
    }
    if db.exists() && std::fs::canonicalize(&db)? == std::fs::canonicalize(from)? {
        anyhow::bail!("the backup is the database itself");
    }
    let source = inspect(from, true).await?;
    let newest_known = sqlx::migrate!("./migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    let mut conn = open(from, true).await?;
    let newest: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    if newest > newest_known {
        anyhow::bail!(
            "the backup was made by a newer Ordo (migration {newest}; this one knows up to {newest_known})"
        );
    }
    let Some(_lock) = try_lock(&db)? else {
        anyhow::bail!(
            "a server is using {}; stop it before restoring",
            db.display()
        );
    };
    // Numbers the replaced database handed out are never handed out again.
    let before = if db.is_file() {
        match sequences(&db).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "the database being replaced cannot be read; its event numbers are not carried over");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let staged = with_suffix(&db, ".restoring");
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(from, &staged)?;
    let mut conn = SqliteConnectOptions::from_str("sqlite://")?
        .filename(&staged)
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
    for (name, seq) in &before {
        sqlx::query("UPDATE sqlite_sequence SET seq = max(seq, $2) WHERE name = $1")
            .bind(name)
            .bind(seq)
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    sync_file(&staged)?;
    // The backup's order history goes with it; without one the database starts with an
    // empty history (the archive job rolls it up afresh), never with the replaced one's.
    let history_from = super::sqlite::history_path(from);
    let history_db = super::sqlite::history_path(&db);
    let history_staged = with_suffix(&history_db, ".restoring");
    let _ = std::fs::remove_file(&history_staged);
    if history_from.is_file() {
        inspect(&history_from, false).await?;
        std::fs::copy(&history_from, &history_staged)?;
        sync_file(&history_staged)?;
    }
    let replaced = if db.exists() || history_db.exists() {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = with_suffix(&db, &format!(".replaced-{stamp}"));
        // The WAL and its index go with their database, the history with both: together
        // they still open.
        for suffix in [
            "-wal",
            "-shm",
            ".history-wal",
            ".history-shm",
            ".history",
            "",
        ] {
            let from = with_suffix(&db, suffix);
            if from.exists() {
                std::fs::rename(&from, with_suffix(&aside, suffix))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    if history_staged.exists() {
        std::fs::rename(&history_staged, &history_db)?;
    }
    std::fs::rename(&staged, &db)?;
    sync_dir_of(&db)?;
    Ok(Summary {
        path: db,
        replaced,
        ..source
    })
}
