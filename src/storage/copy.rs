//! `ordo migrate-to postgres://…`: copies an embedded database into a fresh PostgreSQL
//! database, for a shop that outgrows one node.
//!
//! Generic on purpose: the tables are the ones both databases have (from `sqlite_master`
//! and PostgreSQL's catalog), so a table added by a later migration is copied without
//! changes here. Values are converted by the PostgreSQL column's type: SQLite keeps
//! timestamps as integer microseconds ([`super::Ts`]), UUIDs as 16-byte blobs, JSON as
//! text and booleans as integers. Everything goes in one transaction, parents before
//! children (foreign keys), and the sequences continue after the highest number the
//! embedded database handed out, so event ids and positions stay the same. The target must
//! hold no tables: Ordo migrates it first, and whatever its migrations seeded is replaced
//! by the embedded database's rows. The embedded database must not be in use by a server
//! (its lock is held for the copy), so nothing written meanwhile is left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use futures::TryStreamExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row, SqliteConnection};

use super::sqlite::{database_path, try_lock};

/// Rows per INSERT.
const BATCH: usize = 1000;

/// One column of a target table.
#[derive(Debug)]
struct Column {
    name: String,
    /// `format_type()`: what the text is cast to.
    sql_type: String,
    /// `pg_type.typname`: what decides the conversion.
    type_name: String,
}

/// What was copied: rows per table, and the SQLite tables PostgreSQL has no counterpart of.
#[derive(Debug, Default)]
pub struct Copied {
    pub tables: Vec<(String, u64)>,
    pub skipped: Vec<String>,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Copies the embedded database at `sqlite_url` into the empty PostgreSQL database at
/// `pg_url`.
pub async fn migrate_to(sqlite_url: &str, pg_url: &str) -> anyhow::Result<Copied> {
    if !(pg_url.starts_with("postgres://") || pg_url.starts_with("postgresql://")) {
        anyhow::bail!("the target must be a postgres:// URL");
    }
    if !sqlite_url.starts_with("sqlite:") {
        anyhow::bail!("DATABASE_URL must name the embedded database (sqlite://<path>)");
    }
    let db = database_path(sqlite_url)?
        .ok_or_else(|| anyhow::anyhow!("an in-memory database cannot be copied"))?;
    if !db.is_file() {
        anyhow::bail!("there is no database at {}", db.display());
    }
    let Some(_lock) = try_lock(&db)? else {
        anyhow::bail!(
            "a server is using {}; stop it first, so that nothing written meanwhile is left behind",
            db.display()
        );
    };
    let pg_opts = PgConnectOptions::from_str(pg_url)?;
    let mut pg = pg_opts.connect().await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')",
    )
    .fetch_one(&mut pg)
    .await?;
    if tables > 0 {
        anyhow::bail!(
            "the target database is not empty ({tables} tables); create a fresh one (createdb) and try again"
        );
    }
    // Both sides at this binary's schema.
    super::connect(sqlite_url, 2).await?;
    super::connect(pg_url, 2).await?;

    let columns = target_columns(&mut pg).await?;
    let order = parents_first(&mut pg, columns.keys().cloned().collect()).await?;

    let mut lite = SqliteConnectOptions::from_str(sqlite_url)?
        .read_only(true)
        .connect()
        .await?;
    let history_file = super::sqlite::history_path(&db);
    let history = history_file.is_file();
    if history {
        sqlx::query("ATTACH DATABASE $1 AS history")
            .bind(history_file.to_string_lossy().into_owned())
            .execute(&mut lite)
            .await?;
    }
    let source_tables: BTreeSet<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'",
    )
    .fetch_all(&mut lite)
    .await?
    .into_iter()
    .collect();
    // No AUTOINCREMENT table, no `sqlite_sequence`.
    let sequences: BTreeMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT name, seq FROM sqlite_sequence")
            .fetch_all(&mut lite)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
    let mut copied = Copied {
        skipped: source_tables
            .iter()
            .filter(|t| !columns.contains_key(*t))
            .cloned()
            .collect(),
        ..Copied::default()
    };
    let to_copy: Vec<&String> = order
        .iter()
        .filter(|t| source_tables.contains(*t) && *t != "_sqlx_migrations")
        .collect();

    // One read transaction: the copy is one snapshot of the embedded database.
    sqlx::query("BEGIN").execute(&mut lite).await?;
    let mut tx = pg.begin().await?;
    // The target held nothing before Ordo migrated it: rows there were seeded by its
    // migrations, and the embedded database has its own.
    for table in to_copy.iter().rev() {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", ident(table))))
            .execute(&mut *tx)
            .await?;
    }
    for table in &to_copy {
        let n = copy_table(
            &mut lite,
            &mut tx,
            Source::Main(table),
            table,
            &columns[*table],
        )
        .await?;
        copied.tables.push(((*table).clone(), n));
    }
    // The order history's file, into the `*_history` tables.
    if history {
        for (table, key) in crate::history::store::TABLES {
            let target = format!("{table}_history");
            let cols = columns
                .get(&target)
                .ok_or_else(|| anyhow::anyhow!("the target has no {target}"))?;
            let n = copy_table(
                &mut lite,
                &mut tx,
                Source::History { table, key },
                &target,
                cols,
            )
            .await?;
            copied.tables.push((target, n));
        }
    }
    fix_sequences(&mut tx, &sequences).await?;
    tx.commit().await?;
    sqlx::query("COMMIT").execute(&mut lite).await?;
    lite.close().await?;
    pg.close().await?;
    Ok(copied)
}

