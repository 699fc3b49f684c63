//! The event bus: how events get from the relay to every node's hub.
//!
//! - In-process (the default, `NATS_URL` unset): the relay of each node hands events
//!   straight to its own hub. With several nodes on one PostgreSQL each node runs its own
//!   relay over the shared log, so the database itself is the bus.
//! - NATS JetStream (`NATS_URL`): one relay for the whole cluster publishes to a stream;
//!   every node reads the stream into its hub (`nats.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::PushEvent;
use super::hub::Hub;
use super::relay::RELAY;
use crate::jobs::{Job, Tick};
use crate::storage::DynStore;

#[async_trait]
pub trait EventBus: Send + Sync {
    fn name(&self) -> &'static str;
    /// `ok`, or what is wrong (for `/readyz`).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
    /// The stream the bus carries events on, where it has one (NATS).
    fn stream_name(&self) -> Option<String> {
        None
    }
    /// Does the bus keep what it was given, for every node? Then one relay publishes for
    /// the whole cluster and keeps a durable position; else each node relays for itself.
    fn shared(&self) -> bool;
    /// Publishes `events` in order; returns once the bus holds them.
    async fn publish(&self, events: &[Arc<PushEvent>]) -> anyhow::Result<()>;
    /// The id of the last event the bus holds, if it keeps any.
    async fn last_published(&self) -> anyhow::Result<Option<i64>>;
    /// Feeds what the bus carries into this node's hub until `shutdown`. `floor` is where
    /// the stream starts if the bus holds nothing (the relay's stored position).
    async fn feed(
        &self,
        hub: Arc<Hub>,
        floor: i64,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()>;
}

/// What a shared bus carries, fed into this node's hub: a job of every node (`jobs.rs`)
/// whose one tick lasts until shutdown.
pub struct BusFeed {
    bus: Arc<dyn EventBus>,
    hub: Arc<Hub>,
    store: DynStore,
}

impl BusFeed {
    pub fn new(bus: Arc<dyn EventBus>, hub: Arc<Hub>, store: DynStore) -> Self {
        BusFeed { bus, hub, store }
    }
}

impl Job for BusFeed {
    /// Where the stream starts if the bus holds nothing: the relay's stored position.
    type Run = i64;

    async fn begin(&mut self) -> anyhow::Result<i64> {
        Ok(self.store.cursor(RELAY).await?.unwrap_or(0))
    }

    async fn tick(
        &mut self,
        floor: &mut i64,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Tick> {
        self.bus
            .feed(self.hub.clone(), *floor, shutdown.clone())
            .await?;
        Ok(Tick::Idle)
    }
}

/// Events go straight from this node's relay to this node's hub.
pub struct InProcessBus {
    hub: Arc<Hub>,
}

impl InProcessBus {
    pub fn new(hub: Arc<Hub>) -> Self {
        InProcessBus { hub }
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn shared(&self) -> bool {
        false
    }

    async fn publish(&self, events: &[Arc<PushEvent>]) -> anyhow::Result<()> {
        for ev in events {
            self.hub.publish(ev);
        }
        Ok(())
    }

    async fn last_published(&self) -> anyhow::Result<Option<i64>> {
        Ok(None)
    }

    async fn feed(&self, _: Arc<Hub>, _: i64, _: CancellationToken) -> anyhow::Result<()> {
        // The relay feeds the hub itself.
        Ok(())
    }
}
