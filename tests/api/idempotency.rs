//! `Idempotency-Key` on POST: a retry gets the first answer again and the work is done once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, Resp, TestApp};

/// POSTs `body` to `path` with an `Idempotency-Key`.
async fn post_with_key(app: &TestApp, path: &str, token: &str, key: &str, body: &Value) -> Resp {
    let r = app
        .client
        .post(format!("{}{path}", app.url))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    Resp::read(r).await
}

fn replayed(r: &Resp) -> bool {
    r.headers
        .get("idempotent-replayed")
        .and_then(|v| v.to_str().ok())
        == Some("true")
}

fn order_body(item: &str, quantity: i64) -> Value {
    json!({"items": [{"item_id": item, "quantity": quantity}]})
}

async fn order_count(app: &TestApp, token: &str) -> usize {
    let r = app.get("/v1/orders?limit=200", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["data"].as_array().expect("data").len()
}

async fn a_retry_gets_the_first_answer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(250, 10).await;
    let body = order_body(&item, 3);

    let first = post_with_key(&app, "/v1/orders", &token, "order-1", &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert!(!replayed(&first), "{:?}", first.headers);
    for _ in 0..3 {
        let again = post_with_key(&app, "/v1/orders", &token, "order-1", &body).await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
        assert!(replayed(&again), "{:?}", again.headers);
        assert_eq!(again.text, first.text);
        assert_eq!(again.content_type(), first.content_type());
    }
    assert_eq!(order_count(&app, &token).await, 1);
    assert_eq!(app.stock(&item).await, 7);
    // The order is the one first answered, and it has exactly one `created` event.
    let id = first.body["id"].as_str().expect("id");
    let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    assert_eq!(ev.body["data"].as_array().expect("events").len(), 1);

    // Another body.
    let r = post_with_key(&app, "/v1/orders", &token, "order-1", &order_body(&item, 1)).await;
    r.assert_problem(422, "idempotency_key_reused");
    assert!(!replayed(&r));
    // The same key and body on another route.
    let r = post_with_key(
        &app,
        &format!("/v1/orders/{id}/cancel"),
        &token,
        "order-1",
        &body,
    )
    .await;
    r.assert_problem(422, "idempotency_key_reused");
    assert_eq!(order_count(&app, &token).await, 1);
    assert_eq!(app.stock(&item).await, 7);
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "created");

    // Without a key, every POST is new work.
    app.order(&token, &[(&item, 1)]).await;
    app.order(&token, &[(&item, 1)]).await;
    assert_eq!(order_count(&app, &token).await, 3);
    assert_eq!(app.stock(&item).await, 5);
}
both!(a_retry_gets_the_first_answer);

async fn keys_belong_to_their_caller(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let item = app.item(100, 10).await;
    let body = order_body(&item, 2);
    let a = post_with_key(&app, "/v1/orders", &ann, "shared-key", &body).await;
    let b2 = post_with_key(&app, "/v1/orders", &bob, "shared-key", &body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(b2.status, StatusCode::CREATED, "{}", b2.text);
    assert!(!replayed(&a) && !replayed(&b2));
    assert_ne!(a.body["id"], b2.body["id"]);
    assert_ne!(a.body["customer_id"], b2.body["customer_id"]);
    // With another body, too: no caller can see or spoil another's key.
    let c = post_with_key(&app, "/v1/orders", &bob, "ann-only", &order_body(&item, 1)).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
    let d = post_with_key(&app, "/v1/orders", &ann, "ann-only", &body).await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.text);
    assert!(!replayed(&d));
    assert_eq!(order_count(&app, &ann).await, 2);
    assert_eq!(order_count(&app, &bob).await, 2);
    assert_eq!(app.stock(&item).await, 10 - 2 - 2 - 1 - 2);

    // An integration is a caller of its own, even with a key customers used.
    let (_, key) = app.api_key(&["orders:write", "orders:read"]).await;
    let ann_id = a.body["customer_id"].as_str().expect("customer");
    let for_ann = json!({"items": [{"item_id": item, "quantity": 1}], "customer_id": ann_id});
    let k1 = post_with_key(&app, "/v1/orders", &key, "shared-key", &for_ann).await;
    assert_eq!(k1.status, StatusCode::CREATED, "{}", k1.text);
    assert!(!replayed(&k1));
    let k2 = post_with_key(&app, "/v1/orders", &key, "shared-key", &for_ann).await;
    assert!(replayed(&k2));
    assert_eq!(k2.text, k1.text);
}
both!(keys_belong_to_their_caller);

