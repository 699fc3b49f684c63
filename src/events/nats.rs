//! The NATS JetStream event bus (`NATS_URL`): the cluster's one relay publishes every event
//! to a stream, with the event id as `Nats-Msg-Id` so that JetStream drops a repeat (a
//! relay that restarts re-sends what it may not have recorded); every node reads the
//! stream, from where it stood when the node started, into its hub.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::connection::State;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::PushEvent;
use super::bus::EventBus;
use super::hub::Hub;

/// How long JetStream remembers message ids to drop repeats; a relay that takes over
/// re-sends at most what it had not recorded, seconds' worth.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long the stream keeps events. Clients that were away longer resume from the
/// database, which keeps everything.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// Publish acks awaited at once (well under the client's in-flight limit).
const CHUNK: usize = 256;

pub struct NatsBus {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    stream: String,
    /// The shop (database) this node serves, and how often its stream had been reset when
    /// this node opened it: a stream that changes beneath a running node is refused.
    shop: String,
    resets: u64,
    /// Set when the stream no longer belongs to this node's database: `/readyz` says so.
    broken: std::sync::Mutex<Option<String>>,
}

/// The name of the single-node step that checks the stream against the database.
const STREAM_CHECK: &str = "nats-stream-check";

/// What a stream of Ordo's says about itself: whose it is, and how often it was reset
/// because the database it follows was restored beneath it.
fn describe(shop: &str, resets: u64) -> String {
    format!("ordo shop={shop} resets={resets}")
}

fn owner(description: Option<&str>) -> Option<(&str, u64)> {
    let rest = description?.strip_prefix("ordo shop=")?;
    let (shop, resets) = rest.split_once(" resets=")?;
    Some((shop, resets.parse().ok()?))
}

/// The stream of a shop whose `ORDO_NATS_STREAM` is unset: named after its database.
pub fn default_stream_name(shop: &str) -> String {
    format!("ORDO_EVENTS_{shop}")
}

impl NatsBus {
    /// Connects, makes sure the shop's stream exists and belongs to this database, and
    /// resets it if it holds events the database does not have (a database restored or
    /// recreated beneath it), so that nothing the database writes from now on is taken
    /// for a repeat and skipped.
    pub async fn connect(
        url: &str,
        configured: Option<&str>,
        store: &dyn crate::storage::Store,
    ) -> anyhow::Result<NatsBus> {
        let client = async_nats::ConnectOptions::new()
            .name("ordo")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let js = async_nats::jetstream::new(client.clone());
        let shop = store.shop_id().await?;
        let stream = configured.map_or_else(|| default_stream_name(&shop), str::to_owned);
        let mut bus = NatsBus {
            client,
            js,
            stream,
            shop,
            resets: 0,
            broken: std::sync::Mutex::new(None),
        };
        // One node at a time compares the stream with the database, so that two nodes
        // starting together do not both reset it.
        let lease = loop {
            if let Some(lease) = store.try_lead(STREAM_CHECK).await? {
                break lease;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        bus.resets = bus.claim().await?;
        bus.reconcile(store).await?;
        drop(lease);
        Ok(bus)
    }

    fn config(&self, resets: u64) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            description: Some(describe(&self.shop, resets)),
            subjects: vec![format!("{}.events.>", self.stream)],
            duplicate_window: DUPLICATE_WINDOW,
            max_age: KEEP,
            storage: StorageType::File,
            ..Default::default()
        }
    }

