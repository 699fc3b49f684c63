//! A database of its own for every test: a copy of a migrated template made once per set
//! of migrations (a clone, `CREATE DATABASE … TEMPLATE`, on the local PostgreSQL server,
//! dropped when the test ends; or a copy of a migrated SQLite file in a temporary
//! directory). `fresh_database` gives an empty one instead, for the tests of migrating.

use super::Backend;

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("ORDO_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Owns the test's database and removes it when the test ends.
pub enum DbGuard {
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres(String),
    /// Another node's database: that node's guard removes it.
    Shared,
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let DbGuard::Postgres(name) = self {
            let name = name.clone();
            // Drop runs outside any runtime we may block: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

/// An empty database of its own for one test (for the tests of migrating itself).
pub async fn fresh_database(backend: Backend) -> (String, DbGuard) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("ordo.db").display());
            (url, DbGuard::Sqlite { _dir: dir })
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let name = format!("ordo_test_{}", uuid::Uuid::new_v4().simple());
            let admin = pg_admin_url();
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut c)
                .await
                .expect("create test database");
            (database_url(&admin, &name), DbGuard::Postgres(name))
        }
    }
}

/// What the template of a backend is made from: its migrations, names and contents. A
/// change to any of them makes (and names) a new template.
fn migrations_hash(backend: Backend) -> String {
    use sha2::{Digest, Sha256};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    });
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations")
        .map(|e| e.expect("migration").path())
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.file_name().expect("name").as_encoded_bytes());
        h.update(std::fs::read(&f).expect("migration"));
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How long a template of other migrations is kept: another checkout on the same server
/// may still be cloning it.
const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The migrated PostgreSQL template of this set of migrations: made by the first test
/// that needs it (under an advisory lock, so concurrent runs make it once), kept between
/// runs, and marked `is_template` once complete. Templates of other migrations are
/// dropped once they are a day old (their comment says when they were made), so that two
/// checkouts on one server never drop each other's.
async fn pg_template() -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            use sqlx::Connection;
            let name = format!("ordo_tpl_{}", migrations_hash(Backend::Postgres));
            let admin = pg_admin_url();
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL server");
            let exec = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
            exec("SELECT pg_advisory_lock(hashtext('ordo test template'))".into())
                .execute(&mut c)
                .await
                .expect("template lock");
            let done: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)",
            )
            .bind(&name)
            .fetch_one(&mut c)
            .await
            .expect("look for the template");
            if !done {
                // Templates of other migrations made over a day ago, and a half-made one
                // of ours (never marked, so never cloned).
                let others: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
                     WHERE datname LIKE 'ordo\\_tpl\\_%'",
                )
                .fetch_all(&mut c)
                .await
                .expect("old templates");
                let cutoff = now_secs().saturating_sub(STALE.as_secs());
                for (db, made) in others {
                    let made: u64 = made.and_then(|m| m.parse().ok()).unwrap_or(0);
                    if db != name && made > cutoff {
                        continue;
                    }
                    let _ = exec(format!("ALTER DATABASE \"{db}\" WITH IS_TEMPLATE false"))
                        .execute(&mut c)
                        .await;
                    let _ = exec(format!("DROP DATABASE IF EXISTS \"{db}\""))
                        .execute(&mut c)
                        .await;
                }
                exec(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut c)
                    .await
                    .expect("create the template");
                ordo::storage::migrate(&database_url(&admin, &name))
                    .await
                    .expect("migrate the template");
                exec(format!(
                    "COMMENT ON DATABASE \"{name}\" IS '{}'",
                    now_secs()
                ))
                .execute(&mut c)
                .await
                .expect("date the template");
                exec(format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true"))
                    .execute(&mut c)
                    .await
                    .expect("mark the template");
            }
            exec("SELECT pg_advisory_unlock(hashtext('ordo test template'))".into())
                .execute(&mut c)
                .await
                .expect("template unlock");
            name
        })
        .await
}