async fn concurrent_retries_create_one_order(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 50).await;
    let body = order_body(&item, 2);
    let answers = futures::future::join_all(
        (0..20).map(|_| post_with_key(&app, "/v1/orders", &token, "burst", &body)),
    )
    .await;
    let fresh: Vec<&Resp> = answers
        .iter()
        .filter(|r| r.status == StatusCode::CREATED && !replayed(r))
        .collect();
    assert_eq!(
        fresh.len(),
        1,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let first = fresh[0];
    for r in &answers {
        if r.status == StatusCode::CONFLICT {
            r.assert_problem(409, "conflict");
        } else {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            assert_eq!(r.text, first.text);
        }
    }
    assert_eq!(order_count(&app, &token).await, 1);
    assert_eq!(app.stock(&item).await, 48);
    // Once it is done, a retry always gets the answer.
    let r = post_with_key(&app, "/v1/orders", &token, "burst", &body).await;
    assert!(replayed(&r));
    assert_eq!(r.text, first.text);
}
both!(concurrent_retries_create_one_order);

async fn error_answers_are_replayed_too(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 1).await;
    let body = order_body(&item, 2);
    let first = post_with_key(&app, "/v1/orders", &token, "scarce", &body).await;
    first.assert_problem(409, "insufficient_stock");
    assert!(!replayed(&first));
    // Stock arrives, but the retry with the same key is the same request: same answer.
    let p = app
        .patch(
            &format!("/v1/items/{item}"),
            &app.admin_token,
            json!({"stock": 10}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let again = post_with_key(&app, "/v1/orders", &token, "scarce", &body).await;
    again.assert_problem(409, "insufficient_stock");
    assert!(replayed(&again));
    assert_eq!(again.text, first.text);
    assert_eq!(order_count(&app, &token).await, 0);
    assert_eq!(app.stock(&item).await, 10);
    // A new key is a new attempt.
    let fresh = post_with_key(&app, "/v1/orders", &token, "scarce-2", &body).await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{}", fresh.text);
    assert_eq!(app.stock(&item).await, 8);

    // A validation failure is an answer as well.
    let bad = order_body(&item, 0);
    let v1 = post_with_key(&app, "/v1/orders", &token, "invalid", &bad).await;
    v1.assert_problem(422, "validation_failed");
    let v2 = post_with_key(&app, "/v1/orders", &token, "invalid", &bad).await;
    v2.assert_problem(422, "validation_failed");
    assert!(replayed(&v2));
    assert_eq!(v2.text, v1.text);
}
both!(error_answers_are_replayed_too);

async fn keys_expire_after_a_day(b: Backend) {
    let app = TestApp::spawn(b).await;
    let email = "ann@example.com";
    let r = app
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": email, "password": "password-123", "name": "Ann"})),
        )
        .await;
    let token = r.body["access_token"].as_str().expect("token").to_owned();
    let item = app.item(100, 100).await;
    let body = order_body(&item, 1);
    let first = post_with_key(&app, "/v1/orders", &token, "daily", &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);

    // Still remembered late on the same day (tokens last an hour: sign in again).
    app.advance(Duration::from_secs(23 * 3600));
    let token = app.login(email, "password-123").await;
    let r = post_with_key(&app, "/v1/orders", &token, "daily", &body).await;
    assert!(replayed(&r), "{}", r.text);
    assert_eq!(r.text, first.text);
    post_with_key(&app, "/v1/orders", &token, "daily", &order_body(&item, 2))
        .await
        .assert_problem(422, "idempotency_key_reused");

    // A day and a second after the first use, the key starts afresh.
    app.advance(Duration::from_secs(3600 + 1));
    let token = app.login(email, "password-123").await;
    let r = post_with_key(&app, "/v1/orders", &token, "daily", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(!replayed(&r));
    assert_ne!(r.body["id"], first.body["id"]);
    // And is remembered again from then on, with its new answer.
    let again = post_with_key(&app, "/v1/orders", &token, "daily", &body).await;
    assert!(replayed(&again));
    assert_eq!(again.text, r.text);
    assert_eq!(order_count(&app, &token).await, 2);
}
both!(keys_expire_after_a_day);

async fn keys_are_validated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 10).await;
    let body = order_body(&item, 1);
    let long = "k".repeat(256);
    let r = post_with_key(&app, "/v1/orders", &token, &long, &body).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["Idempotency-Key"]);
    let r = post_with_key(&app, "/v1/orders", &token, "", &body).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(order_count(&app, &token).await, 0);
    assert_eq!(app.stock(&item).await, 10);
    // 255 characters is the longest accepted.
    let longest = "k".repeat(255);
    let r = post_with_key(&app, "/v1/orders", &token, &longest, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = post_with_key(&app, "/v1/orders", &token, &longest, &body).await;
    assert!(replayed(&r));
    assert_eq!(order_count(&app, &token).await, 1);
}
both!(keys_are_validated);

