//! The payment saga with the simulated gateway: a charge nobody heard back from is looked
//! up again, voided when its order ends, refunded when its money moved too late; every
//! step is on the order's payment record.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Resp, TestApp};

const TTL: Duration = Duration::from_secs(900);

async fn place(app: &TestApp, token: &str, item: &str, method: &str) -> Resp {
    app.post(
        "/v1/orders",
        token,
        json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": method}),
    )
    .await
}

async fn steps(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/orders/{id}/payments"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["data"].as_array().unwrap().clone()
}

fn step<'a>(steps: &'a [Value], kind: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} step in {steps:?}"))
}

/// A gateway whose answer to the charge is lost: the saga asks again, by reference, and
/// places the order. The charge went out once; it was looked up, not repeated.
async fn an_answer_that_never_came_is_looked_up(b: crate::helpers::Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 5).await;
    let r = place(&app, &token, &item, "pm_sim_answers_late").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "created");
    assert_eq!(r.body["payment_status"], "pending");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let charge = step(&steps(&app, &token, &id).await, "charge").clone();
    assert_eq!(charge["status"], "pending", "{charge}");
    assert_eq!(charge["last_error"], "the gateway did not answer in time");
    assert_eq!(charge["idempotency_key"], format!("charge-{id}"));

    let order = app
        .order_becomes(&token, &id, "status", "placed", Duration::from_secs(2))
        .await;
    assert_eq!(order["payment_status"], "paid");
    assert_eq!(app.stock(&item).await, 3, "the units stay sold");
    let all = steps(&app, &token, &id).await;
    assert_eq!(all.len(), 1, "one charge, no refund: {all:?}");
    let charge = step(&all, "charge");
    assert_eq!(charge["status"], "succeeded", "{charge}");
    assert_eq!(charge["attempts"], 2, "the charge, then one look: {charge}");
    assert_eq!(charge["next_attempt_at"], Value::Null);
    assert_eq!(charge["amount"], 1400);
    assert_eq!(order["payment_reference"], charge["gateway_reference"]);
}
both!(an_answer_that_never_came_is_looked_up);

/// A charge that never settles is looked at again and again until the reservation runs
/// out; then the order is canceled, its stock returns, and the charge is voided.
async fn a_charge_out_at_expiry_is_voided(b: crate::helpers::Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 5).await;
    let r = place(&app, &token, &item, "pm_sim_no_response").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    // A few looks that get no answer either, well inside the reservation.
    let looked = app
        .eventually(Duration::from_secs(20), || async {
            app.advance(Duration::from_secs(3));
            step(&steps(&app, &token, &id).await, "charge")["attempts"]
                .as_i64()
                .unwrap()
                >= 3
        })
        .await;
    assert!(looked, "the saga did not keep asking");
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "created", "{}", o.text);
    assert_eq!(app.stock(&item).await, 3);

    app.advance(TTL);
    app.order_becomes(&token, &id, "status", "canceled", Duration::ZERO)
        .await;
    assert_eq!(app.stock(&item).await, 5);
    let voided = app
        .eventually(Duration::from_secs(10), || async {
            step(&steps(&app, &token, &id).await, "charge")["status"] == "voided"
        })
        .await;
    assert!(voided, "{:?}", steps(&app, &token, &id).await);
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(
        o.body["payment_status"], "failed",
        "no money moved, and the payment settled: {}",
        o.text
    );
    assert_eq!(steps(&app, &token, &id).await.len(), 1, "nothing to refund");
}
both!(a_charge_out_at_expiry_is_voided);

