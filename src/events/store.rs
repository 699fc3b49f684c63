//! Storage side of the event log as a source: reading it in order (with what a reader
//! needs to know about transactions still in flight), replays, consumer positions and
//! leadership of the jobs that must run on one node at a time.

use async_trait::async_trait;
use uuid::Uuid;

use crate::orders::store::EventRow;
use crate::storage::{Result, Ts};

/// Events after a position, read in one snapshot, with the transactions that snapshot saw
/// still running (PostgreSQL ids; always empty on SQLite, whose one writer commits in id
/// order).
#[derive(Debug, Default)]
pub struct OutboxRead {
    pub rows: Vec<EventRow>,
    pub in_flight: Vec<i64>,
}

/// Who may see what in a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// A customer: only its own orders' events.
    Customer(Uuid),
    /// Staff, admins and integrations with `orders:read`: every event.
    Everyone,
}

/// Held by the node that runs a single-node job; dropping it gives the job up.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Still held? (PostgreSQL: the session that holds the advisory lock is alive.)
    async fn alive(&mut self) -> bool;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Up to `limit` events with ids above `after`, in id order.
    async fn events_after(&self, after: i64, limit: u32) -> Result<OutboxRead>;
    /// Have all of these transactions (from `OutboxRead::in_flight`) ended?
    async fn transactions_ended(&self, xids: &[i64]) -> Result<bool>;
    /// These transactions, less those known to write to another database of the server
    /// (PostgreSQL's transaction ids are server-wide; those cannot hold our event ids).
    async fn ours(&self, xids: Vec<i64>) -> Result<Vec<i64>>;
    /// The highest event id, with the transactions still running when it was read.
    async fn last_event(&self) -> Result<OutboxRead>;
    /// Events `audience` may see with ids in `(after, upto]`, in id order, at most `limit`.
    async fn replay(
        &self,
        audience: Audience,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>>;
    async fn cursor(&self, name: &str) -> Result<Option<i64>>;
    /// This database's identity, made when it was created (names and marks the NATS stream).
    async fn shop_id(&self) -> Result<String>;
    /// Stores a consumer's position (it only moves forward).
    async fn save_cursor(&self, name: &str, position: i64, at: Ts) -> Result<()>;
    /// Tries to become the one node running job `name`; `None` while another node is.
    async fn try_lead(&self, name: &str) -> Result<Option<Box<dyn Lease>>>;
    /// Appends a carrier scan to each of these (order, customer) pairs in one statement:
    /// the load generator's way to make events without the API (`ordo bench ws
    /// --insert-into`).
    async fn bench_insert_events(&self, scans: &[(Uuid, Uuid)], at: Ts) -> Result<()>;
}

/// A lease on SQLite: one node by construction.
struct Always;

#[async_trait]
impl Lease for Always {
    async fn alive(&mut self) -> bool {
        true
    }
}

#[path = "."]
mod sqlite {
    use super::{Always, Lease, OutboxRead};
    use crate::orders::store::{EVENT_COLUMNS, EventRow};
    use crate::storage::Result;
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;

    impl Backend {
        async fn read_after(&self, after: i64, limit: u32) -> Result<OutboxRead> {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM order_events WHERE id > $1 ORDER BY id LIMIT $2"
            );
            let rows = sqlx::query_as::<Db, EventRow>(sqlx::AssertSqlSafe(sql))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
            Ok(OutboxRead {
                rows,
                in_flight: Vec::new(),
            })
        }

        async fn read_last(&self) -> Result<OutboxRead> {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM order_events ORDER BY id DESC LIMIT 1");
            let rows = sqlx::query_as::<Db, EventRow>(sqlx::AssertSqlSafe(sql))
                .fetch_all(self.reader())
                .await?;
            Ok(OutboxRead {
                rows,
                in_flight: Vec::new(),
            })
        }

        async fn ended(&self, _: &[i64]) -> Result<bool> {
            Ok(true)
        }

        async fn local(&self, xids: Vec<i64>) -> Result<Vec<i64>> {
            Ok(xids)
        }

        async fn lead(&self, _: &str) -> Result<Option<Box<dyn Lease>>> {
            Ok(Some(Box::new(Always)))
        }
    }
}

#[path = "."]
mod postgres {
    use async_trait::async_trait;
    use sqlx::Connection;

    use super::{Lease, OutboxRead};
    use crate::orders::store::{EVENT_COLUMNS, EventRow};
    use crate::storage::Result;
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;

