//! `GET /v1/ws` (WebSocket) and `GET /v1/events` (Server-Sent Events): every event the
//! caller may see (a customer: its own orders; staff, admins and `orders:read` keys: all),
//! live. `?since=<id>` (SSE also `Last-Event-ID`) first replays from the database every
//! visible event after that id, in order, then goes live without a gap or a repeat at the
//! seam (see `hub`). `?order_id=` narrows to one order from the start; on a WebSocket the
//! client may narrow further with `{"action":"subscribe","order_id":"…"}` (only to orders
//! it may see; nothing ever widens what it sees).
//!
//! Connections are pinged, dropped when silent for too long, closed when they fall too far
//! behind (the reason names the last id sent, to resume from), limited per caller, and told
//! to reconnect when the node shuts down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::PushEvent;
use super::hub::Subscription;
use super::store::Audience;
use crate::app::AppState;
use crate::auth::domain::{Permission, Principal};
use crate::auth::service::AuthError;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::QueryParams;
use crate::orders::error::OrderError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(websocket))
        .routes(routes!(server_sent_events))
}

/// Events replayed per database round trip.
const REPLAY_PAGE: u32 = 500;
/// A client that does not take a message within this long is gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a client may send (they only send small commands).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

/// Which orders a connection wants: all it may see, or a set of them.
#[derive(Default)]
struct Narrowing(Option<HashSet<Uuid>>);

impl Narrowing {
    fn allows(&self, order: Uuid) -> bool {
        self.0.as_ref().is_none_or(|set| set.contains(&order))
    }
}

/// What every real-time connection starts with, and where its stream stands.
struct Start {
    sub: Subscription,
    audience: Audience,
    narrowing: Narrowing,
    /// The last event id this connection has been given (or was sent elsewhere, per the
    /// client's `since`): nothing at or below it goes out again.
    last_sent: i64,
    /// Where the replay from the database stands; `None` when it is done.
    replaying: Option<i64>,
    /// The caller's credential, checked again while the connection lasts: a revoked key
    /// or an expired token ends it.
    credential: String,
}

impl Start {
    /// The next page of the replay: events visible to this connection after the last one
    /// sent, up to where live begins; empty once the replay is done.
    async fn replay_page(&mut self, state: &AppState) -> ApiResult<Vec<Arc<PushEvent>>> {
        let Some(after) = self.replaying else {
            return Ok(Vec::new());
        };
        let rows = state
            .store
            .replay(self.audience, after, self.sub.head, REPLAY_PAGE)
            .await?;
        self.replaying = match rows.last() {
            Some(last) if rows.len() == REPLAY_PAGE as usize => Some(last.id),
            _ => None,
        };
        Ok(PushEvent::from_rows(rows))
    }

    /// Is `ev` to go out on this connection? Events come in id order, from the replay and
    /// then live; one at or below the last id given is a repeat (a client that resumed
    /// on a node a little behind the one it came from) and is skipped.
    fn wants(&mut self, ev: &PushEvent) -> bool {
        if ev.id <= self.last_sent {
            return false;
        }
        self.last_sent = ev.id;
        self.narrowing.allows(ev.order_id)
    }
}

/// Checks the caller and the parameters, and registers the connection with the hub.
/// The bearer credential of the request (header, or `?access_token=`).
fn credential(headers: &HeaderMap, q: &QueryParams) -> String {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
        .or_else(|| q.one("access_token").map(str::to_owned))
        .unwrap_or_default()
}

/// Is the connection's credential still good? (A database hiccup is not a no.)
async fn still_allowed(state: &AppState, start: &Start) -> bool {
    !matches!(
        state.auth.authenticate(&start.credential).await,
        Err(AuthError::Unauthorized(_))
    )
}

async fn admit(
    state: &AppState,
    caller: &Principal,
    q: &QueryParams,
    headers: &HeaderMap,
) -> ApiResult<Start> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    caller.require(Permission::ReadOrders)?;
    let since = match q.one("since").or(last_event_id) {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::validation("since", "must be an event id"))?,
        ),
    };
    let mut narrowing = Narrowing::default();
    // A tracking link follows its one order, whatever it asks for.
    if let Some(own) = caller.link_order() {
        narrowing.0 = Some(HashSet::from([own]));
    }
    if let Some(raw) = q.one("order_id") {
        let id = Uuid::parse_str(raw.trim()).map_err(|_| ApiError::NotFound)?;
        // Only an order the caller may see (anybody else's is "not found").
        state.orders.get(caller, id).await?;
        narrowing.0 = Some(HashSet::from([id]));
    }
    let audience = match caller.own_customer_id() {
        Some(c) => Audience::Customer(c),
        None => Audience::Everyone,
    };
    let settings = state.config.realtime;
    // Right after start the node may not know yet where its stream begins.
    if !state.hub.started(Duration::from_secs(10)).await {
        return Err(ApiError::Unavailable(
            "real-time events are starting; try again".into(),
        ));
    }
    let sub = state
        .hub
        .subscribe(audience, caller.key(), settings.max_per_caller)
        .map_err(|_| ApiError::RateLimited {
            retry_after_secs: 5,
        })?;
    Ok(Start {
        last_sent: since.unwrap_or(sub.head),
        replaying: since,
        credential: credential(headers, q),
        sub,
        audience,
        narrowing,
    })
}

