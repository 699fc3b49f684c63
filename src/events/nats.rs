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
}

impl NatsBus {
    /// Connects and makes sure the stream exists.
    pub async fn connect(url: &str, stream: &str) -> anyhow::Result<NatsBus> {
        let client = async_nats::ConnectOptions::new()
            .name("ordo")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let js = async_nats::jetstream::new(client.clone());
        js.get_or_create_stream(stream::Config {
            name: stream.to_owned(),
            subjects: vec![format!("{stream}.events.>")],
            duplicate_window: DUPLICATE_WINDOW,
            max_age: KEEP,
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating the JetStream stream {stream}"))?;
        Ok(NatsBus {
            client,
            js,
            stream: stream.to_owned(),
        })
    }

    fn subject(&self, ev: &PushEvent) -> String {
        format!("{}.events.{}.{}", self.stream, ev.customer_id, ev.order_id)
    }

    /// The last message of the stream: (stream sequence, event id), if any.
    async fn last(&self) -> anyhow::Result<Option<(u64, i64)>> {
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
        Ok(Some((seq, id)))
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
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(last),
                _ = watch.tick() => {
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

#[async_trait]
impl EventBus for NatsBus {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn health(&self) -> Result<(), String> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            other => Err(other.to_string()),
        }
    }

    fn shared(&self) -> bool {
        true
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