async fn any_post_is_idempotent(b: Backend) {
    let app = TestApp::spawn(b).await;
    let body =
        json!({"sku": "IDEM-1", "name": "Once", "price": 100, "currency": "USD", "stock": 5});
    let first = post_with_key(&app, "/v1/items", &app.admin_token, "item-1", &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    // Not a 409 duplicate SKU: the retry gets the creation answer.
    let again = post_with_key(&app, "/v1/items", &app.admin_token, "item-1", &body).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert!(replayed(&again));
    assert_eq!(again.text, first.text);
    let l = app.get("/v1/items", &app.admin_token).await;
    assert_eq!(l.body["data"].as_array().expect("data").len(), 1);

    // Paying: the gateway is asked once; the retry gets 200 again, not 409.
    let (_, token) = app.customer("ann").await;
    let item = first.body["id"].as_str().expect("id");
    let o = app.order(&token, &[(item, 1)]).await;
    let id = o.body["id"].as_str().expect("id");
    let pay = json!({"payment_method": "pm_card_visa"});
    let path = format!("/v1/orders/{id}/payments");
    let p1 = post_with_key(&app, &path, &token, "pay-1", &pay).await;
    assert_eq!(p1.status, StatusCode::OK, "{}", p1.text);
    assert_eq!(p1.body["status"], "placed");
    let p2 = post_with_key(&app, &path, &token, "pay-1", &pay).await;
    assert_eq!(p2.status, StatusCode::OK, "{}", p2.text);
    assert!(replayed(&p2));
    assert_eq!(p2.text, p1.text);
    let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let placed = ev.body["data"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["data"]["status"] == "placed")
        .count();
    assert_eq!(placed, 1);
    // Other methods ignore the header.
    let r = app
        .client
        .patch(format!("{}/v1/items/{item}", app.url))
        .bearer_auth(&app.admin_token)
        .header("Idempotency-Key", "item-1")
        .json(&json!({"price": 200}))
        .send()
        .await
        .expect("request");
    let r = Resp::read(r).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!replayed(&r));
    assert_eq!(r.body["price"], 200);
}
both!(any_post_is_idempotent);

/// POSTs without credentials.
async fn anonymous_post_with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> Resp {
    let r = app
        .client
        .post(format!("{}{path}", app.url))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    Resp::read(r).await
}

async fn a_rate_limited_answer_is_not_kept(b: Backend) {
    let app = TestApp::spawn(b).await;
    let login = json!({"email": "ann@example.com", "password": "password-123"});
    app.send(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(json!({"email": "ann@example.com", "password": "password-123", "name": "Ann"})),
    )
    .await;
    for _ in 0..10 {
        app.send(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "ann@example.com", "password": "wrong-password"})),
        )
        .await
        .assert_problem(401, "unauthorized");
    }
    let first = anonymous_post_with_key(&app, "/v1/auth/login", "login-1", &login).await;
    first.assert_problem(429, "rate_limited");
    assert!(first.headers.get("retry-after").is_some());
    // "Try again later" is not the outcome of the request: doing as told must work.
    app.advance(Duration::from_secs(15 * 60 + 1));
    let later = anonymous_post_with_key(&app, "/v1/auth/login", "login-1", &login).await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.text);
    assert!(!replayed(&later));
}
both!(a_rate_limited_answer_is_not_kept);

async fn anonymous_callers_do_not_share_keys(b: Backend) {
    let app = TestApp::spawn(b).await;
    // Two people sign up; their apps happen to use the same key.
    let ann = json!({"email": "ann@example.com", "password": "password-123", "name": "Ann"});
    let bob = json!({"email": "bob@example.com", "password": "password-456", "name": "Bob"});
    let a = anonymous_post_with_key(&app, "/v1/auth/register", "signup-1", &ann).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let b2 = anonymous_post_with_key(&app, "/v1/auth/register", "signup-1", &bob).await;
    assert_eq!(b2.status, StatusCode::CREATED, "{}", b2.text);
    assert_eq!(b2.body["user"]["email"], "bob@example.com");
}
both!(anonymous_callers_do_not_share_keys);
