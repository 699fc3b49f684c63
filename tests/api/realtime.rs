//! Real-time push over `/v1/ws` and `/v1/events`: who sees what, replay and resume without
//! a gap or a repeat, narrowing, slow and silent clients, limits, shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, Got, TestApp, WsClient};

fn id_of(v: &Value) -> i64 {
    v["id"].as_str().expect("id").parse().expect("numeric id")
}

/// The ids of every event of these orders, from the timeline.
async fn timeline(app: &TestApp, token: &str, orders: &[String]) -> Vec<i64> {
    let mut ids = Vec::new();
    for o in orders {
        let ev = app.get(&format!("/v1/orders/{o}/events"), token).await;
        ids.extend(ev.body["data"].as_array().unwrap().iter().map(id_of));
    }
    ids.sort_unstable();
    ids
}

async fn scan(app: &TestApp, staff: &str, order: &str, what: &str) -> i64 {
    let r = app
        .post(
            &format!("/v1/orders/{order}/tracking"),
            staff,
            json!({"description": what, "carrier_status": "in_transit"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    id_of(&r.body)
}

/// A customer gets its own orders' events and nobody else's; staff get all of them. The
/// message has the shape API.md gives.
async fn each_caller_sees_what_it_may(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (ann_id, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let staff = app.staff().await;
    let item = app.item(500, 10).await;
    let mut ann_ws = app.ws("", &ann).await;
    let mut bob_ws = app.ws("", &bob).await;
    let mut staff_ws = app.ws("", &staff).await;
    let a = app.new_order(&ann, &item).await;
    let m = ann_ws.json().await;
    assert_eq!(m["event"], "order_status_update", "{m}");
    assert_eq!(m["data"]["order_id"], a.as_str());
    assert_eq!(m["data"]["customer_id"], ann_id.as_str());
    assert_eq!(m["data"]["status"], "created");
    for field in [
        "previous_status",
        "at",
        "note",
        "location",
        "carrier",
        "tracking_number",
    ] {
        assert!(m["data"].get(field).is_some(), "{field} missing: {m}");
    }
    assert_eq!(staff_ws.json().await, m, "staff see the same message");
    // Bob's first message is his own order, never Ann's.
    let b_order = app.new_order(&bob, &item).await;
    let first = bob_ws.json().await;
    assert_eq!(first["data"]["order_id"], b_order.as_str(), "{first}");
    assert_eq!(staff_ws.json().await["data"]["order_id"], b_order.as_str());
    // A status change reaches the customer with the previous status.
    app.post(
        &format!("/v1/orders/{a}/cancel"),
        &ann,
        json!({"reason": "changed my mind"}),
    )
    .await;
    let c = ann_ws.json().await;
    assert_eq!(c["data"]["status"], "canceled");
    assert_eq!(c["data"]["previous_status"], "created");
    assert_eq!(c["data"]["note"], "changed my mind");
    assert!(matches!(
        bob_ws.next(Duration::from_millis(300)).await,
        Got::Nothing
    ));
}
both!(each_caller_sees_what_it_may);

/// Credentials: header or `?access_token=`; none or a bad one is 401; a plain GET is 426;
/// a key without `orders:read` is 403.
async fn connections_need_a_valid_caller(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(500, 10).await;
    let mut ws = app
        .try_ws(&format!("?access_token={ann}"), None)
        .await
        .unwrap();
    app.new_order(&ann, &item).await;
    assert_eq!(ws.json().await["data"]["status"], "created");
    app.try_ws("", None)
        .await
        .err()
        .unwrap()
        .assert_problem(401, "unauthorized");
    app.try_ws("?access_token=nonsense", None)
        .await
        .err()
        .unwrap()
        .assert_problem(401, "unauthorized");
    let (_, key) = app.api_key(&["items:read"]).await;
    app.try_ws("", Some(&key))
        .await
        .err()
        .unwrap()
        .assert_problem(403, "forbidden");
    app.get("/v1/ws", &ann)
        .await
        .assert_problem(426, "upgrade_required");
    // An integration key with orders:read sees everything.
    let (_, reader) = app.api_key(&["orders:read"]).await;
    let mut all = app.ws("", &reader).await;
    app.new_order(&ann, &item).await;
    assert_eq!(all.json().await["data"]["status"], "created");
}
both!(connections_need_a_valid_caller);

/// `since` replays every visible event after that id, in order, then goes live; while
/// events keep arriving during the replay, nothing is skipped or repeated at the seam.
async fn a_reconnect_with_since_misses_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let staff = app.staff().await;
    let item = app.item(500, 100).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(app.paid_order(&ann, &item, 1).await);
        app.paid_order(&bob, &item, 1).await;
    }
    let before = timeline(&app, &ann, &orders).await;
    let since = before[1];
    // Events keep coming while the client connects and replays.
    let writer = {
        let (app_url, staff, orders) = (app.url.clone(), staff.clone(), orders.clone());
        let client = app.client.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                let o = &orders[i % orders.len()];
                let r = client
                    .post(format!("{app_url}/v1/orders/{o}/tracking"))
                    .bearer_auth(&staff)
                    .json(&json!({"description": format!("scan {i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut ws = app.ws(&format!("?since={since}"), &ann).await;
    writer.await.unwrap();
    let all = timeline(&app, &ann, &orders).await;
    let got: Vec<i64> = ws
        .until_id(*all.last().unwrap())
        .await
        .iter()
        .map(id_of)
        .collect();
    let expected: Vec<i64> = all.into_iter().filter(|id| *id > since).collect();
    assert_eq!(got, expected, "every event after {since}, once, in order");
    assert!(matches!(
        ws.next(Duration::from_millis(300)).await,
        Got::Nothing
    ));
}
both!(a_reconnect_with_since_misses_nothing);

/// Subscribing narrows the stream to the orders named; another customer's order cannot be
/// subscribed to (not found), and nothing widens what a customer sees.
async fn subscribe_narrows_but_never_widens(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let staff = app.staff().await;
    let item = app.item(500, 10).await;
    let mut ws = app.ws("", &ann).await;
    let a1 = app.new_order(&ann, &item).await;
    let a2 = app.new_order(&ann, &item).await;
    let b1 = app.new_order(&bob, &item).await;
    // Everything of Ann's so far: her two orders were created.
    for o in [&a1, &a2] {
        assert_eq!(ws.json().await["data"]["order_id"], o.as_str());
    }
    ws.send(json!({"action": "subscribe", "order_id": a1}))
        .await;
    let ok = ws.json().await;
    assert_eq!(ok, json!({"event": "subscribed", "data": {"order_id": a1}}));
    ws.send(json!({"action": "subscribe", "order_id": b1}))
        .await;
    assert_eq!(ws.json().await["data"]["code"], "not_found");
    ws.send(json!({"action": "dance"})).await;
    assert_eq!(ws.json().await["data"]["code"], "validation_failed");
    // Each order is paid (placed), then scanned: two events each.
    scan_all(&app, &staff, &[&a2, &b1, &a1]).await;
    for _ in 0..2 {
        let m = ws.json().await;
        assert_eq!(
            m["data"]["order_id"],
            a1.as_str(),
            "only the subscribed order: {m}"
        );
    }
    assert!(matches!(
        ws.next(Duration::from_millis(300)).await,
        Got::Nothing
    ));
    // `?order_id=` narrows from the start; another customer's order is 404.
    let mut one = app.ws(&format!("?order_id={a2}"), &ann).await;
    scan_all(&app, &staff, &[&a1, &a2]).await;
    assert_eq!(one.json().await["data"]["order_id"], a2.as_str());
    app.try_ws(&format!("?order_id={b1}"), Some(&ann))
        .await
        .err()
        .unwrap()
        .assert_problem(404, "not_found");
    app.try_ws("?since=yesterday", Some(&ann))
        .await
        .err()
        .unwrap()
        .assert_problem(422, "validation_failed");
}
both!(subscribe_narrows_but_never_widens);

async fn scan_all(app: &TestApp, staff: &str, orders: &[&String]) {
    for o in orders {
        // Shipped first, so that the order can be scanned.
        let r = app.get(&format!("/v1/orders/{o}"), staff).await;
        if r.body["status"] == "created" {
            let p = app
                .post(
                    &format!("/v1/orders/{o}/payments"),
                    staff,
                    json!({"payment_method": "pm_card_visa"}),
                )
                .await;
            assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        }
    }
    for o in orders {
        scan(app, staff, o, "scanned").await;
    }
}

/// The same stream as Server-Sent Events; `Last-Event-ID` resumes after the last event seen.
async fn server_sent_events_stream_and_resume(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(500, 10).await;
    let mut sse = Sse::open(&app, &ann, None).await;
    let o = app.new_order(&ann, &item).await;
    let first = sse.next().await;
    assert_eq!(first.event, "order_status_update");
    let body: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(body["data"]["order_id"], o.as_str());
    assert_eq!(first.id, body["id"].as_str().unwrap());
    drop(sse);
    // Two more while the client is away.
    let o2 = app.new_order(&ann, &item).await;
    app.post(&format!("/v1/orders/{o2}/cancel"), &ann, json!({}))
        .await;
    let mut again = Sse::open(&app, &ann, Some(&first.id)).await;
    let ids: Vec<String> = vec![again.next().await.id, again.next().await.id];
    let expected: Vec<String> = timeline(&app, &ann, &[o2])
        .await
        .iter()
        .map(i64::to_string)
        .collect();
    assert_eq!(ids, expected);
}
both!(server_sent_events_stream_and_resume);

/// One Server-Sent Event.
struct SseFrame {
    id: String,
    event: String,
    data: String,
}

struct Sse {
    res: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = app
            .client
            .get(format!("{}/v1/events", app.url))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Sse {
            res,
            buf: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped).
    async fn next(&mut self) -> SseFrame {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut f = SseFrame {
                    id: String::new(),
                    event: String::new(),
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                        f.id = v.to_owned();
                    } else if let Some(v) =
                        line.strip_prefix("event: ").or(line.strip_prefix("event:"))
                    {
                        f.event = v.to_owned();
                    } else if let Some(v) =
                        line.strip_prefix("data: ").or(line.strip_prefix("data:"))
                    {
                        f.data.push_str(v);
                    }
                }
                if !f.event.is_empty() {
                    return f;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.res.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream went on");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A client that stops reading falls behind and is disconnected; a client that keeps up
/// gets every event, unhindered.
async fn a_slow_client_is_dropped_and_holds_up_nobody(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.realtime.queue = 300).await;
    let (_, ann) = app.customer("ann").await;
    let staff = app.staff().await;
    let item = app.item(500, 10).await;
    let o = app.new_order(&ann, &item).await;
    scan_all(&app, &staff, &[&o]).await;
    let mut fast = app.ws("", &ann).await;
    let slow = slow_client(&app, &ann).await;
    assert_eq!(app.ready().await["realtime_connections"], 2);
    // About 6 MB of events, from 8 writers at once: more than the slow client's socket
    // buffers and queue can hold.
    let long = "x".repeat(1900);
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, staff, o, long) = (
                app.client.clone(),
                app.url.clone(),
                staff.clone(),
                o.clone(),
                long.clone(),
            );
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..400 {
                    let r = client
                        .post(format!("{url}/v1/orders/{o}/tracking"))
                        .bearer_auth(&staff)
                        .json(&json!({"description": long}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                    let v: Value = r.json().await.unwrap();
                    ids.push(id_of(&v));
                }
                ids
            })
        })
        .collect();
    let mut received = Vec::new();
    while !writers.iter().all(tokio::task::JoinHandle::is_finished) {
        if let Got::Json(m) = fast.next(Duration::from_millis(10)).await {
            received.push(id_of(&m));
        }
    }
    let mut sent = Vec::new();
    for w in writers {
        sent.extend(w.await.unwrap());
    }
    sent.sort_unstable();
    let first = sent[0];
    received.retain(|id| *id >= first);
    while received.last() != sent.last() {
        received.push(id_of(&fast.json().await));
    }
    assert_eq!(received, sent, "the fast client got everything, in order");
    let dropped = app
        .eventually(Duration::from_secs(15), || async {
            app.ready().await["realtime_connections"] == 1
        })
        .await;
    assert!(dropped, "the slow client was not dropped");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("ordo_realtime_messages_dropped_total"),
        "{metrics}"
    );
    drop(slow);
}
both!(a_slow_client_is_dropped_and_holds_up_nobody);

/// A WebSocket client with a tiny receive buffer that never reads.
async fn slow_client(app: &TestApp, token: &str) -> WsClient {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let addr: std::net::SocketAddr = app.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (stream, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    WsClient { stream }
}

/// A client that answers no ping is dropped after the idle timeout.
async fn a_silent_client_is_dropped(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.realtime.ping_interval = Duration::from_millis(300);
        c.realtime.idle_timeout = Duration::from_millis(900);
    })
    .await;
    let (_, ann) = app.customer("ann").await;
    // Never read: pings go unanswered.
    let _silent = app.ws("", &ann).await;
    let mut lively = app.ws("", &ann).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Reading answers the pings.
        let _ = lively.next(Duration::from_millis(50)).await;
        if app.ready().await["realtime_connections"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent client was not dropped"
        );
    }
}
both!(a_silent_client_is_dropped);

/// Each caller may hold a limited number of connections (429 past it).
async fn connections_per_caller_are_limited(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.realtime.max_per_caller = 2).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let one = app.ws("", &ann).await;
    let _two = app.ws("", &ann).await;
    app.try_ws("", Some(&ann))
        .await
        .err()
        .unwrap()
        .assert_problem(429, "rate_limited");
    let r = app.get("/v1/events", &ann).await;
    r.assert_problem(429, "rate_limited");
    let _bob = app.ws("", &bob).await;
    drop(one);
    let again = app
        .eventually(Duration::from_secs(5), || async {
            app.try_ws("", Some(&ann)).await.is_ok()
        })
        .await;
    assert!(again, "a closed connection frees its place");
}
both!(connections_per_caller_are_limited);

/// At shutdown every client is told to reconnect, with the last id it was sent.
async fn shutdown_tells_clients_to_reconnect(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(500, 10).await;
    let mut ws = app.ws("", &ann).await;
    app.new_order(&ann, &item).await;
    let last = id_of(&ws.json().await);
    app.shutdown();
    match ws.next(Duration::from_secs(10)).await {
        Got::Closed(Some((code, reason))) => {
            assert_eq!(code, 1012, "{reason}");
            assert!(reason.contains(&format!("since={last}")), "{reason}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}
both!(shutdown_tells_clients_to_reconnect);

/// A connection lives only as long as its credential: a revoked API key is cut off.
async fn a_revoked_key_is_cut_off(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.realtime.ping_interval = Duration::from_millis(300);
        c.realtime.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let (key_id, key) = app.api_key(&["orders:read"]).await;
    let mut ws = app.ws("", &key).await;
    let gone = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/api-keys/{key_id}"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    match ws.next(Duration::from_secs(10)).await {
        Got::Closed(Some((code, reason))) => {
            assert_eq!(code, 1008, "{reason}");
            assert!(reason.contains("no longer valid"), "{reason}");
        }
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
}
both!(a_revoked_key_is_cut_off);
