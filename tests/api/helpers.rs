//! The test harness: every test gets its own fresh database (a temporary SQLite file, or a
//! new PostgreSQL database on the local server that is dropped afterwards) and its own
//! server on port 0, and talks to it over real HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ordo::app::AppState;
use ordo::clock::ManualClock;
use ordo::config::{Config, GatewayKind, LogFormat, Secret};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const WEBHOOK_SECRET: &str = "whsec_test_ordo";
pub const AFTERSHIP_SECRET: &str = "aftership-test-secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend: `both!(name)` expects `async fn name(Backend)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    };
}

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("ORDO_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Owns the test's database and removes it when the test ends.
pub enum DbGuard {
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres(String),
    /// Another node's database: that node's guard removes it.
    Shared,
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let DbGuard::Postgres(name) = self {
            let name = name.clone();
            // Drop runs outside any runtime we may block: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub url: String,
    /// The test's own database.
    pub db_url: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub admin_token: String,
    shutdown: CancellationToken,
    _db: DbGuard,
}

pub fn test_config(database_url: String) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: Secret::new(database_url),
        db_pool_size: 8,
        sqlite_synchronous: ordo::config::SqliteSync::Full,
        pg_group_commit: 2,
        sqlite_checkpoint_interval: Duration::from_secs(1),
        nats_url: None,
        nats_stream: None,
        realtime: ordo::config::RealtimeSettings::default(),
        notifications: ordo::config::NotificationSettings::default(),
        admin: Some((ADMIN_EMAIL.to_owned(), Secret::new(ADMIN_PASSWORD))),
        jwt_secret: None,
        token_ttl: Duration::from_secs(3600),
        reservation_ttl: Duration::from_secs(900),
        payment_gateway: GatewayKind::Simulated,
        stripe: None,
        stripe_webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
        aftership_webhook_secret: Some(Secret::new(AFTERSHIP_SECRET)),
        payment_timeout: Duration::from_millis(500),
        gateway_policy: ordo::payments::resilience::Policy::default(),
        simulated_gateway_latency: Duration::ZERO,
        tls: None,
        rate_limit_per_min: None,
        trust_proxy_headers: false,
        search_cache_entries: 4096,
        order_page_cache_entries: 2048,
        archive_after: Duration::from_secs(2_592_000),
        archive_interval: Duration::from_secs(3600),
        idle_event_readers: false,
        log_format: LogFormat::Text,
        shutdown_grace: Duration::from_secs(5),
    }
}

