//! The relay: moves the event log onto the bus, in order.
//!
//! With a shared bus (NATS) one node of the cluster relays at a time: it holds a lease
//! (a PostgreSQL advisory lock on a session of its own), starts after what the bus already
//! holds or the position it stored, whichever is further, publishes, then stores its new
//! position. If it dies between the two, the next relay re-sends a few events, which
//! JetStream drops as repeats (same `Nats-Msg-Id`). Without a shared bus each node relays
//! the log into its own hub, starting at the end of the log.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::PushEvent;
use super::bus::EventBus;
use super::hub::Hub;
use super::outbox::Outbox;
use crate::clock::Clock;

/// The name of the relay's lease and stored position.
pub const RELAY: &str = "relay";
/// How often an idle relay looks for new events (it looks again at once after a full
/// batch).
const POLL: Duration = Duration::from_millis(10);
const BATCH: u32 = 256;

pub struct Relay {
    pub store: crate::storage::DynStore,
    pub bus: Arc<dyn EventBus>,
    pub hub: Arc<Hub>,
    pub clock: Arc<dyn Clock>,
}

/// Runs `job` again and again until `shutdown`, a second apart: a job that leads when it
/// can and works while it leads (the relay, the notifier) starts over when it loses the
/// lease or meets an error.
pub async fn keep_running<F, Fut>(what: &'static str, shutdown: &CancellationToken, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    while !shutdown.is_cancelled() {
        if let Err(e) = job().await {
            tracing::warn!(error = %e, "{what} stopped; starting again");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

impl Relay {
    /// Runs until `shutdown`: leads when it can, relays while it leads.
    pub async fn run(self, shutdown: CancellationToken) {
        keep_running("the event relay", &shutdown, || self.lead(&shutdown)).await;
    }

    async fn lead(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let shared = self.bus.shared();
        let mut lease = if shared {
            match self.store.try_lead(RELAY).await? {
                Some(lease) => Some(lease),
                // Another node relays; look again in a moment.
                None => return Ok(()),
            }
        } else {
            None
        };
        let mut outbox = if shared {
            let stored = self.store.cursor(RELAY).await?.unwrap_or(0);
            let on_bus = self.bus.last_published().await?.unwrap_or(0);
            tracing::info!(stored, on_bus, "this node relays events to the bus");
            Outbox::after(stored.max(on_bus))
        } else if self.hub.is_started() {
            // Started again after an error: go on from the last event handed to
            // connections, so that the ones that stayed open miss nothing.
            Outbox::after(self.hub.head())
        } else {
            let outbox = Outbox::at_end(self.store.as_ref()).await?;
            self.hub.start_at(outbox.position());
            outbox
        };
        let mut checked = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            if let Some(l) = lease.as_mut()
                && checked.elapsed() > Duration::from_secs(1)
            {
                if !l.alive().await {
                    anyhow::bail!("lost the relay lease");
                }
                checked = tokio::time::Instant::now();
            }
            let batch = outbox.peek(self.store.as_ref(), BATCH).await?;
            if batch.rows.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(POLL) => continue,
                }
            }
            let full = batch.rows.len() == BATCH as usize;
            let events: Vec<Arc<PushEvent>> =
                batch.rows.into_iter().map(PushEvent::from_row).collect();
            self.bus.publish(&events).await?;
            outbox.advance(batch.end);
            if shared {
                self.store
                    .save_cursor(RELAY, batch.end, self.clock.ts())
                    .await?;
            }
            metrics::counter!("ordo_relay_published_total").increment(events.len() as u64);
            if let Some(last) = events.last() {
                let lag = (self.clock.now() - last.at.0).as_seconds_f64().max(0.0);
                metrics::gauge!("ordo_relay_lag_seconds").set(lag);
                metrics::gauge!("ordo_relay_position").set(last.id as f64);
            }
            if !full {
                // Caught up: wait a moment, so that a busy log is read in batches rather
                // than one query per commit.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
        Ok(())
    }
}