/// The migrated SQLite template of this set of migrations: a directory under the system's
/// temporary directory, made once (in a directory of its own, then renamed into place, so
/// a concurrent run sees it whole or not at all) and kept between runs; remade if its
/// database is gone (a cleaner emptied it). Templates of other migrations go once they are
/// a day old.
async fn sqlite_template() -> &'static std::path::Path {
    static TEMPLATE: tokio::sync::OnceCell<std::path::PathBuf> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let dir = std::env::temp_dir().join(format!(
                "ordo-test-sqlite-{}",
                migrations_hash(Backend::Sqlite)
            ));
            if !dir.join("ordo.db").exists() {
                let _ = std::fs::remove_dir_all(&dir);
                remove_stale_sqlite_templates();
                let making = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
                let db = making.path().join("ordo.db");
                ordo::storage::migrate(&format!("sqlite://{}", db.display()))
                    .await
                    .expect("migrate the template");
                let made = making.keep();
                if std::fs::rename(&made, &dir).is_err() {
                    // Another run got there first.
                    let _ = std::fs::remove_dir_all(&made);
                }
            }
            dir
        })
        .await
}

/// Removes SQLite templates of other migrations last changed over a day ago.
fn remove_stale_sqlite_templates() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE));
        if old
            && e.file_name()
                .to_string_lossy()
                .starts_with("ordo-test-sqlite-")
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// `…/test` with another database name.
fn database_url(admin: &str, name: &str) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    format!("{base}/{name}")
}

/// A database of its own for one test, migrated: a copy of the backend's template.
pub async fn migrated_database(backend: Backend) -> (String, DbGuard) {
    match backend {
        Backend::Sqlite => {
            let template = sqlite_template().await;
            let dir = tempfile::tempdir().expect("tempdir");
            for entry in std::fs::read_dir(template).expect("template") {
                let from = entry.expect("template file").path();
                let name = from
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                // The WAL is copied with its database; the shared-memory index and the
                // lock are the running process's and are made anew.
                if name.ends_with("-shm") || name.ends_with(".lock") {
                    continue;
                }
                std::fs::copy(&from, dir.path().join(&name)).expect("copy the template");
            }
            let url = format!("sqlite://{}", dir.path().join("ordo.db").display());
            own_identity(&url, "lower(hex(randomblob(16)))").await;
            (url, DbGuard::Sqlite { _dir: dir })
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let template = pg_template().await;
            let name = format!("ordo_test_{}", uuid::Uuid::new_v4().simple());
            let admin = pg_admin_url();
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL server");
            let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .expect("clone the template");
            let url = database_url(&admin, &name);
            own_identity(&url, "replace(gen_random_uuid()::text, '-', '')").await;
            (url, DbGuard::Postgres(name))
        }
    }
}

/// A copy of the template is a shop of its own, as a fresh install is: a new shop id
/// (migration 0010 draws one), which names its NATS stream among other things.
async fn own_identity(url: &str, random_id: &str) {
    let sql = format!("UPDATE shop_identity SET shop_id = {random_id}");
    assert_eq!(execute(url, &[&sql], uuid::Uuid::nil()).await, 1);
}

/// Runs statements on the database at `url`, on one connection, with `id` as `$1` where a
/// statement has it (bound as the store binds it: a 16-byte blob on SQLite, a `uuid` on
/// PostgreSQL). Returns the rows the last one changed.
pub async fn execute(url: &str, statements: &[&str], id: uuid::Uuid) -> u64 {
    macro_rules! on {
        ($connection:ty) => {{
            use sqlx::Connection;
            let mut c = <$connection>::connect(url).await.expect("connect");
            let mut changed = 0;
            for st in statements {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(st.to_string()));
                if st.contains("$1") {
                    q = q.bind(id);
                }
                changed = q.execute(&mut c).await.expect(st).rows_affected();
            }
            c.close().await.expect("close");
            changed
        }};
    }
    if url.starts_with("sqlite:") {
        on!(sqlx::SqliteConnection)
    } else {
        on!(sqlx::PgConnection)
    }
}