/// The race the saga exists for: the reservation expires while the gateway is taking the
/// money. Voiding finds the money taken; it is refunded, the order stays canceled, and
/// the timeline says so. The units went back to stock once.
async fn money_taken_after_expiry_is_refunded(b: crate::helpers::Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 5).await;
    let r = place(&app, &token, &item, "pm_sim_answers_late").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    app.advance(TTL + Duration::from_secs(5));
    let o = app
        .order_becomes(&token, &id, "payment_status", "refunded", Duration::ZERO)
        .await;
    assert_eq!(o["status"], "canceled");
    assert_eq!(app.stock(&item).await, 5);
    let all = steps(&app, &token, &id).await;
    assert_eq!(step(&all, "charge")["status"], "succeeded", "{all:?}");
    let refund = step(&all, "refund");
    assert_eq!(refund["status"], "succeeded", "{refund}");
    assert_eq!(refund["amount"], 1400);
    assert_eq!(refund["idempotency_key"], format!("refund-{id}"));
    let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let notes: Vec<&str> = ev.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["note"].as_str())
        .collect();
    assert_eq!(
        notes,
        ["reservation expired", "late payment refunded"],
        "{}",
        ev.text
    );
}
both!(money_taken_after_expiry_is_refunded);

/// A customer who cancels while a charge is out (say, waiting for 3-D Secure) gets the
/// stock released at once and the charge voided right after.
async fn canceling_voids_a_charge_that_is_out(b: crate::helpers::Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 5).await;
    let r = place(&app, &token, &item, "pm_sim_no_response").await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let c = app
        .post(&format!("/v1/orders/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.body["status"], "canceled");
    assert_eq!(app.stock(&item).await, 5);
    let voided = app
        .eventually(Duration::from_secs(10), || async {
            step(&steps(&app, &token, &id).await, "charge")["status"] == "voided"
        })
        .await;
    assert!(voided, "{:?}", steps(&app, &token, &id).await);
}
both!(canceling_voids_a_charge_that_is_out);

/// While a charge is out, paying again is refused (409) and charges nothing; once the
/// order is settled, paying is an invalid transition.
async fn no_second_charge_while_one_is_out(b: crate::helpers::Backend) {
    let app = TestApp::spawn(b).await;
    let ann = app.sign_up("ann").await;
    let item = app.item(700, 5).await;
    let r = ann.place(&[(&item, 1)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let first = ann.pay(&id, "pm_sim_answers_late").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    ann.pay(&id, "pm_card_visa")
        .await
        .assert_problem(409, "conflict");
    app.order_becomes(&ann.token, &id, "status", "placed", Duration::from_secs(2))
        .await;
    ann.pay(&id, "pm_card_visa")
        .await
        .assert_problem(409, "invalid_transition");
    let all = steps(&app, &ann.token, &id).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(step(&all, "charge")["method"], "pm_sim_answers_late");
}
both!(no_second_charge_while_one_is_out);

/// Payment steps are the order's: another customer gets 404, staff see them.
async fn payment_steps_belong_to_the_order(b: crate::helpers::Backend) {
    let app = TestApp::spawn(b).await;
    let ann = app.sign_up("ann").await;
    let bob = app.sign_up("bob").await;
    let item = app.item(700, 5).await;
    let r = place(&app, &ann.token, &item, "pm_card_visa").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap();
    bob.get(&format!("/v1/orders/{id}/payments"))
        .await
        .assert_problem(404, "not_found");
    bob.order(id).await.assert_problem(404, "not_found");
    let own = ann.order(id).await;
    assert_eq!(own.body["status"], "placed");
    assert_eq!(own.body["customer_id"], ann.id.as_str());
    let staff = app.staff().await;
    let all = steps(&app, &staff, id).await;
    let charge = step(&all, "charge");
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(charge["attempts"], 1);
    assert_eq!(charge["method"], "pm_card_visa");
    app.get(
        &format!("/v1/orders/{}/payments", uuid::Uuid::now_v7()),
        &staff,
    )
    .await
    .assert_problem(404, "not_found");
}
both!(payment_steps_belong_to_the_order);

/// An order whose reservation ran out cannot be paid, whether or not the sweeper got to
/// it yet: 409, and no charge is started.
async fn an_expired_reservation_cannot_be_paid(b: crate::helpers::Backend) {
    let app = TestApp::spawn(b).await;
    let ann = app.sign_up("ann").await;
    let token = ann.token.clone();
    let item = app.item(700, 5).await;
    let id = app.new_order(&token, &item).await;
    app.advance(TTL + Duration::from_secs(1));
    ann.pay(&id, "pm_card_visa")
        .await
        .assert_problem(409, "invalid_transition");
    assert!(
        steps(&app, &token, &id).await.is_empty(),
        "no charge started"
    );
    let o = app
        .order_becomes(&token, &id, "status", "canceled", Duration::ZERO)
        .await;
    assert_eq!(
        o["payment_status"], "failed",
        "a canceled order's payment settles"
    );
    assert_eq!(app.stock(&item).await, 5);
}
both!(an_expired_reservation_cannot_be_paid);

/// A gateway call never outlives the reservation: with a reservation shorter than the
/// gateway time-out, a payment nobody answers is cut off when the reservation ends, and the
/// answer shows the order as it is then (canceled, stock back, payment settled), not as it
/// was when the call began.
async fn a_payment_never_outlives_the_reservation(b: crate::helpers::Backend) {
    // The gateway time-out is long: a call that waited for it instead of the reservation
    // would take 30 s.
    let app = TestApp::spawn_with(b, |c| {
        c.reservation_ttl = Duration::from_secs(2);
        c.payment_timeout = Duration::from_secs(30);
    })
    .await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 5).await;
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 2}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.stock(&item).await, 3);
    let started = std::time::Instant::now();
    let path = format!("/v1/orders/{id}/payments");
    let pay = app.post(
        &path,
        &token,
        json!({"payment_method": "pm_sim_no_response"}),
    );
    // Once the charge is out, the server's clock moves past `expires_at` while the
    // gateway is silent.
    let (r, ()) = tokio::join!(pay, async {
        let out = app
            .eventually(Duration::from_secs(20), || async {
                steps(&app, &token, &id)
                    .await
                    .iter()
                    .any(|s| s["kind"] == "charge")
            })
            .await;
        assert!(out, "the charge never went out");
        app.advance(Duration::from_secs(3));
    });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the call waited past the reservation: {:?}",
        started.elapsed()
    );
    r.assert_problem(409, "invalid_transition");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("reservation ran out"),
        "{}",
        r.text
    );
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "canceled", "{}", o.text);
    assert_eq!(o.body["payment_status"], "failed", "{}", o.text);
    assert_eq!(app.stock(&item).await, 5, "the stock is back once");
    // The saga voids it on its next round (a busy machine may take a while).
    let voided = app
        .eventually(Duration::from_secs(30), || async {
            step(&steps(&app, &token, &id).await, "charge")["status"] == "voided"
        })
        .await;
    assert!(voided, "{:?}", steps(&app, &token, &id).await);

    // Placing with the payment method: the 201 shows the order canceled, not `created`.
    let r = place(&app, &token, &item, "pm_sim_no_response");
    let (r, ()) = tokio::join!(r, async {
        let placed = app
            .eventually(Duration::from_secs(20), || async {
                app.get("/v1/orders?status=created", &token).await.body["data"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty())
            })
            .await;
        assert!(placed, "the order was never placed");
        app.advance(Duration::from_secs(3));
    });
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "canceled", "{}", r.text);
    assert_eq!(r.body["payment_status"], "failed", "{}", r.text);
    assert_eq!(app.stock(&item).await, 5);
}
both!(a_payment_never_outlives_the_reservation);

/// A customer who cancels an unpaid order: its payment settles as `failed`.
async fn an_unpaid_order_canceled_settles_its_payment(b: crate::helpers::Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(700, 5).await;
    let id = app.new_order(&token, &item).await;
    let r = app
        .post(&format!("/v1/orders/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "canceled");
    assert_eq!(r.body["payment_status"], "failed");
}
both!(an_unpaid_order_canceled_settles_its_payment);
