//! Bad requests get precise problem answers (never a 500): broken JSON, wrong types,
//! missing and unknown fields, oversized bodies, unknown routes, and hostile strings.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, Resp, TestApp};

/// Percent-encodes everything but unreserved characters: safe in a path and in a query.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends `body` as it is, with a JSON content type.
async fn raw(app: &TestApp, method: Method, path: &str, token: &str, body: Vec<u8>) -> Resp {
    let r = app
        .client
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    Resp::read(r).await
}

/// POSTs `chunks` chunks of `size` bytes over a plain socket with `Transfer-Encoding:
/// chunked`; returns the status and the whole answer.
async fn chunked_post(
    app: &TestApp,
    path: &str,
    token: &str,
    chunks: usize,
    size: usize,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    let mut first = b"{\"items\": [], \"pad\": \"".to_vec();
    first.resize(size, b'y');
    for i in 0..chunks {
        let chunk = if i == 0 {
            first.clone()
        } else {
            vec![b'y'; size]
        };
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        // The server may answer and stop reading before the end.
        if s.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn broken_json_is_400(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 5).await;
    let item_path = format!("/v1/items/{item}");
    for (method, path) in [
        (Method::POST, "/v1/orders"),
        (Method::POST, "/v1/items"),
        (Method::PATCH, item_path.as_str()),
        (Method::POST, "/v1/auth/login"),
        (Method::POST, "/v1/auth/register"),
    ] {
        for body in [
            &b"{"[..],
            b"{\"items\": [",
            b"not json",
            b"{\"a\": 1,}",
            b"{'single': 'quotes'}",
            b"\xff\xfe",
            b"",
        ] {
            let r = raw(&app, method.clone(), path, &app.admin_token, body.to_vec()).await;
            r.assert_problem(400, "invalid_json");
            assert!(r.body["title"].is_string() && r.body["detail"].is_string());
            assert!(r.body["type"].is_string());
        }
    }
    // Nothing was created by any of them.
    assert_eq!(app.stock(&item).await, 5);
    let l = app.get("/v1/orders", &token).await;
    assert_eq!(l.body["data"], json!([]));
}
both!(broken_json_is_400);

/// Posts every `(path, body, field)` case and returns those not answered 422 naming exactly
/// that field.
async fn misnamed(app: &TestApp, token: &str, cases: Vec<(&str, Value, &str)>) -> Vec<String> {
    let mut wrong = Vec::new();
    for (path, body, field) in cases {
        let tok = if path == "/v1/items" {
            app.admin_token.as_str()
        } else {
            token
        };
        let r = app.post(path, tok, body.clone()).await;
        r.assert_problem(422, "validation_failed");
        if r.fields() != vec![field] {
            wrong.push(format!(
                "{path} {body}: expected [{field}], got {:?}",
                r.fields()
            ));
        }
    }
    wrong
}

async fn wrong_types_name_the_field(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 5).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/orders",
            json!({"items": [{"item_id": item, "quantity": "2"}]}),
            "items[0].quantity",
        ),
        (
            "/v1/orders",
            json!({"items": [{"item_id": item, "quantity": 1}, {"item_id": item, "quantity": 1.5}]}),
            "items[1].quantity",
        ),
        (
            "/v1/orders",
            json!({"items": [{"item_id": 42, "quantity": 1}]}),
            "items[0].item_id",
        ),
        ("/v1/orders", json!({"items": "all of them"}), "items"),
        (
            "/v1/items",
            json!({"sku": "S", "name": "N", "price": "10.00", "currency": "USD", "stock": 1}),
            "price",
        ),
        (
            "/v1/items",
            json!({"sku": "S", "name": "N", "price": 10, "currency": "USD", "stock": true}),
            "stock",
        ),
        (
            "/v1/items",
            json!({"sku": 7, "name": "N", "price": 10, "currency": "USD", "stock": 1}),
            "sku",
        ),
        (
            "/v1/auth/register",
            json!({"email": "x@example.com", "password": 12345678, "name": "X"}),
            "password",
        ),
    ];
    let wrong = misnamed(&app, &token, cases).await;
    assert!(wrong.is_empty(), "{wrong:#?}");
    // A JSON document that is not an object.
    for body in [json!([1, 2]), json!("items"), json!(null), json!(7)] {
        let r = app.post("/v1/orders", &token, body.clone()).await;
        r.assert_problem(422, "validation_failed");
    }
    assert_eq!(app.stock(&item).await, 5);
    let l = app.get("/v1/items", &token).await;
    assert_eq!(l.body["data"].as_array().expect("data").len(), 1);
}
both!(wrong_types_name_the_field);

