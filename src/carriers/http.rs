//! `POST /v1/carriers/aftership/webhook`: AfterShip's tracking updates. The signature
//! (`aftership-hmac-sha256`: base64 of HMAC-SHA256 of the raw body, keyed with
//! `ORDO_AFTERSHIP_WEBHOOK_SECRET`) is checked over the bytes as received, before the body
//! is parsed; anything unsigned, forged or unreadable changes nothing.

use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::domain::{Tag, clip, format_date, parse_checkpoint_time, parse_date};
use super::service::{CarrierError, Checkpoint, Handled, TrackingUpdate};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::Json;
use crate::storage::Ts;

/// The one place a carrier update's failure becomes an HTTP answer.
impl From<CarrierError> for ApiError {
    fn from(e: CarrierError) -> Self {
        match e {
            CarrierError::Behind { .. } => ApiError::Conflict(e.to_string()),
            CarrierError::Order(e) => e.into(),
            CarrierError::Store(e) => e.into(),
        }
    }
}

pub const SIGNATURE_HEADER: &str = "aftership-hmac-sha256";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(aftership_webhook))
}
/// Checks AfterShip's signature of `body` (constant-time).
pub fn verify_signature(header: &str, body: &[u8], secret: &str) -> Result<(), &'static str> {
    let expected = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| "the signature is not base64")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| "the webhook secret is unusable")?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| "the signature does not match")
}

/// AfterShip's webhook body: only what Ordo reads (`ts`, `subtag` and the rest are
/// accepted and ignored; the event id and the tag decide).
#[derive(Debug, Deserialize)]
struct Webhook {
    event: String,
    event_id: String,
    msg: Tracking,
}

#[derive(Debug, Deserialize)]
struct Tracking {
    tracking_number: String,
    slug: String,
    tag: String,
    subtag_message: Option<String>,
    #[serde(default)]
    checkpoints: Option<Vec<CheckpointBody>>,
    courier_estimated_delivery_date: Option<CourierEstimate>,
}

#[derive(Debug, Deserialize)]
struct CheckpointBody {
    checkpoint_time: Option<String>,
    message: Option<String>,
    location: Option<String>,
    city: Option<String>,
    state: Option<String>,
    country_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CourierEstimate {
    estimated_delivery_date: Option<String>,
    estimated_delivery_date_max: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceived {
    received: bool,
    /// True when this event id was handled before; nothing was changed.
    duplicate: bool,
    /// `applied`, `duplicate`, `unknown_tracking_number` or `ignored`.
    outcome: &'static str,
}

/// Reads the body: a syntax error or a body of the wrong shape is 400 (nothing changes).
fn parse(body: &[u8]) -> ApiResult<Webhook> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not JSON: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        ApiError::InvalidJson(format!(
            "not an AfterShip webhook: {} at {}",
            e.inner(),
            e.path()
        ))
    })
}

fn text_field(name: &str, raw: &str, max: usize) -> ApiResult<String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(ApiError::InvalidJson(format!(
            "{name} must be 1 to {max} characters"
        )));
    }
    Ok(t.to_owned())
}

/// The update's latest checkpoint (by its time; the last one when times are missing).
fn latest_checkpoint(list: &[CheckpointBody]) -> Option<Checkpoint> {
    let timed = |c: &CheckpointBody| c.checkpoint_time.as_deref().and_then(parse_checkpoint_time);
    let latest = list
        .iter()
        .enumerate()
        .max_by_key(|(i, c)| (timed(c), *i))
        .map(|(_, c)| c)?;
    let location = clip(latest.location.as_deref(), 200).or_else(|| {
        let parts: Vec<&str> = [&latest.city, &latest.state, &latest.country_name]
            .into_iter()
            .filter_map(|p| p.as_deref().map(str::trim).filter(|s| !s.is_empty()))
            .collect();
        clip(Some(&parts.join(", ")), 200)
    });
    Some(Checkpoint {
        at: timed(latest).map(Ts::truncated),
        message: clip(latest.message.as_deref(), 2000),
        location,
    })
}

