//! Carriers: AfterShip's tracking webhook with payloads signed here (the raw body's
//! HMAC-SHA256, base64), status mapping, delivery through the state machine, duplicates,
//! replayed checkpoints, forged and malformed requests, live push, and delivery estimates
//! (the carrier's own, and predicted from the carrier's history).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::both;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, AFTERSHIP_SECRET, Backend, Resp, TestApp};

const HOOK: &str = "/v1/carriers/aftership/webhook";

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts `body` as it is, with this signature header (none: no header).
async fn post_raw(app: &TestApp, body: &[u8], signature: Option<String>) -> Resp {
    let mut req = app
        .client
        .post(format!("{}{HOOK}", app.url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("aftership-hmac-sha256", s);
    }
    Resp::read(req.send().await.unwrap()).await
}

/// Posts a correctly signed update.
async fn hook(app: &TestApp, body: &Value) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    post_raw(app, &bytes, Some(sign(AFTERSHIP_SECRET, &bytes))).await
}

/// An AfterShip `tracking_update` as its documentation shows it.
fn update(event_id: &str, slug: &str, tracking: &str, tag: &str, checkpoints: Value) -> Value {
    json!({
        "event": "tracking_update",
        "event_id": event_id,
        "is_tracking_first_tag": false,
        "ts": 1_764_000_000,
        "msg": {
            "id": "5b7658cec7c33c0e007de3c5",
            "tracking_number": tracking,
            "title": tracking,
            "slug": slug,
            "tag": tag,
            "subtag": format!("{tag}_001"),
            "subtag_message": tag,
            "checkpoints": checkpoints,
            "courier_estimated_delivery_date": null,
        }
    })
}

fn checkpoint(time: &str, message: &str, location: &str, tag: &str) -> Value {
    json!({"checkpoint_time": time, "message": message, "location": location, "tag": tag,
           "slug": "ups", "country_name": null, "city": null, "state": null})
}