/// Every ordinary table of the target's schema and its writable columns, in order.
async fn target_columns(pg: &mut PgConnection) -> anyhow::Result<BTreeMap<String, Vec<Column>>> {
    let rows = sqlx::query(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text \
         FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_type t ON t.oid = a.atttypid \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') \
           AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
         ORDER BY c.relname, a.attnum",
    )
    .fetch_all(&mut *pg)
    .await?;
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for r in rows {
        let table: String = r.try_get(0)?;
        tables.entry(table).or_default().push(Column {
            name: r.try_get(1)?,
            sql_type: r.try_get(2)?,
            type_name: r.try_get(3)?,
        });
    }
    tables.remove("_sqlx_migrations");
    Ok(tables)
}

/// `tables` ordered so that every table comes after the tables its foreign keys name.
async fn parents_first(pg: &mut PgConnection, tables: Vec<String>) -> anyhow::Result<Vec<String>> {
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, p.relname::text FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid \
         WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *pg)
    .await?;
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (child, parent) in &edges {
        if child != parent {
            parents.entry(child).or_default().insert(parent);
        }
    }
    let mut done: Vec<String> = Vec::new();
    let mut left: Vec<String> = tables;
    while !left.is_empty() {
        let (ready, wait): (Vec<String>, Vec<String>) = left.into_iter().partition(|t| {
            parents
                .get(t.as_str())
                .is_none_or(|ps| ps.iter().all(|p| done.iter().any(|d| d == p)))
        });
        if ready.is_empty() {
            anyhow::bail!("the foreign keys between {wait:?} form a cycle");
        }
        done.extend(ready);
        left = wait;
    }
    Ok(done)
}

/// Where rows are read from: a table of the main file, or of the attached order history
/// (only the orders not also live: a move cut short by a crash leaves both copies, and the
/// live one is the order).
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    Main(&'a str),
    History { table: &'a str, key: &'a str },
}

impl Source<'_> {
    fn rows_sql(&self) -> String {
        match self {
            Source::Main(t) => ident(t),
            Source::History { table, key } => format!(
                "history.{} h WHERE NOT EXISTS (SELECT 1 FROM main.orders m WHERE m.id = h.{})",
                ident(table),
                ident(key)
            ),
        }
    }

    fn columns_sql(&self) -> String {
        let (table, schema) = match self {
            Source::Main(t) => (t, "main"),
            Source::History { table, .. } => (table, "history"),
        };
        format!(
            "SELECT name FROM pragma_table_info('{}', '{schema}')",
            table.replace('\'', "''")
        )
    }
}

/// SQLite's value as text, with its storage class: blobs in hex, reals in full precision.
fn select_sql(source: Source<'_>, names: &[&str]) -> String {
    let cols: Vec<String> = names
        .iter()
        .map(|n| {
            let c = ident(n);
            format!(
                "typeof({c}), CASE typeof({c}) WHEN 'blob' THEN hex({c}) WHEN 'real' THEN printf('%!.17g', {c}) ELSE CAST({c} AS TEXT) END"
            )
        })
        .collect();
    format!(
        "SELECT {} FROM {} ORDER BY rowid",
        cols.join(", "),
        source.rows_sql()
    )
}

async fn copy_table(
    lite: &mut SqliteConnection,
    pg: &mut PgConnection,
    from: Source<'_>,
    table: &str,
    target: &[Column],
) -> anyhow::Result<u64> {
    let source: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(from.columns_sql()))
        .fetch_all(&mut *lite)
        .await?
        .into_iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    let only_here: Vec<&String> = source
        .iter()
        .filter(|s| !target.iter().any(|c| &c.name == *s))
        .collect();
    if !only_here.is_empty() {
        anyhow::bail!("{table}: columns {only_here:?} exist only in the embedded database");
    }
    let cols: Vec<&Column> = target.iter().filter(|c| source.contains(&c.name)).collect();
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    let insert = format!(
        "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({})",
        ident(table),
        names
            .iter()
            .map(|n| ident(n))
            .collect::<Vec<_>>()
            .join(", "),
        cols.iter()
            .enumerate()
            .map(|(i, c)| format!("u.c{i}::{}", c.sql_type))
            .collect::<Vec<_>>()
            .join(", "),
        (1..=cols.len())
            .map(|i| format!("${i}::text[]"))
            .collect::<Vec<_>>()
            .join(", "),
        (0..cols.len())
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let select = select_sql(from, &names);
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *lite);
    let mut batch: Vec<Vec<Option<String>>> = vec![Vec::new(); cols.len()];
    let mut total = 0u64;
    let mut pending = 0usize;
    while let Some(row) = rows.try_next().await? {
        for (i, c) in cols.iter().enumerate() {
            let kind: String = row.try_get(2 * i)?;
            let text: Option<String> = row.try_get(2 * i + 1)?;
            let value = convert(&kind, text, &c.type_name)
                .map_err(|e| anyhow::anyhow!("{table}.{}: {e}", c.name))?;
            batch[i].push(value);
        }
        pending += 1;
        if pending == BATCH {
            total += insert_batch(pg, &insert, &mut batch).await?;
            pending = 0;
        }
    }
    drop(rows);
    if pending > 0 {
        total += insert_batch(pg, &insert, &mut batch).await?;
    }
    let counted: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        from.rows_sql()
    )))
    .fetch_one(&mut *lite)
    .await?;
    if counted as u64 != total {
        anyhow::bail!("{table}: read {total} rows of {counted}");
    }
    Ok(total)
}

