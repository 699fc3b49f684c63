//! Storage of the order history: moving ended orders out of the live tables and back.

use async_trait::async_trait;
use uuid::Uuid;

use crate::storage::{Result, Ts};

/// The tables an order's rows live in, parents first, each with the column naming the
/// order. Each has a history twin and an `<table>_all` view.
pub(crate) const TABLES: [(&str, &str); 5] = [
    ("orders", "id"),
    ("order_items", "order_id"),
    ("order_events", "order_id"),
    ("payment_transactions", "order_id"),
    ("tracking_link_revocations", "order_id"),
];

/// The condition (on `orders o`) of an order that ended: delivered, or canceled with its
/// money settled (no refund owed, no charge that may still land), and no payment step the
/// saga still has to look at.
pub(crate) const ENDED: &str = "(o.status = 'delivered' \
     OR (o.status = 'canceled' AND o.payment_status IN ('failed', 'refunded'))) \
     AND NOT EXISTS (SELECT 1 FROM payment_transactions p \
                     WHERE p.order_id = o.id AND p.next_attempt_at IS NOT NULL) \
     AND NOT EXISTS (SELECT 1 FROM history_restored r WHERE r.order_id = o.id AND r.at >= $1)";

#[async_trait]
pub trait HistoryStore {
    /// Moves up to `limit` orders that ended and last changed before `cutoff` (oldest
    /// first) into the history, with all their rows; returns how many moved.
    async fn archive_ended(&self, cutoff: Ts, limit: u32) -> Result<u64>;
    /// Moves an archived order back into the live tables, so that it can change again,
    /// where it stays for another archive period from `now`; `false` when it was not
    /// archived.
    async fn restore_order(&self, id: Uuid, now: Ts) -> Result<bool>;
    /// Rolls up the whole history afresh when its rollups do not cover it (a history
    /// archived before they existed, or a new history file); returns the orders read, or
    /// `None` when the rollups were whole already.
    async fn rebuild_rollups(&self) -> Result<Option<u64>>;
}

/// `INSERT INTO to (cols) SELECT cols FROM from WHERE key IN ids`, for the columns of the
/// live table (the history twin has them all: see `storage::sqlite::sync_history` and
/// migration 0016).
fn copy_sql(from: &str, to: &str, key: &str, cols: &[String], ids: &str) -> String {
    let cols = cols.join(", ");
    format!(
        "INSERT INTO {to} ({cols}) SELECT {cols} FROM {from} WHERE {key} {ids} ON CONFLICT DO NOTHING"
    )
}

#[path = "."]
pub(crate) mod sqlite {
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    #[path = "rollup_queries.rs"]
    pub(crate) mod rollup_sql;

    use async_trait::async_trait;
    use sqlx::SqliteConnection;
    use uuid::Uuid;

    use super::{ENDED, HistoryStore, TABLES, copy_sql};
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    use crate::storage::{Result, Ts};

    /// Where the history twin of `table` lives: the attached `history` database.
    fn history(table: &str) -> String {
        format!("history.{table}")
    }

    fn live(table: &str) -> String {
        format!("main.{table}")
    }

