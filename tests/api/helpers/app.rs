//! The application under test: a server on port 0 over a database of its own, its
//! manual clock, and the requests, users, items and orders tests are made of.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ordo::app::AppState;
use ordo::clock::ManualClock;
use ordo::config::{Config, GatewayKind, LogFormat, Secret};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Backend, DbGuard, migrated_database};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const WEBHOOK_SECRET: &str = "whsec_test_ordo";
pub const AFTERSHIP_SECRET: &str = "aftership-test-secret";

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

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let (url, guard) = migrated_database(backend).await;
        Self::launch(url, guard, tweak).await
    }

    /// A builder, for an app with settings of its own:
    /// `TestApp::new(b).with_gateway(GatewayKind::Stripe).with_nats(url).spawn().await`.
    #[expect(
        clippy::new_ret_no_self,
        reason = "TestApp::new(b).with_…(…).spawn() reads as what it makes"
    )]
    pub fn new(backend: Backend) -> Builder {
        Builder {
            backend,
            tweaks: Vec::new(),
        }
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
        super::execute(&self.db_url, statements, id).await
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
    pub async fn eventually<F, Fut>(&self, within: Duration, check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        super::eventually(within, check).await
    }
}

impl TestApp {
    /// The node's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
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

/// One change to the settings.
type Tweak = Box<dyn FnOnce(&mut Config) + Send>;

/// An app being set up: settings on top of `test_config`, applied in order.
pub struct Builder {
    backend: Backend,
    tweaks: Vec<Tweak>,
}

impl Builder {
    /// Any setting.
    pub fn with(mut self, tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// The payment gateway (the simulated one by default).
    pub fn with_gateway(self, gateway: GatewayKind) -> Self {
        self.with(move |c| c.payment_gateway = gateway)
    }

    /// Events through this NATS server's JetStream instead of in-process.
    pub fn with_nats(self, url: &str) -> Self {
        let url = url.to_owned();
        self.with(move |c| c.nats_url = Some(url))
    }

    /// Webhooks and providers on this machine's addresses allowed (test receivers).
    pub fn with_private_webhooks(self) -> Self {
        self.with(|c| c.notifications.webhook_allow_private = true)
    }

    /// Serves the app on a database of its own.
    pub async fn spawn(self) -> TestApp {
        TestApp::spawn_with(self.backend, |c| {
            for tweak in self.tweaks {
                tweak(c);
            }
        })
        .await
    }
}

/// A signed-up customer of one app: its id and token, and what a customer does.
pub struct Customer<'a> {
    pub app: &'a TestApp,
    pub id: String,
    pub token: String,
}

impl TestApp {
    /// Signs up a new customer called `name`.
    pub async fn sign_up(&self, name: &str) -> Customer<'_> {
        let (id, token) = self.customer(name).await;
        Customer {
            app: self,
            id,
            token,
        }
    }
}

impl Customer<'_> {
    /// `GET path` as this customer.
    pub async fn get(&self, path: &str) -> Resp {
        self.app.get(path, &self.token).await
    }

    /// `POST path` as this customer.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.app.post(path, &self.token, body).await
    }

    /// Places an order of these (item, quantity) lines, unpaid.
    pub async fn place(&self, lines: &[(&str, i64)]) -> Resp {
        self.app.order(&self.token, lines).await
    }

    /// Pays this order with `method` (`pm_card_visa` pays, `pm_card_chargeDeclined` does not).
    pub async fn pay(&self, order_id: &str, method: &str) -> Resp {
        self.post(
            &format!("/v1/orders/{order_id}/payments"),
            json!({"payment_method": method}),
        )
        .await
    }

    /// The order as this customer sees it.
    pub async fn order(&self, order_id: &str) -> Resp {
        self.get(&format!("/v1/orders/{order_id}")).await
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