async fn missing_fields_name_the_field(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 5).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/v1/orders", json!({}), "items"),
        (
            "/v1/orders",
            json!({"items": [{"item_id": item}]}),
            "items[0].quantity",
        ),
        (
            "/v1/orders",
            json!({"items": [{"quantity": 1}]}),
            "items[0].item_id",
        ),
        (
            "/v1/items",
            json!({"name": "N", "price": 10, "currency": "USD", "stock": 1}),
            "sku",
        ),
        (
            "/v1/items",
            json!({"sku": "S", "name": "N", "currency": "USD", "stock": 1}),
            "price",
        ),
        (
            "/v1/auth/register",
            json!({"email": "x@example.com", "name": "X"}),
            "password",
        ),
    ];
    let wrong = misnamed(&app, &token, cases).await;
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(app.stock(&item).await, 5);
}
both!(missing_fields_name_the_field);

async fn unknown_fields_are_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 5).await;

    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 1}], "discount": 100}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["discount"], "{}", r.text);
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 1, "unit_price": 1}]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["items[0].unit_price"], "{}", r.text);
    // A customer cannot slip in a role, nor staff a read-only field.
    let r = app
        .post(
            "/v1/auth/register",
            &token,
            json!({"email": "x@example.com", "password": "password-123", "name": "X", "role": "admin"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["role"], "{}", r.text);
    let r = app
        .patch(
            &format!("/v1/items/{item}"),
            &app.admin_token,
            json!({"currency": "EUR"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["currency"], "{}", r.text);
    let r = app
        .patch(
            &format!("/v1/items/{item}"),
            &app.admin_token,
            json!({"id": uuid::Uuid::now_v7(), "price": 1}),
        )
        .await;
    r.assert_problem(422, "validation_failed");

    // None of it happened.
    assert_eq!(app.stock(&item).await, 5);
    let i = app.get(&format!("/v1/items/{item}"), &token).await;
    assert_eq!(i.body["currency"], "USD");
    assert_eq!(i.body["price"], 100);
    assert_eq!(app.get("/v1/orders", &token).await.body["data"], json!([]));
}
both!(unknown_fields_are_refused);

async fn oversized_bodies_are_413(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 5).await;
    // Valid JSON, just too much of it: a 1.1 MiB description.
    let big = json!({
        "sku": "BIG", "name": "Big", "price": 1, "currency": "USD", "stock": 1,
        "description": "x".repeat(1_100_000)
    });
    let bytes = serde_json::to_vec(&big).expect("json");
    let r = raw(
        &app,
        Method::POST,
        "/v1/items",
        &app.admin_token,
        bytes.clone(),
    )
    .await;
    r.assert_problem(413, "payload_too_large");
    // Also when the body goes through the idempotency layer first.
    let r = app
        .client
        .post(format!("{}/v1/items", app.url))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .header("Idempotency-Key", "big-1")
        .body(bytes)
        .send()
        .await
        .expect("request");
    Resp::read(r).await.assert_problem(413, "payload_too_large");
    // And without a Content-Length (chunked), so the server must count as it reads.
    let (status, text) = chunked_post(&app, "/v1/orders", &token, 20, 64 * 1024).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("payload_too_large"), "{text}");

    // Just under the limit is fine (a long description is refused for its length, not size).
    let ok = json!({
        "sku": "BIGGISH", "name": "Big", "price": 1, "currency": "USD", "stock": 1,
        "attributes": {"blob": "z".repeat(60_000)}
    });
    let r = app.post("/v1/items", &app.admin_token, ok).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let l = app.get("/v1/items", &token).await;
    assert_eq!(l.body["data"].as_array().expect("data").len(), 2);
    assert_eq!(app.stock(&item).await, 5);
}
both!(oversized_bodies_are_413);

async fn unknown_routes_are_problem_404(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    // (`/` is the shop front's page now.)
    for path in ["/v1/nothing", "/v2/orders", "/v1/orders/x/y/z", "/v1"] {
        let r = app.get(path, &token).await;
        r.assert_problem(404, "not_found");
        let anon = app.send(Method::GET, path, None, None).await;
        anon.assert_problem(404, "not_found");
    }
    let r = app.post("/v1/nothing", &token, json!({})).await;
    r.assert_problem(404, "not_found");
    // A malformed id in a known route is an order that does not exist.
    app.get("/v1/orders/not-an-id", &token)
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/orders/not-an-id/events", &token)
        .await
        .assert_problem(404, "not_found");
    app.post("/v1/orders/not-an-id/cancel", &token, json!({}))
        .await
        .assert_problem(404, "not_found");
}
both!(unknown_routes_are_problem_404);

/// Every id in a path is typed (`http::Path<OrderId>`, `Path<(UserRef, ItemId)>`): one that
/// does not parse is a resource that does not exist, as problem+json, on every route.
async fn malformed_ids_in_paths_are_404(b: Backend) {
    let app = TestApp::spawn(b).await;
    let admin = app.admin_token.clone();
    let item = app.item(500, 5).await;
    for path in [
        "/v1/items/not-an-id",
        "/v1/items/not-an-id/bought-together",
        "/v1/users/not-an-id/cart",
        "/v1/users/Me/cart",
        "/v1/users/not-an-id/wishlist",
        "/v1/users/not-an-id/recommendations",
        "/v1/customers/not-an-id/notification-preferences",
        "/v1/customers/not-an-id/export",
        "/v1/webhook-endpoints/not-an-id",
    ] {
        app.get(path, &admin).await.assert_problem(404, "not_found");
    }
    let r = app
        .send(
            Method::PUT,
            "/v1/users/me/cart/not-an-id",
            Some(&admin),
            Some(json!({"quantity": 1})),
        )
        .await;
    r.assert_problem(404, "not_found");
    let r = app
        .send(Method::DELETE, "/v1/api-keys/not-an-id", Some(&admin), None)
        .await;
    r.assert_problem(404, "not_found");
    // The same routes with well-formed ids still answer.
    let r = app.get(&format!("/v1/items/{item}"), &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
both!(malformed_ids_in_paths_are_404);

/// A value in the database the domain does not know (written by a newer node in a
/// rolling upgrade, say, past the schema's own checks) is an error where the row is read:
/// a 500 that names nothing, never a silent default. Mended, the same order reads again.
async fn a_broken_row_is_an_error_not_a_default(b: Backend) {
    let app = TestApp::new(b).with_private_webhooks().spawn().await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(500, 5).await;
    let id = app.new_order(&token, &item).await;
    let uuid: uuid::Uuid = id.parse().unwrap();
    let checks_off = match b {
        Backend::Sqlite => "PRAGMA ignore_check_constraints = ON",
        Backend::Postgres => "ALTER TABLE orders DROP CONSTRAINT orders_status_check",
    };
    // The version moves, as with every change of an order, so no cached page hides it.
    let set = |status: &str| {
        format!("UPDATE orders SET status = '{status}', version = version + 1 WHERE id = $1")
    };
    let n = app.sql(&[checks_off, &set("lost")], uuid).await;
    assert_eq!(n, 1);
    let r = app.get(&format!("/v1/orders/{id}"), &token).await;
    r.assert_problem(500, "internal");
    assert!(!r.text.contains("lost"), "{}", r.text);
    app.get("/v1/orders?limit=20", &token)
        .await
        .assert_problem(500, "internal");
    app.sql(&[&set("created")], uuid).await;
    let r = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "created");

    // A webhook endpoint whose stored event types are not a JSON list: an error, not an
    // endpoint that silently wants nothing.
    let r = app
        .post(
            "/v1/webhook-endpoints",
            &app.admin_token,
            json!({"url": "http://127.0.0.1:9/x", "events": ["order.shipped"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let endpoint: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    let n = app
        .sql(
            &["UPDATE webhook_endpoints SET events = 'order.shipped' WHERE id = $1"],
            endpoint,
        )
        .await;
    assert_eq!(n, 1);
    app.get(
        &format!("/v1/webhook-endpoints/{endpoint}"),
        &app.admin_token,
    )
    .await
    .assert_problem(500, "internal");
    app.get("/v1/webhook-endpoints", &app.admin_token)
        .await
        .assert_problem(500, "internal");
    // The broken endpoint gets nothing, loudly; everybody else is still notified.
    app.paid_order(&token, &item, 1).await;
    let notified = app
        .eventually(std::time::Duration::from_secs(10), || async {
            let r = app.get("/v1/customers/me/notifications", &token).await;
            r.body["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|n| n["kind"] == "placed"))
        })
        .await;
    assert!(notified, "the notifier stopped at the broken endpoint");
    assert!(
        app.metrics()
            .await
            .contains("ordo_webhook_endpoints_unreadable_total"),
        "the broken endpoint is counted"
    );
}
both!(a_broken_row_is_an_error_not_a_default);

async fn wrong_methods_are_problem_405(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let r = app
        .send(Method::DELETE, "/v1/orders", Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    assert_eq!(r.content_type(), "application/problem+json", "{}", r.text);
    assert_eq!(r.body["status"], 405, "{}", r.text);
    assert!(r.headers.get("allow").is_some(), "{:?}", r.headers);
}
both!(wrong_methods_are_problem_405);

const INJECTION: &str = "'; DROP TABLE orders; --";

async fn hostile_strings_are_data(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let staff = app.staff().await;
    let plain = app.item(100, 5).await;
    let o = app.order(&token, &[(&plain, 1)]).await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.text);
    let order = o.body["id"].as_str().expect("id").to_owned();

    // Stored and returned verbatim, in every text field.
    let hostile = [
        INJECTION,
        "Robert'); DROP TABLE items;--",
        "1 OR 1=1",
        "\" OR \"\"=\"",
        "x'||(SELECT password_hash FROM users LIMIT 1)||'",
        "50% off_now \\ backslash",
        "<script>alert(1)</script>",
        "null",
        "Zoë 🚀 日本",
    ];
    let mut ids = Vec::new();
    for (n, s) in hostile.iter().enumerate() {
        let r = app
            .post(
                "/v1/items",
                &app.admin_token,
                json!({"sku": format!("{s}-{n}"), "name": s, "description": s, "category": s,
                       "price": 1, "currency": "USD", "stock": 1, "attributes": {*s: s},
                       "supplier_id": s}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{s}: {}", r.text);
        assert_eq!(r.body["name"], *s);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let g = app.get(&format!("/v1/items/{id}"), &token).await;
        assert_eq!(g.status, StatusCode::OK, "{}", g.text);
        for k in ["name", "description", "category", "supplier_id"] {
            assert_eq!(g.body[k], *s, "{k}");
        }
        assert_eq!(g.body["sku"], format!("{s}-{n}"));
        assert_eq!(g.body["attributes"][*s], *s);
        ids.push(id);
    }

    // As search terms they are plain text: each finds its own item.
    for (n, s) in hostile.iter().enumerate() {
        let r = app
            .get(&format!("/v1/items?query={}", enc(s)), &token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{s}: {}", r.text);
        let found: Vec<&str> = r.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|i| i["id"].as_str().expect("id"))
            .collect();
        assert!(found.contains(&ids[n].as_str()), "{s}: {found:?}");
        let r = app
            .get(&format!("/v1/items?category={}", enc(s)), &token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{s}: {}", r.text);
        assert_eq!(r.body["data"][0]["id"], ids[n].as_str());
        assert_eq!(r.body["data"].as_array().expect("data").len(), 1, "{s}");
        let r = app
            .get(&format!("/v1/suppliers/{}/inventory", enc(s)), &staff)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{s}: {}", r.text);
        assert_eq!(r.body["supplier_id"], *s);
        // As an order search (staff and customer), and as a customer id.
        for t in [&staff, &token] {
            let r = app.get(&format!("/v1/orders?q={}", enc(s)), t).await;
            assert_eq!(r.status, StatusCode::OK, "{s}: {}", r.text);
        }
        let r = app.get(&format!("/v1/orders?q={}", enc(s)), &staff).await;
        assert_eq!(r.body["data"], json!([]), "{s}");
        let r = app
            .get(&format!("/v1/orders?customer_id={}", enc(s)), &staff)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{s}: {}", r.text);
        assert_eq!(r.body["data"], json!([]), "{s}");
    }
    // In paths.
    for s in hostile {
        app.get(&format!("/v1/items/{}", enc(s)), &token)
            .await
            .assert_problem(404, "not_found");
        app.get(&format!("/v1/orders/{}", enc(s)), &token)
            .await
            .assert_problem(404, "not_found");
    }
    // In a user's name and a login attempt.
    let r = app
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "bobby@example.com", "password": INJECTION, "name": INJECTION})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["user"]["name"], INJECTION);
    let r = app
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": INJECTION, "password": INJECTION})),
        )
        .await;
    r.assert_problem(401, "unauthorized");
    let bobby = app.login("bobby@example.com", INJECTION).await;
    // In an order: shipping address and cancel reason.
    let r = app
        .post(
            "/v1/orders",
            &bobby,
            json!({"items": [{"item_id": ids[0], "quantity": 1}], "shipping_address": INJECTION}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["shipping_address"], INJECTION);
    assert_eq!(r.body["items"][0]["name"], INJECTION);
    let bobby_order = r.body["id"].as_str().expect("id").to_owned();
    let c = app
        .post(
            &format!("/v1/orders/{bobby_order}/cancel"),
            &bobby,
            json!({"reason": INJECTION}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let ev = app
        .get(&format!("/v1/orders/{bobby_order}/events"), &bobby)
        .await;
    let last = ev.body["data"]
        .as_array()
        .expect("events")
        .last()
        .cloned()
        .expect("an event");
    assert_eq!(last["data"]["note"], INJECTION);

    // Every table is still there and whole.
    let all = app.get("/v1/orders", &staff).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let listed: Vec<&str> = all.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&order.as_str()));
    let items = app.get("/v1/items?limit=200", &token).await;
    assert_eq!(
        items.body["data"].as_array().expect("data").len(),
        hostile.len() + 1
    );
    assert_eq!(app.stock(&plain).await, 4);
    assert_eq!(app.stock(&ids[0]).await, 1);
}
both!(hostile_strings_are_data);

/// A NUL character in any text (a field, a key, a query value) is refused with 422 naming
/// where it is, on both backends (PostgreSQL text cannot hold one), and nothing is stored.
async fn nul_characters_are_refused_everywhere(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(
                json!({"email": "nul@example.com", "password": "password-123", "name": "A\u{0}B"}),
            ),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["name"]);
    let r = app
        .post(
            "/v1/items",
            &app.admin_token,
            json!({"sku": "NUL-1", "name": "Mug", "price": 1, "currency": "USD", "stock": 1,
                   "attributes": {"colo\u{0}r": "red"}}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["attributes"]);
    let r = app.get("/v1/items?query=mu%00g", &app.admin_token).await;
    r.assert_problem(422, "validation_failed");
    // Nothing was stored: the e-mail is still free, the SKU too.
    let r = app
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": "nul@example.com", "password": "password-123", "name": "AB"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .post(
            "/v1/items",
            &app.admin_token,
            json!({"sku": "NUL-1", "name": "Mug", "price": 1, "currency": "USD", "stock": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}
both!(nul_characters_are_refused_everywhere);

/// A whole number written as a float (`2.0`, as JSON Schema allows) is read as an
/// integer; a real fraction is still refused.
async fn whole_floats_count_as_integers(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let item = app.item(100, 10).await;
    let r = app
        .post(
            "/v1/orders",
            &ann,
            json!({"items": [{"item_id": item, "quantity": 2.0}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["items"][0]["quantity"], 2);
    let r = app
        .post(
            "/v1/orders",
            &ann,
            json!({"items": [{"item_id": item, "quantity": 1.5}]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(app.stock(&item).await, 8);
}
both!(whole_floats_count_as_integers);
