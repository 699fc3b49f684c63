//! Webhook endpoints: create, list, delete, rotate a secret, resend a delivery.

use std::time::Duration;

use uuid::Uuid;

use crate::books::domain::{self as books, NewAudit};
use crate::notifications::channels::check_webhook_url;
use crate::notifications::domain::{Channel, new_webhook_secret};
use crate::notifications::store::{DeliveryRow, EndpointRow, EventTypes};

use super::{NotificationError, NotificationResult, NotificationService};

impl NotificationService {
    #[tracing::instrument(skip_all)]
    pub async fn create_endpoint(
        &self,
        url: &str,
        events: Vec<String>,
        description: Option<String>,
        actor: &str,
    ) -> NotificationResult<EndpointRow> {
        let url = check_webhook_url(url, self.allow_private)
            .await
            .map_err(|e| NotificationError::BadUrl(e.to_string()))?;
        let now = self.clock.ts();
        let row = EndpointRow {
            id: Uuid::now_v7(),
            url: url.to_string(),
            events: EventTypes::new(events),
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
        .after(serde_json::json!({"url": row.url, "events": row.events.list()?}));
        self.store.insert_endpoint(&row, &audit).await?;
        Ok(row)
    }

    #[tracing::instrument(skip_all, fields(endpoint_id = %id))]
    pub async fn endpoint(&self, id: Uuid) -> NotificationResult<EndpointRow> {
        match self.store.endpoint(id).await? {
            Some(e) if e.deleted_at.is_none() => Ok(e),
            _ => Err(NotificationError::NotFound),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn endpoints(&self) -> NotificationResult<Vec<EndpointRow>> {
        Ok(self.store.endpoints().await?)
    }

    #[tracing::instrument(skip_all, fields(endpoint_id = %id))]
    pub async fn delete_endpoint(&self, id: Uuid, actor: &str) -> NotificationResult<()> {
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
            Err(NotificationError::NotFound)
        }
    }

    /// A new secret; the old one keeps signing (a second signature) for `grace`.
    #[tracing::instrument(skip_all, fields(endpoint_id = %id))]
    pub async fn rotate_secret(
        &self,
        id: Uuid,
        grace: Duration,
    ) -> NotificationResult<EndpointRow> {
        let secret = new_webhook_secret();
        let rotated = self
            .store
            .rotate_endpoint_secret(id, &secret, self.later(grace), self.clock.ts())
            .await?;
        if !rotated {
            return Err(NotificationError::NotFound);
        }
        self.endpoint(id).await
    }

    /// Sends a delivery of this endpoint again, with the same id.
    #[tracing::instrument(skip_all, fields(endpoint_id = %endpoint, delivery_id = %delivery))]
    pub async fn resend(&self, endpoint: Uuid, delivery: Uuid) -> NotificationResult<DeliveryRow> {
        let d = self
            .store
            .delivery(delivery)
            .await?
            .filter(|d| d.recipient == endpoint && d.channel == Channel::Webhook)
            .ok_or(NotificationError::NotFound)?;
        if !self.store.requeue_delivery(d.id, self.clock.ts()).await? {
            return Err(NotificationError::StillTrying);
        }
        self.store
            .delivery(d.id)
            .await?
            .ok_or(NotificationError::NotFound)
    }
}
