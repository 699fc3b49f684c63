//! Privacy: a person's data export (GDPR art. 15/20) and erasure (art. 17).
//!
//! This is the one module that knows every table holding data about a person: the export
//! reads them all in one snapshot, and the erasure rewrites them all in one transaction
//! with its audit entry. A table added later that holds personal data belongs in
//! `queries.rs` here (the privacy tests scan every table for a person's traces).

pub mod domain;
pub mod http;
pub mod service;
pub mod store;

use std::time::Duration;

use uuid::Uuid;

use crate::app::AppState;
use crate::jobs::{Job, Tick};
use crate::storage::Ts;

/// Follows erasures made on any node (every node runs it, each second): the erased
/// person's tokens are refused and its live connections here end, as on the node that
/// erased it. A run starts a little before its start, so an erasure committed just before
/// is not missed (handling one twice changes nothing).
pub struct ErasureWatch {
    state: AppState,
}

impl ErasureWatch {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Erasures handled per tick; a full batch asks for the next tick at once.
const WATCH_BATCH: u32 = 500;

impl Job for ErasureWatch {
    /// The last erasure seen: (erased_at, id).
    type Run = (Ts, Uuid);

    async fn begin(&mut self) -> anyhow::Result<(Ts, Uuid)> {
        let now = self.state.clock.now() - Duration::from_secs(10);
        Ok((Ts::truncated(now), Uuid::nil()))
    }

    async fn tick(
        &mut self,
        seen: &mut (Ts, Uuid),
        _: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Tick> {
        let s = &self.state;
        let erased = s.store.erased_after(seen.0, seen.1, WATCH_BATCH).await?;
        for (at, id) in &erased {
            s.auth.account_erased(*id);
            s.hub.disconnect_customer(*id);
            *seen = (*at, *id);
        }
        Ok(if erased.len() as u32 >= WATCH_BATCH {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}
