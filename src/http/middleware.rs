//! Middleware run for every route: authentication, the per-caller rate limit, request
//! metrics and the log line for failures.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::Caller;
use crate::app::AppState;
use crate::auth::service::AuthError;
use crate::error::{ApiError, InternalCause};

/// Resolves the bearer credential (header, or `?access_token=` for browsers' WebSocket and
/// SSE clients) into a [`Caller`] for the handlers and the middleware inside.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match bearer(&req) {
        None => Caller::Anonymous,
        Some(token) => match state.auth.authenticate(&token).await {
            Ok(p) if !link_may(&p, &req) => {
                Caller::Invalid("a tracking link only reads and follows its own order")
            }
            Ok(p) => Caller::Authenticated(p),
            Err(AuthError::Unauthorized(why)) => Caller::Invalid(why),
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// A tracking link is admitted on the reads of its own order and on the real-time streams
/// (which narrow it to that order), and nowhere else: an allow-list kept in one place.
fn link_may(p: &crate::auth::domain::Principal, req: &Request) -> bool {
    let Some(order) = p.link_order() else {
        return true;
    };
    if req.method() != axum::http::Method::GET {
        return false;
    }
    let path = req.uri().path();
    if path == "/v1/events" || path == "/v1/ws" {
        return true;
    }
    let Some(rest) = path.strip_prefix("/v1/orders/") else {
        return false;
    };
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    uuid::Uuid::parse_str(id).is_ok_and(|id| id == order) && (tail.is_empty() || tail == "events")
}

fn bearer(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(axum::http::header::AUTHORIZATION) {
        let s = h.to_str().ok()?;
        let (scheme, token) = s.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

/// The address of the client: the TCP peer, or the first `X-Forwarded-For` entry when the
/// node sits behind a trusted proxy (`ORDO_TRUST_PROXY_HEADERS`).
pub fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>, trust_proxy: bool) -> String {
    if trust_proxy
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return ip.to_string();
    }
    peer.map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
}

pub fn peer_of(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// `ORDO_RATE_LIMIT_PER_MIN`: requests per minute per caller (principal, else IP), per node.
#[derive(Clone)]
pub struct RateLimit(Arc<DefaultKeyedRateLimiter<String>>);

impl RateLimit {
    pub fn per_minute(n: u32) -> Option<Self> {
        let n = NonZeroU32::new(n)?;
        Some(RateLimit(Arc::new(RateLimiter::keyed(Quota::per_minute(
            n,
        )))))
    }

    /// Forgets callers that have been quiet for a while, to bound memory.
    pub fn shrink(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(limiter) = &state.rate_limit {
        let key = match req.extensions().get::<Caller>() {
            Some(Caller::Authenticated(p)) => p.key(),
            _ => format!(
                "ip:{}",
                client_ip(
                    req.headers(),
                    peer_of(&req),
                    state.config.trust_proxy_headers
                )
            ),
        };
        if let Err(not_until) = limiter.0.check_key(&key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return ApiError::RateLimited {
                retry_after_secs: secs.max(1),
            }
            .into_response();
        }
    }
    next.run(req).await
}

/// Counts and times every request by route and status, and logs failures; a 500 is logged
/// with its cause, which the response itself never shows.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status();
    let elapsed = started.elapsed().as_secs_f64();
    let labels = [
        ("method", method.clone()),
        ("route", route.clone()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("ordo_http_requests_total", &labels).increment(1);
    metrics::histogram!("ordo_http_request_duration_seconds", &labels).record(elapsed);
    if let Some(InternalCause(cause)) = res.extensions().get::<InternalCause>() {
        tracing::error!(%method, %route, status = status.as_u16(), cause = %cause, "request failed");
    } else if status.is_server_error() {
        tracing::warn!(%method, %route, status = status.as_u16(), "request failed");
    }
    res
}
