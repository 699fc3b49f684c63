//! The NATS JetStream event bus (the real server on this machine, one stream per test) and
//! many nodes: two real `ordo serve` processes on one PostgreSQL database and one NATS.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp, WsClient, eventually};

pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// A stream of this test's own, deleted at the end.
pub struct Stream {
    pub name: String,
    url: String,
}

impl Stream {
    pub fn new(url: &str) -> Stream {
        Stream {
            name: format!("T{}", uuid::Uuid::new_v4().simple()),
            url: url.to_owned(),
        }
    }

    async fn js(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(&self.url).await.expect("NATS");
        async_nats::jetstream::new(client)
    }

    /// Every event id the stream holds, in stream order.
    pub async fn ids(&self) -> Vec<i64> {
        let js = self.js().await;
        let s = js.get_stream(&self.name).await.expect("stream");
        let info = s.get_info().await.expect("info");
        let mut ids = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            if info.state.messages == 0 {
                break;
            }
            let m = s.get_raw_message(seq).await.expect("message");
            let id = m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .expect("Nats-Msg-Id")
                .as_str()
                .parse()
                .expect("numeric");
            ids.push(id);
        }
        ids
    }

    pub async fn delete(&self) {
        let _ = self.js().await.delete_stream(&self.name).await;
    }
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_str().expect("id").parse().expect("numeric id")
}

/// One node with the NATS bus: events reach WebSocket clients through the stream, each
/// event is in the stream once, in id order, and `/readyz` reports the bus.
async fn events_travel_through_jetstream(b: Backend) {
    let stream = Stream::new(NATS_URL);
    let name = stream.name.clone();
    let app = TestApp::spawn_with(b, move |c| {
        c.nats_url = Some(NATS_URL.to_owned());
        c.nats_stream = Some(name);
    })
    .await;
    let ready = app.ready().await;
    assert_eq!(
        ready["event_bus"],
        json!({"name": "nats", "state": "ok"}),
        "{ready}"
    );
    let (_, ann) = app.customer("ann").await;
    let item = app.item(500, 10).await;
    let mut ws = app.ws("", &ann).await;
    let r = app
        .post(
            "/v1/orders",
            &ann,
            json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_card_visa"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let created = ws.json().await;
    let placed = ws.json().await;
    assert_eq!(created["data"]["status"], "created");
    assert_eq!(placed["data"]["status"], "placed");
    assert_eq!(placed["data"]["order_id"], id.as_str());
    let timeline: Vec<i64> = app.get(&format!("/v1/orders/{id}/events"), &ann).await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(vec![id_of(&created), id_of(&placed)], timeline);
    let on_stream = stream.ids().await;
    assert_eq!(on_stream, timeline, "each event once, in order");
    stream.delete().await;
}
both!(events_travel_through_jetstream);

const BIN: &str = env!("CARGO_BIN_EXE_ordo");

/// An `ordo serve` process.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    async fn start(db: &str, stream: &str, nats: &str, extra: &[(&str, &str)]) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("DATABASE_URL", db)
            .env("NATS_URL", nats)
            .env("ORDO_NATS_STREAM", stream)
            .env(
                "ORDO_JWT_SECRET",
                "a-secret-every-node-of-the-cluster-shares",
            )
            .env("ORDO_ADMIN_EMAIL", "admin@example.com")
            .env("ORDO_ADMIN_PASSWORD", "admin-password")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn ordo");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = eventually(Duration::from_secs(30), || async {
            client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        assert!(started, "node did not start");
        Node { child, url }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.expect("request");
    res.json().await.unwrap_or(Value::Null)
}

async fn post(url: &str, token: Option<&str>, body: Value) -> Value {
    call(reqwest::Method::POST, url, token, Some(body)).await
}

async fn ws_to(node: &Node, token: &str) -> WsClient {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}/v1/ws", node.url.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (stream, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    WsClient { stream }
}

