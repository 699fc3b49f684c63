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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::channels::{Mailer, SendError, Twilio, WebhookSender, check_webhook_url};
use super::domain::{
    Channel, Line, Message, Notable, OrderFacts, Preferences, RetrySchedule, ShopMessageFacts,
    compose, compose_shop_message, new_webhook_secret, notable, sign_webhook, webhook_type,
};
use super::store::{DeliveryRow, DeliveryUpdate, EndpointRow, NewDelivery, message_id_of};
use crate::auth::links::LinkSigner;
use crate::books::domain::{self as books, NewAudit};
use crate::clock::Clock;
use crate::config::NotificationSettings;
use crate::error::{ApiError, ApiResult};
use crate::events::outbox::Outbox;
use crate::jobs::{Job, Tick};
use crate::orders::http::EventResponse;
use crate::orders::store::EventRow;
use crate::storage::{DynStore, Ts};

/// The notifier's lease and stored position.
pub const NOTIFIER: &str = "notifier";
/// How long a push may take to reach a connection of its customer before it counts as
/// not received.
const PUSH_WAIT: Duration = Duration::from_secs(3);
/// How long a delivery stays with the node that took it before another may.
const LEASE: Duration = Duration::from_secs(60);
/// Events the notifier reads per tick; after a full batch it reads again at once.
const BATCH: u32 = 200;
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

/// What a delivery attempt came to.
enum Outcome {
    Sent(String),
    /// Not settled yet; look again after this long (not an attempt).
    Later(Duration),
    Failed(SendError),
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

    pub async fn preferences(&self, user: Uuid) -> ApiResult<Preferences> {
        Ok(self.store.preferences(user).await?.unwrap_or_default())
    }

    pub async fn set_preferences(&self, user: Uuid, p: Preferences) -> ApiResult<Preferences> {
        self.store.set_preferences(user, p, self.clock.ts()).await?;
        Ok(p)
    }

