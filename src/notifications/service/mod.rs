//! Notifications and webhooks: preferences, the notifier that turns events into
//! deliveries, the worker that makes them, and webhook endpoints.
//!
//! The notifier reads the event log like the relay does (in order, without passing an id
//! that may still commit) and keeps its position in `outbox_cursors`. For each event that
//! matters it queues one delivery per channel the customer opted into and per webhook
//! endpoint that wants the event; the queue's unique key (event, channel, recipient)
//! makes that exactly once even if two nodes (or a restarted one) see the same event. The
//! worker, on every node, takes due deliveries (`SKIP LOCKED` on PostgreSQL), makes them,
//! and on failure schedules the next attempt from `ORDO_DELIVERY_RETRY_SCHEDULE` (with
//! jitter, never sooner than a `Retry-After`), until the last: then the delivery is `dead`.
//!
//! The operations are split along the three parts of the service: `endpoints` (webhook
//! endpoints), `notifier` (events → deliveries) and `worker` (deliveries → providers).
//! Preferences, the log and push receipts are here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::channels::{Mailer, Twilio, WebhookSender};
use super::domain::{Channel, Preferences, RetrySchedule};
use super::store::DeliveryRow;
use crate::auth::links::LinkSigner;
use crate::clock::Clock;
use crate::config::NotificationSettings;
use crate::jobs::{Job, Tick};
use crate::storage::{DynStore, Error as StoreError, Ts};

/// What can go wrong with notifications and webhook endpoints; an HTTP answer only at the
/// edge (`impl From<NotificationError> for ApiError` in `http.rs`). The jobs log it.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("not found")]
    NotFound,
    /// A webhook URL the address guard refuses, and why.
    #[error("url: {0}")]
    BadUrl(String),
    /// A delivery still being tried goes out on its schedule, not on request.
    #[error("this delivery is still being tried; it goes out again on its schedule")]
    StillTrying,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type NotificationResult<T> = Result<T, NotificationError>;

mod endpoints;
mod notifier;
mod worker;

pub use notifier::{NOTIFIER, Notifier};

/// Push receipts written per statement.
const RECEIPTS: usize = 256;

pub struct NotificationService {
    store: DynStore,
    clock: Arc<dyn Clock>,
    schedule: RetrySchedule,
    mailer: Option<Mailer>,
    twilio: Option<Twilio>,
    webhooks: WebhookSender,
    allow_private: bool,
    public_url: String,
    /// Signs the read-only tracking link each notification carries.
    links: LinkSigner,
    link_ttl: Duration,
    receipts: mpsc::Sender<(i64, Uuid)>,
    /// The other end, until the receipt writer takes it.
    unwritten: Mutex<Option<mpsc::Receiver<(i64, Uuid)>>>,
}

impl NotificationService {
    pub fn new(
        store: DynStore,
        clock: Arc<dyn Clock>,
        s: &NotificationSettings,
        links: LinkSigner,
    ) -> anyhow::Result<NotificationService> {
        let mailer = match &s.smtp_url {
            Some(url) => Some(Mailer::new(url.expose(), &s.email_from)?),
            None => None,
        };
        let twilio = match &s.twilio {
            Some(t) => Some(Twilio::new(
                &t.api_base,
                t.account_sid.clone(),
                t.auth_token.clone(),
                t.from.clone(),
            )?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(8192);
        Ok(NotificationService {
            store,
            clock,
            schedule: s.retry_schedule.clone(),
            mailer,
            twilio,
            webhooks: WebhookSender::new(s.webhook_allow_private)?,
            allow_private: s.webhook_allow_private,
            public_url: s.public_url.trim_end_matches('/').to_owned(),
            links,
            link_ttl: s.tracking_link_ttl,
            receipts: tx,
            unwritten: Mutex::new(Some(rx)),
        })
    }

    /// The read-only credential of an order's tracking page link. It travels in the URL's
    /// fragment, which browsers never send to a server (nor in a `Referer`); the page moves
    /// it out of the address bar at once.
    pub fn tracking_link(&self, order_id: Uuid, customer_id: Uuid) -> String {
        self.links.issue(
            order_id,
            customer_id,
            self.clock.now().unix_timestamp(),
            self.link_ttl,
        )
    }

    /// The tracking page of an order, opened by its link without a password.
    fn order_url(&self, order_id: Uuid, customer_id: Uuid) -> String {
        format!(
            "{}/orders/{order_id}#link={}",
            self.public_url,
            self.tracking_link(order_id, customer_id)
        )
    }

    fn later(&self, d: Duration) -> Ts {
        Ts::truncated(self.clock.now() + d)
    }

    #[tracing::instrument(skip_all, fields(customer_id = %user))]
    pub async fn preferences(&self, user: Uuid) -> NotificationResult<Preferences> {
        Ok(self.store.preferences(user).await?.unwrap_or_default())
    }

    #[tracing::instrument(skip_all, fields(customer_id = %user))]
    pub async fn set_preferences(
        &self,
        user: Uuid,
        p: Preferences,
    ) -> NotificationResult<Preferences> {
        self.store.set_preferences(user, p, self.clock.ts()).await?;
        Ok(p)
    }

    /// Deliveries to a customer or an endpoint, newest first.
    #[tracing::instrument(skip_all, fields(customer_id = %recipient))]
    pub async fn log(
        &self,
        recipient: Uuid,
        channel: Option<Channel>,
        before: Option<(Ts, Uuid)>,
        limit: u32,
    ) -> NotificationResult<Vec<DeliveryRow>> {
        Ok(self
            .store
            .deliveries_to(recipient, channel.map(Channel::as_str), before, limit)
            .await?)
    }

    /// A connection of `user` received event `event_id` (push delivered). Recorded in
    /// batches, off the connection's path.
    pub fn push_received(&self, event_id: i64, user: Uuid) {
        if self.receipts.try_send((event_id, user)).is_err() {
            tracing::warn!(event_id, "push receipt queue full; receipt dropped");
        }
    }

    /// The job that writes push receipts; `None` once taken (one per service).
    pub fn receipt_writer(self: &Arc<Self>) -> Option<ReceiptWriter> {
        let rx = self
            .unwritten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some(ReceiptWriter {
            service: self.clone(),
            rx,
            batch: Vec::with_capacity(RECEIPTS),
        })
    }
}

/// Writes push receipts in batches, off the connections' path: a job of every node.
pub struct ReceiptWriter {
    service: Arc<NotificationService>,
    rx: mpsc::Receiver<(i64, Uuid)>,
    batch: Vec<(i64, Uuid)>,
}

impl Job for ReceiptWriter {
    type Run = ();

    async fn begin(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Waits for receipts, then writes what came.
    async fn tick(&mut self, _: &mut (), shutdown: &CancellationToken) -> anyhow::Result<Tick> {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return Ok(Tick::Idle),
            n = self.rx.recv_many(&mut self.batch, RECEIPTS) => n,
        };
        // Cannot happen while this job holds the service, whose sender it is.
        anyhow::ensure!(n > 0, "the push receipt queue closed");
        let s = &self.service;
        let written = s
            .store
            .record_push_receipts(&self.batch, s.clock.ts())
            .await;
        self.batch.clear();
        written?;
        Ok(if n == RECEIPTS {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}