/// Two nodes on one PostgreSQL and one NATS: a change made through node A reaches a socket
/// on node B; only one node relays (every event is on the stream once); the expiry
/// sweepers of both nodes cancel each order once and return its stock once; when the
/// relaying node dies, the other takes over and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_stream_of_events() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (db, _guard) = crate::helpers::fresh_database(Backend::Postgres).await;
    let stream = Stream::new(NATS_URL);
    let settings = [
        ("ORDO_RESERVATION_TTL", "2"),
        ("ORDO_PAYMENT_TIMEOUT_MS", "200"),
        ("ORDO_WEBHOOK_ALLOW_PRIVATE", "true"),
    ];
    let hooks = crate::helpers::Receiver::start(vec![]).await;
    // A starts first and takes the relay.
    let mut a = Node::start(&db, &stream.name, NATS_URL, &settings).await;
    let b = Node::start(&db, &stream.name, NATS_URL, &settings).await;

    let admin = post(
        &format!("{}/v1/auth/login", a.url),
        None,
        json!({"email": "admin@example.com", "password": "admin-password"}),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let item = post(
        &format!("{}/v1/items", a.url),
        Some(&admin),
        json!({"sku": "NODE-1", "name": "Two-node mug", "price": 900, "currency": "USD", "stock": 20}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = post(
        &format!("{}/v1/webhook-endpoints", b.url),
        Some(&admin),
        json!({"url": hooks.url, "events": ["*"]}),
    )
    .await;
    assert!(endpoint["secret"].is_string(), "{endpoint}");
    let reg = post(
        &format!("{}/v1/auth/register", b.url),
        None,
        json!({"email": "ann@example.com", "password": "password-1", "name": "Ann"}),
    )
    .await;
    let ann = reg["access_token"].as_str().unwrap().to_owned();

    // Ann watches on B; the order is placed, paid and shipped through A.
    let mut ws = ws_to(&b, &ann).await;
    let order = post(
        &format!("{}/v1/orders", a.url),
        Some(&ann),
        json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_card_visa"}),
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();
    let shipped = post(
        &format!("{}/v1/orders/{id}/status", a.url),
        Some(&admin),
        json!({"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999"}),
    )
    .await;
    assert_eq!(shipped["status"], "shipped", "{shipped}");
    let statuses: Vec<Value> = vec![ws.json().await, ws.json().await, ws.json().await];
    let seen: Vec<&str> = statuses
        .iter()
        .map(|m| m["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["created", "placed", "shipped"]);
    assert_eq!(statuses[2]["data"]["tracking_number"], "1Z999");

    // Ten reservations that are never paid: both nodes sweep, each order ends once.
    let mut unpaid = Vec::new();
    for _ in 0..10 {
        let o = post(
            &format!("{}/v1/orders", b.url),
            Some(&ann),
            json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_sim_no_response"}),
        )
        .await;
        unpaid.push(o["id"].as_str().unwrap().to_owned());
    }
    let stock_of = || async {
        call(
            reqwest::Method::GET,
            &format!("{}/v1/items/{item}", b.url),
            Some(&admin),
            None,
        )
        .await["stock"]
            .as_i64()
            .unwrap()
    };
    let expired = eventually(Duration::from_secs(30), || async { stock_of().await == 19 }).await;
    assert!(expired, "the reservations did not expire");
    for o in &unpaid {
        let ev = call(
            reqwest::Method::GET,
            &format!("{}/v1/orders/{o}/events", a.url),
            Some(&ann),
            None,
        )
        .await;
        let canceled = ev["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["status"] == "canceled")
            .count();
        assert_eq!(canceled, 1, "{ev}");
    }

    // Both nodes deliver webhooks: each event reached the receiver once so far.
    let before_kill = ws_all_until_quiet(&mut ws).await;
    let delivered_once = |expected: usize| {
        let hooks = hooks.clone();
        async move {
            let reqs = hooks.requests();
            let mut by_event = std::collections::HashMap::new();
            for r in &reqs {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                let id = body["data"]["event_id"].as_str().unwrap().to_owned();
                by_event
                    .entry(id)
                    .or_insert_with(Vec::new)
                    .push(r.headers["webhook-id"].to_str().unwrap().to_owned());
            }
            by_event.len() == expected && reqs.len() == expected
        }
    };
    let events_so_far = stream.ids().await.len();
    let delivered = eventually(Duration::from_secs(20), || delivered_once(events_so_far)).await;
    assert!(
        delivered,
        "webhooks: {} requests for {events_so_far} events",
        hooks.requests().len()
    );
    // A (the relay) dies; B takes over and Ann still hears everything.
    a.kill();
    let second = post(
        &format!("{}/v1/orders", b.url),
        Some(&ann),
        json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_card_visa"}),
    )
    .await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let mut after_kill = Vec::new();
    while after_kill.len() < 2 {
        after_kill.push(ws.json().await);
    }
    assert!(
        after_kill
            .iter()
            .all(|m| m["data"]["order_id"] == second_id.as_str())
    );

    // Every event exactly once on the stream, in order; and Ann saw all of hers.
    let on_stream = stream.ids().await;
    let mut sorted = on_stream.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(on_stream, sorted, "no repeats, in order");
    let mut heard: Vec<i64> = statuses
        .iter()
        .chain(&before_kill)
        .chain(&after_kill)
        .map(id_of)
        .collect();
    let mut expected = Vec::new();
    for o in std::iter::once(&id)
        .chain(&unpaid)
        .chain(std::iter::once(&second_id))
    {
        let ev = call(
            reqwest::Method::GET,
            &format!("{}/v1/orders/{o}/events", b.url),
            Some(&ann),
            None,
        )
        .await;
        expected.extend(ev["data"].as_array().unwrap().iter().map(id_of));
    }
    expected.sort_unstable();
    heard.sort_unstable();
    assert_eq!(heard, expected, "Ann heard each of her events once");
    // And the webhooks of the events after A died came through B, once each.
    let all_events = on_stream.len();
    let delivered = eventually(Duration::from_secs(20), || delivered_once(all_events)).await;
    assert!(delivered, "webhooks after the failover");
    stream.delete().await;
}

/// Reads messages until none comes for a moment.
async fn ws_all_until_quiet(ws: &mut WsClient) -> Vec<Value> {
    let mut got = Vec::new();
    while let crate::helpers::Got::Json(m) = ws.next(Duration::from_millis(1500)).await {
        got.push(m);
    }
    got
}

/// A NATS server of this test's own, to stop and start.
struct PrivateNats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateNats {
    fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let mut n = PrivateNats {
            child: None,
            port,
            dir: tempfile::tempdir().expect("dir"),
        };
        n.resume();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let bin = if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = Command::new(bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// NATS goes away while orders keep changing, and comes back: the relay keeps the events
/// in the database until the stream takes them, and the client hears every one, in order.
async fn nothing_is_lost_while_nats_is_down(b: Backend) {
    let mut nats = PrivateNats::start();
    let url = nats.url();
    let app = TestApp::spawn_with(b, move |c| {
        c.nats_url = Some(url);
        c.nats_stream = Some("ORDO_EVENTS".into());
    })
    .await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(500, 50).await;
    let mut ws = app.ws("", &ann).await;
    let mut orders = vec![app.new_order(&ann, &item).await];
    assert_eq!(ws.json().await["data"]["status"], "created");
    nats.stop();
    for _ in 0..5 {
        orders.push(app.new_order(&ann, &item).await);
    }
    let ready = app.ready().await;
    assert_eq!(ready["status"], "unavailable", "NATS is down: {ready}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.resume();
    for _ in 0..2 {
        orders.push(app.new_order(&ann, &item).await);
    }
    let mut heard = Vec::new();
    while heard.len() < orders.len() - 1 {
        match ws.next(Duration::from_secs(20)).await {
            crate::helpers::Got::Json(m) => {
                heard.push(m["data"]["order_id"].as_str().unwrap().to_owned())
            }
            other => panic!("after {} events: {other:?}", heard.len()),
        }
    }
    assert_eq!(
        heard,
        orders[1..],
        "every order created while NATS was away, in order"
    );
}
both!(nothing_is_lost_while_nats_is_down);
