//! "Bought together" and a customer's recommendations, from the co-purchase counts the
//! event-log consumer keeps, on both backends.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp};

/// Places and pays one order of these items (one each) for `token`'s customer.
async fn buy(app: &TestApp, token: &str, items: &[&str]) {
    let lines: Vec<Value> = items
        .iter()
        .map(|i| json!({"item_id": i, "quantity": 1}))
        .collect();
    let r = app
        .post(
            "/v1/orders",
            token,
            json!({"items": lines, "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(r.body["status"], "placed", "{}", r.text);
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `path` answers with exactly these item ids (the consumer is asynchronous).
async fn until_ids(app: &TestApp, token: &str, path: &str, want: &[&str]) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    let came = app
        .eventually(Duration::from_secs(10), || async {
            let r = app.get(path, token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let done = ids(&r.body) == want;
            *last.lock().unwrap() = r.body;
            done
        })
        .await;
    let last = last.into_inner().unwrap();
    assert!(came, "{path}: wanted {want:?}, got {last}");
    last
}

struct Shop {
    a: String,
    b: String,
    c: String,
    d: String,
    e: String,
}

/// 3 orders of A+B, 2 of A+C, 1 of A+D, 2 of A+E, and 6 of E alone (a best-seller).
async fn history(app: &TestApp, token: &str) -> Shop {
    let mut ids = Vec::new();
    for name in ["Alpha", "Bravo", "Charlie", "Delta", "Echo"] {
        ids.push(
            app.item_with(json!({"name": name, "price": 100, "stock": 1000}))
                .await,
        );
    }
    let [a, b, c, d, e]: [String; 5] = ids.try_into().unwrap();
    for _ in 0..3 {
        buy(app, token, &[&a, &b]).await;
    }
    for _ in 0..2 {
        buy(app, token, &[&a, &c]).await;
        buy(app, token, &[&e, &a]).await;
    }
    buy(app, token, &[&a, &d]).await;
    for _ in 0..6 {
        buy(app, token, &[&e]).await;
    }
    Shop { a, b, c, d, e }
}

/// Cosine ranking: B (3 of A's 8 orders, in 3) before C (2 of 8, in 2) before the
/// best-seller E (2 of 8, but in 8); D (once) is under the minimum support. Out of stock
/// leaves the list at once; more orders move the counts on as they are placed.
async fn bought_together_is_normalised_and_current(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, buyer) = app.customer("buyer").await;
    let s = history(&app, &buyer).await;
    let (_, viewer) = app.customer("viewer").await;
    let path = format!("/v1/items/{}/bought-together", s.a);
    until_ids(&app, &viewer, &path, &[&s.b, &s.c, &s.e]).await;
    // From the other side: B's only partner is A.
    until_ids(
        &app,
        &viewer,
        &format!("/v1/items/{}/bought-together", s.b),
        &[&s.a],
    )
    .await;
    // Out of stock: left out at once.
    app.patch(
        &format!("/v1/items/{}", s.c),
        &app.admin_token,
        json!({"stock": 0}),
    )
    .await;
    let r = app.get(&path, &viewer).await;
    assert_eq!(ids(&r.body), vec![s.b.clone(), s.e.clone()]);
    // A second A+D order gives D the support it needed.
    buy(&app, &buyer, &[&s.d, &s.a]).await;
    until_ids(&app, &viewer, &path, &[&s.b, &s.d, &s.e]).await;
    // Orders that were never paid do not count.
    let f = app.item(100, 100).await;
    for _ in 0..3 {
        let r = app.order(&buyer, &[(&s.a, 1), (&f, 1)]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    buy(&app, &buyer, &[&s.b, &s.a]).await;
    let r = until_ids(&app, &viewer, &path, &[&s.b, &s.d, &s.e]).await;
    assert_eq!(r["data"][0]["name"], "Bravo");
    // The limit.
    let r = app.get(&format!("{path}?limit=1"), &viewer).await;
    assert_eq!(ids(&r.body), vec![s.b.clone()]);
    // A customer who bought B is not offered B.
    let (_, has_b) = app.customer("has-b").await;
    buy(&app, &has_b, &[&s.b]).await;
    let r = app.get(&path, &has_b).await;
    assert_eq!(ids(&r.body), vec![s.d.clone(), s.e.clone()]);
    if b == Backend::Postgres {
        // Another node keeps the neighbour lists it read; counts changed through this
        // node reach it as soon as the consumer has counted them.
        let other = app.another_node(|_| {}).await;
        until_ids(&other, &viewer, &path, &[&s.b, &s.d, &s.e]).await;
        let g = app
            .item_with(json!({"name": "Golf", "price": 100, "stock": 1000}))
            .await;
        for _ in 0..5 {
            buy(&app, &buyer, &[&s.a, &g]).await;
        }
        // A is in 15 orders: G 5/√75, B 4/√75, D 2/√30, E 2/√120.
        until_ids(&other, &viewer, &path, &[&g, &s.b, &s.d, &s.e]).await;
    }
}
both!(bought_together_is_normalised_and_current);

/// A customer's recommendations come from what it bought and wished for, never offer
/// what it bought, and are the best-sellers when it has no history.
async fn customer_recommendations_follow_history(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, buyer) = app.customer("buyer").await;
    let s = history(&app, &buyer).await;
    // No history: the best-sellers (A and E are in 8 orders each), in stock.
    let (newcomer_id, newcomer) = app.customer("new").await;
    let ok = app
        .eventually(Duration::from_secs(10), || {
            let r = app.get("/v1/users/me/recommendations", &newcomer);
            async {
                let r = r.await;
                r.body["basis"] == "popular" && ids(&r.body).len() == 5
            }
        })
        .await;
    assert!(ok);
    let r = app
        .get("/v1/users/me/recommendations?limit=2", &newcomer)
        .await;
    let mut top = ids(&r.body);
    top.sort();
    let mut want = vec![s.a.clone(), s.e.clone()];
    want.sort();
    assert_eq!(top, want, "{}", r.text);
    // Wishing for B: A is bought with it.
    let r = app
        .post("/v1/users/me/wishlist", &newcomer, json!({"item_id": s.b}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app.get("/v1/users/me/recommendations", &newcomer).await;
    assert_eq!(r.body["basis"], "bought_together", "{}", r.text);
    assert_eq!(ids(&r.body), vec![s.a.clone()]);
    // Buying A: its partners, never A or B (bought, wished), and C's stock gone.
    buy(&app, &newcomer, &[&s.a]).await;
    app.patch(
        &format!("/v1/items/{}", s.c),
        &app.admin_token,
        json!({"stock": 0}),
    )
    .await;
    let r = app.get("/v1/users/me/recommendations", &newcomer).await;
    assert_eq!(r.body["basis"], "bought_together");
    assert_eq!(ids(&r.body), vec![s.e.clone()]);
    // Staff may look at anybody's; other customers may not; bad limits are 422.
    let staff = app.staff().await;
    let r = app
        .get(&format!("/v1/users/{newcomer_id}/recommendations"), &staff)
        .await;
    assert_eq!(ids(&r.body), vec![s.e.clone()], "{}", r.text);
    app.get(&format!("/v1/users/{newcomer_id}/recommendations"), &buyer)
        .await
        .assert_problem(404, "not_found");
    for bad in ["0", "51", "x", "-1"] {
        let r = app
            .get(
                &format!("/v1/users/me/recommendations?limit={bad}"),
                &newcomer,
            )
            .await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.fields(), vec!["limit"]);
    }
    // A canceled order still says what the customer wanted: its items stay out. And a new
    // order is seen at once by every node (on PostgreSQL another node kept the old items).
    let other = match b {
        Backend::Postgres => {
            let other = app.another_node(|_| {}).await;
            let r = other.get("/v1/users/me/recommendations", &newcomer).await;
            assert_eq!(ids(&r.body), vec![s.e.clone()], "{}", r.text);
            Some(other)
        }
        Backend::Sqlite => None,
    };
    let r = app.order(&newcomer, &[(&s.e, 1)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let order = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(&format!("/v1/orders/{order}/cancel"), &newcomer, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for node in [Some(&app), other.as_ref()].into_iter().flatten() {
        let r = node.get("/v1/users/me/recommendations", &newcomer).await;
        assert_eq!(r.body["basis"], "popular", "{}", r.text);
        assert_eq!(ids(&r.body), vec![s.d.clone()], "{}", r.text);
    }
}
both!(customer_recommendations_follow_history);

/// Unknown items are 404; callers need a token and the right scopes.
async fn recommendations_refuse_bad_requests(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 10).await;
    for path in [
        format!("/v1/items/{}/bought-together", uuid::Uuid::new_v4()),
        "/v1/items/nope/bought-together".to_owned(),
        "/v1/users/nope/recommendations".to_owned(),
        format!("/v1/users/{}/recommendations", uuid::Uuid::new_v4()),
    ] {
        app.get(&path, &token)
            .await
            .assert_problem(404, "not_found");
    }
    let r = app
        .get(&format!("/v1/items/{item}/bought-together"), &token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"], json!([]));
    app.get(
        &format!("/v1/items/{item}/bought-together?limit=100"),
        &token,
    )
    .await
    .assert_problem(422, "validation_failed");
    app.send(
        reqwest::Method::GET,
        &format!("/v1/items/{item}/bought-together"),
        None,
        None,
    )
    .await
    .assert_problem(401, "unauthorized");
    let (_, key) = app.api_key(&["orders:read"]).await;
    app.get(&format!("/v1/items/{item}/bought-together"), &key)
        .await
        .assert_problem(403, "forbidden");
    app.get("/v1/users/me/recommendations", &key)
        .await
        .assert_problem(404, "not_found");
}
both!(recommendations_refuse_bad_requests);
