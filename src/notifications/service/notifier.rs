//! The notifier: reads the event log from its stored position and queues the deliveries
//! each event calls for (one per channel the customer opted into, one per webhook
//! endpoint that wants the event).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::outbox::Outbox;
use crate::jobs::{Job, Tick};
use crate::notifications::domain::{Channel, Preferences, notable, webhook_type};
use crate::notifications::store::NewDelivery;
use crate::orders::store::EventRow;
use crate::storage::Ts;

use super::NotificationService;

/// The notifier's lease and stored position.
pub const NOTIFIER: &str = "notifier";
/// Events the notifier reads per tick; after a full batch it reads again at once.
const BATCH: u32 = 200;

impl NotificationService {
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
