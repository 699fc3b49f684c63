//! Group commit: orders placed together in one transaction are each decided as if they
//! had been placed one after another. The batches here are formed by the test (through
//! `OrderStore::place_orders`, which the group-commit workers run), so that every mix
//! of answers is certain to share one transaction.

use std::sync::Arc;
use std::time::Duration;

use ordo::orders::store::{NewOrder, PlaceOutcome};
use ordo::storage::{Error as StoreError, Ts};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::both;
use crate::helpers::{Backend, TestApp};

fn new_order(app: &TestApp, customer: Uuid, lines: Vec<(Uuid, i32)>) -> NewOrder {
    let now = Ts::truncated(app.clock_now());
    NewOrder {
        id: Uuid::now_v7(),
        customer_id: customer,
        lines,
        shipping_address: Some(json!({"line1": "1 Main St", "city": "Springfield"})),
        payment_method: None,
        created_at: now,
        expires_at: Ts::truncated(app.clock_now() + Duration::from_secs(900)),
        charge_due_at: now,
        actor: format!("user:{customer}"),
        cart_version: None,
    }
}

fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

fn placed(outcome: &Result<PlaceOutcome, StoreError>) -> i64 {
    match outcome {
        Ok(PlaceOutcome::Placed(rec)) => rec.order.total_amount,
        other => panic!("expected a placed order, got {other:?}"),
    }
}

/// One batch with every kind of answer: each order gets its own, the refused ones
/// reserve nothing, and the placed ones are stored whole (lines, total, timeline, charge).
async fn each_order_of_a_batch_gets_its_own_answer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let lamp = id(&app.item(250, 5).await);
    let bulb = id(&app.item(40, 100).await);
    let euro = id(&app
        .item_with(json!({"price": 900, "currency": "EUR", "stock": 9}))
        .await);
    let (ann, ann_token) = app.customer("ann").await;
    let ann = id(&ann);
    let ghost = Uuid::now_v7();

    let mut paying = new_order(&app, ann, vec![(bulb, 2), (lamp, 3)]);
    paying.payment_method = Some("pm_card_visa".into());
    let batch = vec![
        paying.clone(),
        // 2 lamps are left: the second line cannot be had, and the first is not taken.
        new_order(&app, ann, vec![(bulb, 1), (lamp, 3)]),
        new_order(&app, ann, vec![(bulb, 1), (ghost, 1)]),
        new_order(&app, ann, vec![(bulb, 1), (euro, 1)]),
        NewOrder {
            shipping_address: Some(json!("Pick up at the counter")),
            ..new_order(&app, ann, vec![(lamp, 2)])
        },
        // Nothing is left of the lamp now.
        new_order(&app, ann, vec![(lamp, 1)]),
        // Takes every euro unit: the order before was refused for its currency, which a
        // later order in the batch does not change.
        new_order(&app, ann, vec![(euro, 9)]),
    ];
    let ids: Vec<Uuid> = batch.iter().map(|o| o.id).collect();
    let outcomes = app.state.store.place_orders(batch).await;
    assert_eq!(outcomes.len(), 7);
    assert_eq!(placed(&outcomes[0]), 2 * 40 + 3 * 250);
    assert!(
        matches!(outcomes[1], Ok(PlaceOutcome::InsufficientStock(1))),
        "{:?}",
        outcomes[1]
    );
    assert!(
        matches!(outcomes[2], Ok(PlaceOutcome::UnknownItem(1))),
        "{:?}",
        outcomes[2]
    );
    assert!(
        matches!(outcomes[3], Ok(PlaceOutcome::MixedCurrencies)),
        "{:?}",
        outcomes[3]
    );
    assert_eq!(placed(&outcomes[4]), 500);
    assert!(
        matches!(outcomes[5], Ok(PlaceOutcome::InsufficientStock(0))),
        "{:?}",
        outcomes[5]
    );
    assert_eq!(placed(&outcomes[6]), 8100);

    // Stock moved by the placed orders only.
    assert_eq!(app.stock(&lamp.to_string()).await, 0);
    assert_eq!(app.stock(&bulb.to_string()).await, 98);
    assert_eq!(app.stock(&euro.to_string()).await, 0);

    // The placed orders are stored whole, with their lines in the customer's order.
    let first = app.get(&format!("/v1/orders/{}", ids[0]), &ann_token).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["status"], "created");
    assert_eq!(first.body["total_amount"], 830);
    assert_eq!(first.body["items"][0]["item_id"], bulb.to_string());
    assert_eq!(first.body["items"][1]["item_id"], lamp.to_string());
    assert_eq!(first.body["items"][1]["line_total"], 750);
    assert_eq!(
        first.body["shipping_address"],
        json!({"line1": "1 Main St", "city": "Springfield"})
    );
    let history = app
        .get(&format!("/v1/orders/{}/events", ids[0]), &ann_token)
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    assert_eq!(
        history.body["data"][0]["data"]["status"], "created",
        "{}",
        history.text
    );
    let fifth = app.get(&format!("/v1/orders/{}", ids[4]), &ann_token).await;
    assert_eq!(fifth.body["shipping_address"], "Pick up at the counter");
    // The refused ones left nothing behind.
    for refused in [ids[1], ids[2], ids[3], ids[5]] {
        let r = app.get(&format!("/v1/orders/{refused}"), &ann_token).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    }
    let list = app.get("/v1/orders?limit=50", &ann_token).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 3);

    // The paying order's charge started with it: the saga takes it from here.
    app.order_becomes(
        &ann_token,
        &ids[0].to_string(),
        "status",
        "placed",
        Duration::from_secs(10),
    )
    .await;
}
both!(each_order_of_a_batch_gets_its_own_answer);