    /// The transactions running in this statement's snapshot, as plain numbers.
    /// Transaction ids are server-wide: the list may hold other databases' writers, which
    /// cannot hold our event ids; `foreign` tells them apart when a gap must wait.
    const IN_FLIGHT: &str = "(SELECT coalesce(array_agg(x::text::bigint), '{}') FROM pg_snapshot_xip(pg_current_snapshot()) AS x)";

    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        event: EventRow,
        in_flight: Vec<i64>,
    }

    fn split(rows: Vec<Row>) -> OutboxRead {
        let in_flight = rows
            .first()
            .map(|r| r.in_flight.clone())
            .unwrap_or_default();
        OutboxRead {
            rows: rows.into_iter().map(|r| r.event).collect(),
            in_flight,
        }
    }

    /// An advisory lock held by a session of its own: it lasts as long as the session.
    struct AdvisoryLease(sqlx::PgConnection);

    #[async_trait]
    impl super::Lease for AdvisoryLease {
        async fn alive(&mut self) -> bool {
            self.0.ping().await.is_ok()
        }
    }

    /// A stable 64-bit key per job name (FNV-1a), in Ordo's own range of lock keys.
    fn lock_key(name: &str) -> i64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("ordo:{name}").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        i64::from_ne_bytes(h.to_ne_bytes())
    }

    impl Backend {
        async fn read_after(&self, after: i64, limit: u32) -> Result<OutboxRead> {
            // One statement, so the events and the list of running transactions come from
            // the same snapshot.
            let sql = format!(
                "SELECT {EVENT_COLUMNS}, {IN_FLIGHT} AS in_flight FROM order_events WHERE id > $1 ORDER BY id LIMIT $2"
            );
            let rows = sqlx::query_as::<Db, Row>(sqlx::AssertSqlSafe(sql))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
            Ok(split(rows))
        }

        async fn read_last(&self) -> Result<OutboxRead> {
            let sql = format!(
                "SELECT {EVENT_COLUMNS}, {IN_FLIGHT} AS in_flight FROM order_events ORDER BY id DESC LIMIT 1"
            );
            let rows = sqlx::query_as::<Db, Row>(sqlx::AssertSqlSafe(sql))
                .fetch_all(self.reader())
                .await?;
            let mut read = split(rows);
            if read.rows.is_empty() {
                // No events at all: transactions may still be writing the first ones.
                read.in_flight = sqlx::query_scalar::<Db, Vec<i64>>(sqlx::AssertSqlSafe(format!(
                    "SELECT {IN_FLIGHT}"
                )))
                .fetch_one(self.reader())
                .await?;
            }
            Ok(read)
        }

        async fn local(&self, xids: Vec<i64>) -> Result<Vec<i64>> {
            // A transaction listed for another database is not ours. One that ended before
            // this was read is not listed, so it stays: waiting for it costs nothing, while
            // dropping one of ours could pass an event that still commits.
            Ok(sqlx::query_scalar::<Db, Vec<i64>>(
                "SELECT coalesce(array_agg(x), '{}') FROM unnest($1::bigint[]) AS x \
                 WHERE (x % 4294967296) NOT IN (SELECT backend_xid::text::bigint FROM pg_stat_activity \
                 WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database())",
            )
            .bind(&xids)
            .fetch_one(self.reader())
            .await?)
        }

        async fn ended(&self, xids: &[i64]) -> Result<bool> {
            let sql = format!("SELECT NOT ({IN_FLIGHT} && $1::bigint[])");
            Ok(sqlx::query_scalar::<Db, bool>(sqlx::AssertSqlSafe(sql))
                .bind(xids)
                .fetch_one(self.reader())
                .await?)
        }

        async fn lead(&self, name: &str) -> Result<Option<Box<dyn Lease>>> {
            // The lock lives as long as this session. If the node vanishes without closing
            // it (a lost machine, a cut network), the server notices within about half a
            // minute through TCP keepalives and releases the lock for another node.
            let options = self.reader().connect_options().as_ref().clone().options([
                ("tcp_keepalives_idle", "10"),
                ("tcp_keepalives_interval", "5"),
                ("tcp_keepalives_count", "3"),
            ]);
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(lock_key(name))
                .fetch_one(&mut conn)
                .await?;
            if !got {
                let _ = conn.close().await;
                return Ok(None);
            }
            Ok(Some(Box::new(AdvisoryLease(conn))))
        }
    }
}