    async fn columns(c: &mut SqliteConnection, table: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar::<Db, String>(
            "SELECT name FROM pragma_table_info(?1, 'main') ORDER BY cid",
        )
        .bind(table)
        .fetch_all(&mut *c)
        .await?)
    }

    /// Runs `sql` with the ids bound to its `?`s.
    async fn exec(c: &mut SqliteConnection, sql: String, ids: &[Uuid]) -> Result<()> {
        let mut q = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        q.execute(c).await?;
        Ok(())
    }

    /// Copies the orders' rows from `from` to `to` (replacing any older copy there) in one
    /// transaction, then deletes them from `from` in another: on SQLite two attached WAL
    /// databases cannot commit together. Both run on the one writer connection, so no other
    /// write comes between them. The rollups (in the main file) change with the live side:
    /// with the delete when archiving, with the copy when moving back, so an order left in
    /// both files by a crash counts as live only.
    async fn shift(
        c: &mut SqliteConnection,
        ids: &[Uuid],
        from: fn(&str) -> String,
        to: fn(&str) -> String,
        archiving: bool,
    ) -> Result<()> {
        let set = format!("IN ({})", vec!["?"; ids.len()].join(", "));
        let mut cols = Vec::with_capacity(TABLES.len());
        for (t, _) in TABLES {
            cols.push(columns(c, t).await?);
        }
        let mut tx = sqlx::Connection::begin(&mut *c).await?;
        for (t, key) in TABLES.iter().rev() {
            exec(
                &mut tx,
                format!("DELETE FROM {} WHERE {key} {set}", to(t)),
                ids,
            )
            .await?;
        }
        for ((t, key), cols) in TABLES.iter().zip(&cols) {
            exec(&mut tx, copy_sql(&from(t), &to(t), key, cols, &set), ids).await?;
        }
        if !archiving {
            rollup_sql::roll(&mut tx, from, ids, -1).await?;
        }
        tx.commit().await?;
        let mut tx = sqlx::Connection::begin(&mut *c).await?;
        if archiving {
            rollup_sql::roll(&mut tx, from, ids, 1).await?;
        }
        for (t, key) in TABLES.iter().rev() {
            exec(
                &mut tx,
                format!("DELETE FROM {} WHERE {key} {set}", from(t)),
                ids,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Keeps an order moved back live for another archive period.
    async fn remember_restored(c: &mut SqliteConnection, id: Uuid, now: Ts) -> Result<()> {
        sqlx::query::<Db>(
            "INSERT INTO main.history_restored (order_id, at) VALUES ($1, $2) \
             ON CONFLICT (order_id) DO UPDATE SET at = excluded.at",
        )
        .bind(id)
        .bind(now)
        .execute(c)
        .await?;
        Ok(())
    }

    #[async_trait]
    impl HistoryStore for Backend {
        async fn archive_ended(&self, cutoff: Ts, limit: u32) -> Result<u64> {
            let mut c = self.writer().acquire().await?;
            // Moved back longer than a period ago: the mark no longer keeps anything live.
            sqlx::query::<Db>("DELETE FROM main.history_restored WHERE at < $1")
                .bind(cutoff)
                .execute(&mut *c)
                .await?;
            let sql = format!(
                "SELECT o.id FROM main.orders o WHERE o.status IN ('delivered', 'canceled') \
                 AND o.updated_at < $1 AND {ENDED} ORDER BY o.created_at LIMIT $2"
            );
            let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(cutoff)
                .bind(i64::from(limit))
                .fetch_all(&mut *c)
                .await?;
            if ids.is_empty() {
                return Ok(0);
            }
            shift(&mut c, &ids, live, history, true).await?;
            Ok(ids.len() as u64)
        }

        async fn restore_order(&self, id: Uuid, now: Ts) -> Result<bool> {
            let mut c = self.writer().acquire().await?;
            let archived: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM history.orders WHERE id = ?1")
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await?;
            if archived.is_none() {
                return Ok(false);
            }
            // Left behind by a move cut short by a crash: the live copy is the order.
            let live_too: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM main.orders WHERE id = ?1")
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await?;
            remember_restored(&mut c, id, now).await?;
            if live_too.is_some() {
                let mut tx = sqlx::Connection::begin(&mut *c).await?;
                for (t, key) in TABLES.iter().rev() {
                    exec(
                        &mut tx,
                        format!("DELETE FROM {} WHERE {key} = ?", history(t)),
                        &[id],
                    )
                    .await?;
                }
                tx.commit().await?;
                return Ok(true);
            }
            shift(&mut c, &[id], history, live, false).await?;
            Ok(true)
        }

        async fn rebuild_rollups(&self) -> Result<Option<u64>> {
            // The one writer connection: no move comes between.
            let mut c = self.writer().acquire().await?;
            if rollup_sql::built(&mut c).await? {
                return Ok(None);
            }
            let mut tx = sqlx::Connection::begin(&mut *c).await?;
            let read = rollup_sql::rebuild(&mut tx, live, history).await?;
            tx.commit().await?;
            Ok(Some(read))
        }
    }
}

#[path = "."]
pub(crate) mod postgres {
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    #[path = "rollup_queries.rs"]
    pub(crate) mod rollup_sql;

    use async_trait::async_trait;
    use uuid::Uuid;

    use super::{ENDED, HistoryStore, TABLES, copy_sql};
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    use crate::storage::{Result, Ts};

    async fn columns(c: &mut sqlx::PgConnection, table: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar::<Db, String>(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut *c)
        .await?)
    }

    /// Copies the orders' rows from `from` to `to` and deletes them from `from`, inside the
    /// caller's transaction (children deleted before their order), adding them to the
    /// history rollups (`sign` 1) or taking them away (-1) first.
    async fn shift(
        tx: &mut sqlx::PgConnection,
        ids: &[Uuid],
        from: fn(&str) -> String,
        to: fn(&str) -> String,
        sign: i64,
    ) -> Result<()> {
        rollup_sql::roll(tx, from, ids, sign).await?;
        for (t, key) in TABLES {
            let cols = columns(tx, t).await?;
            let sql = copy_sql(&from(t), &to(t), key, &cols, "= ANY($1)");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ids)
                .execute(&mut *tx)
                .await?;
        }
        for (t, key) in TABLES.iter().rev() {
            let sql = format!("DELETE FROM {} WHERE {key} = ANY($1)", from(t));
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ids)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    fn live(table: &str) -> String {
        table.to_owned()
    }

    fn history(table: &str) -> String {
        format!("{table}_history")
    }

    #[async_trait]
    impl HistoryStore for Backend {
        async fn archive_ended(&self, cutoff: Ts, limit: u32) -> Result<u64> {
            // Moved back longer than a period ago: the mark no longer keeps anything live.
            sqlx::query::<Db>("DELETE FROM history_restored WHERE at < $1")
                .bind(cutoff)
                .execute(self.writer())
                .await?;
            let mut tx = self.writer().begin().await?;
            // Locked for the move: a change that comes meanwhile waits, then finds the
            // order archived and moves it back. Rows another node is moving are skipped.
            let sql = format!(
                "SELECT o.id FROM orders o WHERE o.status IN ('delivered', 'canceled') \
                 AND o.updated_at < $1 AND {ENDED} ORDER BY o.created_at LIMIT $2 \
                 FOR UPDATE OF o SKIP LOCKED"
            );
            let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(cutoff)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            if ids.is_empty() {
                return Ok(0);
            }
            shift(&mut tx, &ids, live, history, 1).await?;
            tx.commit().await?;
            Ok(ids.len() as u64)
        }

        async fn restore_order(&self, id: Uuid, now: Ts) -> Result<bool> {
            let mut tx = self.writer().begin().await?;
            let archived: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM orders_history WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if archived.is_none() {
                return Ok(false);
            }
            shift(&mut tx, &[id], history, live, -1).await?;
            sqlx::query::<Db>(
                "INSERT INTO history_restored (order_id, at) VALUES ($1, $2) \
                 ON CONFLICT (order_id) DO UPDATE SET at = excluded.at",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        }

        async fn rebuild_rollups(&self) -> Result<Option<u64>> {
            if rollup_sql::built(&mut *self.reader().acquire().await?).await? {
                return Ok(None);
            }
            let mut tx = self.writer().begin().await?;
            sqlx::query::<Db>("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
            // Every move writes the rollups: these locks hold moves back (and wait for the
            // ones under way) until the rebuild commits. Reads go on.
            sqlx::query::<Db>(
                "LOCK TABLE history_rollup_state, history_rollup_orders, history_rollup_items, \
                 history_rollup_durations, history_durations IN EXCLUSIVE MODE",
            )
            .execute(&mut *tx)
            .await?;
            if rollup_sql::built(&mut tx).await? {
                return Ok(None);
            }
            let read = rollup_sql::rebuild(&mut tx, live, history).await?;
            tx.commit().await?;
            Ok(Some(read))
        }
    }
}
