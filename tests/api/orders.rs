//! Placing, paying, moving, tracking and cancelling orders.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both;
use crate::helpers::{Backend, TestApp};

async fn placing_reserves_stock_and_prices_from_the_item(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (cid, token) = app.customer("ann").await;
    let item = app.item(1250, 5).await;
    let r = app.order(&token, &[(&item, 2)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "created");
    assert_eq!(r.body["payment_status"], "pending");
    assert_eq!(r.body["customer_id"], cid.as_str());
    assert_eq!(r.body["total_amount"], 2500);
    assert_eq!(r.body["currency"], "USD");
    assert_eq!(r.body["items"][0]["unit_price"], 1250);
    assert_eq!(r.body["items"][0]["line_total"], 2500);
    assert!(r.body["expires_at"].is_string());
    assert_eq!(app.stock(&item).await, 3);
    // A later price change does not touch the order.
    let p = app
        .patch(
            &format!("/v1/items/{item}"),
            &app.admin_token,
            json!({"price": 9999}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let id = r.body["id"].as_str().unwrap();
    let again = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(again.body["total_amount"], 2500);
}
both!(placing_reserves_stock_and_prices_from_the_item);

async fn insufficient_stock_reserves_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let plenty = app.item(100, 10).await;
    let scarce = app.item(100, 1).await;
    let r = app.order(&token, &[(&plenty, 3), (&scarce, 2)]).await;
    r.assert_problem(409, "insufficient_stock");
    assert_eq!(r.body["item_id"], scarce.as_str());
    assert_eq!(r.fields(), vec!["items[1].quantity"]);
    assert_eq!(app.stock(&plenty).await, 10);
    assert_eq!(app.stock(&scarce).await, 1);
    let list = app.get("/v1/orders", &token).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 0);
}
both!(insufficient_stock_reserves_nothing);

async fn bad_orders_are_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let (other, _) = app.customer("bob").await;
    let usd = app.item(100, 10).await;
    let eur = app.item_with(json!({"currency": "EUR"})).await;
    let unknown = uuid::Uuid::now_v7().to_string();

    let r = app.order(&token, &[(&unknown, 1)]).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["items[0].item_id"]);

    app.order(&token, &[(&usd, 1), (&eur, 1)])
        .await
        .assert_problem(422, "validation_failed");
    app.order(&token, &[(&usd, 0)])
        .await
        .assert_problem(422, "validation_failed");
    app.order(&token, &[(&usd, 1001)])
        .await
        .assert_problem(422, "validation_failed");
    app.order(&token, &[(&usd, 1), (&usd, 2)])
        .await
        .assert_problem(422, "validation_failed");
    app.order(&token, &[])
        .await
        .assert_problem(422, "validation_failed");
    let many: Vec<_> = (0..101)
        .map(|_| json!({"item_id": usd, "quantity": 1}))
        .collect();
    app.post("/v1/orders", &token, json!({"items": many}))
        .await
        .assert_problem(422, "validation_failed");

    // A customer orders only for itself.
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": usd, "quantity": 1}], "customer_id": other}),
        )
        .await;
    r.assert_problem(403, "forbidden");
    // Staff must say for whom, and that customer must exist.
    let staff = app.staff().await;
    let r = app
        .post(
            "/v1/orders",
            &staff,
            json!({"items": [{"item_id": usd, "quantity": 1}]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["customer_id"]);
    let r = app
        .post("/v1/orders", &staff, json!({"items": [{"item_id": usd, "quantity": 1}], "customer_id": uuid::Uuid::now_v7()}))
        .await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .post(
            "/v1/orders",
            &staff,
            json!({"items": [{"item_id": usd, "quantity": 1}], "customer_id": other}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["customer_id"], other.as_str());
    // Nothing but that last order moved stock.
    assert_eq!(app.stock(&usd).await, 9);
    assert_eq!(app.stock(&eur).await, 10);
}
both!(bad_orders_are_refused);

async fn paying_places_the_order(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(500, 4).await;
    let r = app.order(&token, &[(&item, 1)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let paid = app
        .post(
            &format!("/v1/orders/{id}/payments"),
            &token,
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text);
    assert_eq!(paid.body["status"], "placed");
    assert_eq!(paid.body["payment_status"], "paid");
    // Paying twice is refused.
    app.post(
        &format!("/v1/orders/{id}/payments"),
        &token,
        json!({"payment_method": "pm_card_visa"}),
    )
    .await
    .assert_problem(409, "invalid_transition");
    assert_eq!(app.stock(&item).await, 3);

    // In one call.
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["status"], "placed");
    assert_eq!(r.body["payment_status"], "paid");
}
both!(paying_places_the_order);

async fn declined_payment_cancels_and_returns_stock(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(500, 4).await;
    let r = app.order(&token, &[(&item, 3)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let d = app
        .post(
            &format!("/v1/orders/{id}/payments"),
            &token,
            json!({"payment_method": "pm_card_chargeDeclined"}),
        )
        .await;
    d.assert_problem(402, "payment_declined");
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "canceled");
    assert_eq!(o.body["payment_status"], "failed");
    assert_eq!(app.stock(&item).await, 4);

    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": "pm_card_chargeDeclined"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["status"], "canceled");
    assert_eq!(r.body["payment_status"], "failed");
    assert_eq!(app.stock(&item).await, 4);

    // Card numbers never enter Ordo.
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "4242424242424242"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert!(!r.text.contains("4242424242424242"));
    assert_eq!(app.stock(&item).await, 4);
}
both!(declined_payment_cancels_and_returns_stock);

async fn a_silent_gateway_leaves_the_order_pending_until_it_expires(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(500, 4).await;
    let r = app
        .post("/v1/orders", &token, json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": "pm_sim_no_response"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "created");
    assert_eq!(r.body["payment_status"], "pending");
    assert_eq!(app.stock(&item).await, 2);
    let id = r.body["id"].as_str().unwrap().to_owned();
    // The reservation runs out; the sweeper cancels the order and returns the stock.
    app.advance(Duration::from_secs(901));
    let expired = app
        .eventually(Duration::from_secs(10), || async {
            app.get(&format!("/v1/orders/{id}"), &token).await.body["status"] == "canceled"
        })
        .await;
    assert!(expired, "the order did not expire");
    assert_eq!(app.stock(&item).await, 4);
    let events = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let last = events.body["data"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["data"]["status"], "canceled");
    assert_eq!(last["data"]["note"], "reservation expired");
}
both!(a_silent_gateway_leaves_the_order_pending_until_it_expires);

async fn fulfilment_follows_the_state_machine(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let staff = app.staff().await;
    let item = app.item(500, 4).await;
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_card_visa"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let status = |s: &str| format!("/v1/orders/{s}/status");

    // Customers do not move orders.
    app.post(&status(&id), &token, json!({"status": "processing"}))
        .await
        .assert_problem(403, "forbidden");
    // Not allowed: placed -> delivered, placed -> placed, created by hand.
    app.post(&status(&id), &staff, json!({"status": "delivered"}))
        .await
        .assert_problem(409, "invalid_transition");
    app.post(&status(&id), &staff, json!({"status": "placed"}))
        .await
        .assert_problem(409, "invalid_transition");
    // Optimistic concurrency.
    app.post(
        &status(&id),
        &staff,
        json!({"status": "processing", "expected_status": "shipped"}),
    )
    .await
    .assert_problem(409, "conflict");
    let p = app
        .post(
            &status(&id),
            &staff,
            json!({"status": "processing", "expected_status": "placed"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.body["status"], "processing");
    let s = app
        .post(&status(&id), &staff, json!({"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999", "location": "Berlin"}))
        .await;
    assert_eq!(s.body["status"], "shipped");
    assert_eq!(s.body["carrier"], "UPS");
    assert_eq!(s.body["tracking_number"], "1Z999");
    // Shipped orders cannot be canceled.
    app.post(&format!("/v1/orders/{id}/cancel"), &token, json!({}))
        .await
        .assert_problem(409, "invalid_transition");
    let t = app
        .post(
            &format!("/v1/orders/{id}/tracking"),
            &staff,
            json!({"description": "Arrived at hub", "location": "Leipzig", "carrier_status": "in_transit", "estimated_delivery": "2030-01-02"}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    assert_eq!(t.body["event"], "order_tracking_update");
    assert_eq!(t.body["data"]["status"], "shipped");
    assert_eq!(t.body["data"]["carrier_status"], "in_transit");
    assert_eq!(t.body["data"]["tracking_number"], "1Z999");
    let d = app
        .post(&status(&id), &staff, json!({"status": "delivered"}))
        .await;
    assert_eq!(d.body["status"], "delivered");
    app.post(&status(&id), &staff, json!({"status": "canceled"}))
        .await
        .assert_problem(409, "invalid_transition");

    // The timeline: oldest first, monotonic ids, every change and the scan.
    let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let data = ev.body["data"].as_array().unwrap();
    let statuses: Vec<&str> = data
        .iter()
        .map(|e| e["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "created",
            "placed",
            "processing",
            "shipped",
            "shipped",
            "delivered"
        ]
    );
    let kinds: Vec<&str> = data.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds[4], "order_tracking_update");
    let ids: Vec<i64> = data
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(data[2]["data"]["previous_status"], "placed");
    assert_eq!(data[3]["data"]["location"], "Berlin");
}
both!(fulfilment_follows_the_state_machine);

async fn cancel_returns_stock_exactly_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(500, 5).await;
    let r = app.order(&token, &[(&item, 3)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.stock(&item).await, 2);
    // Many cancels at once: exactly one wins.
    let path = format!("/v1/orders/{id}/cancel");
    let results = futures::future::join_all(
        (0..10).map(|_| app.post(&path, &token, json!({"reason": "changed my mind"}))),
    )
    .await;
    let ok = results
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_problem(409, "invalid_transition");
    }
    assert_eq!(app.stock(&item).await, 5);

    // A paid order is refunded when canceled.
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": "pm_card_visa"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let staff = app.staff().await;
    let c = app
        .post(
            &format!("/v1/orders/{id}/status"),
            &staff,
            json!({"status": "canceled", "note": "out of business"}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.body["status"], "canceled");
    assert_eq!(c.body["payment_status"], "refunded");
    assert_eq!(app.stock(&item).await, 5);
    let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let notes: Vec<&str> = ev.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["note"].as_str())
        .collect();
    assert!(notes.contains(&"payment refunded"), "{notes:?}");
}
both!(cancel_returns_stock_exactly_once);

async fn others_orders_are_not_found(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let item = app.item(500, 5).await;
    let r = app.order(&ann, &[(&item, 1)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/v1/orders/{id}"),
        format!("/v1/orders/{id}/events"),
    ] {
        let r = app.get(&path, &bob).await;
        r.assert_problem(404, "not_found");
        assert!(!r.text.contains(&id));
    }
    app.post(&format!("/v1/orders/{id}/cancel"), &bob, json!({}))
        .await
        .assert_problem(404, "not_found");
    app.post(
        &format!("/v1/orders/{id}/payments"),
        &bob,
        json!({"payment_method": "pm_card_visa"}),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(
        app.get(&format!("/v1/orders/{id}"), &ann).await.body["status"],
        "created"
    );
    assert_eq!(app.stock(&item).await, 4);
}
both!(others_orders_are_not_found);

async fn tracking_is_refused_where_it_makes_no_sense(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let staff = app.staff().await;
    let item = app.item(500, 5).await;
    let r = app.order(&token, &[(&item, 1)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orders/{id}/tracking");
    app.post(&path, &staff, json!({"description": "scan"}))
        .await
        .assert_problem(409, "invalid_transition");
    app.post(
        &format!("/v1/orders/{id}/payments"),
        &token,
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    let r = app
        .post(
            &path,
            &staff,
            json!({"description": "scan", "carrier_status": "teleported"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["carrier_status"]);
    let r = app
        .post(
            &path,
            &staff,
            json!({"description": "scan", "estimated_delivery": "tomorrow"}),
        )
        .await;
    assert_eq!(r.fields(), vec!["estimated_delivery"]);
    app.post(&path, &token, json!({"description": "scan"}))
        .await
        .assert_problem(403, "forbidden");
    let (_, key) = app.api_key(&["tracking:write"]).await;
    let r = app
        .post(
            &path,
            &key,
            json!({"description": "Label created", "carrier_status": "pre_transit"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["carrier_status"], "info_received");
    // Unknown order.
    let unknown = uuid::Uuid::now_v7();
    app.post(
        &format!("/v1/orders/{unknown}/tracking"),
        &staff,
        json!({"description": "x"}),
    )
    .await
    .assert_problem(404, "not_found");
}
both!(tracking_is_refused_where_it_makes_no_sense);

/// Two payment calls for one order at once: one is charged, the other is refused with 409
/// before it reaches the gateway.
async fn concurrent_payments_charge_once(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.simulated_gateway_latency = Duration::from_millis(300)
    })
    .await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(500, 4).await;
    let r = app.order(&token, &[(&item, 1)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orders/{id}/payments");
    let (x, y) = tokio::join!(
        app.post(&path, &token, json!({"payment_method": "pm_card_visa"})),
        app.post(&path, &token, json!({"payment_method": "pm_card_visa"})),
    );
    let mut statuses = [x.status.as_u16(), y.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", x.text, y.text);
    let loser = if x.status == StatusCode::CONFLICT {
        &x
    } else {
        &y
    };
    loser.assert_problem(409, "conflict");
    let metrics = app.metrics().await;
    assert!(metrics.contains("ordo_payments_total"), "{metrics}");
    let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let placed = ev.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["status"] == "placed")
        .count();
    assert_eq!(placed, 1);
}
both!(concurrent_payments_charge_once);

/// A refund the gateway refuses at first is retried in the background until it goes
/// through; the order is canceled at once and shows `refunded` once the money is back.
async fn failed_refunds_are_retried_until_they_succeed(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(500, 4).await;
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_sim_refund_fails_3"}),
        )
        .await;
    assert_eq!(r.body["payment_status"], "paid", "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let c = app
        .post(&format!("/v1/orders/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.body["status"], "canceled");
    // The gateway refused the refund (three attempts): still owed.
    assert_eq!(c.body["payment_status"], "paid");
    assert_eq!(app.stock(&item).await, 4);
    // The saga retries on its clock, backing off: move time along while waiting.
    let refunded = app
        .eventually(Duration::from_secs(15), || async {
            app.advance(Duration::from_secs(10));
            app.get(&format!("/v1/orders/{id}"), &token).await.body["payment_status"] == "refunded"
        })
        .await;
    assert!(refunded, "the refund was not retried");
    let steps = app.get(&format!("/v1/orders/{id}/payments"), &token).await;
    assert_eq!(steps.status, StatusCode::OK, "{}", steps.text);
    let refund = steps.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "refund")
        .unwrap()
        .clone();
    assert_eq!(refund["status"], "succeeded", "{refund}");
    // One try refused (after the gateway client's own retries), then one that went through.
    assert_eq!(refund["attempts"], 2, "{refund}");
    assert_eq!(refund["idempotency_key"], format!("refund-{id}"));
    let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let refunds = ev.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["note"] == "payment refunded")
        .count();
    assert_eq!(refunds, 1);
}
both!(failed_refunds_are_retried_until_they_succeed);