    /// Creates the stream, or checks that the one there is this shop's; returns its resets.
    async fn claim(&self) -> anyhow::Result<u64> {
        let mut s = self
            .js
            .get_or_create_stream(self.config(0))
            .await
            .with_context(|| format!("creating the JetStream stream {}", self.stream))?;
        let info = s.info().await?;
        match owner(info.config.description.as_deref()) {
            Some((shop, resets)) if shop == self.shop => Ok(resets),
            Some((shop, _)) => anyhow::bail!(
                "the NATS stream {} belongs to another Ordo database (shop {shop}), not to this \
                 one (shop {}): refusing to mix their events. Give each shop its own stream \
                 (leave ORDO_NATS_STREAM unset, or set a name of this shop's own)",
                self.stream,
                self.shop
            ),
            None if info.state.messages == 0 => {
                self.js.update_stream(self.config(0)).await?;
                Ok(0)
            }
            None => anyhow::bail!(
                "the NATS stream {} holds {} messages but does not say which Ordo database they \
                 come from (an older Ordo, or another program made it): refusing to use it. \
                 Delete it, or set ORDO_NATS_STREAM to another name",
                self.stream,
                info.state.messages
            ),
        }
    }

    /// The stream's last event must be the database's event with that id. If it is not
    /// (the database is behind the stream, or its history differs), the stream is of
    /// another timeline: it is purged, so that the relay republishes from the database and
    /// no event the database writes is dropped as a repeat.
    async fn reconcile(&mut self, store: &dyn crate::storage::Store) -> anyhow::Result<()> {
        let Some((_, id, payload)) = self.last_message().await? else {
            return Ok(());
        };
        let on_stream = PushEvent::from_json(&payload);
        let read = store.events_after(id - 1, 1).await?;
        let same = match (on_stream, read.rows.first()) {
            (Some(ev), Some(row)) => {
                row.id == id
                    && row.order_id == ev.order_id
                    && row.at == ev.at
                    && row.event == ev.event
                    && row.status == ev.status
            }
            _ => false,
        };
        if same {
            return Ok(());
        }
        let db_last = store.last_event().await?.rows.first().map_or(0, |r| r.id);
        tracing::error!(
            stream = %self.stream,
            stream_last = id,
            database_last = db_last,
            "the NATS stream holds events this database does not have (it was restored from \
             a backup, or recreated, beneath the stream): resetting the stream; clients resume \
             from the database"
        );
        // Deleted and made again rather than purged: that also forgets the message ids
        // JetStream remembers, which the database's new events will carry again.
        self.js.delete_stream(&self.stream).await?;
        self.resets += 1;
        self.js.create_stream(self.config(self.resets)).await?;
        Ok(())
    }

    /// Is the stream still the one this node opened? (Checked while reading it.)
    async fn still_ours(&self) -> Result<(), String> {
        let s = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let info = s.get_info().await.map_err(|e| e.to_string())?;
        match owner(info.config.description.as_deref()) {
            Some((shop, resets)) if shop == self.shop && resets == self.resets => Ok(()),
            _ => Err(format!(
                "the NATS stream {} was reset or taken over beneath this node (its \
                 database was restored?): restart this node",
                self.stream
            )),
        }
    }

    fn subject(&self, ev: &PushEvent) -> String {
        format!("{}.events.{}.{}", self.stream, ev.customer_id, ev.order_id)
    }

    /// The last message of the stream: (stream sequence, event id, payload), if any.
    async fn last_message(&self) -> anyhow::Result<Option<(u64, i64, Bytes)>> {
        let s = self.js.get_stream_no_info(&self.stream).await?;
        let info = s.get_info().await?;
        if info.state.messages == 0 {
            return Ok(None);
        }
        let seq = info.state.last_sequence;
        let m = s.get_raw_message(seq).await?;
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .and_then(|v| v.as_str().parse::<i64>().ok())
            .context("the stream's last message has no event id")?;
        Ok(Some((seq, id, m.payload)))
    }

    /// The last message of the stream: (stream sequence, event id), if any.
    async fn last(&self) -> anyhow::Result<Option<(u64, i64)>> {
        Ok(self.last_message().await?.map(|(seq, id, _)| (seq, id)))
    }