fn update_of(w: Webhook) -> ApiResult<TrackingUpdate> {
    let m = w.msg;
    let estimate = m.courier_estimated_delivery_date.and_then(|e| {
        e.estimated_delivery_date
            .as_deref()
            .and_then(parse_date)
            .or_else(|| {
                e.estimated_delivery_date_max
                    .as_deref()
                    .and_then(parse_date)
            })
    });
    Ok(TrackingUpdate {
        event_id: text_field("event_id", &w.event_id, 200)?,
        tracking_number: text_field("msg.tracking_number", &m.tracking_number, 100)?,
        slug: text_field("msg.slug", &m.slug, 100)?,
        tag: Tag::parse(&m.tag),
        subtag_message: clip(m.subtag_message.as_deref(), 2000),
        checkpoint: latest_checkpoint(m.checkpoints.as_deref().unwrap_or_default()),
        estimate: estimate.map(format_date),
    })
}

/// Receive an AfterShip tracking update (signed with `aftership-hmac-sha256`). Adds the
/// latest checkpoint to the order's timeline, delivers the order on `Delivered`, and keeps
/// the carrier's delivery estimate. An unknown tracking number is acknowledged (200).
#[utoipa::path(post, path = "/v1/carriers/aftership/webhook", tag = "carriers",
    params(("aftership-hmac-sha256" = String, Header, description = "base64 HMAC-SHA256 of the raw body")),
    request_body(content = Object, description = "AfterShip's webhook body, exactly as AfterShip sent it", content_type = "application/json"),
    responses((status = 200, body = WebhookReceived), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 413, body = Problem), (status = 503, body = Problem)))]
async fn aftership_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookReceived>> {
    let secret = state
        .config
        .aftership_webhook_secret
        .as_ref()
        .ok_or_else(|| {
            ApiError::Unavailable("ORDO_AFTERSHIP_WEBHOOK_SECRET is not set on this server".into())
        })?;
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized(
            "the aftership-hmac-sha256 header is missing",
        ))?;
    verify_signature(header, &body, secret.expose()).map_err(ApiError::Unauthorized)?;
    let webhook = parse(&body)?;
    if webhook.event != "tracking_update" {
        tracing::info!(event = %webhook.event, "AfterShip event other than tracking_update; acknowledged");
        return Ok(Json(WebhookReceived {
            received: true,
            duplicate: false,
            outcome: "ignored",
        }));
    }
    let update = update_of(webhook)?;
    let handled = state.carriers.apply(&update).await?;
    let outcome = match handled {
        Handled::Duplicate => "duplicate",
        Handled::UnknownTrackingNumber => "unknown_tracking_number",
        Handled::Ignored(_) => "ignored",
        Handled::Applied { .. } => "applied",
    };
    Ok(Json(WebhookReceived {
        received: true,
        duplicate: handled == Handled::Duplicate,
        outcome,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_are_checked_over_the_raw_body() {
        let body = br#"{"event":"tracking_update"}"#;
        let sig = sign("s3cret", body);
        assert_eq!(verify_signature(&sig, body, "s3cret"), Ok(()));
        assert!(verify_signature(&sig, body, "other").is_err());
        assert!(verify_signature(&sig, br#"{"event":"tracking_update" }"#, "s3cret").is_err());
        assert!(verify_signature("not base64!", body, "s3cret").is_err());
        assert!(verify_signature("", body, "s3cret").is_err());
    }

    #[test]
    fn the_latest_checkpoint_wins() {
        let list = vec![
            CheckpointBody {
                checkpoint_time: Some("2026-12-02T09:00:00+01:00".into()),
                message: Some("Out for delivery".into()),
                location: None,
                city: Some("Lyon".into()),
                state: None,
                country_name: Some("France".into()),
            },
            CheckpointBody {
                checkpoint_time: Some("2026-12-01T09:00:00Z".into()),
                message: Some("Arrived at facility".into()),
                location: Some("Paris".into()),
                city: None,
                state: None,
                country_name: None,
            },
        ];
        let c = latest_checkpoint(&list).unwrap();
        assert_eq!(c.message.as_deref(), Some("Out for delivery"));
        assert_eq!(c.location.as_deref(), Some("Lyon, France"));
        assert!(latest_checkpoint(&[]).is_none());
    }
}
