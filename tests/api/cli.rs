//! The `ordo` binary itself: defaults, settings validation, secrets, TLS, graceful shutdown,
//! `migrate` and `admin create-user`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both;
use crate::helpers::{Backend, Resp};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ordo");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// `ordo` with a clean environment (no inherited `ORDO_*` or `DATABASE_URL`).
pub(crate) fn ordo(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    c
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    /// Everything the process wrote, read as it writes (a pipe nobody reads fills up and
    /// stops the server at its next log line).
    output: Vec<std::thread::JoinHandle<String>>,
}

fn drain(from: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(mut r) = from {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            out = String::from_utf8_lossy(&bytes).into_owned();
        }
        out
    })
}

impl Server {
    pub(crate) async fn start(mut cmd: Command, scheme: &str) -> Server {
        let port = free_port();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ordo");
        let output = vec![drain(child.stdout.take()), drain(child.stderr.take())];
        let url = format!("{scheme}://127.0.0.1:{port}");
        let client = client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{url}/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ordo did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Server { child, url, output }
    }

    pub(crate) fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Kills the process outright, as a crash would.
    pub(crate) fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to end; returns (success, stdout + stderr).
    pub(crate) fn wait(mut self) -> (bool, String) {
        let status = self.child.wait().expect("wait");
        let text: String = self
            .output
            .drain(..)
            .map(|h| h.join().unwrap_or_default())
            .collect();
        (status.success(), text)
    }
}

pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

pub(crate) async fn call(url: &str, token: Option<&str>, body: serde_json::Value) -> Resp {
    let mut r = client().post(url).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    Resp::read(r.send().await.expect("request")).await
}

