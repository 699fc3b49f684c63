//! The delivery worker: takes due deliveries, makes them (SMTP, Twilio, push receipts,
//! webhooks) and schedules the next attempt or gives up.

use std::time::Duration;

use uuid::Uuid;

use crate::notifications::channels::SendError;
use crate::notifications::domain::{
    Channel, DeliveryStatus, Line, Message, Notable, OrderFacts, ShopMessageFacts, compose,
    compose_shop_message, notable, sign_webhook,
};
use crate::notifications::store::{DeliveryRow, DeliveryUpdate, NewDelivery, message_id_of};
use crate::orders::http::EventResponse;

use super::{NotificationResult, NotificationService};

/// How long a push may take to reach a connection of its customer before it counts as
/// not received.
const PUSH_WAIT: Duration = Duration::from_secs(3);
/// How long a delivery stays with the node that took it before another may.
const LEASE: Duration = Duration::from_secs(60);

/// What a delivery attempt came to.
enum Outcome {
    Sent(String),
    /// Not settled yet; look again after this long (not an attempt).
    Later(Duration),
    Failed(SendError),
}

impl NotificationService {
    /// Makes the deliveries that are due (at most `batch`), all at once. Returns how
    /// many it looked at.
    #[tracing::instrument(skip_all, fields(taken = tracing::field::Empty))]
    pub async fn deliver_due(&self, batch: u32) -> NotificationResult<usize> {
        let now = self.clock.ts();
        let due = self
            .store
            .take_due_deliveries(now, self.later(LEASE), batch)
            .await?;
        let n = due.len();
        tracing::Span::current().record("taken", n);
        futures::future::join_all(due.into_iter().map(|d| self.deliver(d))).await;
        Ok(n)
    }

    async fn deliver(&self, d: DeliveryRow) {
        let channel = d.channel;
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
                    status: DeliveryStatus::Sent,
                    attempts: 1,
                    last_error: None,
                    detail: Some(detail),
                    next_attempt_at: None,
                    sent_at: Some(now),
                }
            }
            Outcome::Later(wait) => DeliveryUpdate {
                status: DeliveryStatus::Pending,
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
                let status = if next.is_some() {
                    DeliveryStatus::Failed
                } else {
                    DeliveryStatus::Dead
                };
                metrics::counter!("ordo_notifications_total", "channel" => channel.as_str(), "outcome" => status.as_str())
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
        let name = self.recipient_name(d).await?;
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
                status: order.order.status.as_str(),
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
        let name = self.recipient_name(d).await?;
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
    #[tracing::instrument(skip_all, fields(customer_id = %customer.id))]
    pub async fn send_shop_message(
        &self,
        customer: &crate::auth::store::UserRow,
        order_id: Option<Uuid>,
        message: &str,
        actor: &str,
    ) -> NotificationResult<Vec<DeliveryRow>> {
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

    /// The name a message greets its recipient by. A recipient that is gone is an error
    /// (the attempt fails and is tried again), never an empty greeting.
    async fn recipient_name(&self, d: &DeliveryRow) -> anyhow::Result<String> {
        self.store
            .user_by_id(d.recipient)
            .await?
            .map(|u| u.name)
            .ok_or_else(|| anyhow::anyhow!("recipient {} is gone", d.recipient))
    }

    /// Updates the queue-depth gauges.
    pub async fn measure_queue(&self) -> NotificationResult<()> {
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
