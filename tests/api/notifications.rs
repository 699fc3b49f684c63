//! Notifications and webhooks with real peers: an SMTP server (aiosmtpd, from PyPI), a
//! local HTTP server standing in for Twilio and for webhook receivers, and the customer's
//! own WebSocket for push.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::both;
use crate::helpers::{Backend, Receiver, TestApp};

/// An aiosmtpd server that keeps every message in a maildir.
pub(crate) struct Smtp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Smtp {
    pub(crate) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port")
    }

    pub(crate) async fn start_on(port: u16) -> Smtp {
        crate::helpers::require_peer("aiosmtpd", "python3 -c 'import aiosmtpd'");
        let dir = tempfile::tempdir().expect("dir");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
        let up = crate::helpers::eventually(Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "aiosmtpd did not start");
        Smtp { child, port, dir }
    }

    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received, as raw text.
    pub(crate) fn mails(&self) -> Vec<String> {
        let new: PathBuf = self.dir.path().join("mail").join("new");
        let mut out: Vec<String> = std::fs::read_dir(new)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a MIME message, its quoted-printable soft breaks joined.
pub(crate) fn unfolded(mail: &str) -> String {
    mail.replace("=\n", "").replace("=\r\n", "")
}

async fn log(app: &TestApp, token: &str, who: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/customers/{who}/notifications"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["data"].as_array().unwrap().clone()
}

/// Waits until `check` holds, moving the test clock by `step` before each look.
async fn until<F, Fut>(app: &TestApp, step: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // Every 50 ms of real time, as before: the test clock moves `step` per look.
    crate::helpers::eventually_every(Duration::from_secs(20), Duration::from_millis(50), || {
        app.advance(step);
        check()
    })
    .await
}

/// Preferences: e-mail on by default; the customer itself or staff read and change them;
/// anybody else gets 404; a bad body is 422.
async fn preferences_belong_to_the_customer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (ann_id, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let staff = app.staff().await;
    let path = format!("/v1/customers/{ann_id}/notification-preferences");
    let r = app.get(&path, &ann).await;
    assert_eq!(
        r.body,
        json!({"email": true, "sms": false, "push": false}),
        "{}",
        r.text
    );
    let put = app
        .send(
            reqwest::Method::PUT,
            &path,
            Some(&ann),
            Some(json!({"email": false, "sms": true, "push": true})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(app.get(&path, &staff).await.body["push"], true);
    assert_eq!(
        app.get("/v1/customers/me/notification-preferences", &ann)
            .await
            .body["sms"],
        true
    );
    app.get(&path, &bob).await.assert_problem(404, "not_found");
    app.send(
        reqwest::Method::PUT,
        &path,
        Some(&bob),
        Some(json!({"email": true, "sms": true, "push": true})),
    )
    .await
    .assert_problem(404, "not_found");
    let bad = app
        .send(
            reqwest::Method::PUT,
            &path,
            Some(&ann),
            Some(json!({"email": "yes", "sms": true})),
        )
        .await;
    bad.assert_problem(422, "validation_failed");
    let (_, key) = app.api_key(&["orders:read"]).await;
    app.get(&path, &key).await.assert_problem(403, "forbidden");
    app.get(
        &format!(
            "/v1/customers/{}/notification-preferences",
            uuid::Uuid::now_v7()
        ),
        &staff,
    )
    .await
    .assert_problem(404, "not_found");
    // Unchanged by the refused calls.
    assert_eq!(
        app.get(&path, &ann).await.body,
        json!({"email": false, "sms": true, "push": true})
    );
}
both!(preferences_belong_to_the_customer);

/// E-mail over SMTP: one message per event that matters, naming the order, its status,
/// items, carrier and tracking number, with a link to the tracking page, as text and HTML.
async fn emails_arrive_over_smtp(b: Backend) {
    let smtp = Smtp::start_on(Smtp::free_port()).await;
    let url = smtp.url();
    let app = TestApp::spawn_with(b, move |c| {
        c.notifications.smtp_url = Some(ordo::config::Secret::new(url));
        c.notifications.email_from = "Shop <orders@shop.example>".into();
        c.notifications.public_url = "https://shop.example".into();
    })
    .await;
    let (ann_id, ann) = app.customer("ann").await;
    let item = app
        .item_with(json!({"name": "Blue mug", "price": 1250, "stock": 5}))
        .await;
    let id = app.paid_order(&ann, &item, 2).await;
    let admin = app.admin_token.clone();
    let shipped = app
        .post(
            &format!("/v1/orders/{id}/status"),
            &admin,
            json!({"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999"}),
        )
        .await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.text);
    let arrived = app
        .eventually(Duration::from_secs(20), || async {
            smtp.mails().len() == 2
        })
        .await;
    assert!(arrived, "mails: {:?}", smtp.mails());
    let mails: Vec<String> = smtp.mails().iter().map(|m| unfolded(m)).collect();
    let confirmed = mails
        .iter()
        .find(|m| m.contains("your order is confirmed"))
        .expect("placed mail");
    let on_its_way = mails
        .iter()
        .find(|m| m.contains("your order is on its way"))
        .expect("shipped mail");
    for m in [confirmed, on_its_way] {
        assert!(m.contains("From: Shop <orders@shop.example>"), "{m}");
        assert!(m.contains("multipart/alternative"), "{m}");
        assert!(m.contains("text/html"), "{m}");
        assert!(m.contains(&id), "{m}");
        assert!(m.contains("2 x Blue mug"), "{m}");
        assert!(m.contains("25.00 USD"), "{m}");
        assert!(
            m.contains(&format!("https://shop.example/orders/{id}")),
            "{m}"
        );
    }
    assert!(
        on_its_way.contains("UPS, tracking number 1Z999"),
        "{on_its_way}"
    );
    // The log says so once the worker has recorded it (just after the server took it).
    let recorded = app
        .eventually(Duration::from_secs(10), || async {
            log(&app, &ann, &ann_id)
                .await
                .iter()
                .all(|e| e["status"] == "sent")
        })
        .await;
    assert!(recorded);
    let entries = log(&app, &ann, &ann_id).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        assert_eq!(e["channel"], "email");
        assert_eq!(e["status"], "sent", "{e}");
        assert_eq!(e["attempts"], 1);
        assert!(e["detail"].as_str().unwrap().starts_with("250"), "{e}");
        assert!(e["sent_at"].is_string());
    }
}
both!(emails_arrive_over_smtp);

/// SMS through Twilio's Messages API (a local stand-in): form fields `To`, `From`,
/// `Body`, basic auth with the account.
async fn sms_go_through_twilios_api(b: Backend) {
    let twilio = Receiver::start(vec![(201, vec![])]).await;
    let base = twilio.url.clone();
    let app = TestApp::spawn_with(b, move |c| {
        c.notifications.twilio = Some(ordo::config::TwilioSettings {
            api_base: base,
            account_sid: "AC123".into(),
            auth_token: ordo::config::Secret::new("token-456"),
            from: "+15550001111".into(),
        });
    })
    .await;
    let reg = app
        .send(
            reqwest::Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "sam@example.com", "password": "password-123", "name": "Sam", "phone": "+15557654321"})),
        )
        .await;
    let (sam_id, sam) = (
        reg.body["user"]["id"].as_str().unwrap().to_owned(),
        reg.body["access_token"].as_str().unwrap().to_owned(),
    );
    app.send(
        reqwest::Method::PUT,
        "/v1/customers/me/notification-preferences",
        Some(&sam),
        Some(json!({"email": false, "sms": true, "push": false})),
    )
    .await;
    let item = app.item(900, 5).await;
    app.paid_order(&sam, &item, 2).await;
    let sent = app
        .eventually(Duration::from_secs(20), || async {
            log(&app, &sam, &sam_id)
                .await
                .first()
                .is_some_and(|e| e["status"] == "sent")
        })
        .await;
    assert!(sent, "{:?}", log(&app, &sam, &sam_id).await);
    let reqs = twilio.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/2010-04-01/Accounts/AC123/Messages.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("AC123:token-456");
    assert_eq!(r.headers["authorization"], format!("Basic {auth}").as_str());
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&r.body).into_owned().collect();
    assert_eq!(form["To"], "+15557654321");
    assert_eq!(form["From"], "+15550001111");
    assert!(
        form["Body"].contains("your order is confirmed"),
        "{}",
        form["Body"]
    );
    let entries = log(&app, &sam, &sam_id).await;
    assert_eq!(entries.len(), 1, "no e-mail: it is off");
    assert_eq!(entries[0]["channel"], "sms");
    assert_eq!(entries[0]["target"], "+15557654321");
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .contains("SM0123456789")
    );
}
both!(sms_go_through_twilios_api);