/// A customer's connection took a live event that notifies: its push is delivered.
fn received(state: &AppState, start: &Start, ev: &PushEvent) {
    if let Audience::Customer(c) = start.audience
        && ev.notifies()
    {
        state.notifications.push_received(ev.id, c);
    }
}

/// The real-time stream over a WebSocket.
///
/// Server messages are events (`{"id","event","data"}`), and answers to the client's
/// commands: `{"event":"subscribed"|"unsubscribed","data":{"order_id"}}` or
/// `{"event":"error","data":{"code","detail"}}`. Close codes: 1012 the node is shutting
/// down, 1013 the client fell too far behind, 1001 the client stayed silent too long.
#[utoipa::path(get, path = "/v1/ws", tag = "events", security(("bearer" = [])),
    params(("since" = Option<String>, Query, description = "replay the visible events after this id first"),
           ("order_id" = Option<String>, Query, description = "only this order's events"),
           ("access_token" = Option<String>, Query, description = "for browsers, instead of the Authorization header")),
    responses((status = 101, description = "switching to the WebSocket protocol"), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem), (status = 426, body = Problem),
              (status = 429, body = Problem)))]
async fn websocket(
    State(state): State<AppState>,
    caller: Principal,
    q: QueryParams,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade.map_err(|_| ApiError::UpgradeRequired)?;
    let start = admit(&state, &caller, &q, &headers).await?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        // Small buffers: an idle connection should cost little (they grow as needed). Clients
        // send only small commands; 1 KiB instead of 4 KiB took an idle connection from
        // about 9.8 to 5.8 KiB (docs/PERFORMANCE.md).
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            ws_session(socket, state, caller, start).await;
        })
        .into_response())
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Command {
    Subscribe { order_id: String },
    Unsubscribe { order_id: String },
}

fn control(event: &str, data: serde_json::Value) -> Message {
    Message::Text(
        serde_json::json!({"event": event, "data": data})
            .to_string()
            .into(),
    )
}

fn close(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

/// Answers a client's command; narrows (never widens) what the connection gets.
async fn command(
    state: &AppState,
    caller: &Principal,
    narrowing: &mut Narrowing,
    text: &str,
) -> Message {
    let error = |code: &str, detail: String| {
        control("error", serde_json::json!({"code": code, "detail": detail}))
    };
    let cmd: Command = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            return error(
                "validation_failed",
                format!("expected {{\"action\":\"subscribe\",\"order_id\":\"…\"}}: {e}"),
            );
        }
    };
    let (action, raw) = match &cmd {
        Command::Subscribe { order_id } => ("subscribed", order_id),
        Command::Unsubscribe { order_id } => ("unsubscribed", order_id),
    };
    let Ok(id) = Uuid::parse_str(raw.trim()) else {
        return error("not_found", "no such order".into());
    };
    match cmd {
        Command::Subscribe { .. } => match state.orders.get(caller, id).await {
            Ok(_) => {
                narrowing.0.get_or_insert_with(HashSet::new).insert(id);
            }
            Err(OrderError::NotFound) => return error("not_found", "no such order".into()),
            Err(e) => return error(ApiError::from(e).code(), "try again".into()),
        },
        Command::Unsubscribe { .. } => {
            if let Some(set) = narrowing.0.as_mut() {
                set.remove(&id);
            }
        }
    }
    control(action, serde_json::json!({"order_id": id.to_string()}))
}

