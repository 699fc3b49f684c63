//! `Idempotency-Key` on POST: the first request with a key does the work and its response
//! is stored; a repeat with the same body gets that response again (`Idempotent-Replayed:
//! true`); a repeat with another body is 422 `idempotency_key_reused`; a repeat while the
//! first is still running is 409 `conflict`. Keys are scoped to the caller and kept 24 h.
//! Server errors and 429s are not kept: the same key may try again.

pub mod store;

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use self::store::{Begin, StoredResponse};
use crate::app::AppState;
use crate::error::ApiError;
use crate::http::{Caller, MAX_BODY};

pub const HEADER: &str = "idempotency-key";
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw_key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match raw_key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_owned(),
        _ => {
            return ApiError::validation(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    // Only signed-in callers: anonymous requests (sign-up, login) have no caller to scope a
    // key to, and their answers hold access tokens that must not be kept.
    let principal = match req.extensions().get::<Caller>() {
        Some(Caller::Authenticated(p)) => p.key(),
        _ => return next.run(req).await,
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return ApiError::PayloadTooLarge.into_response(),
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str().as_bytes());
    h.update(b" ");
    h.update(parts.uri.path().as_bytes());
    h.update(b"\n");
    h.update(&bytes);
    let hash = h.finalize().to_vec();

    let now = state.clock.ts();
    let cutoff = crate::storage::Ts::truncated(state.clock.now() - RETENTION);
    match state
        .store
        .idempotency_begin(&principal, &key, &hash, now, cutoff)
        .await
    {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Begin::Existing(row)) if row.request_hash != hash => {
            ApiError::IdempotencyKeyReused.into_response()
        }
        Ok(Begin::Existing(row)) => match row.response {
            None => ApiError::Conflict(
                "a request with this Idempotency-Key is still in progress".into(),
            )
            .into_response(),
            Some(stored) => replay(stored),
        },
        Ok(Begin::Started) => {
            let req = Request::from_parts(parts, Body::from(bytes));
            // The work runs in its own task: a client that hangs up does not cut it short,
            // and its response is stored for the retry that will follow.
            let store = state.store.clone();
            let task = tokio::spawn(async move {
                let res = next.run(req).await;
                let (parts, body) = res.into_parts();
                let body = match axum::body::to_bytes(body, usize::MAX).await {
                    Ok(body) => body,
                    Err(e) => {
                        // Nothing whole to store or to answer: the client may try again.
                        if let Err(e) = store.idempotency_abandon(&principal, &key).await {
                            tracing::error!(error = %e, "abandoning an idempotency key failed");
                        }
                        return ApiError::internal(anyhow::anyhow!("reading a response: {e}"))
                            .into_response();
                    }
                };
                let outcome = if parts.status.is_server_error()
                    || parts.status == StatusCode::TOO_MANY_REQUESTS
                {
                    // Not known to have happened, or refused only for now: let the client try
                    // again with the same key.
                    store.idempotency_abandon(&principal, &key).await
                } else {
                    let stored = StoredResponse {
                        status: parts.status,
                        content_type: parts
                            .headers
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                        body: body.to_vec(),
                    };
                    store.idempotency_complete(&principal, &key, &stored).await
                };
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "storing an idempotent response failed");
                }
                Response::from_parts(parts, Body::from(body))
            });
            task.await.unwrap_or_else(|e| {
                ApiError::internal(anyhow::anyhow!("handler task failed: {e}")).into_response()
            })
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut res = (stored.status, stored.body).into_response();
    if let Some(ct) = stored
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        res.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}