/// The SMTP server is down: the delivery fails and waits; once the server is back the
/// retry delivers it, once.
async fn an_smtp_outage_delays_but_loses_nothing(b: Backend) {
    let port = Smtp::free_port();
    let app = TestApp::spawn_with(b, move |c| {
        c.notifications.smtp_url = Some(ordo::config::Secret::new(format!(
            "smtp://127.0.0.1:{port}"
        )));
        c.notifications.retry_schedule =
            ordo::notifications::domain::RetrySchedule::parse("10,10,10").unwrap();
    })
    .await;
    let (ann_id, ann) = app.customer("ann").await;
    let item = app.item(900, 5).await;
    app.paid_order(&ann, &item, 2).await;
    let failed = app
        .eventually(Duration::from_secs(20), || async {
            log(&app, &ann, &ann_id)
                .await
                .first()
                .is_some_and(|e| e["status"] == "failed")
        })
        .await;
    let entries = log(&app, &ann, &ann_id).await;
    assert!(failed, "{entries:?}");
    assert_eq!(entries[0]["attempts"], 1);
    assert!(entries[0]["last_error"].is_string());
    assert!(entries[0]["next_attempt_at"].is_string());
    let smtp = Smtp::start_on(port).await;
    let sent = until(&app, Duration::from_secs(15), || async {
        log(&app, &ann, &ann_id)
            .await
            .first()
            .is_some_and(|e| e["status"] == "sent")
    })
    .await;
    assert!(sent, "{:?}", log(&app, &ann, &ann_id).await);
    let e = log(&app, &ann, &ann_id).await[0].clone();
    assert_eq!(e["attempts"], 2, "{e}");
    assert_eq!(e["last_error"], Value::Null);
    assert_eq!(smtp.mails().len(), 1);
}
both!(an_smtp_outage_delays_but_loses_nothing);

