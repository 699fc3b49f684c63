//! The order history (API.md "History"): orders that ended (`delivered`, or `canceled` with
//! their money settled) longer than `ORDO_ARCHIVE_AFTER` ago move out of the live tables,
//! with their lines, timeline, payment steps and link revocations, so that the tables every
//! placement and list touches stay small however long the shop runs.
//!
//! - **Where.** PostgreSQL: `*_history` twins of the five tables in the same database.
//!   SQLite: the same tables in an attached file beside the database (`<db>.history`).
//! - **Reads.** Every read of an order goes through the `*_all` views (live ∪ history, with
//!   `archived` on orders), so gets, timelines, lists with every filter and cursor, export,
//!   erasure and analytics see archived orders exactly as before.
//! - **Writes.** A write to an archived order (a late refund, a carrier update, a refused
//!   transition that must still be answered as before) first moves it back
//!   ([`HistoryStore::restore_order`]); the archive job takes it again later.
//! - **Moves.** The job runs on one node at a time, a batch per tick. PostgreSQL moves a
//!   batch in one transaction (rows locked, `SKIP LOCKED`). SQLite cannot commit two
//!   attached WAL databases atomically, so a move is two transactions on the one writer
//!   connection: copy into the target, then delete from the source. After a crash between
//!   them an order is in both places; the views show the live copy only, and the next move
//!   replaces the stale copy. Nothing is lost or shown twice.

pub mod rollup;
pub mod store;

use crate::app::AppState;
use crate::jobs::{Job, Tick};
use crate::storage::Ts;

/// Orders moved per tick (one transaction on PostgreSQL).
pub const BATCH: u32 = 500;

/// The archive job: moves one batch of orders that ended before `now - archive_after`; a
/// full batch asks for the next tick at once.
pub struct Archiver {
    state: AppState,
}

impl Archiver {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl Job for Archiver {
    type Run = ();

    /// Rolls up a history the rollups do not cover yet (once, after an upgrade).
    async fn begin(&mut self) -> anyhow::Result<()> {
        if let Some(read) = self.state.store.rebuild_rollups().await? {
            tracing::info!(read, "history rolled up for the analytics");
        }
        Ok(())
    }

    #[tracing::instrument(name = "archive", skip_all, fields(moved))]
    async fn tick(
        &mut self,
        _: &mut (),
        _: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Tick> {
        let s = &self.state;
        let cutoff = Ts::truncated(s.clock.now() - s.config.archive_after);
        let moved = s.store.archive_ended(cutoff, BATCH).await?;
        tracing::Span::current().record("moved", moved);
        if moved > 0 {
            metrics::counter!("ordo_orders_archived_total").increment(moved);
            tracing::info!(moved, "orders moved to the history");
        }
        Ok(if moved >= u64::from(BATCH) {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}
