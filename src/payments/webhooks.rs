//! `POST /v1/webhooks/stripe`: payments that finish after the API call (3-D Secure, a
//! gateway that answered late) are settled from Stripe's events. Every event must carry a
//! valid `Stripe-Signature` (HMAC-SHA256 of `{timestamp}.{body}` with
//! `STRIPE_WEBHOOK_SECRET`, timestamp within 5 minutes), and each event id is handled once.

use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::{Json, parse_json};
use crate::orders::error::OrderError;

/// How old a signed event may be before it counts as a replay.
pub const TOLERANCE_SECS: i64 = 300;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stripe_webhook))
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: PaymentIntent,
}

#[derive(Deserialize)]
struct PaymentIntent {
    id: String,
    #[serde(default)]
    metadata: Metadata,
    last_payment_error: Option<PaymentError>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    order_id: Option<String>,
}

#[derive(Deserialize)]
struct PaymentError {
    code: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Received {
    received: bool,
    /// True when this event id was handled before; nothing was changed.
    duplicate: bool,
}

/// Checks a `Stripe-Signature` header (`t=…,v1=…[,v1=…]`) for `body` at `now`.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or("the signature has no timestamp")?;
    if (now - t).abs() > TOLERANCE_SECS {
        return Err("the signature is too old (or from the future)");
    }
    for sig in signatures {
        let Ok(expected) = hex::decode(sig) else {
            continue;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // Constant-time comparison.
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err("no valid signature")
}

/// Receive a Stripe event (signed). Settles payments that finished after the API call.
#[utoipa::path(post, path = "/v1/webhooks/stripe", tag = "payments",
    params(("Stripe-Signature" = String, Header)),
    request_body(content = Object, description = "a Stripe event, exactly as Stripe sent it", content_type = "application/json"),
    responses((status = 200, body = Received), (status = 401, body = Problem), (status = 503, body = Problem)))]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Received>> {
    let secret = state.config.stripe_webhook_secret.as_ref().ok_or_else(|| {
        ApiError::Unavailable("STRIPE_WEBHOOK_SECRET is not set on this server".into())
    })?;
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized(
            "the Stripe-Signature header is missing",
        ))?;
    verify_signature(
        header,
        &body,
        secret.expose(),
        state.clock.now().unix_timestamp(),
    )
    .map_err(ApiError::Unauthorized)?;
    let event: Event = parse_json(&body)?;
    if !state
        .store
        .record_gateway_event(&event.id, &event.kind, state.clock.ts())
        .await?
    {
        return Ok(Json(Received {
            received: true,
            duplicate: true,
        }));
    }
    let outcome = settle(&state, &event).await;
    if let Err(e) = outcome {
        // Not handled: forget it, so that Stripe's retry is handled.
        state.store.forget_gateway_event(&event.id).await?;
        return Err(e);
    }
    Ok(Json(Received {
        received: true,
        duplicate: false,
    }))
}

async fn settle(state: &AppState, event: &Event) -> ApiResult<()> {
    let pi = &event.data.object;
    // Events for payments Ordo did not start (no order id) are acknowledged and ignored.
    let Some(order_id) = pi
        .metadata
        .order_id
        .as_deref()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
    else {
        return Ok(());
    };
    let result = match event.kind.as_str() {
        "payment_intent.succeeded" => state.orders.settle_success(order_id, pi.id.clone()).await,
        "payment_intent.payment_failed" => {
            let reason = pi
                .last_payment_error
                .as_ref()
                .and_then(|e| e.code.clone())
                .unwrap_or_else(|| "failed".into());
            state.orders.settle_failure(order_id, &reason).await
        }
        _ => return Ok(()),
    };
    match result {
        Ok(_) | Err(OrderError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign("whsec_test", 1000, body);
        assert_eq!(verify_signature(&header, body, "whsec_test", 1010), Ok(()));
        assert!(verify_signature(&header, body, "whsec_other", 1010).is_err());
        assert!(verify_signature(&header, br#"{"id":"evt_2"}"#, "whsec_test", 1010).is_err());
        assert!(verify_signature(&header, body, "whsec_test", 1000 + TOLERANCE_SECS + 1).is_err());
        assert!(verify_signature("v1=abc", body, "whsec_test", 1000).is_err());
        // A second, valid signature among several (secret rotation) is accepted.
        let rotated = format!("{},v1=00ff", sign("whsec_test", 1000, body));
        assert_eq!(verify_signature(&rotated, body, "whsec_test", 1000), Ok(()));
    }
}