fn verify(secret: &str, r: &crate::helpers::Recorded) -> bool {
    let id = r.headers["webhook-id"].to_str().unwrap();
    let ts = r.headers["webhook-timestamp"].to_str().unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    r.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|s| s == expected)
}

async fn webhook_app(b: Backend) -> TestApp {
    TestApp::new(b)
        .with_private_webhooks()
        .with(|c| {
            c.notifications.retry_schedule =
                ordo::notifications::domain::RetrySchedule::parse("10,10,10").unwrap();
        })
        .spawn()
        .await
}

async fn endpoint(app: &TestApp, url: &str, events: Value) -> (String, String) {
    let r = app
        .post(
            "/v1/webhook-endpoints",
            &app.admin_token,
            json!({"url": url, "events": events, "description": "fulfilment partner"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
            &app.admin_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["data"].as_array().unwrap().clone()
}

/// A receiver that fails twice, then takes it: the webhook is retried on the schedule
/// with the same id, each time signed (Standard Webhooks), and delivered once.
async fn a_webhook_is_retried_with_the_same_id_until_it_lands(b: Backend) {
    let receiver = Receiver::start(vec![(500, vec![]), (500, vec![])]).await;
    let app = webhook_app(b).await;
    let (ep, secret) = endpoint(
        &app,
        &format!("{}/hooks/ordo", receiver.url),
        json!(["order.placed"]),
    )
    .await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(900, 5).await;
    let order = app.paid_order(&ann, &item, 2).await;
    let landed = until(&app, Duration::from_secs(12), || async {
        deliveries(&app, &ep)
            .await
            .first()
            .is_some_and(|d| d["status"] == "sent")
    })
    .await;
    assert!(landed, "{:?}", deliveries(&app, &ep).await);
    let reqs = receiver.requests();
    assert_eq!(reqs.len(), 3, "two failures, then the delivery");
    let ids: Vec<&str> = reqs
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0] && id.starts_with("msg_")),
        "{ids:?}"
    );
    for r in &reqs {
        assert_eq!(r.path, "/hooks/ordo");
        assert!(verify(&secret, r), "bad signature");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], "order.placed");
        assert_eq!(body["data"]["order_id"], order.as_str());
        assert_eq!(body["data"]["status"], "placed");
        assert!(body["data"]["event_id"].is_string());
        assert!(body["timestamp"].is_string());
    }
    let d = deliveries(&app, &ep).await;
    assert_eq!(d.len(), 1, "only the event it asked for: {d:?}");
    assert_eq!(d[0]["attempts"], 3);
    assert_eq!(d[0]["kind"], "order.placed");
    assert_eq!(d[0]["detail"], "HTTP 200");
}
both!(a_webhook_is_retried_with_the_same_id_until_it_lands);