async fn ws_session(socket: WebSocket, state: AppState, caller: Principal, mut start: Start) {
    let (mut tx, mut rx) = socket.split();
    let settings = state.config.realtime;
    let sent = |n: u64| {
        metrics::counter!("ordo_realtime_messages_sent_total", "transport" => "ws").increment(n)
    };
    let closing = state.hub.closing().clone();
    let too_slow = start.sub.too_slow.clone();
    // A send that does not go through in time, or a client that fell behind while its
    // socket was full, ends the session (there is no point finishing the frame).
    macro_rules! send {
        ($msg:expr) => {
            tokio::select! {
                r = tokio::time::timeout(SEND_TIMEOUT, tx.send($msg)) => {
                    if !matches!(r, Ok(Ok(()))) {
                        return;
                    }
                }
                _ = too_slow.cancelled() => return,
                _ = closing.cancelled() => return,
            }
        };
    }
    loop {
        let page = match start.replay_page(&state).await {
            Ok(p) if p.is_empty() => break,
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "replay failed");
                send!(close(close_code::ERROR, "replay failed; reconnect".into()));
                return;
            }
        };
        for ev in page {
            if start.wants(&ev) {
                send!(Message::Text(ev.json.as_ref().into()));
                sent(1);
            }
        }
    }
    let mut ping = tokio::time::interval_at(
        Instant::now() + settings.ping_interval,
        settings.ping_interval,
    );
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            _ = closing.cancelled() => {
                let reason = format!("server shutting down; reconnect with since={}", start.last_sent);
                let _ = tokio::time::timeout(SEND_TIMEOUT, tx.send(close(close_code::RESTART, reason))).await;
                return;
            }
            _ = too_slow.cancelled() => {
                let reason = format!("too slow; reconnect with since={}", start.last_sent);
                let _ = tokio::time::timeout(SEND_TIMEOUT, tx.send(close(close_code::AGAIN, reason))).await;
                return;
            }
            ev = start.sub.rx.recv() => {
                let Some(ev) = ev else { return };
                if start.wants(&ev) {
                    send!(Message::Text(ev.json.as_ref().into()));
                    sent(1);
                    received(&state, &start, &ev);
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > settings.idle_timeout {
                    let _ = tokio::time::timeout(SEND_TIMEOUT, tx.send(close(close_code::AWAY, "idle timeout".into()))).await;
                    return;
                }
                if !still_allowed(&state, &start).await {
                    let reason = "credentials no longer valid; sign in again".to_owned();
                    let _ = tokio::time::timeout(SEND_TIMEOUT, tx.send(close(close_code::POLICY, reason))).await;
                    return;
                }
                send!(Message::Ping(Default::default()));
            }
            msg = rx.next() => {
                let Some(Ok(msg)) = msg else { return };
                heard = Instant::now();
                match msg {
                    Message::Text(text) => {
                        let answer = command(&state, &caller, &mut start.narrowing, text.as_str()).await;
                        send!(answer);
                    }
                    Message::Close(_) => return,
                    Message::Ping(_) | Message::Pong(_) | Message::Binary(_) => {}
                }
            }
        }
    }
}

/// The real-time stream as Server-Sent Events: each event has `id:` (resume with
/// `Last-Event-ID`), `event:` (its kind) and `data:` (the same JSON as on the WebSocket).
/// `event: error` (the client fell too far behind) and `event: shutdown` (the node is
/// stopping) end the stream; reconnect with the last id.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])),
    params(("since" = Option<String>, Query, description = "replay the visible events after this id first"),
           ("Last-Event-ID" = Option<String>, Header, description = "the same as since"),
           ("order_id" = Option<String>, Query, description = "only this order's events"),
           ("access_token" = Option<String>, Query, description = "for browsers, instead of the Authorization header")),
    responses((status = 200, description = "text/event-stream"), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn server_sent_events(
    State(state): State<AppState>,
    caller: Principal,
    q: QueryParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let start = admit(&state, &caller, &q, &headers).await?;
    let (tx, rx) = mpsc::channel::<SseEvent>(16);
    let ping = state.config.realtime.ping_interval;
    tokio::spawn(sse_session(state, start, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok::<_, Infallible>(ev), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(ping).text("ping"))
        .into_response())
}

fn sse_event(ev: &PushEvent) -> SseEvent {
    SseEvent::default()
        .id(ev.id.to_string())
        .event(ev.event.as_str())
        .data(ev.json.as_ref())
}

async fn sse_session(state: AppState, mut start: Start, tx: mpsc::Sender<SseEvent>) {
    let sent = || {
        metrics::counter!("ordo_realtime_messages_sent_total", "transport" => "sse").increment(1)
    };
    macro_rules! send {
        ($ev:expr) => {
            match tokio::time::timeout(SEND_TIMEOUT, tx.send($ev)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        };
    }
    loop {
        let page = match start.replay_page(&state).await {
            Ok(p) if p.is_empty() => break,
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "replay failed");
                send!(
                    SseEvent::default()
                        .event("error")
                        .data(r#"{"code":"internal","detail":"replay failed; reconnect"}"#)
                );
                return;
            }
        };
        for ev in page {
            if start.wants(&ev) {
                send!(sse_event(&ev));
                sent();
            }
        }
    }
    let closing = state.hub.closing().clone();
    let every = state.config.realtime.ping_interval;
    let mut recheck = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = recheck.tick() => {
                if !still_allowed(&state, &start).await {
                    let data = serde_json::json!({"code": "unauthorized", "detail": "credentials no longer valid; sign in again"});
                    let _ = tx.send(SseEvent::default().event("error").data(data.to_string())).await;
                    return;
                }
            }
            _ = closing.cancelled() => {
                let data = serde_json::json!({"reason": "server shutting down; reconnect", "last_event_id": start.last_sent.to_string()});
                let _ = tx.send(SseEvent::default().event("shutdown").retry(Duration::from_secs(1)).data(data.to_string())).await;
                return;
            }
            _ = start.sub.too_slow.cancelled() => {
                let data = serde_json::json!({"code": "too_slow", "detail": "fell too far behind; reconnect", "last_event_id": start.last_sent.to_string()});
                let _ = tx.send(SseEvent::default().event("error").data(data.to_string())).await;
                return;
            }
            _ = tx.closed() => return,
            ev = start.sub.rx.recv() => {
                let Some(ev) = ev else { return };
                if start.wants(&ev) {
                    send!(sse_event(&ev));
                    sent();
                    received(&state, &start, &ev);
                }
            }
        }
    }
}