async fn insert_batch(
    pg: &mut PgConnection,
    insert: &str,
    batch: &mut [Vec<Option<String>>],
) -> anyhow::Result<u64> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.to_owned()));
    for col in batch.iter_mut() {
        q = q.bind(std::mem::take(col));
    }
    Ok(q.execute(&mut *pg).await?.rows_affected())
}

/// One SQLite value (storage class `kind`, as text) as the text PostgreSQL casts to
/// `type_name`.
fn convert(kind: &str, text: Option<String>, type_name: &str) -> anyhow::Result<Option<String>> {
    let Some(text) = text else {
        return Ok(None);
    };
    Ok(Some(match (kind, type_name) {
        ("null", _) => return Ok(None),
        ("blob", "uuid") => {
            let h = text.to_ascii_lowercase();
            if h.len() != 32 {
                anyhow::bail!("a UUID must be 16 bytes, not {}", h.len() / 2);
            }
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        }
        ("blob", "bytea") => format!("\\x{text}"),
        ("blob", _) => String::from_utf8(hex::decode(&text)?)
            .map_err(|_| anyhow::anyhow!("binary data where PostgreSQL has {type_name}"))?,
        ("text", "bytea") => format!("\\x{}", hex::encode(text.as_bytes())),
        ("integer", "timestamptz" | "timestamp") => {
            let us: i64 = text.parse()?;
            let t = super::Ts::from_micros(us)?;
            t.0.format(&time::format_description::well_known::Rfc3339)?
        }
        ("integer", "date") => {
            let us: i64 = text.parse()?;
            let t = super::Ts::from_micros(us)?;
            t.0.date().to_string()
        }
        ("integer", "bool") => if text == "0" { "false" } else { "true" }.to_owned(),
        ("integer" | "real" | "text", t) if t.starts_with('_') => {
            anyhow::bail!("array columns ({t}) are not supported")
        }
        _ => text,
    }))
}

/// Sequences continue after the highest value in their column, or the highest number the
/// embedded database handed out (AUTOINCREMENT), whichever is higher.
async fn fix_sequences(
    pg: &mut PgConnection,
    handed_out: &BTreeMap<String, i64>,
) -> anyhow::Result<()> {
    let serials: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, pg_get_serial_sequence(quote_ident(c.relname), a.attname) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') \
           AND a.attnum > 0 AND NOT a.attisdropped \
           AND pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL",
    )
    .fetch_all(&mut *pg)
    .await?;
    for (table, column, sequence) in serials {
        let max: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT max({})::bigint FROM {}",
            ident(&column),
            ident(&table)
        )))
        .fetch_one(&mut *pg)
        .await?;
        let last = max
            .unwrap_or(0)
            .max(handed_out.get(&table).copied().unwrap_or(0));
        if last > 0 {
            sqlx::query("SELECT setval($1::regclass, $2, true)")
                .bind(&sequence)
                .bind(last)
                .execute(&mut *pg)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_the_form_postgresql_reads() {
        let uuid = "0193A1B2C3D4E5F60718293A4B5C6D7E";
        assert_eq!(
            convert("blob", Some(uuid.into()), "uuid").ok().flatten(),
            Some("0193a1b2-c3d4-e5f6-0718-293a4b5c6d7e".into())
        );
        assert_eq!(
            convert("integer", Some("1700000000123456".into()), "timestamptz")
                .ok()
                .flatten(),
            Some("2023-11-14T22:13:20.123456Z".into())
        );
        assert_eq!(
            convert("integer", Some("0".into()), "bool").ok().flatten(),
            Some("false".into())
        );
        assert_eq!(
            convert("blob", Some("00FF".into()), "bytea").ok().flatten(),
            Some("\\x00FF".into())
        );
        assert_eq!(
            convert("text", Some("{\"a\":1}".into()), "jsonb")
                .ok()
                .flatten(),
            Some("{\"a\":1}".into())
        );
        assert_eq!(convert("null", None, "text").ok().flatten(), None);
        assert!(convert("blob", Some("00".into()), "uuid").is_err());
    }
}