/// `Retry-After` pushes the next attempt back; a 4xx other than 408/429 ends the delivery;
/// after the last attempt a delivery is `dead`, and can be sent again by hand (same id).
async fn retry_after_final_answers_dead_letters_and_resend(b: Backend) {
    let slow = Receiver::start(vec![(429, vec![("retry-after", "120")])]).await;
    let gone = Receiver::start(vec![(404, vec![])]).await;
    let down = Receiver::start(vec![
        (503, vec![]),
        (503, vec![]),
        (503, vec![]),
        (503, vec![]),
    ])
    .await;
    let app = webhook_app(b).await;
    let (slow_ep, _) = endpoint(&app, &slow.url, json!(["order.placed"])).await;
    let (gone_ep, _) = endpoint(&app, &gone.url, json!(["order.placed"])).await;
    let (down_ep, _) = endpoint(&app, &down.url, json!(["order.placed"])).await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(900, 5).await;
    app.paid_order(&ann, &item, 2).await;
    let settled = app
        .eventually(Duration::from_secs(20), || async {
            deliveries(&app, &gone_ep)
                .await
                .first()
                .is_some_and(|d| d["status"] == "dead")
                && deliveries(&app, &slow_ep)
                    .await
                    .iter()
                    .all(|d| d["status"] == "failed")
        })
        .await;
    assert!(
        settled,
        "{:?} {:?}",
        deliveries(&app, &gone_ep).await,
        deliveries(&app, &slow_ep).await
    );
    let g = &deliveries(&app, &gone_ep).await[0];
    assert_eq!(g["attempts"], 1, "a 404 is final: {g}");
    assert!(g["last_error"].as_str().unwrap().contains("404"));
    // 429 with Retry-After: 120 waits two minutes, not the schedule's 10 s.
    let s = deliveries(&app, &slow_ep).await;
    let placed = s.iter().find(|d| d["kind"] == "order.placed").unwrap();
    let next = time::OffsetDateTime::parse(
        placed["next_attempt_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = next - app.clock_now();
    assert!(wait >= time::Duration::seconds(100), "{wait}");
    // Always 503: three retries, then dead.
    let dead = until(&app, Duration::from_secs(12), || async {
        deliveries(&app, &down_ep)
            .await
            .first()
            .is_some_and(|d| d["status"] == "dead")
    })
    .await;
    assert!(dead, "{:?}", deliveries(&app, &down_ep).await);
    let d = deliveries(&app, &down_ep).await[0].clone();
    assert_eq!(d["attempts"], 4, "{d}");
    assert_eq!(d["next_attempt_at"], Value::Null);
    assert_eq!(down.requests().len(), 4);
    // Sent again by hand: the receiver is fine now (its script is used up).
    let again = app
        .post(
            &format!(
                "/v1/webhook-endpoints/{down_ep}/deliveries/{}/resend",
                d["id"].as_str().unwrap()
            ),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    let sent = app
        .eventually(Duration::from_secs(20), || async {
            deliveries(&app, &down_ep).await[0]["status"] == "sent"
        })
        .await;
    assert!(sent);
    let reqs = down.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[4].headers["webhook-id"], reqs[0].headers["webhook-id"]);
    app.post(
        &format!(
            "/v1/webhook-endpoints/{down_ep}/deliveries/{}/resend",
            uuid::Uuid::now_v7()
        ),
        &app.admin_token,
        json!({}),
    )
    .await
    .assert_problem(404, "not_found");
}
both!(retry_after_final_answers_dead_letters_and_resend);

/// After a rotation both secrets sign for the grace period; the new one is returned once.
async fn secrets_rotate_without_losing_a_message(b: Backend) {
    let receiver = Receiver::start(vec![]).await;
    let app = webhook_app(b).await;
    let (ep, old) = endpoint(&app, &receiver.url, json!(["order.placed"])).await;
    let rotated = app
        .post(
            &format!("/v1/webhook-endpoints/{ep}/rotate-secret"),
            &app.admin_token,
            json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let listed = app
        .get(&format!("/v1/webhook-endpoints/{ep}"), &app.admin_token)
        .await;
    assert!(
        listed.body.get("secret").is_none(),
        "never shown again: {}",
        listed.text
    );
    let (_, ann) = app.customer("ann").await;
    let item = app.item(900, 5).await;
    app.paid_order(&ann, &item, 2).await;
    let got = app
        .eventually(Duration::from_secs(20), || async {
            !receiver.requests().is_empty()
        })
        .await;
    assert!(got);
    let r = &receiver.requests()[0];
    assert!(
        verify(&new, r) && verify(&old, r),
        "both signatures during the grace period"
    );
    app.post(
        &format!("/v1/webhook-endpoints/{ep}/rotate-secret"),
        &app.admin_token,
        json!({"grace_seconds": 99999999}),
    )
    .await
    .assert_problem(422, "validation_failed");
}
both!(secrets_rotate_without_losing_a_message);

/// Webhook URLs on loopback, private, link-local (metadata) or unresolvable addresses are
/// refused unless private networks are allowed; only admins and `webhooks:manage` keys
/// manage endpoints.
async fn webhooks_stay_off_private_networks(b: Backend) {
    let app = TestApp::spawn(b).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://localhost:9000/hook",
        "http://no-such-host.invalid/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
    ] {
        let r = app
            .post(
                "/v1/webhook-endpoints",
                &app.admin_token,
                json!({"url": url, "events": ["*"]}),
            )
            .await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.fields(), ["url"], "{url}: {}", r.text);
    }
    let bad_events = app
        .post(
            "/v1/webhook-endpoints",
            &app.admin_token,
            json!({"url": "http://93.184.216.34/hook", "events": ["order.teleported"]}),
        )
        .await;
    bad_events.assert_problem(422, "validation_failed");
    assert_eq!(bad_events.fields(), ["events[0]"]);
    let staff = app.staff().await;
    let (_, ann) = app.customer("ann").await;
    let (_, reader) = app.api_key(&["orders:read"]).await;
    for token in [&staff, &ann, &reader] {
        app.post(
            "/v1/webhook-endpoints",
            token,
            json!({"url": "http://93.184.216.34/hook", "events": ["*"]}),
        )
        .await
        .assert_problem(403, "forbidden");
        app.get("/v1/webhook-endpoints", token)
            .await
            .assert_problem(403, "forbidden");
    }
    let (_, manager) = app.api_key(&["webhooks:manage"]).await;
    let ok = app
        .post(
            "/v1/webhook-endpoints",
            &manager,
            json!({"url": "http://93.184.216.34/hook", "events": ["order.shipped"]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    assert!(ok.body["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = ok.body["id"].as_str().unwrap();
    assert_eq!(
        app.get("/v1/webhook-endpoints", &manager).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let del = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/webhook-endpoints/{id}"),
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    app.get(&format!("/v1/webhook-endpoints/{id}"), &manager)
        .await
        .assert_problem(404, "not_found");
}
both!(webhooks_stay_off_private_networks);

/// The guard runs again at every delivery, after resolving the name: an endpoint whose
/// address is private (here written straight into the database, as if its name had
/// changed its address since it was registered) gets nothing.
async fn the_guard_runs_again_at_delivery(b: Backend) {
    let receiver = Receiver::start(vec![]).await;
    let app = TestApp::spawn(b).await;
    let store = ordo::storage::connect(&app.db_url, 2).await.unwrap();
    let now = ordo::storage::Ts::truncated(time::OffsetDateTime::now_utc());
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    let id = uuid::Uuid::now_v7();
    store
        .insert_endpoint(
            &ordo::notifications::store::EndpointRow {
                id,
                url: format!("http://localhost:{port}/hook"),
                events: ordo::notifications::store::EventTypes::new(vec!["*".into()]),
                description: None,
                secret: ordo::notifications::domain::new_webhook_secret(),
                previous_secret: None,
                previous_secret_expires_at: None,
                created_by: "test".into(),
                created_at: now,
                updated_at: now,
                deleted_at: None,
            },
            &ordo::books::domain::NewAudit::new(
                now,
                "test",
                ordo::books::domain::WEBHOOK_ENDPOINT_CREATED,
                "webhook_endpoint",
                id,
            ),
        )
        .await
        .unwrap();
    let (_, ann) = app.customer("ann").await;
    let item = app.item(900, 5).await;
    app.order(&ann, &[(&item, 1)]).await;
    let ep = id.to_string();
    let dead = app
        .eventually(Duration::from_secs(20), || async {
            deliveries(&app, &ep)
                .await
                .first()
                .is_some_and(|d| d["status"] == "dead")
        })
        .await;
    let d = deliveries(&app, &ep).await;
    assert!(dead, "{d:?}");
    assert!(
        d[0]["last_error"].as_str().unwrap().contains("refused"),
        "{d:?}"
    );
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the private address"
    );
}
both!(the_guard_runs_again_at_delivery);

/// Push: delivered when a connection of the customer received it; with no connection open
/// the push is not delivered and the customer gets the e-mail instead.
async fn push_reaches_an_open_connection_or_falls_back(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (ann_id, ann) = app.customer("ann").await;
    app.send(
        reqwest::Method::PUT,
        "/v1/customers/me/notification-preferences",
        Some(&ann),
        Some(json!({"email": true, "sms": false, "push": true})),
    )
    .await;
    let item = app.item(900, 5).await;
    let mut ws = app.ws("", &ann).await;
    let id = app.paid_order(&ann, &item, 2).await;
    // The customer's page gets the events.
    assert_eq!(ws.json().await["data"]["status"], "created");
    assert_eq!(ws.json().await["data"]["status"], "placed");
    let pushed = until(&app, Duration::from_millis(500), || async {
        log(&app, &ann, &ann_id)
            .await
            .iter()
            .any(|e| e["channel"] == "push" && e["kind"] == "placed" && e["status"] == "sent")
    })
    .await;
    assert!(pushed, "{:?}", log(&app, &ann, &ann_id).await);
    drop(ws);
    // Once the hub has seen the connection go.
    let gone = app
        .eventually(Duration::from_secs(5), || async {
            app.state.hub.connections() == 0
        })
        .await;
    assert!(gone, "the hub still counts the closed connection");
    app.post(
        &format!("/v1/orders/{id}/status"),
        &app.admin_token,
        json!({"status": "shipped", "carrier": "DHL", "tracking_number": "JJD0001"}),
    )
    .await;
    let fell_back = until(&app, Duration::from_secs(1), || async {
        log(&app, &ann, &ann_id)
            .await
            .iter()
            .any(|e| e["channel"] == "push" && e["kind"] == "shipped" && e["status"] == "dead")
    })
    .await;
    let entries = log(&app, &ann, &ann_id).await;
    assert!(fell_back, "{entries:?}");
    let push = entries
        .iter()
        .find(|e| e["channel"] == "push" && e["kind"] == "shipped")
        .unwrap();
    assert!(
        push["last_error"]
            .as_str()
            .unwrap()
            .contains("sent by e-mail instead"),
        "{push}"
    );
    let mail = entries
        .iter()
        .find(|e| e["channel"] == "email" && e["kind"] == "shipped")
        .unwrap();
    assert_eq!(mail["status"], "sent", "{mail}");
    assert!(
        mail["detail"]
            .as_str()
            .unwrap()
            .contains("ORDO_SMTP_URL is not set"),
        "recorded, not sent: {mail}"
    );
    // Metrics per channel.
    let metrics = app.metrics().await;
    for name in ["ordo_notifications_total", "ordo_delivery_latency_seconds"] {
        assert!(metrics.contains(name), "{name} missing");
    }
}
both!(push_reaches_an_open_connection_or_falls_back);

/// A message from the shop (`POST /v1/notifications`, staff) goes to the customer's
/// channels through the queue: the e-mail reaches the SMTP server, naming the order; the
/// delivery log shows it. Unknown customers are 404, bad messages 422, customers 403.
async fn a_message_from_the_shop_reaches_the_smtp_server(b: Backend) {
    let smtp = Smtp::start_on(Smtp::free_port()).await;
    let url = smtp.url();
    let app = TestApp::spawn_with(b, move |c| {
        c.notifications.smtp_url = Some(ordo::config::Secret::new(url));
        c.notifications.public_url = "https://shop.example".into();
    })
    .await;
    let (ann_id, ann) = app.customer("ann").await;
    let (bob_id, bob) = app.customer("bob").await;
    let staff = app.staff().await;
    let item = app.item(700, 10).await;
    let order = app.new_order(&ann, &item).await;
    let bobs_order = app.new_order(&bob, &item).await;
    // Let the `created` events pass (they notify nobody) so that only the message is mailed.
    let r = app
        .post(
            "/v1/notifications",
            &staff,
            json!({"customer_id": ann_id, "order_id": order,
                   "message": "Your mug is delayed by two days <sorry>."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "e-mail only by default: {data:?}");
    assert_eq!(data[0]["channel"], "email");
    assert_eq!(data[0]["kind"], "message");
    assert_eq!(data[0]["status"], "pending");
    assert_eq!(data[0]["event_id"], Value::Null);
    let message_id = data[0]["message_id"].as_str().unwrap().to_owned();
    let arrived = app
        .eventually(Duration::from_secs(20), || async {
            smtp.mails().len() == 1
        })
        .await;
    assert!(arrived, "mails: {:?}", smtp.mails());
    let mail = unfolded(&smtp.mails()[0]);
    assert!(mail.contains("a message from the shop"), "{mail}");
    assert!(
        mail.contains("Your mug is delayed by two days <sorry>."),
        "{mail}"
    );
    assert!(
        mail.contains("delayed by two days &lt;sorry&gt;."),
        "{mail}"
    );
    assert!(mail.contains(&order), "{mail}");
    assert!(
        mail.contains(&format!("https://shop.example/orders/{order}")),
        "{mail}"
    );
    let sent = app
        .eventually(Duration::from_secs(10), || async {
            log(&app, &ann, &ann_id)
                .await
                .iter()
                .any(|e| e["message_id"] == message_id.as_str() && e["status"] == "sent")
        })
        .await;
    assert!(sent, "{:?}", log(&app, &ann, &ann_id).await);
    // SMS too once the customer opts in (no provider: recorded); e-mail off: none.
    app.send(
        reqwest::Method::PUT,
        "/v1/customers/me/notification-preferences",
        Some(&ann),
        Some(json!({"email": false, "sms": true, "push": false})),
    )
    .await;
    let r = app
        .post(
            "/v1/notifications",
            &app.admin_token,
            json!({"customer_id": ann_id, "message": "A question about your address"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let channels: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["sms"]);

    // Refusals change nothing.
    let before = log(&app, &staff, &ann_id).await.len();
    for (body, status, code) in [
        (
            json!({"customer_id": uuid::Uuid::now_v7(), "message": "hi"}),
            404,
            "not_found",
        ),
        (
            json!({"customer_id": "not-an-id", "message": "hi"}),
            404,
            "not_found",
        ),
        (
            json!({"customer_id": ann_id, "message": "   "}),
            422,
            "validation_failed",
        ),
        (
            json!({"customer_id": ann_id, "message": "x".repeat(2001)}),
            422,
            "validation_failed",
        ),
        (json!({"customer_id": ann_id}), 422, "validation_failed"),
        (
            json!({"customer_id": ann_id, "message": 5}),
            422,
            "validation_failed",
        ),
        (
            json!({"customer_id": ann_id, "order_id": bobs_order, "message": "hi"}),
            422,
            "validation_failed",
        ),
        (
            json!({"customer_id": ann_id, "order_id": "nope", "message": "hi"}),
            422,
            "validation_failed",
        ),
    ] {
        app.post("/v1/notifications", &staff, body)
            .await
            .assert_problem(status, code);
    }
    // A staff member is not a customer.
    let me = app.get("/v1/me", &staff).await.body["id"].clone();
    app.post(
        "/v1/notifications",
        &staff,
        json!({"customer_id": me, "message": "hi"}),
    )
    .await
    .assert_problem(404, "not_found");
    // Customers and API keys may not send messages.
    app.post(
        "/v1/notifications",
        &bob,
        json!({"customer_id": bob_id, "message": "hi"}),
    )
    .await
    .assert_problem(403, "forbidden");
    let (_, key) = app.api_key(&["orders:write"]).await;
    app.post(
        "/v1/notifications",
        &key,
        json!({"customer_id": ann_id, "message": "hi"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.send(
        reqwest::Method::POST,
        "/v1/notifications",
        None,
        Some(json!({"customer_id": ann_id, "message": "hi"})),
    )
    .await
    .assert_problem(401, "unauthorized");
    assert_eq!(log(&app, &staff, &ann_id).await.len(), before);
    assert_eq!(smtp.mails().len(), 1);
}
both!(a_message_from_the_shop_reaches_the_smtp_server);