/// An order the database refuses outright (its customer does not exist) does not cost
/// the others in its batch their place, and is answered as on its own.
async fn a_database_refusal_in_a_batch_fails_only_its_order(b: Backend) {
    let app = TestApp::spawn(b).await;
    let lamp = id(&app.item(250, 10).await);
    let (ann, _) = app.customer("ann").await;
    let ann = id(&ann);
    let batch = vec![
        new_order(&app, ann, vec![(lamp, 1)]),
        new_order(&app, Uuid::now_v7(), vec![(lamp, 1)]),
        new_order(&app, ann, vec![(lamp, 2)]),
    ];
    let outcomes = app.state.store.place_orders(batch).await;
    assert_eq!(placed(&outcomes[0]), 250);
    assert!(
        matches!(outcomes[1], Err(StoreError::ForeignKey)),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(placed(&outcomes[2]), 500);
    assert_eq!(app.stock(&lamp.to_string()).await, 7);
}
both!(a_database_refusal_in_a_batch_fails_only_its_order);

/// Two checkouts of one cart in one batch: the first empties the cart, the second finds
/// it changed and orders nothing.
async fn two_checkouts_of_one_cart_in_a_batch_order_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let lamp = app.item(250, 10).await;
    let (ann, token) = app.customer("ann").await;
    let r = app
        .post(
            "/v1/users/me/cart",
            &token,
            json!({"item_id": lamp, "quantity": 2}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let ann = id(&ann);
    let cart = app.state.shop.cart(ann).await.unwrap();
    let lines: Vec<(Uuid, i32)> = cart.lines.iter().map(|l| (l.item_id, l.quantity)).collect();
    let checkout = || NewOrder {
        cart_version: Some(cart.version),
        ..new_order(&app, ann, lines.clone())
    };
    let outcomes = app
        .state
        .store
        .place_orders(vec![checkout(), checkout()])
        .await;
    assert_eq!(placed(&outcomes[0]), 500);
    assert!(
        matches!(outcomes[1], Ok(PlaceOutcome::CartChanged)),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(app.stock(&lamp).await, 8);
    let after = app.state.shop.cart(ann).await.unwrap();
    assert!(after.lines.is_empty());
    assert!(after.version > cart.version);
}
both!(two_checkouts_of_one_cart_in_a_batch_order_once);

/// Through HTTP, under load: concurrent buyers over overlapping items, with good and bad
/// orders mixed (so that batches hold both), sell exactly the stock there is.
async fn concurrent_good_and_bad_orders_balance(b: Backend) {
    let app = Arc::new(TestApp::spawn(b).await);
    let hot = app.item(100, 40).await;
    let cold = app.item(10, 1000).await;
    let (_, token) = app.customer("ann").await;
    let ghost = Uuid::now_v7().to_string();
    let tasks: Vec<_> = (0..160)
        .map(|i| {
            let app = app.clone();
            let (token, hot, cold, ghost) =
                (token.clone(), hot.clone(), cold.clone(), ghost.clone());
            tokio::spawn(async move {
                let r = match i % 4 {
                    0 => app.order(&token, &[(&cold, 1), (&hot, 1)]).await,
                    1 => app.order(&token, &[(&hot, 1)]).await,
                    2 => app.order(&token, &[(&cold, 2), (&ghost, 1)]).await,
                    _ => app.order(&token, &[(&cold, 1)]).await,
                };
                (i % 4, r)
            })
        })
        .collect();
    let (mut hot_sold, mut cold_sold) = (0, 0);
    for t in tasks {
        let (kind, r) = t.await.unwrap();
        match (kind, r.status) {
            (0, StatusCode::CREATED) => {
                hot_sold += 1;
                cold_sold += 1;
            }
            (1, StatusCode::CREATED) => hot_sold += 1,
            (0 | 1, _) => r.assert_problem(409, "insufficient_stock"),
            (2, _) => r.assert_problem(422, "validation_failed"),
            (_, StatusCode::CREATED) => cold_sold += 1,
            (_, s) => panic!("a plain order failed: {s} {}", r.text),
        }
    }
    assert_eq!(hot_sold, 40);
    assert_eq!(app.stock(&hot).await, 0);
    assert_eq!(app.stock(&cold).await, 1000 - cold_sold);
}
both!(concurrent_good_and_bad_orders_balance);

/// Transitions share batches too: every order cancelled twice at once (so that both
/// cancellations of an order may land in one batch) is cancelled once, gives its units
/// back once, and has one `canceled` entry in its timeline; paid checkouts racing them
/// end `placed` with their charge recorded.
async fn racing_transitions_in_batches_apply_once(b: Backend) {
    let app = Arc::new(TestApp::spawn(b).await);
    let a = app.item(100, 100).await;
    let c = app.item(100, 100).await;
    let (_, token) = app.customer("ann").await;
    let mut open = Vec::new();
    for i in 0..30 {
        let lines: Vec<(&str, i64)> = if i % 2 == 0 {
            vec![(&a, 1), (&c, 2)]
        } else {
            vec![(&c, 1)]
        };
        let r = app.order(&token, &lines).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        open.push(r.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(app.stock(&a).await, 85);
    assert_eq!(app.stock(&c).await, 55);
    let mut tasks = Vec::new();
    for id in &open {
        for _ in 0..2 {
            let (app, token, id) = (app.clone(), token.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let r = app
                    .post(&format!("/v1/orders/{id}/cancel"), &token, json!({}))
                    .await;
                (id, r)
            }));
        }
    }
    let paying: Vec<_> = (0..30)
        .map(|_| {
            let (app, token, a) = (app.clone(), token.clone(), a.clone());
            tokio::spawn(async move {
                app.post(
                    "/v1/orders",
                    &token,
                    json!({"items": [{"item_id": a, "quantity": 1}], "payment_method": "pm_card_visa"}),
                )
                .await
            })
        })
        .collect();
    let mut cancelled = std::collections::HashMap::<String, usize>::new();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        if r.status == StatusCode::OK {
            *cancelled.entry(id).or_default() += 1;
        } else {
            r.assert_problem(409, "invalid_transition");
        }
    }
    assert_eq!(cancelled.len(), 30);
    assert!(cancelled.values().all(|n| *n == 1), "{cancelled:?}");
    for t in paying {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["status"], "placed", "{}", r.text);
        assert_eq!(r.body["payment_status"], "paid", "{}", r.text);
        let id = r.body["id"].as_str().unwrap();
        let pay = app.get(&format!("/v1/orders/{id}/payments"), &token).await;
        assert_eq!(pay.body["data"][0]["status"], "succeeded", "{}", pay.text);
    }
    // Every unit of the cancelled orders came back, once; the paid ones hold theirs.
    assert_eq!(app.stock(&a).await, 70);
    assert_eq!(app.stock(&c).await, 100);
    for id in &open {
        let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
        let cancels = ev.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["status"] == "canceled")
            .count();
        assert_eq!(cancels, 1, "{}", ev.text);
    }
}
both!(racing_transitions_in_batches_apply_once);