    /// Reads the stream into `hub` from the sequence after `after`; returns the last
    /// sequence handled when the subscription ends.
    async fn tail(
        &self,
        hub: &Hub,
        after: u64,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<u64> {
        let s = self.js.get_stream_no_info(&self.stream).await?;
        let consumer = s
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut last = after;
        // After a reconnect the server may have lost the (in-memory) consumer; the client
        // would find out only after missing heartbeats. Start a new one at once instead.
        let mut watch = tokio::time::interval(Duration::from_millis(250));
        let mut was_down = false;
        let mut ticks = 0u32;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(last),
                _ = watch.tick() => {
                    ticks = ticks.wrapping_add(1);
                    if ticks.is_multiple_of(20) {
                        self.check_ownership().await;
                    }
                    match self.client.connection_state() {
                        State::Connected if was_down => return Ok(last),
                        State::Connected => {}
                        _ => was_down = true,
                    }
                    continue;
                }
                next = messages.next() => next,
            };
            let Some(item) = next else { return Ok(last) };
            let msg = match item {
                Ok(m) => m,
                Err(e) => {
                    // Missed heartbeats and the like: the ordered consumer recovers itself.
                    tracing::debug!(error = %e, "NATS consumer hiccup");
                    continue;
                }
            };
            let seq = msg
                .info()
                .map_err(anyhow::Error::from_boxed)?
                .stream_sequence;
            // An ordered consumer recreated before its first message starts over at 1.
            if seq <= last {
                continue;
            }
            last = seq;
            match PushEvent::from_json(&msg.payload) {
                Some(ev) => hub.publish(&ev),
                None => tracing::warn!(seq, "unreadable event on the bus; skipped"),
            }
        }
    }
}

impl NatsBus {
    /// Marks the bus broken (loudly, once) when the stream is no longer this node's.
    async fn check_ownership(&self) {
        let verdict = self.still_ours().await;
        let mut broken = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        match verdict {
            Ok(()) => *broken = None,
            // NATS unreachable: the connection state says so already.
            Err(_) if self.client.connection_state() != State::Connected => {}
            Err(why) => {
                if broken.is_none() {
                    tracing::error!(stream = %self.stream, "{why}");
                }
                *broken = Some(why);
            }
        }
    }
}

#[async_trait]
impl EventBus for NatsBus {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn health(&self) -> Result<(), String> {
        if let Some(why) = self
            .broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(why);
        }
        match self.client.connection_state() {
            State::Connected => Ok(()),
            other => Err(other.to_string()),
        }
    }

    fn shared(&self) -> bool {
        true
    }

    fn stream_name(&self) -> Option<String> {
        Some(self.stream.clone())
    }

    async fn publish(&self, events: &[Arc<PushEvent>]) -> anyhow::Result<()> {
        for chunk in events.chunks(CHUNK) {
            let mut acks = Vec::with_capacity(chunk.len());
            for ev in chunk {
                let msg = PublishMessage::build()
                    .payload(Bytes::copy_from_slice(ev.json.as_bytes()))
                    .message_id(ev.id.to_string());
                acks.push(self.js.send_publish(self.subject(ev), msg).await?);
            }
            // In order: once the last is acknowledged, the stream holds the whole chunk.
            for ack in acks {
                ack.into_future().await?;
            }
        }
        Ok(())
    }

    async fn last_published(&self) -> anyhow::Result<Option<i64>> {
        Ok(self.last().await?.map(|(_, id)| id))
    }

    async fn feed(
        &self,
        hub: Arc<Hub>,
        floor: i64,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut after: Option<u64> = None;
        while !shutdown.is_cancelled() {
            let started = match after {
                Some(seq) => Ok(seq),
                // Live begins after the stream's last message: everything up to it is in
                // the database, for replays.
                None => self.last().await.map(|last| {
                    // An empty stream (new, aged out, or wiped): live begins where the
                    // relay will go on from, so a replay covers everything before it.
                    let (seq, id) = last.unwrap_or((0, floor));
                    hub.start_at(id);
                    seq
                }),
            };
            let result = match started {
                Ok(seq) => {
                    after = Some(seq);
                    self.tail(&hub, seq, &shutdown).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(seq) => after = Some(seq),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the NATS stream failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        Ok(())
    }
}