/// A paid order shipped by staff with this carrier and tracking number:
/// (order id, the customer's token).
async fn shipped(app: &TestApp, carrier: &str, tracking: &str) -> (String, String) {
    let (_, token) = app.customer("ann").await;
    let item = app.item(1250, 100).await;
    let id = app.paid_order(&token, &item, 1).await;
    let r = app
        .post(
            &format!("/v1/orders/{id}/status"),
            &app.admin_token,
            json!({"status": "shipped", "carrier": carrier, "tracking_number": tracking}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (id, token)
}

async fn timeline(app: &TestApp, id: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/orders/{id}/events"), &app.admin_token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["data"].as_array().unwrap().clone()
}

async fn scans(app: &TestApp, id: &str) -> Vec<Value> {
    timeline(app, id)
        .await
        .into_iter()
        .filter(|e| e["event"] == "order_tracking_update")
        .collect()
}

async fn order(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/orders/{id}"), &app.admin_token)
        .await
        .body
}

/// Each of AfterShip's tags is recorded with our carrier status, the checkpoint's message,
/// location and time; `Pending` records nothing; the order stays `shipped`.
async fn every_tag_maps_onto_a_carrier_status(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, _) = shipped(&app, "UPS", "1ZTAGS").await;
    let cases = [
        ("InfoReceived", "info_received"),
        ("InTransit", "in_transit"),
        ("OutForDelivery", "out_for_delivery"),
        ("AttemptFail", "attempt_failed"),
        ("AvailableForPickup", "available_for_pickup"),
        ("Exception", "exception"),
        ("Expired", "exception"),
    ];
    for (i, (tag, ours)) in cases.iter().enumerate() {
        let time = format!("2026-12-0{}T09:30:00+01:00", i + 1);
        let r = hook(
            &app,
            &update(
                &format!("evt-tag-{i}"),
                "ups",
                "1ZTAGS",
                tag,
                json!([checkpoint(&time, &format!("scan {tag}"), "Lyon, FR", tag)]),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{tag}: {}", r.text);
        assert_eq!(r.body["outcome"], "applied", "{tag}: {}", r.text);
        let last = scans(&app, &id).await.pop().unwrap();
        assert_eq!(last["data"]["carrier_status"], *ours, "{tag}: {last}");
        assert_eq!(last["data"]["description"], format!("scan {tag}"));
        assert_eq!(last["data"]["location"], "Lyon, FR");
        assert_eq!(
            last["data"]["at"],
            format!("2026-12-0{}T08:30:00Z", i + 1),
            "the checkpoint's time, in UTC"
        );
        assert_eq!(last["data"]["carrier"], "UPS");
        assert_eq!(last["data"]["tracking_number"], "1ZTAGS");
        assert_eq!(last["data"]["status"], "shipped");
    }
    assert_eq!(scans(&app, &id).await.len(), cases.len());
    // Pending: the carrier has said nothing yet.
    let r = hook(
        &app,
        &update("evt-pending", "ups", "1ZTAGS", "Pending", json!([])),
    )
    .await;
    assert_eq!(r.body["outcome"], "ignored", "{}", r.text);
    assert_eq!(scans(&app, &id).await.len(), cases.len());
    assert_eq!(order(&app, &id).await["status"], "shipped");
}
both!(every_tag_maps_onto_a_carrier_status);

/// `Delivered` delivers the order through the state machine (timeline, notification);
/// an order still `placed` is shipped first; nothing later moves it back, and updates for
/// orders that are not shipping change nothing.
async fn delivered_goes_through_the_state_machine(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, token) = shipped(&app, "United Parcel Service", "1ZDELIV").await;
    let r = hook(
        &app,
        &update(
            "evt-d1",
            "ups",
            "1ZDELIV",
            "Delivered",
            json!([
                checkpoint(
                    "2026-12-01T08:00:00Z",
                    "Out for delivery",
                    "Paris",
                    "OutForDelivery"
                ),
                checkpoint(
                    "2026-12-01T15:00:00Z",
                    "Delivered, front door",
                    "Paris",
                    "Delivered"
                ),
            ]),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["outcome"], "applied");
    assert_eq!(
        app.get(&format!("/v1/orders/{id}"), &token).await.body["status"],
        "delivered"
    );
    let last = timeline(&app, &id).await.pop().unwrap();
    assert_eq!(last["event"], "order_status_update");
    assert_eq!(last["data"]["status"], "delivered");
    assert_eq!(last["data"]["previous_status"], "shipped");
    assert_eq!(last["data"]["note"], "Delivered, front door");
    assert_eq!(last["data"]["location"], "Paris");
    // The customer hears about it as for a staff change.
    let cust_id = order(&app, &id).await["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let notified = app
        .eventually(Duration::from_secs(10), || async {
            let log = app
                .get(
                    &format!("/v1/customers/{cust_id}/notifications"),
                    &app.admin_token,
                )
                .await;
            log.body["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|e| e["kind"] == "delivered"))
        })
        .await;
    assert!(notified, "no delivered notification");
    // Never backwards: a late in-transit update is recorded, the status stays.
    let before = timeline(&app, &id).await.len();
    let r = hook(
        &app,
        &update(
            "evt-d2",
            "ups",
            "1ZDELIV",
            "InTransit",
            json!([checkpoint(
                "2026-11-30T20:00:00Z",
                "Departed facility",
                "Lille",
                "InTransit"
            )]),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(order(&app, &id).await["status"], "delivered");
    assert_eq!(timeline(&app, &id).await.len(), before + 1);
    // A second Delivered (another event id) changes nothing.
    let r = hook(
        &app,
        &update(
            "evt-d3",
            "ups",
            "1ZDELIV",
            "Delivered",
            json!([checkpoint(
                "2026-12-01T15:00:00Z",
                "Delivered, front door",
                "Paris",
                "Delivered"
            )]),
        ),
    )
    .await;
    assert_eq!(r.body["outcome"], "ignored", "{}", r.text);
    assert_eq!(timeline(&app, &id).await.len(), before + 1);

    // A placed order with a tracking number (set while processing) is shipped, then
    // delivered: both steps on the timeline.
    let (_, t2) = app.customer("bob").await;
    let item = app.item(500, 5).await;
    let placed = app.paid_order(&t2, &item, 1).await;
    let r = app
        .post(
            &format!("/v1/orders/{placed}/status"),
            &app.admin_token,
            json!({"status": "processing", "carrier": "FedEx", "tracking_number": "FX-77"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = hook(
        &app,
        &update(
            "evt-p1",
            "fedex",
            "FX-77",
            "Delivered",
            json!([checkpoint(
                "2026-12-02T10:00:00Z",
                "Left at reception",
                "Berlin",
                "Delivered"
            )]),
        ),
    )
    .await;
    assert_eq!(r.body["outcome"], "applied", "{}", r.text);
    let steps: Vec<(String, String)> = timeline(&app, &placed)
        .await
        .iter()
        .filter(|e| e["event"] == "order_status_update")
        .map(|e| {
            (
                e["data"]["previous_status"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                e["data"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps[steps.len() - 2..],
        [
            ("processing".to_owned(), "shipped".to_owned()),
            ("shipped".to_owned(), "delivered".to_owned())
        ],
        "{steps:?}"
    );

    // A canceled order is not shipping: acknowledged, unchanged.
    let (_, t3) = app.customer("cy").await;
    let canceled = app.paid_order(&t3, &item, 1).await;
    app.post(
        &format!("/v1/orders/{canceled}/status"),
        &app.admin_token,
        json!({"status": "processing", "carrier": "DHL", "tracking_number": "DHL-1"}),
    )
    .await;
    let r = app
        .post(&format!("/v1/orders/{canceled}/cancel"), &t3, json!({}))
        .await;
    assert_eq!(r.body["status"], "canceled", "{}", r.text);
    let n = timeline(&app, &canceled).await.len();
    let r = hook(
        &app,
        &update("evt-c1", "dhl", "DHL-1", "Delivered", json!([])),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["outcome"], "ignored");
    assert_eq!(order(&app, &canceled).await["status"], "canceled");
    assert_eq!(timeline(&app, &canceled).await.len(), n);
}
both!(delivered_goes_through_the_state_machine);

/// One event id is handled once; a checkpoint already on the timeline is not added again
/// when a later update carries it.
async fn duplicates_and_replayed_checkpoints(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, _) = shipped(&app, "ups", "1ZDUP").await;
    let first = checkpoint(
        "2026-12-01T08:00:00Z",
        "Arrived at facility",
        "Lyon",
        "InTransit",
    );
    let body = update("evt-once", "ups", "1ZDUP", "InTransit", json!([first]));
    let r = hook(&app, &body).await;
    assert_eq!(
        r.body,
        json!({"received": true, "duplicate": false, "outcome": "applied"})
    );
    assert_eq!(scans(&app, &id).await.len(), 1);
    // The same event again (AfterShip retries): acknowledged, nothing changes.
    let again = hook(&app, &body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(scans(&app, &id).await.len(), 1);
    // The same event id with other content is still the same event.
    let changed = update(
        "evt-once",
        "ups",
        "1ZDUP",
        "OutForDelivery",
        json!([checkpoint(
            "2026-12-01T09:00:00Z",
            "Out for delivery",
            "Lyon",
            "OutForDelivery"
        )]),
    );
    assert_eq!(hook(&app, &changed).await.body["duplicate"], true);
    assert_eq!(scans(&app, &id).await.len(), 1);
    // A new event whose latest checkpoint is the one we have: nothing added.
    let replay = update("evt-replay", "ups", "1ZDUP", "InTransit", json!([first]));
    let r = hook(&app, &replay).await;
    assert_eq!(r.body["duplicate"], false, "{}", r.text);
    assert_eq!(scans(&app, &id).await.len(), 1);
    // A later update with the old checkpoint and a new one: only the new one.
    let later = update(
        "evt-later",
        "ups",
        "1ZDUP",
        "OutForDelivery",
        json!([
            first,
            checkpoint(
                "2026-12-01T11:00:00Z",
                "Out for delivery",
                "Lyon",
                "OutForDelivery"
            )
        ]),
    );
    hook(&app, &later).await;
    let s = scans(&app, &id).await;
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[1]["data"]["description"], "Out for delivery");
    // The same event sent twice at once is still handled once.
    let burst = update(
        "evt-burst",
        "ups",
        "1ZDUP",
        "AttemptFail",
        json!([checkpoint(
            "2026-12-01T13:00:00Z",
            "Nobody home",
            "Lyon",
            "AttemptFail"
        )]),
    );
    let (a, b2) = tokio::join!(hook(&app, &burst), hook(&app, &burst));
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(b2.status, StatusCode::OK, "{}", b2.text);
    assert_eq!(scans(&app, &id).await.len(), 3);
}
both!(duplicates_and_replayed_checkpoints);

/// Forged, unsigned and malformed requests are refused and change nothing; an unknown
/// tracking number (or another carrier's) is acknowledged and changes nothing; without a
/// secret the endpoint is unavailable.
async fn bad_requests_change_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, _) = shipped(&app, "UPS", "1ZBAD").await;
    let good = update(
        "evt-bad",
        "ups",
        "1ZBAD",
        "InTransit",
        json!([checkpoint(
            "2026-12-01T08:00:00Z",
            "In transit",
            "Lyon",
            "InTransit"
        )]),
    );
    let bytes = serde_json::to_vec(&good).unwrap();
    post_raw(&app, &bytes, None)
        .await
        .assert_problem(401, "unauthorized");
    post_raw(&app, &bytes, Some(sign("another-secret", &bytes)))
        .await
        .assert_problem(401, "unauthorized");
    post_raw(&app, &bytes, Some("bm90IGEgc2lnbmF0dXJl".into()))
        .await
        .assert_problem(401, "unauthorized");
    post_raw(&app, &bytes, Some("%%%".into()))
        .await
        .assert_problem(401, "unauthorized");
    // Signed over other bytes (the same JSON, reformatted).
    let pretty = serde_json::to_vec_pretty(&good).unwrap();
    post_raw(&app, &pretty, Some(sign(AFTERSHIP_SECRET, &bytes)))
        .await
        .assert_problem(401, "unauthorized");
    // Signed, but not JSON / not AfterShip's shape / empty fields.
    for body in [
        b"{\"event\": \"tracking_update\", ".to_vec(),
        b"".to_vec(),
        serde_json::to_vec(&json!({"event": "tracking_update", "event_id": "x"})).unwrap(),
        serde_json::to_vec(&json!({"event": "tracking_update", "event_id": "x",
            "msg": {"tracking_number": 42, "slug": "ups", "tag": "InTransit"}}))
        .unwrap(),
        serde_json::to_vec(&json!({"event": "tracking_update", "event_id": " ",
            "msg": {"tracking_number": "1ZBAD", "slug": "ups", "tag": "InTransit"}}))
        .unwrap(),
        serde_json::to_vec(&json!({"event": "tracking_update", "event_id": "y",
            "msg": {"tracking_number": "1".repeat(101), "slug": "ups", "tag": "InTransit"}}))
        .unwrap(),
    ] {
        let sig = sign(AFTERSHIP_SECRET, &body);
        post_raw(&app, &body, Some(sig))
            .await
            .assert_problem(400, "invalid_json");
    }
    assert!(scans(&app, &id).await.is_empty());
    // The refused requests did not use up the event id.
    assert_eq!(hook(&app, &good).await.body["outcome"], "applied");
    assert_eq!(scans(&app, &id).await.len(), 1);
    // Unknown tracking number, or the right number from another carrier: 200, no change.
    for (slug, tracking) in [("ups", "1ZNOPE"), ("fedex", "1ZBAD")] {
        let r = hook(
            &app,
            &update(
                &format!("evt-unknown-{slug}"),
                slug,
                tracking,
                "Delivered",
                json!([]),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["outcome"], "unknown_tracking_number", "{}", r.text);
    }
    assert_eq!(order(&app, &id).await["status"], "shipped");
    assert_eq!(scans(&app, &id).await.len(), 1);
    // Without the secret the endpoint is unavailable.
    let bare = TestApp::spawn_with(b, |c| c.aftership_webhook_secret = None).await;
    hook(&bare, &good).await.assert_problem(503, "unavailable");
}
both!(bad_requests_change_nothing);

/// A carrier scan reaches the customer's open WebSocket as an `order_tracking_update`.
async fn a_carrier_scan_is_pushed_to_the_customer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, token) = shipped(&app, "USPS", "9400-PUSH").await;
    let mut ws = app.ws("", &token).await;
    let r = hook(
        &app,
        &update(
            "evt-push",
            "usps",
            "9400-PUSH",
            "OutForDelivery",
            json!([checkpoint(
                "2026-12-03T07:15:00-05:00",
                "Out for delivery",
                "Boston, MA",
                "OutForDelivery"
            )]),
        ),
    )
    .await;
    assert_eq!(r.body["outcome"], "applied", "{}", r.text);
    // The order's earlier events may still be on their way to the socket.
    let mut m = ws.json().await;
    while m["event"] == "order_status_update" {
        m = ws.json().await;
    }
    assert_eq!(m["event"], "order_tracking_update", "{m}");
    assert_eq!(m["data"]["order_id"], id.as_str());
    assert_eq!(m["data"]["carrier_status"], "out_for_delivery");
    assert_eq!(m["data"]["description"], "Out for delivery");
    assert_eq!(m["data"]["location"], "Boston, MA");
    assert_eq!(m["data"]["at"], "2026-12-03T12:15:00Z");
}
both!(a_carrier_scan_is_pushed_to_the_customer);

async fn deliver(app: &TestApp, id: &str) {
    let r = app
        .post(
            &format!("/v1/orders/{id}/status"),
            &app.admin_token,
            json!({"status": "delivered"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

fn date(t: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    t.format(&fmt).unwrap()
}

/// The carrier's estimate goes on the order; without one, a shipped order gets a date
/// predicted from the same carrier's deliveries (the median of shipped → delivered), once
/// three of them were delivered; the carrier's own estimate replaces it later.
async fn delivery_estimates(b: Backend) {
    let mut app = TestApp::spawn(b).await;
    let day = Duration::from_secs(86_400);
    // The carrier's own estimate.
    let (id, token) = shipped(&app, "DHL", "JD-ETA").await;
    assert_eq!(order(&app, &id).await["estimated_delivery"], Value::Null);
    let mut body = update(
        "evt-eta",
        "dhl",
        "JD-ETA",
        "InTransit",
        json!([checkpoint(
            "2026-12-01T08:00:00Z",
            "Processed",
            "Leipzig",
            "InTransit"
        )]),
    );
    // The customer's list is read (and kept) before the estimate arrives.
    let listed = app.get("/v1/orders", &token).await.body;
    assert_eq!(listed["data"][0]["estimated_delivery"], Value::Null);
    body["msg"]["courier_estimated_delivery_date"] = json!({"estimated_delivery_date": "2026-12-09", "estimated_delivery_date_min": null, "estimated_delivery_date_max": null});
    assert_eq!(hook(&app, &body).await.body["outcome"], "applied");
    let listed = app.get("/v1/orders", &token).await.body;
    assert_eq!(listed["data"][0]["estimated_delivery"], "2026-12-09");
    let o = app.get(&format!("/v1/orders/{id}"), &token).await.body;
    assert_eq!(o["estimated_delivery"], "2026-12-09", "{o}");
    assert_eq!(o["estimated_delivery_source"], "carrier");
    assert_eq!(
        scans(&app, &id).await[0]["data"]["estimated_delivery"],
        "2026-12-09"
    );

    // History for "Acme Post": 2, 3 and 5 days from shipped to delivered.
    let mut history = Vec::new();
    for (i, days) in [2u32, 3, 5].into_iter().enumerate() {
        let (id, _) = shipped(&app, "Acme Post", &format!("ACME-{i}")).await;
        let o = order(&app, &id).await;
        assert_eq!(
            o["estimated_delivery"],
            Value::Null,
            "fewer than three deliveries: no prediction ({i})"
        );
        app.advance(day * days);
        // Tokens expire by the test clock too.
        app.admin_token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        deliver(&app, &id).await;
        history.push(id);
    }
    // A new shipment (the name spelled differently) is predicted: shipped + 3 days.
    let (next, token) = shipped(&app, "acme-post", "ACME-NEXT").await;
    let expected = date(app.clock_now() + time::Duration::days(3));
    let o = app.get(&format!("/v1/orders/{next}"), &token).await.body;
    assert_eq!(o["estimated_delivery"], expected.as_str(), "{o}");
    assert_eq!(o["estimated_delivery_source"], "predicted");
    // Another carrier has no history.
    let (other, _) = shipped(&app, "FedEx", "FX-ETA").await;
    assert_eq!(order(&app, &other).await["estimated_delivery"], Value::Null);
    // The carrier's own estimate replaces the prediction.
    let mut body = update("evt-acme", "acme-post", "ACME-NEXT", "InTransit", json!([]));
    body["msg"]["courier_estimated_delivery_date"] =
        json!({"estimated_delivery_date": "2026-12-24"});
    assert_eq!(hook(&app, &body).await.body["outcome"], "applied");
    let o = order(&app, &next).await;
    assert_eq!(o["estimated_delivery"], "2026-12-24", "{o}");
    assert_eq!(o["estimated_delivery_source"], "carrier");
    // A bad date from the carrier is no estimate (the scan is still recorded).
    let mut body = update(
        "evt-bad-date",
        "acme-post",
        "ACME-NEXT",
        "InTransit",
        json!([checkpoint(
            "2026-12-05T08:00:00Z",
            "Sorted",
            "Hub",
            "InTransit"
        )]),
    );
    body["msg"]["courier_estimated_delivery_date"] = json!({"estimated_delivery_date": "soon"});
    assert_eq!(hook(&app, &body).await.body["outcome"], "applied");
    assert_eq!(order(&app, &next).await["estimated_delivery"], "2026-12-24");
}
both!(delivery_estimates);

/// The "on its way" e-mail (over SMTP) names the predicted delivery date.
async fn the_shipped_email_names_the_estimate(b: Backend) {
    use crate::notifications::{Smtp, unfolded};
    let smtp = Smtp::start_on(Smtp::free_port()).await;
    let url = smtp.url();
    let mut app = TestApp::spawn_with(b, move |c| {
        c.notifications.smtp_url = Some(ordo::config::Secret::new(url));
    })
    .await;
    for i in 0..3 {
        let (id, _) = shipped(&app, "Acme Post", &format!("ACME-M{i}")).await;
        app.advance(Duration::from_secs(86_400));
        app.admin_token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        deliver(&app, &id).await;
    }
    let (id, _) = shipped(&app, "Acme Post", "ACME-MAIL").await;
    let expected = date(app.clock_now() + time::Duration::days(1));
    assert_eq!(
        order(&app, &id).await["estimated_delivery"],
        expected.as_str()
    );
    let found = app
        .eventually(Duration::from_secs(20), || async {
            smtp.mails()
                .iter()
                .map(|m| unfolded(m))
                .any(|m| m.contains(&id) && m.contains("your order is on its way"))
        })
        .await;
    assert!(found, "no shipped mail for {id}");
    let mail = smtp
        .mails()
        .iter()
        .map(|m| unfolded(m))
        .find(|m| m.contains(&id) && m.contains("your order is on its way"))
        .unwrap();
    assert!(
        mail.contains(&format!("Estimated delivery: {expected}")),
        "{mail}"
    );
}
both!(the_shipped_email_names_the_estimate);
