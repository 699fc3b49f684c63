//! The relay: moves the event log onto the bus, in order.
//!
//! With a shared bus (NATS) one node of the cluster relays at a time: it holds a lease
//! (a PostgreSQL advisory lock on a session of its own), starts after what the bus already
//! holds or the position it stored, whichever is further, publishes, then stores its new
//! position. If it dies between the two, the next relay re-sends a few events, which
//! JetStream drops as repeats (same `Nats-Msg-Id`). Without a shared bus each node relays
//! the log into its own hub, starting at the end of the log.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::PushEvent;
use super::bus::EventBus;
use super::hub::Hub;
use super::outbox::Outbox;
use crate::clock::Clock;
use crate::jobs::{Job, Tick};

/// The name of the relay's lease and stored position.
pub const RELAY: &str = "relay";
/// Events published per tick; after a full batch the relay looks again at once.
const BATCH: u32 = 256;

pub struct Relay {
    store: crate::storage::DynStore,
    bus: Arc<dyn EventBus>,
    hub: Arc<Hub>,
    clock: Arc<dyn Clock>,
}

impl Relay {
    pub fn new(
        store: crate::storage::DynStore,
        bus: Arc<dyn EventBus>,
        hub: Arc<Hub>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Relay {
            store,
            bus,
            hub,
            clock,
        }
    }
}

/// A job of every node, or (with a shared bus) of one node at a time: `jobs.rs`.
impl Job for Relay {
    /// Where this run of the relay is in the log.
    type Run = Outbox;

    async fn begin(&mut self) -> anyhow::Result<Outbox> {
        if self.bus.shared() {
            let stored = self.store.cursor(RELAY).await?.unwrap_or(0);
            let on_bus = self.bus.last_published().await?.unwrap_or(0);
            tracing::info!(stored, on_bus, "this node relays events to the bus");
            Ok(Outbox::after(stored.max(on_bus)))
        } else if self.hub.is_started() {
            // Started again after an error: go on from the last event handed to
            // connections, so that the ones that stayed open miss nothing.
            Ok(Outbox::after(self.hub.head()))
        } else {
            let outbox = Outbox::at_end(self.store.as_ref()).await?;
            self.hub.start_at(outbox.position());
            Ok(outbox)
        }
    }

    async fn tick(&mut self, outbox: &mut Outbox, _: &CancellationToken) -> anyhow::Result<Tick> {
        let batch = outbox.peek(self.store.as_ref(), BATCH).await?;
        if batch.rows.is_empty() {
            return Ok(Tick::Idle);
        }
        let full = batch.rows.len() == BATCH as usize;
        let events = PushEvent::from_rows(batch.rows);
        self.bus.publish(&events).await?;
        outbox.advance(batch.end);
        if self.bus.shared() {
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
        // Caught up: the next look comes a period later, so that a busy log is read in
        // batches rather than one query per commit.
        Ok(if full { Tick::Busy } else { Tick::Idle })
    }
}