    /// Deliveries to a customer or an endpoint, newest first.
    pub async fn log(
        &self,
        recipient: Uuid,
        channel: Option<Channel>,
        before: Option<(Ts, Uuid)>,
        limit: u32,
    ) -> ApiResult<Vec<DeliveryRow>> {
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

    // Webhook endpoints.

    pub async fn create_endpoint(
        &self,
        url: &str,
        events: Vec<String>,
        description: Option<String>,
        actor: &str,
    ) -> ApiResult<EndpointRow> {
        let url = check_webhook_url(url, self.allow_private)
            .await
            .map_err(|e| ApiError::validation("url", e))?;
        let now = self.clock.ts();
        let row = EndpointRow {
            id: Uuid::now_v7(),
            url: url.to_string(),
            events: serde_json::to_string(&events).map_err(ApiError::internal)?,
            description,
            secret: new_webhook_secret(),
            previous_secret: None,
            previous_secret_expires_at: None,
            created_by: actor.to_owned(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let audit = NewAudit::new(
            now,
            actor,
            books::WEBHOOK_ENDPOINT_CREATED,
            "webhook_endpoint",
            row.id,
        )
        .after(serde_json::json!({"url": row.url, "events": events}));
        self.store.insert_endpoint(&row, &audit).await?;
        Ok(row)
    }

    pub async fn endpoint(&self, id: Uuid) -> ApiResult<EndpointRow> {
        match self.store.endpoint(id).await? {
            Some(e) if e.deleted_at.is_none() => Ok(e),
            _ => Err(ApiError::NotFound),
        }
    }

    pub async fn endpoints(&self) -> ApiResult<Vec<EndpointRow>> {
        Ok(self.store.endpoints().await?)
    }

    pub async fn delete_endpoint(&self, id: Uuid, actor: &str) -> ApiResult<()> {
        let audit = NewAudit::new(
            self.clock.ts(),
            actor,
            books::WEBHOOK_ENDPOINT_DELETED,
            "webhook_endpoint",
            id,
        );
        if self.store.delete_endpoint(id, &audit).await? {
            Ok(())
        } else {
            Err(ApiError::NotFound)
        }
    }

    /// A new secret; the old one keeps signing (a second signature) for `grace`.
    pub async fn rotate_secret(&self, id: Uuid, grace: Duration) -> ApiResult<EndpointRow> {
        let secret = new_webhook_secret();
        let rotated = self
            .store
            .rotate_endpoint_secret(id, &secret, self.later(grace), self.clock.ts())
            .await?;
        if !rotated {
            return Err(ApiError::NotFound);
        }
        self.endpoint(id).await
    }

    /// Sends a delivery of this endpoint again, with the same id.
    pub async fn resend(&self, endpoint: Uuid, delivery: Uuid) -> ApiResult<DeliveryRow> {
        let d = self
            .store
            .delivery(delivery)
            .await?
            .filter(|d| d.recipient == endpoint && d.channel == Channel::Webhook.as_str())
            .ok_or(ApiError::NotFound)?;
        if !self.store.requeue_delivery(d.id, self.clock.ts()).await? {
            return Err(ApiError::Conflict(
                "this delivery is still being tried; it goes out again on its schedule".into(),
            ));
        }
        self.store.delivery(d.id).await?.ok_or(ApiError::NotFound)
    }

    // The notifier.

    /// Queues the deliveries these events call for.
    async fn queue(&self, events: &[EventRow]) -> anyhow::Result<()> {
        let now = self.clock.ts();
        let endpoints = self.store.endpoints().await?;
        let mut prefs: HashMap<Uuid, Preferences> = HashMap::new();
        let mut out = Vec::new();
        for e in events {
            let kind = webhook_type(e);
            for ep in endpoints.iter().filter(|ep| ep.wants(&kind)) {
                out.push(NewDelivery {
                    event_id: e.id,
                    channel: Channel::Webhook.as_str(),
                    recipient: ep.id,
                    target: Some(ep.url.clone()),
                    kind: kind.clone(),
                    due: now,
                    recorded: None,
                });
            }
            let Some(n) = notable(&e.event, &e.status, e.previous_status.as_deref()) else {
                continue;
            };
            let p = match prefs.get(&e.customer_id) {
                Some(p) => *p,
                None => {
                    let p = self.preferences(e.customer_id).await?;
                    prefs.insert(e.customer_id, p);
                    p
                }
            };
            if !(p.email || p.sms || p.push) {
                continue;
            }
            // An erased customer gets nothing more (its address is gone anyway).
            let Some(user) = self
                .store
                .user_by_id(e.customer_id)
                .await?
                .filter(|u| u.erased_at.is_none())
            else {
                continue;
            };
            let mut add = |channel: Channel,
                           target: Option<String>,
                           due: Ts,
                           recorded: Option<&'static str>| {
                if let Some(why) = recorded {
                    tracing::info!(
                        channel = channel.as_str(), to = ?target, order_id = %e.order_id,
                        kind = n.as_str(), "notification {why}"
                    );
                }
                out.push(NewDelivery {
                    event_id: e.id,
                    channel: channel.as_str(),
                    recipient: e.customer_id,
                    target,
                    kind: n.as_str().to_owned(),
                    due,
                    recorded,
                })
            };
            // With no provider the delivery is recorded (and logged) as it is queued.
            if p.email {
                let recorded = self
                    .mailer
                    .is_none()
                    .then_some("recorded, not sent: ORDO_SMTP_URL is not set");
                add(Channel::Email, Some(user.email.clone()), now, recorded);
            }
            if p.sms {
                let recorded = (self.twilio.is_none() && user.phone.is_some())
                    .then_some("recorded, not sent: ORDO_SMS_PROVIDER is not set");
                add(Channel::Sms, user.phone.clone(), now, recorded);
            }
            if p.push {
                // Looked at once the event had time to reach the customer's connections.
                add(
                    Channel::Push,
                    None,
                    self.later(Duration::from_millis(500)),
                    None,
                );
            }
        }
        self.store.insert_deliveries(&out, now).await?;
        Ok(())
    }

    // The worker.

    /// Makes the deliveries that are due (at most `batch`), all at once. Returns how
    /// many it looked at.
    pub async fn deliver_due(&self, batch: u32) -> ApiResult<usize> {
        let now = self.clock.ts();
        let due = self
            .store
            .take_due_deliveries(now, self.later(LEASE), batch)
            .await?;
        let n = due.len();
        futures::future::join_all(due.into_iter().map(|d| self.deliver(d))).await;
        Ok(n)
    }

    async fn deliver(&self, d: DeliveryRow) {
        let channel = Channel::parse(&d.channel).unwrap_or(Channel::Webhook);
        let outcome = match self.attempt(channel, &d).await {
            Ok(o) => o,
            Err(e) => Outcome::Failed(SendError {
                message: e.to_string(),
                permanent: false,
                retry_after: None,
            }),
        };
        let now = self.clock.ts();
        let update = match outcome {
            Outcome::Sent(detail) => {
                metrics::counter!("ordo_notifications_total", "channel" => channel.as_str(), "outcome" => "sent")
                    .increment(1);
                let waited = (now.0 - d.created_at.0).as_seconds_f64().max(0.0);
                metrics::histogram!("ordo_delivery_latency_seconds", "channel" => channel.as_str())
                    .record(waited);
                DeliveryUpdate {
                    status: "sent",
                    attempts: 1,
                    last_error: None,
                    detail: Some(detail),
                    next_attempt_at: None,
                    sent_at: Some(now),
                }
            }
            Outcome::Later(wait) => DeliveryUpdate {
                status: "pending",
                attempts: 0,
                last_error: None,
                detail: None,
                next_attempt_at: Some(self.later(wait)),
                sent_at: None,
            },
            Outcome::Failed(e) => {
                let attempts = d.attempts + 1;
                let next = if e.permanent {
                    None
                } else {
                    self.schedule.after(attempts).map(|wait| {
                        wait.max(
                            e.retry_after
                                .unwrap_or_default()
                                .min(Duration::from_secs(86_400)),
                        )
                    })
                };
                let status = if next.is_some() { "failed" } else { "dead" };
                metrics::counter!("ordo_notifications_total", "channel" => channel.as_str(), "outcome" => status)
                    .increment(1);
                if next.is_none() {
                    tracing::warn!(delivery = %d.id, channel = channel.as_str(), error = %e.message, "delivery is dead");
                }
                DeliveryUpdate {
                    status,
                    attempts: 1,
                    last_error: Some(e.message),
                    detail: None,
                    next_attempt_at: next.map(|w| self.later(w)),
                    sent_at: None,
                }
            }
        };
        if let Err(e) = self.store.update_delivery(d.id, &update, now).await {
            tracing::warn!(delivery = %d.id, error = %e, "recording a delivery failed; it will be tried again");
        }
    }

    async fn attempt(&self, channel: Channel, d: &DeliveryRow) -> anyhow::Result<Outcome> {
        match channel {
            Channel::Push => self.push(d).await,
            Channel::Webhook => self.webhook(d).await,
            Channel::Email | Channel::Sms => self.message(channel, d).await,
        }
    }

    /// A push counts as delivered once a connection of the customer received the event.
    async fn push(&self, d: &DeliveryRow) -> anyhow::Result<Outcome> {
        if self.store.push_received(d.event_id, d.recipient).await? {
            return Ok(Outcome::Sent("received by a connection".into()));
        }
        if self.clock.now() - d.created_at.0 < PUSH_WAIT {
            return Ok(Outcome::Later(Duration::from_millis(500)));
        }
        let p = self.preferences(d.recipient).await?;
        let fallback = match (p.email, p.sms) {
            (true, true) => "sent by e-mail and SMS instead",
            (true, false) => "sent by e-mail instead",
            (false, true) => "sent by SMS instead",
            (false, false) => "e-mail and SMS are off: not sent another way",
        };
        Ok(Outcome::Failed(SendError {
            message: format!("no open connection received it; {fallback}"),
            permanent: true,
            retry_after: None,
        }))
    }

    async fn message(&self, channel: Channel, d: &DeliveryRow) -> anyhow::Result<Outcome> {
        let Some(target) = d.target.as_deref() else {
            return Ok(Outcome::Failed(SendError {
                message: "no phone number on file".into(),
                permanent: true,
                retry_after: None,
            }));
        };
        if let Some(id) = message_id_of(d) {
            return self.shop_message(channel, d, target, id).await;
        }
        let Some(event) = self.store.event(d.event_id).await? else {
            anyhow::bail!("event {} is gone", d.event_id);
        };
        let Some(order) = self.store.order(event.order_id).await? else {
            anyhow::bail!("order {} is gone", event.order_id);
        };
        let name = self
            .store
            .user_by_id(d.recipient)
            .await?
            .map(|u| u.name)
            .unwrap_or_default();
        let kind = notable(
            &event.event,
            &event.status,
            event.previous_status.as_deref(),
        )
        .unwrap_or(Notable::Placed);
        let lines: Vec<Line> = order
            .lines
            .iter()
            .map(|l| Line {
                name: l.name.clone(),
                quantity: l.quantity,
                line_total: l.line_total,
            })
            .collect();
        let order_id = order.order.id.to_string();
        let url = self.order_url(order.order.id, order.order.customer_id);
        let m = compose(
            kind,
            &OrderFacts {
                order_id: &order_id,
                customer_name: &name,
                status: &order.order.status,
                total: order.order.total_amount,
                currency: &order.order.currency,
                lines: &lines,
                carrier: event.carrier.as_deref().or(order.order.carrier.as_deref()),
                tracking_number: event
                    .tracking_number
                    .as_deref()
                    .or(order.order.tracking_number.as_deref()),
                estimated_delivery: order.order.estimated_delivery.as_deref(),
                note: event.note.as_deref(),
                tracking_url: &url,
            },
        );
        self.send(channel, target, &m).await
    }

    /// Sends a composed message by e-mail or SMS (recorded only, without a provider).
    async fn send(&self, channel: Channel, target: &str, m: &Message) -> anyhow::Result<Outcome> {
        let sent = match channel {
            Channel::Email => match &self.mailer {
                Some(mailer) => mailer.send(target, m).await,
                None => {
                    tracing::info!(to = target, subject = %m.subject, "e-mail recorded, not sent (ORDO_SMTP_URL unset)");
                    Ok("recorded, not sent: ORDO_SMTP_URL is not set".to_owned())
                }
            },
            _ => match &self.twilio {
                Some(t) => t.send(target, &m.sms).await,
                None => {
                    tracing::info!(to = target, text = %m.sms, "SMS recorded, not sent (ORDO_SMS_PROVIDER unset)");
                    Ok("recorded, not sent: ORDO_SMS_PROVIDER is not set".to_owned())
                }
            },
        };
        Ok(match sent {
            Ok(detail) => Outcome::Sent(detail),
            Err(e) => Outcome::Failed(e),
        })
    }

    /// A message from the shop (`POST /v1/notifications`).
    async fn shop_message(
        &self,
        channel: Channel,
        d: &DeliveryRow,
        target: &str,
        id: i64,
    ) -> anyhow::Result<Outcome> {
        let Some(msg) = self.store.shop_message(id).await? else {
            anyhow::bail!("shop message {id} is gone");
        };
        let name = self
            .store
            .user_by_id(d.recipient)
            .await?
            .map(|u| u.name)
            .unwrap_or_default();
        let order = match msg.order_id {
            Some(o) => self.store.order(o).await?,
            None => None,
        };
        let order_id = order.as_ref().map(|o| o.order.id.to_string());
        let url = order
            .as_ref()
            .map(|o| self.order_url(o.order.id, o.order.customer_id));
        let facts = ShopMessageFacts {
            customer_name: &name,
            message: &msg.message,
            order: match (&order, &order_id, &url) {
                (Some(o), Some(id), Some(url)) => {
                    Some((id.as_str(), o.order.status.as_str(), url.as_str()))
                }
                _ => None,
            },
            estimated_delivery: order
                .as_ref()
                .and_then(|o| o.order.estimated_delivery.as_deref()),
        };
        let m = compose_shop_message(&facts);
        self.send(channel, target, &m).await
    }

    /// Sends a message from the shop to one customer on each channel it opted into (e-mail,
    /// SMS), through the delivery queue. Push is not a channel of these: a push is an event
    /// of the order's live stream, and a message is not one.
    pub async fn send_shop_message(
        &self,
        customer: &crate::auth::store::UserRow,
        order_id: Option<Uuid>,
        message: &str,
        actor: &str,
    ) -> ApiResult<Vec<DeliveryRow>> {
        let p = self.preferences(customer.id).await?;
        let now = self.clock.ts();
        let mut out = Vec::new();
        let mut add = |channel: Channel, target: Option<String>, recorded: Option<&'static str>| {
            if let Some(why) = recorded {
                tracing::info!(channel = channel.as_str(), to = ?target, "shop message {why}");
            }
            out.push(NewDelivery {
                event_id: 0,
                channel: channel.as_str(),
                recipient: customer.id,
                target,
                kind: "message".to_owned(),
                due: now,
                recorded,
            });
        };
        if p.email {
            let recorded = self
                .mailer
                .is_none()
                .then_some("recorded, not sent: ORDO_SMTP_URL is not set");
            add(Channel::Email, Some(customer.email.clone()), recorded);
        }
        if p.sms {
            let recorded = (self.twilio.is_none() && customer.phone.is_some())
                .then_some("recorded, not sent: ORDO_SMS_PROVIDER is not set");
            add(Channel::Sms, customer.phone.clone(), recorded);
        }
        let (_, rows) = self
            .store
            .insert_shop_message(customer.id, order_id, message, actor, &out, now)
            .await?;
        Ok(rows)
    }

    async fn webhook(&self, d: &DeliveryRow) -> anyhow::Result<Outcome> {
        let endpoint = match self.store.endpoint(d.recipient).await? {
            Some(e) if e.deleted_at.is_none() => e,
            _ => {
                return Ok(Outcome::Failed(SendError {
                    message: "the endpoint was deleted".into(),
                    permanent: true,
                    retry_after: None,
                }));
            }
        };
        let Some(event) = self.store.event(d.event_id).await? else {
            anyhow::bail!("event {} is gone", d.event_id);
        };
        let at = event.at.0;
        let mut data = serde_json::to_value(EventResponse::from(event))?;
        let mut payload = data["data"].take();
        payload["event_id"] = data["id"].take();
        let body = serde_json::to_vec(&serde_json::json!({
            "type": d.kind,
            "timestamp": at.format(&time::format_description::well_known::Rfc3339)?,
            "data": payload,
        }))?;
        let id = format!("msg_{}", d.id.simple());
        let now = self.clock.now();
        let timestamp = now.unix_timestamp();
        let mut signatures = vec![
            sign_webhook(&endpoint.secret, &id, timestamp, &body)
                .ok_or_else(|| anyhow::anyhow!("the endpoint's secret is unusable"))?,
        ];
        if let (Some(old), Some(until)) = (
            &endpoint.previous_secret,
            endpoint.previous_secret_expires_at,
        ) && until.0 > now
            && let Some(sig) = sign_webhook(old, &id, timestamp, &body)
        {
            signatures.push(sig);
        }
        let sent = self
            .webhooks
            .send(&endpoint.url, &id, timestamp, &signatures.join(" "), body)
            .await;
        Ok(match sent {
            Ok(status) => Outcome::Sent(format!("HTTP {status}")),
            Err(e) => Outcome::Failed(e),
        })
    }

    /// Updates the queue-depth gauges.
    pub async fn measure_queue(&self) -> ApiResult<()> {
        let depth = self.store.queue_depth().await?;
        for c in [
            Channel::Email,
            Channel::Sms,
            Channel::Push,
            Channel::Webhook,
        ] {
            let n = depth
                .iter()
                .find(|(ch, _)| ch == c.as_str())
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("ordo_delivery_queue_depth", "channel" => c.as_str()).set(n as f64);
        }
        Ok(())
    }
}

/// The notifier, a job of one node at a time (`jobs.rs`): reads the event log from its
/// stored position and queues the deliveries each event calls for.
pub struct Notifier(Arc<NotificationService>);

impl Notifier {
    pub fn new(service: Arc<NotificationService>) -> Self {
        Notifier(service)
    }
}

impl Job for Notifier {
    type Run = Outbox;

    async fn begin(&mut self) -> anyhow::Result<Outbox> {
        // The migration that created notifications stored where they start.
        let stored = self.0.store.cursor(NOTIFIER).await?;
        Ok(Outbox::after(stored.unwrap_or(0)))
    }

    async fn tick(&mut self, outbox: &mut Outbox, _: &CancellationToken) -> anyhow::Result<Tick> {
        let n = &self.0;
        let batch = outbox.peek(n.store.as_ref(), BATCH).await?;
        if batch.rows.is_empty() {
            return Ok(Tick::Idle);
        }
        n.queue(&batch.rows).await?;
        n.store
            .save_cursor(NOTIFIER, batch.end, n.clock.ts())
            .await?;
        outbox.advance(batch.end);
        // Caught up: read a busy log in batches, not one query per commit.
        Ok(if batch.rows.len() == BATCH as usize {
            Tick::Busy
        } else {
            Tick::Idle
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