#[tokio::test]
async fn serve_without_settings_uses_an_embedded_database() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(ordo(dir.path()), "http").await;
    assert!(
        dir.path().join("ordo.db").exists(),
        "ordo.db was not created in the working directory"
    );
    let r = call(
        &format!("{}/v1/auth/register", server.url),
        None,
        json!({"email": "a@example.com", "password": "password-1", "name": "A"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    server.terminate();
    let (ok, log) = server.wait();
    assert!(ok, "{log}");
}

#[tokio::test]
async fn bad_settings_stop_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("dir");
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("DATABASE_URL", "mysql://localhost/x")], "DATABASE_URL"),
        (
            &[("ORDO_ADMIN_EMAIL", "a@example.com")],
            "ORDO_ADMIN_PASSWORD",
        ),
        (&[("ORDO_JWT_SECRET", "short")], "ORDO_JWT_SECRET"),
        (&[("ORDO_RESERVATION_TTL", "soon")], "reservation"),
        (
            &[
                ("ORDO_TLS_CERT", "/nonexistent.pem"),
                ("ORDO_TLS_KEY", "/nonexistent.key"),
            ],
            "TLS",
        ),
    ];
    for (env, needle) in cases {
        let mut c = ordo(dir.path());
        c.args(["serve", "--listen", "127.0.0.1:0"]);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{env:?} was accepted");
        assert!(
            text.to_lowercase().contains(&needle.to_lowercase()),
            "{env:?}: {text}"
        );
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = "jwt-secret-that-is-long-enough-0123456789";
    let password = "admin-password-never-logged";
    let mut c = ordo(dir.path());
    c.env("ORDO_JWT_SECRET", secret)
        .env("ORDO_ADMIN_EMAIL", "admin@example.com")
        .env("ORDO_ADMIN_PASSWORD", password)
        .env("ORDO_LOG_FORMAT", "json")
        .env("RUST_LOG", "trace");
    let server = Server::start(c, "http").await;
    let r = call(
        &format!("{}/v1/auth/login", server.url),
        None,
        json!({"email": "admin@example.com", "password": password}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let bad = call(
        &format!("{}/v1/auth/login", server.url),
        None,
        json!({"email": "admin@example.com", "password": "wrong-password-x"}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    server.terminate();
    let (ok, log) = server.wait();
    assert!(ok);
    assert!(log.contains("\"level\""), "not JSON logs: {log}");
    for s in [secret, password, "wrong-password-x"] {
        assert!(!log.contains(s), "{s} was logged");
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().expect("dir");
    let mut c = ordo(dir.path());
    c.env("ORDO_ADMIN_EMAIL", "admin@example.com")
        .env("ORDO_ADMIN_PASSWORD", "admin-password")
        .env("ORDO_SIMULATED_GATEWAY_LATENCY_MS", "1500");
    let server = Server::start(c, "http").await;
    let login = call(
        &format!("{}/v1/auth/login", server.url),
        None,
        json!({"email": "admin@example.com", "password": "admin-password"}),
    )
    .await;
    let admin = login.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let item = call(
        &format!("{}/v1/items", server.url),
        Some(&admin),
        json!({"sku": "S1", "name": "Slow", "price": 100, "currency": "USD", "stock": 3}),
    )
    .await;
    let reg = call(
        &format!("{}/v1/auth/register", server.url),
        None,
        json!({"email": "c@example.com", "password": "password-1", "name": "C"}),
    )
    .await;
    let token = reg.body["access_token"].as_str().expect("token").to_owned();
    let url = format!("{}/v1/orders", server.url);
    let body = json!({"items": [{"item_id": item.body["id"], "quantity": 1}], "payment_method": "pm_card_visa"});
    // The payment takes 1.5 s; SIGTERM arrives while it is in flight.
    let in_flight = tokio::spawn(async move { call(&url, Some(&token), body).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.terminate();
    let r = in_flight.await.expect("task");
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "placed");
    let (ok, log) = server.wait();
    assert!(ok, "{log}");
    assert!(log.contains("shutdown requested"), "{log}");
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("write");
    let mut c = ordo(dir.path());
    c.env("ORDO_TLS_CERT", dir.path().join("cert.pem"))
        .env("ORDO_TLS_KEY", dir.path().join("key.pem"));
    let server = Server::start(c, "https").await;
    let r = client()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status(), StatusCode::OK);
    // Plain HTTP is not served on a TLS port.
    let plain = reqwest::Client::new()
        .get(server.url.replace("https", "http") + "/healthz")
        .send()
        .await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
    server.terminate();
    assert!(server.wait().0);
}

async fn migrate_then_create_a_user_from_the_command_line(b: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let (url, _guard) = crate::helpers::fresh_database(b).await;
    let out = ordo(dir.path())
        .env("DATABASE_URL", &url)
        .arg("migrate")
        .output()
        .expect("migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ordo(dir.path())
        .env("DATABASE_URL", &url)
        .env("ORDO_NEW_USER_PASSWORD", "staff-password")
        .args([
            "admin",
            "create-user",
            "--email",
            "Stef@Example.com",
            "--name",
            "Stef",
            "--role",
            "staff",
        ])
        .output()
        .expect("create-user");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stef@example.com"));
    // A second time: the e-mail is taken.
    let again = ordo(dir.path())
        .env("DATABASE_URL", &url)
        .args([
            "admin",
            "create-user",
            "--email",
            "stef@example.com",
            "--password",
            "staff-password",
            "--name",
            "S",
        ])
        .output()
        .expect("create-user");
    assert!(!again.status.success());
    let server = Server::start(
        {
            let mut c = ordo(dir.path());
            c.env("DATABASE_URL", &url);
            c
        },
        "http",
    )
    .await;
    let r = call(
        &format!("{}/v1/auth/login", server.url),
        None,
        json!({"email": "stef@example.com", "password": "staff-password"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["user"]["role"], "staff");
    server.terminate();
    assert!(server.wait().0);
}
both!(migrate_then_create_a_user_from_the_command_line);

/// Logs in as the admin, creates an item and a customer; returns (customer token, item id).
async fn shop(url: &str) -> (String, String) {
    let login = call(
        &format!("{url}/v1/auth/login"),
        None,
        json!({"email": "admin@example.com", "password": "admin-password"}),
    )
    .await;
    let admin = login.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let item = call(
        &format!("{url}/v1/items"),
        Some(&admin),
        json!({"sku": "CRASH-1", "name": "Crash test", "price": 100, "currency": "USD", "stock": 5}),
    )
    .await;
    let reg = call(
        &format!("{url}/v1/auth/register"),
        None,
        json!({"email": "c@example.com", "password": "password-1", "name": "C"}),
    )
    .await;
    (
        reg.body["access_token"].as_str().expect("token").to_owned(),
        item.body["id"].as_str().expect("id").to_owned(),
    )
}

pub(crate) async fn get(url: &str, token: &str) -> serde_json::Value {
    client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

async fn wait_for(url: &str, token: &str, field: &str, value: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if get(url, token).await[field] == value {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn crash_test_server(dir: &Path, url: &str) -> Command {
    let mut c = ordo(dir);
    c.env("DATABASE_URL", url)
        .env("ORDO_ADMIN_EMAIL", "admin@example.com")
        .env("ORDO_ADMIN_PASSWORD", "admin-password")
        .env("ORDO_RESERVATION_TTL", "3")
        .env("ORDO_PAYMENT_TIMEOUT_MS", "300");
    c
}

/// The process dies while a payment is unanswered; after a restart the reservation still
/// expires, the order is canceled and the stock comes back, exactly once.
async fn a_crash_during_payment_still_releases_the_reservation(b: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let (db, _guard) = crate::helpers::fresh_database(b).await;
    let server = Server::start(crash_test_server(dir.path(), &db), "http").await;
    let (token, item) = shop(&server.url).await;
    let r = call(
        &format!("{}/v1/orders", server.url),
        Some(&token),
        json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": "pm_sim_no_response"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    server.crash();
    let server = Server::start(crash_test_server(dir.path(), &db), "http").await;
    let order = format!("{}/v1/orders/{id}", server.url);
    assert!(
        wait_for(&order, &token, "status", "canceled").await,
        "the order did not expire after the restart"
    );
    assert_eq!(
        get(&format!("{}/v1/items/{item}", server.url), &token).await["stock"],
        5
    );
    server.terminate();
    assert!(server.wait().0);
}
both!(a_crash_during_payment_still_releases_the_reservation);

/// The process dies while a refund is still owed; after a restart the refund job pays it
/// back (the order was canceled and its stock returned before the crash).
async fn a_refund_owed_at_a_crash_is_paid_after_the_restart(b: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let (db, _guard) = crate::helpers::fresh_database(b).await;
    let server = Server::start(crash_test_server(dir.path(), &db), "http").await;
    let (token, item) = shop(&server.url).await;
    let r = call(
        &format!("{}/v1/orders", server.url),
        Some(&token),
        json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_sim_refund_fails_3"}),
    )
    .await;
    assert_eq!(r.body["payment_status"], "paid", "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let c = call(
        &format!("{}/v1/orders/{id}/cancel", server.url),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(c.body["status"], "canceled", "{}", c.text);
    assert_eq!(c.body["payment_status"], "paid");
    server.crash();
    let server = Server::start(crash_test_server(dir.path(), &db), "http").await;
    let order = format!("{}/v1/orders/{id}", server.url);
    assert!(
        wait_for(&order, &token, "payment_status", "refunded").await,
        "the refund was not resumed"
    );
    assert_eq!(
        get(&format!("{}/v1/items/{item}", server.url), &token).await["stock"],
        5
    );
    server.terminate();
    assert!(server.wait().0);
}
both!(a_refund_owed_at_a_crash_is_paid_after_the_restart);

/// The process dies in the middle of a charge through Stripe (localstripe): just before
/// the confirm, or just after Stripe took the money but before Ordo recorded it. After a
/// restart the saga finds the PaymentIntent by the reference it stored first, finishes
/// the step, and places the order. One PaymentIntent, charged once.
async fn a_crash_in_the_middle_of_a_charge_is_finished_after_the_restart(
    b: Backend,
    failpoint: &str,
) {
    let stripe = crate::stripe::LocalStripe::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (db, _guard) = crate::helpers::fresh_database(b).await;
    let server_with = |failpoint: Option<&str>| {
        let mut c = crash_test_server(dir.path(), &db);
        c.env("ORDO_RESERVATION_TTL", "120")
            .env("ORDO_PAYMENT_TIMEOUT_MS", "2000")
            .env("ORDO_PAYMENT_GATEWAY", "stripe")
            .env("STRIPE_API_BASE", &stripe.url)
            .env("STRIPE_SECRET_KEY", "sk_test_ordo");
        if let Some(f) = failpoint {
            c.env("ORDO_FAILPOINT", f);
        }
        c
    };
    let server = Server::start(server_with(Some(failpoint)), "http").await;
    let (token, item) = shop(&server.url).await;
    let placed = client()
        .post(format!("{}/v1/orders", server.url))
        .bearer_auth(&token)
        .json(
            &json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": "pm_card_visa"}),
        )
        .send()
        .await;
    assert!(placed.is_err(), "the server should have died mid-charge");
    server.crash();

    let server = Server::start(server_with(None), "http").await;
    let list = get(&format!("{}/v1/orders", server.url), &token).await;
    let id = list["data"][0]["id"]
        .as_str()
        .expect("the order")
        .to_owned();
    let order = format!("{}/v1/orders/{id}", server.url);
    assert!(
        wait_for(&order, &token, "status", "placed").await,
        "the charge was not finished after the restart: {}",
        get(&order, &token).await
    );
    assert_eq!(get(&order, &token).await["payment_status"], "paid");
    let intents = stripe.intents_of(&id).await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["status"], "succeeded");
    assert_eq!(intents[0]["amount"], 200);
    assert_eq!(
        get(&format!("{}/v1/items/{item}", server.url), &token).await["stock"],
        3
    );
    let steps = get(&format!("{order}/payments"), &token).await;
    assert_eq!(steps["data"][0]["status"], "succeeded", "{steps}");
    server.terminate();
    assert!(server.wait().0);
}

mod a_crash_before_the_confirm {
    use crate::helpers::Backend;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_crash_in_the_middle_of_a_charge_is_finished_after_the_restart(
            Backend::Sqlite,
            "before_confirm",
        )
        .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_crash_in_the_middle_of_a_charge_is_finished_after_the_restart(
            Backend::Postgres,
            "before_confirm",
        )
        .await
    }
}

mod a_crash_after_the_gateway_answered {
    use crate::helpers::Backend;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_crash_in_the_middle_of_a_charge_is_finished_after_the_restart(
            Backend::Sqlite,
            "after_confirm",
        )
        .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_crash_in_the_middle_of_a_charge_is_finished_after_the_restart(
            Backend::Postgres,
            "after_confirm",
        )
        .await
    }
}