pub async fn fresh_database(backend: Backend) -> (String, DbGuard) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("ordo.db").display());
            (url, DbGuard::Sqlite { _dir: dir })
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let name = format!("ordo_test_{}", uuid::Uuid::new_v4().simple());
            let admin = pg_admin_url();
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut c)
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(b, _)| b)
                .to_owned();
            (format!("{base}/{name}"), DbGuard::Postgres(name))
        }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let (url, guard) = fresh_database(backend).await;
        Self::launch(url, guard, tweak).await
    }

    /// A second node on this node's database (PostgreSQL: many nodes share one database).
    pub async fn another_node(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::launch(self.db_url.clone(), DbGuard::Shared, tweak).await
    }

    /// Builds the application for the database at `url` and serves it on port 0.
    pub async fn launch(url: String, guard: DbGuard, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var_os("ORDO_TEST_LOG").is_some() {
            ordo::telemetry::init_logging(ordo::config::LogFormat::Text);
        }
        let mut config = test_config(url.clone());
        tweak(&mut config);
        let clock = Arc::new(ManualClock::default());
        let state = AppState::build(config, clock.clone())
            .await
            .expect("build app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let state = state.clone();
            let shutdown = shutdown.clone();
            async move {
                ordo::server::run(listener, state, shutdown)
                    .await
                    .expect("server");
            }
        });
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        let mut app = TestApp {
            url: format!("http://{addr}"),
            db_url: url,
            client,
            clock,
            state,
            admin_token: String::new(),
            shutdown,
            _db: guard,
        };
        app.admin_token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        app
    }

    /// Runs statements on the test's database behind the app's back, on one connection,
    /// with `id` as `$1` where a statement has it (bound as the store binds it: a 16-byte
    /// blob on SQLite, a `uuid` on PostgreSQL). Returns the rows the last one changed.
    pub async fn sql(&self, statements: &[&str], id: uuid::Uuid) -> u64 {
        use sqlx::Connection;
        let mut changed = 0;
        if self.db_url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.db_url)
                .await
                .expect("sqlite");
            for st in statements {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(st.to_string()));
                if st.contains("$1") {
                    q = q.bind(id);
                }
                changed = q.execute(&mut c).await.expect(st).rows_affected();
            }
            c.close().await.expect("close");
        } else {
            let mut c = sqlx::PgConnection::connect(&self.db_url)
                .await
                .expect("postgres");
            for st in statements {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(st.to_string()));
                if st.contains("$1") {
                    q = q.bind(id);
                }
                changed = q.execute(&mut c).await.expect(st).rows_affected();
            }
            c.close().await.expect("close");
        }
        changed
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The server's (test) clock.
    pub fn clock_now(&self) -> time::OffsetDateTime {
        use ordo::clock::Clock;
        self.clock.now()
    }

    /// Sends a request; `token` is a bearer credential, `body` JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::read(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .send(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {email}: {}", r.body);
        r.body["access_token"].as_str().expect("token").to_owned()
    }

    /// Registers a customer; returns (user id, token).
    pub async fn customer(&self, name: &str) -> (String, String) {
        let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
        let r = self
            .send(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({"email": email, "password": "password-123", "name": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["user"]["id"].as_str().expect("id").to_owned(),
            r.body["access_token"].as_str().expect("t").to_owned(),
        )
    }

    /// Creates a staff user and returns its token.
    pub async fn staff(&self) -> String {
        let email = format!("staff-{}@example.com", uuid::Uuid::new_v4().simple());
        let r = self
            .post(
                "/v1/users",
                &self.admin_token,
                json!({"email": email, "password": "password-123", "name": "Stef", "role": "staff"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        self.login(&email, "password-123").await
    }

    /// Creates an API key with these scopes and returns (id, key).
    pub async fn api_key(&self, scopes: &[&str]) -> (String, String) {
        let r = self
            .post(
                "/v1/api-keys",
                &self.admin_token,
                json!({"name": "integration", "scopes": scopes}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["id"].as_str().expect("id").to_owned(),
            r.body["key"].as_str().expect("key").to_owned(),
        )
    }

    /// Creates an item (as admin) and returns its id.
    pub async fn item(&self, price: i64, stock: i64) -> String {
        self.item_with(json!({"price": price, "stock": stock}))
            .await
    }

    pub async fn item_with(&self, fields: Value) -> String {
        let mut body = json!({
            "sku": format!("SKU-{}", uuid::Uuid::new_v4().simple()),
            "name": "Widget",
            "price": 1000,
            "currency": "USD",
            "stock": 10,
        });
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self.post("/v1/items", &self.admin_token, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().expect("id").to_owned()
    }

    pub async fn stock(&self, item_id: &str) -> i64 {
        let r = self
            .get(&format!("/v1/items/{item_id}"), &self.admin_token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["stock"].as_i64().expect("stock")
    }

    /// Places an order for `token`'s customer with `(item, quantity)` lines.
    pub async fn order(&self, token: &str, lines: &[(&str, i64)]) -> Resp {
        let items: Vec<Value> = lines
            .iter()
            .map(|(i, q)| json!({"item_id": i, "quantity": q}))
            .collect();
        self.post("/v1/orders", token, json!({"items": items}))
            .await
    }

    /// Places an order of `quantity` × `item` for `token`'s customer and pays it
    /// (`placed`); returns its id.
    pub async fn paid_order(&self, token: &str, item: &str, quantity: i64) -> String {
        let r = self
            .post(
                "/v1/orders",
                token,
                json!({"items": [{"item_id": item, "quantity": quantity}], "payment_method": "pm_card_visa"}),
            )
            .await;
        assert_eq!(r.body["status"], "placed", "{}", r.text);
        r.body["id"].as_str().expect("id").to_owned()
    }

    /// Places an unpaid order of one `item` (`created`); returns its id.
    pub async fn new_order(&self, token: &str, item: &str) -> String {
        let r = self.order(token, &[(item, 1)]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().expect("id").to_owned()
    }

    /// Waits until the order has `field` = `value`, moving the test clock by `step` before
    /// each look (background jobs such as the payment saga work on that clock). Returns
    /// the order as last read.
    pub async fn order_becomes(
        &self,
        token: &str,
        id: &str,
        field: &str,
        value: &str,
        step: Duration,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.advance(step);
            let order = self.get(&format!("/v1/orders/{id}"), token).await.body;
            if order[field] == value {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the order never got {field} = {value}: {order}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `check` until it holds or `within` passes.
    pub async fn eventually<F, Fut>(&self, within: Duration, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if check().await {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A WebSocket client of `/v1/ws`.
pub struct WsClient {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What a WebSocket client got next.
#[derive(Debug)]
pub enum Got {
    Json(Value),
    Closed(Option<(u16, String)>),
    Nothing,
}

impl WsClient {
    /// The next text message (as JSON) or close, skipping pings; `Nothing` after `within`.
    pub async fn next(&mut self, within: Duration) -> Got {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Got::Nothing,
                Ok(None) | Ok(Some(Err(_))) => return Got::Closed(None),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => return Got::Json(serde_json::from_str(&t).expect("JSON")),
                Message::Close(frame) => {
                    return Got::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                _ => {}
            }
        }
    }

    /// The next message, which must be JSON.
    pub async fn json(&mut self) -> Value {
        match self.next(Duration::from_secs(10)).await {
            Got::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Messages until one has id `last` (inclusive); panics on anything else.
    pub async fn until_id(&mut self, last: i64) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            let v = self.json().await;
            let id: i64 = v["id"].as_str().expect("id").parse().expect("numeric id");
            got.push(v);
            if id >= last {
                return got;
            }
        }
    }

    pub async fn send(&mut self, v: Value) {
        use futures::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(
                v.to_string().into(),
            ))
            .await
            .expect("send");
    }
}

impl TestApp {
    /// Opens `/v1/ws{query}` with `token` in the Authorization header.
    pub async fn ws(&self, query: &str, token: &str) -> WsClient {
        self.try_ws(query, Some(token)).await.expect("websocket")
    }

    /// Opens `/v1/ws{query}`; the refusal's status and body if the server says no.
    pub async fn try_ws(&self, query: &str, token: Option<&str>) -> Result<WsClient, Resp> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/ws{query}", self.url.replacen("http", "ws", 1));
        let mut req = url.into_client_request().expect("request");
        if let Some(t) = token {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((stream, _)) => Ok(WsClient { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                let status = StatusCode::from_u16(res.status().as_u16()).expect("status");
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in res.headers() {
                    if let (Ok(k), Ok(v)) = (
                        reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()),
                        reqwest::header::HeaderValue::from_bytes(v.as_bytes()),
                    ) {
                        headers.insert(k, v);
                    }
                }
                let text =
                    String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned();
                let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                Err(Resp {
                    status,
                    headers,
                    body,
                    text,
                })
            }
            Err(e) => panic!("websocket: {e}"),
        }
    }

    /// Stops the server as SIGTERM would.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The node's `/readyz` document.
    pub async fn ready(&self) -> Value {
        self.client
            .get(format!("{}/readyz", self.url))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub async fn read(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json answer with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert_eq!(self.body["status"], status, "{}", self.text);
    }

    /// The fields named in a validation problem.
    pub fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One request an HTTP receiver got.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
}

/// A local HTTP server standing in for a provider or a webhook receiver: it records every
/// request and answers with the scripted statuses (and headers) in turn, then 200.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    seen: Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl Receiver {
    pub async fn start(script: Vec<(u16, Vec<(&'static str, &'static str)>)>) -> Receiver {
        use axum::response::IntoResponse;
        let seen: Arc<std::sync::Mutex<Vec<Recorded>>> = Arc::default();
        let script = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            script,
        )));
        let (s2, sc) = (seen.clone(), script.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let (seen, script) = (s2.clone(), sc.clone());
                async move {
                    seen.lock().unwrap().push(Recorded {
                        path: uri.path().to_owned(),
                        headers,
                        body,
                    });
                    let (status, headers) =
                        script.lock().unwrap().pop_front().unwrap_or((200, vec![]));
                    let mut res = (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        r#"{"sid":"SM0123456789"}"#,
                    )
                        .into_response();
                    for (k, v) in headers {
                        res.headers_mut().insert(k, v.parse().unwrap());
                    }
                    res
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, seen }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

/// Fails the test at once, with one clear line, when a test peer is not installed (instead
/// of waiting for it to start). `check` is a shell command that succeeds when it is there.
pub fn require_peer(what: &str, check: &str) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen.iter().any(|s| s == check) {
        return;
    }
    let there = std::process::Command::new("sh")
        .args(["-c", check])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        there,
        "{what} is not installed: run scripts/test.sh, which sets up every test peer"
    );
    seen.push(check.to_owned());
}

/// An order's lines as (item id, quantity), sorted.
pub fn order_lines(order: &Value) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = order["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| {
            (
                l["item_id"].as_str().expect("item_id").to_owned(),
                l["quantity"].as_i64().expect("quantity"),
            )
        })
        .collect();
    v.sort();
    v
}
