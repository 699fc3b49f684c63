//! `POST /v1/webhooks/stripe`: signed, replay-safe settlement of payments that finish
//! after the API call.

use std::time::Duration;

use hmac::{Hmac, Mac};
use ordo::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::both;
use crate::helpers::{Backend, Resp, TestApp, WEBHOOK_SECRET};

fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn event(id: &str, kind: &str, order_id: &str, pi: &str) -> String {
    json!({
        "id": id,
        "type": kind,
        "data": {"object": {"id": pi, "object": "payment_intent", "metadata": {"order_id": order_id},
                            "last_payment_error": {"code": "card_declined"}}}
    })
    .to_string()
}

async fn deliver(app: &TestApp, body: &str, sig: Option<String>) -> Resp {
    let mut req = app
        .client
        .post(format!("{}/v1/webhooks/stripe", app.url))
        .header("content-type", "application/json");
    if let Some(s) = sig {
        req = req.header("Stripe-Signature", s);
    }
    Resp::read(req.body(body.to_owned()).send().await.unwrap()).await
}

async fn signed(app: &TestApp, body: &str) -> Resp {
    let t = app.clock.now().unix_timestamp();
    deliver(app, body, Some(signature(WEBHOOK_SECRET, t, body))).await
}

async fn events_of(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    app.get(&format!("/v1/orders/{id}/events"), token)
        .await
        .body["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn a_signed_success_settles_the_order_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 3).await;
    let id = app.order(&token, &[(&item, 1)]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = event("evt_1", "payment_intent.succeeded", &id, "pi_123");
    let r = signed(&app, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"received": true, "duplicate": false}));
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "placed");
    assert_eq!(o.body["payment_status"], "paid");
    assert_eq!(o.body["payment_reference"], "pi_123");
    let before = events_of(&app, &token, &id).await.len();
    // The same event again (Stripe retries): acknowledged, nothing changes.
    let again = signed(&app, &body).await;
    assert_eq!(again.body, json!({"received": true, "duplicate": true}));
    assert_eq!(events_of(&app, &token, &id).await.len(), before);
    // A second success event for a placed order changes nothing either.
    let other = signed(
        &app,
        &event("evt_2", "payment_intent.succeeded", &id, "pi_123"),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(events_of(&app, &token, &id).await.len(), before);
    assert_eq!(app.stock(&item).await, 2);
}
both!(a_signed_success_settles_the_order_once);

async fn forged_and_replayed_events_change_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 3).await;
    let id = app.order(&token, &[(&item, 1)]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = event("evt_forged", "payment_intent.succeeded", &id, "pi_9");
    let now = app.clock.now().unix_timestamp();
    deliver(&app, &body, None)
        .await
        .assert_problem(401, "unauthorized");
    deliver(&app, &body, Some(signature("whsec_wrong", now, &body)))
        .await
        .assert_problem(401, "unauthorized");
    // Signed for another body.
    let other = event("evt_forged", "payment_intent.succeeded", &id, "pi_10");
    deliver(&app, &body, Some(signature(WEBHOOK_SECRET, now, &other)))
        .await
        .assert_problem(401, "unauthorized");
    // A genuine signature, replayed 10 minutes later.
    let old = signature(WEBHOOK_SECRET, now, &body);
    app.advance(Duration::from_secs(600));
    deliver(&app, &body, Some(old))
        .await
        .assert_problem(401, "unauthorized");
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "created");
    assert_eq!(o.body["payment_status"], "pending");
    // Refused events were not recorded: the genuine one, freshly signed, still works.
    assert_eq!(signed(&app, &body).await.body["duplicate"], false);
}
both!(forged_and_replayed_events_change_nothing);

async fn a_failed_payment_cancels_and_returns_stock(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 3).await;
    let id = app.order(&token, &[(&item, 2)]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.stock(&item).await, 1);
    let r = signed(
        &app,
        &event("evt_f", "payment_intent.payment_failed", &id, "pi_f"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "canceled");
    assert_eq!(o.body["payment_status"], "failed");
    assert_eq!(app.stock(&item).await, 3);
    let last = events_of(&app, &token, &id).await.pop().unwrap();
    assert_eq!(last["data"]["note"], "payment declined: card_declined");
}
both!(a_failed_payment_cancels_and_returns_stock);

async fn a_success_after_expiry_is_refunded(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 3).await;
    let r = app
        .post("/v1/orders", &token, json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_sim_no_response"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.body["id"].as_str().unwrap().to_owned();
    app.advance(Duration::from_secs(901));
    let expired = app
        .eventually(Duration::from_secs(10), || async {
            app.get(&format!("/v1/orders/{id}"), &token).await.body["status"] == "canceled"
        })
        .await;
    assert!(expired);
    // The gateway's success arrives late: the money goes back, the order stays canceled.
    let r = signed(
        &app,
        &event("evt_late", "payment_intent.succeeded", &id, "pi_late"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "canceled");
    assert_eq!(o.body["payment_status"], "refunded");
    assert_eq!(o.body["payment_reference"], "pi_late");
    let last = events_of(&app, &token, &id).await.pop().unwrap();
    assert_eq!(last["data"]["note"], "late payment refunded");
    assert_eq!(app.stock(&item).await, 3);
}
both!(a_success_after_expiry_is_refunded);
