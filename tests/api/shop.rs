//! The cart, checkout from the cart and the wishlist, on both backends.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, Resp, TestApp, order_lines};

async fn add(app: &TestApp, token: &str, item: &str, quantity: i64) -> Resp {
    app.post(
        "/v1/users/me/cart",
        token,
        json!({"item_id": item, "quantity": quantity}),
    )
    .await
}

async fn remove(app: &TestApp, token: &str, item: &str) {
    let r = app
        .send(
            Method::DELETE,
            &format!("/v1/users/me/cart/{item}"),
            Some(token),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
}

async fn cart(app: &TestApp, token: &str) -> Value {
    let r = app.get("/v1/users/me/cart", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

async fn checkout(app: &TestApp, token: &str, body: Value) -> Resp {
    app.post("/v1/users/me/cart/checkout", token, body).await
}

async fn order_count(app: &TestApp, token: &str) -> usize {
    let r = app.get("/v1/orders?limit=200", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["data"].as_array().unwrap().len()
}

/// Adding adds to the line, quantity 0 and DELETE remove, and the lines show the item as
/// it is now: name, SKU, price, and whether stock still covers the line.
async fn cart_lines_follow_the_items(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let empty = cart(&app, &token).await;
    assert_eq!(empty["items"], json!([]));
    assert_eq!(empty["total_amount"], 0);
    assert_eq!(empty["currency"], Value::Null);

    let lamp = app
        .item_with(json!({"name": "Desk lamp", "sku": "LAMP-1", "price": 2500, "stock": 5}))
        .await;
    let bulb = app.item(300, 100).await;
    let r = add(&app, &token, &lamp, 2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = add(&app, &token, &lamp, 1).await;
    assert_eq!(
        r.body["items"][0]["quantity"], 3,
        "adds to the line: {}",
        r.text
    );
    assert_eq!(r.body["items"][0]["sku"], "LAMP-1");
    assert_eq!(r.body["items"][0]["name"], "Desk lamp");
    assert_eq!(r.body["items"][0]["line_total"], 7500);
    assert_eq!(r.body["items"][0]["available"], true);
    add(&app, &token, &bulb, 4).await;
    let c = cart(&app, &token).await;
    assert_eq!(c["items"].as_array().unwrap().len(), 2);
    assert_eq!(c["total_amount"], 7500 + 1200);
    assert_eq!(c["currency"], "USD");

    // Price and name changes show at once; stock that no longer covers the line says so.
    let r = app
        .patch(
            &format!("/v1/items/{lamp}"),
            &app.admin_token,
            json!({"price": 2000, "name": "Lamp", "stock": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = cart(&app, &token).await;
    assert_eq!(c["items"][0]["unit_price"], 2000);
    assert_eq!(c["items"][0]["name"], "Lamp");
    assert_eq!(c["items"][0]["available"], false);
    assert_eq!(c["total_amount"], 6000 + 1200);

    // PUT sets the quantity; quantity 0 removes; DELETE removes (twice is fine).
    let r = app
        .send(
            Method::PUT,
            &format!("/v1/users/me/cart/{lamp}"),
            Some(&token),
            Some(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(r.body["items"][0]["quantity"], 2, "{}", r.text);
    assert_eq!(r.body["items"][0]["available"], true);
    let r = add(&app, &token, &lamp, 0).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.body["items"][0]["item_id"], bulb.as_str());
    for _ in 0..2 {
        let r = app
            .send(
                Method::DELETE,
                &format!("/v1/users/me/cart/{bulb}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["items"], json!([]));
    }
}
both!(cart_lines_follow_the_items);

/// Bad input is a clear 4xx that names the field, and changes nothing.
async fn cart_refuses_bad_input(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("bo").await;
    let item = app.item(100, 10).await;
    add(&app, &token, &item, 999).await;
    for (body, field) in [
        (json!({"item_id": item, "quantity": 2}), "quantity"),
        (json!({"item_id": item, "quantity": -1}), "quantity"),
        (json!({"item_id": item, "quantity": 1001}), "quantity"),
        (json!({"item_id": item, "quantity": "2"}), "quantity"),
        (json!({"item_id": item, "quantity": 1.5}), "quantity"),
        (json!({"item_id": item}), "quantity"),
        (
            json!({"item_id": uuid::Uuid::new_v4().to_string(), "quantity": 1}),
            "item_id",
        ),
        (json!({"item_id": "not-an-id", "quantity": 1}), "item_id"),
        (json!({"quantity": 1}), "item_id"),
        (
            json!({"item_id": item, "quantity": 1, "extra": true}),
            "extra",
        ),
    ] {
        let r = app.post("/v1/users/me/cart", &token, body.clone()).await;
        r.assert_problem(422, "validation_failed");
        assert!(r.fields().iter().any(|f| f == field), "{body}: {}", r.text);
    }
    let r = app
        .send(Method::POST, "/v1/users/me/cart", Some(&token), None)
        .await;
    r.assert_problem(400, "invalid_json");
    // The cart is as it was.
    let c = cart(&app, &token).await;
    assert_eq!(c["items"].as_array().unwrap().len(), 1);
    assert_eq!(c["items"][0]["quantity"], 999);

    // One currency per cart, as for orders.
    let euro = app.item_with(json!({"currency": "EUR"})).await;
    let r = add(&app, &token, &euro, 1).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["item_id"]);
    // PUT of an item that does not exist is 404.
    let r = app
        .send(
            Method::PUT,
            &format!("/v1/users/me/cart/{}", uuid::Uuid::new_v4()),
            Some(&token),
            Some(json!({"quantity": 1})),
        )
        .await;
    r.assert_problem(404, "not_found");
    let r = app
        .send(
            Method::DELETE,
            "/v1/users/me/cart/nonsense",
            Some(&token),
            None,
        )
        .await;
    r.assert_problem(404, "not_found");
}
both!(cart_refuses_bad_input);

/// At most 100 lines.
async fn cart_holds_at_most_100_lines(b: Backend) {
    let app = Arc::new(TestApp::spawn(b).await);
    let (_, token) = app.customer("cy").await;
    let items: Vec<String> = futures::future::join_all((0..101).map(|_| {
        let app = app.clone();
        async move { app.item(10, 5).await }
    }))
    .await;
    for item in &items[..100] {
        let r = add(&app, &token, item, 1).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = add(&app, &token, &items[100], 1).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["item_id"]);
    // Adding to a line already there is still fine.
    let r = add(&app, &token, &items[0], 1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        cart(&app, &token).await["items"].as_array().unwrap().len(),
        100
    );
}
both!(cart_holds_at_most_100_lines);

/// A customer reaches only its own cart and wishlist (anybody else's is 404); staff reach
/// any; API keys need the orders scopes; no token is 401.
async fn carts_are_private(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (ann_id, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let item = app.item(100, 10).await;
    add(&app, &ann, &item, 2).await;
    let r = app.get(&format!("/v1/users/{ann_id}/cart"), &ann).await;
    assert_eq!(r.body["items"][0]["quantity"], 2, "{}", r.text);

    for (method, path, body) in [
        (Method::GET, format!("/v1/users/{ann_id}/cart"), None),
        (
            Method::POST,
            format!("/v1/users/{ann_id}/cart"),
            Some(json!({"item_id": item, "quantity": 1})),
        ),
        (
            Method::DELETE,
            format!("/v1/users/{ann_id}/cart/{item}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/users/{ann_id}/cart/checkout"),
            Some(json!({})),
        ),
        (Method::GET, format!("/v1/users/{ann_id}/wishlist"), None),
        (
            Method::POST,
            format!("/v1/users/{ann_id}/wishlist"),
            Some(json!({"item_id": item})),
        ),
        (Method::GET, "/v1/users/not-a-user/cart".to_owned(), None),
    ] {
        let r = app.send(method.clone(), &path, Some(&bob), body).await;
        r.assert_problem(404, "not_found");
    }
    assert_eq!(cart(&app, &bob).await["items"], json!([]));
    // Nothing of Ann's changed.
    let r = app.get(&format!("/v1/users/{ann_id}/cart"), &ann).await;
    assert_eq!(r.body["items"][0]["quantity"], 2);
    assert_eq!(order_count(&app, &ann).await, 0);

    // Staff reach any cart; an unknown user is 404.
    let staff = app.staff().await;
    let r = app
        .post(
            &format!("/v1/users/{ann_id}/cart"),
            &staff,
            json!({"item_id": item, "quantity": 1}),
        )
        .await;
    assert_eq!(r.body["items"][0]["quantity"], 3, "{}", r.text);
    let r = app
        .get(&format!("/v1/users/{}/cart", uuid::Uuid::new_v4()), &staff)
        .await;
    r.assert_problem(404, "not_found");

    // API keys: reading needs orders:read, changing orders:write; `me` is nobody.
    let (_, items_key) = app.api_key(&["items:read"]).await;
    let r = app
        .get(&format!("/v1/users/{ann_id}/cart"), &items_key)
        .await;
    r.assert_problem(403, "forbidden");
    let (_, reader) = app.api_key(&["orders:read"]).await;
    let r = app.get(&format!("/v1/users/{ann_id}/cart"), &reader).await;
    assert_eq!(r.body["items"][0]["quantity"], 3, "{}", r.text);
    let r = app
        .post(
            &format!("/v1/users/{ann_id}/cart"),
            &reader,
            json!({"item_id": item, "quantity": 1}),
        )
        .await;
    r.assert_problem(403, "forbidden");
    let r = app.get("/v1/users/me/cart", &reader).await;
    r.assert_problem(404, "not_found");
    let r = app.send(Method::GET, "/v1/users/me/cart", None, None).await;
    r.assert_problem(401, "unauthorized");
}
both!(carts_are_private);

/// Checkout places one order from the cart, as `POST /v1/orders` would, and empties it.
async fn checkout_places_the_cart(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (ann_id, token) = app.customer("ann").await;
    let lamp = app.item(2500, 5).await;
    let bulb = app.item(300, 100).await;
    add(&app, &token, &lamp, 2).await;
    add(&app, &token, &bulb, 4).await;
    let r = checkout(
        &app,
        &token,
        json!({"shipping_address": {"line1": "1 Main St"}, "payment_method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "placed");
    assert_eq!(r.body["payment_status"], "paid");
    assert_eq!(r.body["customer_id"], ann_id.as_str());
    assert_eq!(r.body["total_amount"], 5000 + 1200);
    assert_eq!(r.body["shipping_address"]["line1"], "1 Main St");
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["item_id"], lamp.as_str());
    assert_eq!(items[0]["quantity"], 2);
    assert_eq!(items[1]["item_id"], bulb.as_str());
    assert_eq!(app.stock(&lamp).await, 3);
    assert_eq!(app.stock(&bulb).await, 96);
    assert_eq!(cart(&app, &token).await["items"], json!([]));
    // The order is an ordinary order.
    let id = r.body["id"].as_str().unwrap();
    let got = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(got.body["total_amount"], 6200);
    // An empty cart has nothing to check out.
    let r = checkout(&app, &token, json!({})).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["cart"]);

    // Without a body and without payment: a `created` order, as POST /v1/orders.
    add(&app, &token, &bulb, 1).await;
    let r = app
        .send(
            Method::POST,
            "/v1/users/me/cart/checkout",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "created");
    assert_eq!(order_count(&app, &token).await, 2);

    // A declined card is 201 with a canceled order, exactly as POST /v1/orders; the cart
    // went into that order.
    add(&app, &token, &bulb, 1).await;
    let r = checkout(
        &app,
        &token,
        json!({"payment_method": "pm_card_chargeCustomerFail"}),
    )
    .await;
    let direct = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": bulb, "quantity": 1}], "payment_method": "pm_card_chargeCustomerFail"}),
        )
        .await;
    assert_eq!(r.status, direct.status, "{} / {}", r.text, direct.text);
    assert_eq!(r.body["status"], direct.body["status"]);
    assert_eq!(r.body["payment_status"], direct.body["payment_status"]);

    // Staff may check out a customer's cart for it.
    add(&app, &token, &lamp, 1).await;
    let staff = app.staff().await;
    let r = checkout(&app, &staff, json!({})).await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .post(
            &format!("/v1/users/{ann_id}/cart/checkout"),
            &staff,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["customer_id"], ann_id.as_str());
    assert_eq!(cart(&app, &token).await["items"], json!([]));
}
both!(checkout_places_the_cart);

/// A checkout refused for stock, a bad card number or a bad address leaves the cart
/// exactly as it was, and reserves nothing.
async fn refused_checkout_keeps_the_cart(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let plenty = app.item(100, 50).await;
    let scarce = app.item(100, 3).await;
    add(&app, &token, &plenty, 5).await;
    add(&app, &token, &scarce, 4).await;
    let before = cart(&app, &token).await;
    assert_eq!(before["items"][1]["available"], false);
    let r = checkout(&app, &token, json!({"payment_method": "pm_card_visa"})).await;
    r.assert_problem(409, "insufficient_stock");
    assert_eq!(cart(&app, &token).await, before);
    assert_eq!(app.stock(&plenty).await, 50);
    assert_eq!(app.stock(&scarce).await, 3);
    for body in [
        json!({"payment_method": "4242 4242 4242 4242"}),
        json!({"shipping_address": 12}),
        json!({"payment_method": 7}),
        json!({"extra": 1}),
    ] {
        let r = checkout(&app, &token, body.clone()).await;
        r.assert_problem(422, "validation_failed");
    }
    let r = app
        .client
        .post(format!("{}/v1/users/me/cart/checkout", app.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(cart(&app, &token).await, before);
    assert_eq!(order_count(&app, &token).await, 0);
    // An item whose currency no longer matches cannot happen (currency is fixed), but an
    // item that sold out meanwhile is refused the same way as above; after restocking
    // the same cart checks out.
    app.patch(
        &format!("/v1/items/{scarce}"),
        &app.admin_token,
        json!({"stock": 4}),
    )
    .await;
    let r = checkout(&app, &token, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(app.stock(&scarce).await, 0);
}
both!(refused_checkout_keeps_the_cart);

/// Many checkouts of one cart at once: exactly one order, the others 409, the stock
/// taken once.
async fn concurrent_checkouts_place_one_order(b: Backend) {
    let app = Arc::new(TestApp::spawn(b).await);
    let (_, token) = app.customer("ann").await;
    let a = app.item(100, 100).await;
    let bb = app.item(100, 100).await;
    for round in 0..3 {
        add(&app, &token, &a, 2).await;
        add(&app, &token, &bb, 3).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let app = app.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    checkout(&app, &token, json!({"payment_method": "pm_card_visa"})).await
                })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            let r = t.await.unwrap();
            match r.status {
                StatusCode::CREATED => created += 1,
                StatusCode::CONFLICT => r.assert_problem(409, "conflict"),
                // A checkout that read the cart after the winner emptied it.
                _ => {
                    r.assert_problem(422, "validation_failed");
                    assert_eq!(r.fields(), vec!["cart"]);
                }
            }
        }
        assert_eq!(created, 1, "round {round}");
        assert_eq!(app.stock(&a).await, 100 - 2 * (round + 1));
        assert_eq!(app.stock(&bb).await, 100 - 3 * (round + 1));
        assert_eq!(order_count(&app, &token).await, round as usize + 1);
        assert_eq!(cart(&app, &token).await["items"], json!([]));
    }
}
both!(concurrent_checkouts_place_one_order);

/// A node checks out the cart it last read without reading it again; when the cart moved
/// on elsewhere (another node, PostgreSQL), the checkout still orders the cart as it is
/// now, never the lines the node kept. On SQLite (one node) the kept cart is the cart.
async fn checkout_orders_the_cart_as_it_is_now(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let a = app.item(100, 50).await;
    let bb = app.item(300, 50).await;
    let lines = |r: &Resp| order_lines(&r.body);
    let sorted = |mut v: Vec<(String, i64)>| {
        v.sort();
        v
    };
    // Kept and current: ordered as kept.
    add(&app, &token, &a, 2).await;
    let r = checkout(&app, &token, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(lines(&r), vec![(a.clone(), 2)]);
    if b == Backend::Postgres {
        let other = app.another_node(|_| {}).await;
        // This node keeps [a×3]; the other adds b: the order holds both.
        add(&app, &token, &a, 3).await;
        assert_eq!(add(&other, &token, &bb, 1).await.status, StatusCode::OK);
        let r = checkout(&app, &token, json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(lines(&r), sorted(vec![(a.clone(), 3), (bb.clone(), 1)]));
        assert_eq!(r.body["total_amount"], 600);
        assert_eq!(cart(&app, &token).await["items"], json!([]));
        // This node keeps [a×4]; the other removes a and adds b: only b is ordered.
        add(&app, &token, &a, 4).await;
        remove(&other, &token, &a).await;
        add(&other, &token, &bb, 2).await;
        let r = checkout(&app, &token, json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(lines(&r), vec![(bb.clone(), 2)]);
        // This node keeps [a×1]; the other empties the cart: nothing to order.
        add(&app, &token, &a, 1).await;
        remove(&other, &token, &a).await;
        let r = checkout(&app, &token, json!({})).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.fields(), vec!["cart"]);
        assert_eq!(app.stock(&a).await, 50 - 2 - 3);
        assert_eq!(app.stock(&bb).await, 50 - 1 - 2);
        assert_eq!(order_count(&app, &token).await, 3);
    }
}
both!(checkout_orders_the_cart_as_it_is_now);

/// Adding to the cart while it is checked out: either the addition made it into the
/// order, or it is still in the cart afterwards; never lost, never ordered twice.
async fn add_racing_a_checkout_is_never_lost(b: Backend) {
    let app = Arc::new(TestApp::spawn(b).await);
    let (_, token) = app.customer("ann").await;
    let a = app.item(100, 1000).await;
    let extra = app.item(100, 1000).await;
    for _ in 0..6 {
        add(&app, &token, &a, 1).await;
        let (c, added) = tokio::join!(
            {
                let app = app.clone();
                let token = token.clone();
                async move { checkout(&app, &token, json!({})).await }
            },
            {
                let app = app.clone();
                let token = token.clone();
                let extra = extra.clone();
                async move { add(&app, &token, &extra, 1).await }
            }
        );
        assert_eq!(added.status, StatusCode::OK, "{}", added.text);
        let now = cart(&app, &token).await;
        let in_cart = now["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["item_id"] == extra.as_str());
        match c.status {
            StatusCode::CREATED => {
                let in_order = c.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["item_id"] == extra.as_str());
                assert!(in_order != in_cart, "order {} cart {now}", c.text);
            }
            _ => {
                c.assert_problem(409, "conflict");
                assert!(in_cart);
                assert_eq!(now["items"].as_array().unwrap().len(), 2);
            }
        }
        // Start the next round from an empty cart.
        for item in [&a, &extra] {
            app.send(
                Method::DELETE,
                &format!("/v1/users/me/cart/{item}"),
                Some(&token),
                None,
            )
            .await;
        }
    }
    // Stock taken equals what the orders hold.
    let list = app.get("/v1/orders?limit=200", &token).await;
    let mut sold = 0;
    for o in list.body["data"].as_array().unwrap() {
        for l in o["items"].as_array().unwrap() {
            sold += l["quantity"].as_i64().unwrap();
        }
    }
    assert_eq!(2000 - app.stock(&a).await - app.stock(&extra).await, sold);
}
both!(add_racing_a_checkout_is_never_lost);

/// An `Idempotency-Key` on checkout: the retry gets the first answer again, one order.
async fn checkout_honours_idempotency_keys(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let a = app.item(100, 10).await;
    add(&app, &token, &a, 2).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = app
            .client
            .post(format!("{}/v1/users/me/cart/checkout", app.url))
            .bearer_auth(&token)
            .header("Idempotency-Key", "checkout-1")
            .json(&json!({"payment_method": "pm_card_visa"}))
            .send()
            .await
            .unwrap();
        answers.push(Resp::read(r).await);
    }
    assert_eq!(
        answers[0].status,
        StatusCode::CREATED,
        "{}",
        answers[0].text
    );
    assert_eq!(
        answers[1].status,
        StatusCode::CREATED,
        "{}",
        answers[1].text
    );
    assert_eq!(answers[0].body["id"], answers[1].body["id"]);
    assert_eq!(
        answers[1]
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(order_count(&app, &token).await, 1);
    assert_eq!(app.stock(&a).await, 8);
}
both!(checkout_honours_idempotency_keys);

/// Wishlist: add (twice is once), list with the items' details, remove; own only.
async fn wishlist_add_list_remove(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (ann_id, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let lamp = app
        .item_with(json!({"name": "Desk lamp", "price": 2500}))
        .await;
    let bulb = app.item(300, 0).await;
    let r = app
        .post("/v1/users/me/wishlist", &ann, json!({"item_id": lamp}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .post("/v1/users/me/wishlist", &ann, json!({"item_id": lamp}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    app.post(
        &format!("/v1/users/{ann_id}/wishlist"),
        &ann,
        json!({"item_id": bulb}),
    )
    .await;
    let r = app.get("/v1/users/me/wishlist", &ann).await;
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let lamp_entry = data
        .iter()
        .find(|e| e["item"]["id"] == lamp.as_str())
        .unwrap();
    assert_eq!(lamp_entry["item"]["name"], "Desk lamp");
    assert_eq!(lamp_entry["item"]["price"], 2500);
    assert!(lamp_entry["added_at"].is_string());
    // Bob sees his own (empty) wishlist and cannot touch Ann's.
    assert_eq!(
        app.get("/v1/users/me/wishlist", &bob).await.body["data"],
        json!([])
    );
    let r = app
        .send(
            Method::DELETE,
            &format!("/v1/users/{ann_id}/wishlist/{lamp}"),
            Some(&bob),
            None,
        )
        .await;
    r.assert_problem(404, "not_found");
    // Bad input.
    for body in [
        json!({"item_id": uuid::Uuid::new_v4().to_string()}),
        json!({"item_id": "x"}),
        json!({"item_id": 5}),
        json!({}),
    ] {
        let r = app.post("/v1/users/me/wishlist", &ann, body).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.fields(), vec!["item_id"]);
    }
    // Remove (twice is fine).
    for _ in 0..2 {
        let r = app
            .send(
                Method::DELETE,
                &format!("/v1/users/me/wishlist/{lamp}"),
                Some(&ann),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    }
}
both!(wishlist_add_list_remove);
