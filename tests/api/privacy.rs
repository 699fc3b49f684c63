//! Privacy: a person's export and erasure, on both backends.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, Resp, TestApp};

/// A POST with an `Idempotency-Key`: its answer is stored (for a day) to answer retries.
async fn post_once(app: &TestApp, path: &str, token: &str, body: Value) -> Resp {
    let r = app
        .client
        .post(format!("{}{path}", app.url))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    Resp::read(r).await
}

/// A customer with everything Ordo can hold about one: an account with a phone, a paid and
/// shipped order with a shipping address, a note and a carrier scan on its timeline, a
/// canceled (refunded) order, a cart, a wishlist, preferences, a message from the shop with
/// its deliveries, and a failed sign-in.
struct Person {
    id: String,
    token: String,
    email: String,
    name: String,
    phone: String,
    address: String,
    shipped: String,
    canceled: String,
    item: String,
}

async fn person(app: &TestApp, staff: &str) -> Person {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("priya-{tag}@example.com");
    let name = format!("Priya Quexton{}", &tag[..6]);
    let phone = format!("+1555{:07}", uuid::Uuid::new_v4().as_u128() % 10_000_000);
    let address = format!("{} Wisteria Lane {}", &tag[..4], &tag[4..10]);
    let r = app
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": email, "password": "password-123", "name": name, "phone": phone})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["user"]["id"].as_str().unwrap().to_owned();
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let item = app.item(1500, 50).await;

    let r = app
        .send(
            Method::PUT,
            "/v1/customers/me/notification-preferences",
            Some(&token),
            Some(json!({"email": true, "sms": true, "push": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = post_once(
        app,
        "/v1/orders",
        &token,
        json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": "pm_card_visa",
               "shipping_address": {"name": name, "line1": address, "phone": phone}}),
    )
    .await;
    assert_eq!(r.body["status"], "placed", "{}", r.body);
    let shipped = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/v1/orders/{shipped}/status"),
            staff,
            json!({"status": "shipped", "carrier": "UPS", "tracking_number": format!("1Z{tag}"),
                   "note": format!("leave with {name} at {address}")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post(
            &format!("/v1/orders/{shipped}/tracking"),
            staff,
            json!({"description": format!("arrived near {address}"), "location": address}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let canceled = app.paid_order(&token, &item, 1).await;
    let r = app
        .post(
            &format!("/v1/orders/{canceled}/cancel"),
            &token,
            json!({"reason": format!("{name} moved away")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = app
        .post(
            "/v1/users/me/cart",
            &token,
            json!({"item_id": item, "quantity": 3}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post("/v1/users/me/wishlist", &token, json!({"item_id": item}))
        .await;
    assert!(r.status.is_success(), "{}", r.body);

    let r = post_once(
        app,
        "/v1/notifications",
        staff,
        json!({"customer_id": id, "order_id": shipped, "message": format!("Dear {name}, your parcel is late")}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    let r = app
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": email, "password": "wrong-password"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    Person {
        id,
        token,
        email,
        name,
        phone,
        address,
        shipped,
        canceled,
        item,
    }
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect()
}

/// The export holds every record about the person, in the shapes the API shows them.
async fn export_holds_everything_about_the_person(b: Backend) {
    let app = TestApp::spawn(b).await;
    let staff = app.staff().await;
    let p = person(&app, &staff).await;
    // Somebody else's data stays out of it.
    let (_, other) = app.customer("otto").await;
    app.paid_order(&other, &p.item, 1).await;

    // The notifier queues the order notifications in the background.
    assert!(
        app.eventually(Duration::from_secs(20), || async {
            let r = app
                .get("/v1/customers/me/notifications?limit=200", &p.token)
                .await;
            r.body["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|n| n["kind"] == "shipped"))
        })
        .await,
        "no shipped notification"
    );

    let r = app.get("/v1/customers/me/export", &p.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let x = r.body;
    assert_eq!(x["format"], "ordo.customer-export.v1");
    assert_eq!(x["account"]["id"], p.id);
    assert_eq!(x["account"]["email"], p.email);
    assert_eq!(x["account"]["name"], p.name);
    assert_eq!(x["account"]["phone"], p.phone);
    assert_eq!(x["account"]["role"], "customer");
    assert_eq!(x["account"]["erased_at"], Value::Null);
    assert_eq!(
        x["notification_preferences"],
        json!({"email": true, "sms": true, "push": false})
    );

    // Orders: exactly the person's, each as GET /v1/orders/{id} shows it, with its
    // timeline and payment steps.
    let orders = x["orders"].as_array().unwrap();
    assert_eq!(
        ids(&x["orders"]),
        vec![p.shipped.as_str(), p.canceled.as_str()]
    );
    for o in orders {
        let id = o["id"].as_str().unwrap();
        let live = app.get(&format!("/v1/orders/{id}"), &p.token).await.body;
        for (k, v) in live.as_object().unwrap() {
            assert_eq!(&o[k], v, "order {id} field {k}");
        }
        assert_eq!(o["payment_method"], "pm_card_visa");
        let events = app
            .get(&format!("/v1/orders/{id}/events"), &p.token)
            .await
            .body;
        assert_eq!(o["events"], events["data"], "timeline of {id}");
        let payments = app
            .get(&format!("/v1/orders/{id}/payments"), &p.token)
            .await
            .body;
        assert_eq!(o["payments"], payments["data"], "payments of {id}");
    }
    assert_eq!(orders[0]["shipping_address"]["line1"], p.address);
    assert!(
        orders[0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["data"]["location"] == p.address.as_str())
    );
    assert!(
        orders[1]["payments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "refund"),
        "{}",
        orders[1]
    );

    assert_eq!(x["cart"].as_array().unwrap().len(), 1);
    assert_eq!(x["cart"][0]["item_id"], p.item);
    assert_eq!(x["cart"][0]["quantity"], 3);
    assert_eq!(x["wishlist"].as_array().unwrap().len(), 1);
    assert_eq!(x["wishlist"][0]["item_id"], p.item);

    // The delivery log as GET /v1/customers/{id}/notifications shows it (oldest first here).
    let log = app
        .get("/v1/customers/me/notifications?limit=200", &p.token)
        .await
        .body;
    let mut logged = ids(&log["data"]);
    logged.sort_unstable();
    let mut exported = ids(&x["notifications"]);
    exported.sort_unstable();
    assert_eq!(exported, logged);
    assert!(
        x["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["target"] == p.email.as_str())
    );
    assert_eq!(x["messages"].as_array().unwrap().len(), 1);
    assert_eq!(x["messages"][0]["order_id"], p.shipped);
    assert!(
        x["messages"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&p.name)
    );
    assert_eq!(x["failed_logins"].as_array().unwrap().len(), 1);

    // Audit entries about the account: its creation (by itself, registering).
    let audit = x["audit_log"].as_array().unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "user.created" && e["target_id"] == p.id.as_str()),
        "{audit:?}"
    );

    // An admin's export of the person is the same document.
    let r = app
        .get(&format!("/v1/customers/{}/export", p.id), &app.admin_token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut by_admin = r.body;
    let mut own = x.clone();
    for d in [&mut by_admin, &mut own] {
        d["exported_at"] = Value::Null;
        // The admin's export sees the person's own export in the audit log.
        d["audit_log"] = Value::Null;
    }
    assert_eq!(by_admin, own);
}
both!(export_holds_everything_about_the_person);

/// Every export is in the audit log: who read whose data, and when; with no personal data.
async fn exports_are_audited(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, token) = app.customer("ada").await;
    let admin = app.get("/v1/me", &app.admin_token).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get("/v1/customers/me/export", &token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/v1/customers/{id}/export"), &app.admin_token)
            .await
            .status,
        StatusCode::OK
    );
    // A refused export is not one.
    let staff = app.staff().await;
    assert_eq!(
        app.get(&format!("/v1/customers/{id}/export"), &staff)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let r = app
        .get("/v1/audit-log?action=customer.exported", &app.admin_token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let entries = r.body["data"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let actors: Vec<&str> = entries
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, vec![format!("user:{admin}"), format!("user:{id}")]);
    for e in &entries {
        assert_eq!(e["target_type"], "user");
        assert_eq!(e["target_id"], id.as_str());
        assert!(!e.to_string().contains("@example.com"), "{e}");
    }
    // The person's next export shows the earlier ones.
    let x = app.get("/v1/customers/me/export", &token).await.body;
    let exported = x["audit_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "customer.exported")
        .count();
    assert_eq!(exported, 2);
}
both!(exports_are_audited);

/// The person itself (`me` or its id) or an admin; another customer's id is not found;
/// staff and API keys (whatever their scopes) may not; ids that name nobody are not found.
async fn export_authorization(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, token) = app.customer("bo").await;
    let (other_id, other) = app.customer("cy").await;
    let staff = app.staff().await;
    let (_, key) = app
        .api_key(&[
            "orders:read",
            "orders:write",
            "items:read",
            "items:write",
            "tracking:write",
            "webhooks:manage",
        ])
        .await;

    for path in [
        "/v1/customers/me/export".to_owned(),
        format!("/v1/customers/{id}/export"),
    ] {
        let r = app.get(&path, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(r.body["account"]["id"], id.as_str());
    }
    // Another customer's, existing or not: not found, and nothing of it shown.
    let r = app.get(&format!("/v1/customers/{id}/export"), &other).await;
    r.assert_problem(404, "not_found");
    let r = app
        .get(
            &format!("/v1/customers/{}/export", uuid::Uuid::new_v4()),
            &other,
        )
        .await;
    r.assert_problem(404, "not_found");
    // Staff export themselves only.
    let r = app.get(&format!("/v1/customers/{id}/export"), &staff).await;
    r.assert_problem(403, "forbidden");
    let r = app.get("/v1/customers/me/export", &staff).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["account"]["role"], "staff");
    // Keys: no scope reaches personal data.
    let r = app
        .get(&format!("/v1/customers/{other_id}/export"), &key)
        .await;
    r.assert_problem(403, "forbidden");
    let r = app.get("/v1/customers/me/export", &key).await;
    r.assert_problem(404, "not_found");
    // The admin: anyone's, but only people that exist.
    let r = app
        .get(
            &format!("/v1/customers/{other_id}/export"),
            &app.admin_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for bad in [
        uuid::Uuid::new_v4().to_string(),
        "not-an-id".into(),
        "12".into(),
    ] {
        let r = app
            .get(&format!("/v1/customers/{bad}/export"), &app.admin_token)
            .await;
        r.assert_problem(404, "not_found");
    }
    // Nobody signed in.
    let r = app
        .send(
            Method::GET,
            &format!("/v1/customers/{id}/export"),
            None,
            None,
        )
        .await;
    r.assert_problem(401, "unauthorized");
}
both!(export_authorization);

/// Every `table.column` of the test's database holding `needle` (case-insensitive for
/// text; byte for byte in binary columns): every table, every column, both backends.
async fn traces(app: &TestApp, needle: &str) -> Vec<String> {
    use sqlx::Connection;
    let mut found = Vec::new();
    if app.db_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        // The order history's file too.
        let history = format!("{}.history", app.db_url.trim_start_matches("sqlite://"));
        sqlx::query("ATTACH DATABASE ?1 AS history")
            .bind(history)
            .execute(&mut c)
            .await
            .unwrap();
        let mut tables: Vec<String> = sqlx::query_scalar(
            "SELECT 'main.' || name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert!(tables.len() > 20, "{tables:?}");
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT 'history.' || name FROM history.sqlite_master WHERE type = 'table'",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(old.len(), 5, "{old:?}");
        tables.extend(old);
        for t in tables {
            let (schema, name) = t.split_once('.').unwrap();
            let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{name}', '{schema}')"
            )))
            .fetch_all(&mut c)
            .await
            .unwrap();
            for col in cols {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM {schema}.\"{name}\" WHERE instr(lower(CAST(\"{col}\" AS TEXT)), lower(?1)) > 0"
                )))
                .bind(needle)
                .fetch_one(&mut c)
                .await
                .unwrap();
                if n > 0 {
                    // Live tables by their names, the history's as `history.<table>`.
                    let t = t.strip_prefix("main.").unwrap_or(&t);
                    found.push(format!("{t}.{col}"));
                }
            }
        }
    } else {
        let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        let cols: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
             FROM information_schema.columns c JOIN information_schema.tables t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert!(cols.len() > 100, "{cols:?}");
        for (t, col, ty) in cols {
            let test = if ty == "bytea" {
                format!("position(convert_to($1, 'UTF8') IN \"{col}\") > 0")
            } else {
                format!("strpos(lower(\"{col}\"::text), lower($1)) > 0")
            };
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM \"{t}\" WHERE {test}"
            )))
            .bind(needle)
            .fetch_one(&mut c)
            .await
            .unwrap();
            if n > 0 {
                found.push(format!("{t}.{col}"));
            }
        }
    }
    found.sort();
    found
}

/// Everything the API shows an admin about the person and its orders, as one text.
async fn api_answers(app: &TestApp, p: &Person) -> String {
    let admin = &app.admin_token;
    let mut all = Vec::new();
    let mut get = |r: Resp| all.push(r.text);
    get(app
        .get(&format!("/v1/orders?customer_id={}&limit=200", p.id), admin)
        .await);
    for o in [&p.shipped, &p.canceled] {
        get(app.get(&format!("/v1/orders/{o}"), admin).await);
        get(app.get(&format!("/v1/orders/{o}/events"), admin).await);
        get(app.get(&format!("/v1/orders/{o}/payments"), admin).await);
    }
    get(app
        .get(&format!("/v1/customers/{}/export", p.id), admin)
        .await);
    get(app
        .get(
            &format!("/v1/customers/{}/notifications?limit=200", p.id),
            admin,
        )
        .await);
    get(app.get(&format!("/v1/users/{}/cart", p.id), admin).await);
    get(app
        .get(&format!("/v1/users/{}/wishlist", p.id), admin)
        .await);
    get(app.get("/v1/audit-log?limit=200", admin).await);
    get(app.get("/v1/analytics/summary", admin).await);
    let prefix = &p.email[..8];
    get(app.get(&format!("/v1/orders?q={prefix}"), admin).await);
    all.join("\n")
}

/// After the erasure no table and no answer holds the person's e-mail, name, phone or
/// address; its orders, amounts and the analytics stay as they were; it cannot sign in or
/// use its token; nothing more is sent to it; the erasure is audited without personal data.
async fn erasure_leaves_no_trace_and_keeps_the_books(b: Backend) {
    // Mail goes nowhere: the e-mails wait for their retries (pending work to drop).
    let app = TestApp::spawn_with(b, |c| {
        c.notifications.smtp_url = Some(ordo::config::Secret::new("smtp://127.0.0.1:9"));
    })
    .await;
    let staff = app.staff().await;
    let p = person(&app, &staff).await;
    let (other_id, other) = app.customer("otto").await;
    let others = app.paid_order(&other, &p.item, 1).await;
    assert!(
        app.eventually(Duration::from_secs(20), || async {
            let r = app
                .get(
                    &format!("/v1/customers/{}/notifications?limit=200", p.id),
                    &staff,
                )
                .await;
            r.body["data"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|n| n["kind"] == "shipped" && n["channel"] == "email")
            })
        })
        .await,
        "no shipped e-mail"
    );

    let needles = [
        p.email.clone(),
        p.name.clone(),
        p.phone.clone(),
        p.address.clone(),
    ];
    // The scan finds what is there: the person is in every kind of place before.
    let before = traces(&app, &p.email).await;
    for place in [
        "users.email",
        "deliveries.target",
        "login_failures.email",
        "idempotency_keys.body",
    ] {
        assert!(
            before.contains(&place.to_owned()),
            "{place} not in {before:?}"
        );
    }
    let before = traces(&app, &p.address).await;
    for place in [
        "orders.shipping_address",
        "order_events.note",
        "order_events.location",
    ] {
        assert!(
            before.contains(&place.to_owned()),
            "{place} not in {before:?}"
        );
    }
    assert!(
        traces(&app, &p.name)
            .await
            .contains(&"shop_messages.message".to_owned())
    );
    let summary = app
        .get("/v1/analytics/summary", &app.admin_token)
        .await
        .body;
    let mut orders_before = Vec::new();
    for o in [&p.shipped, &p.canceled] {
        orders_before.push(
            app.get(&format!("/v1/orders/{o}"), &app.admin_token)
                .await
                .body,
        );
    }

    // Every answer read once before (pages are kept per node): the erasure shows through.
    let shown = api_answers(&app, &p).await.to_lowercase();
    assert!(needles.iter().any(|n| shown.contains(&n.to_lowercase())));

    let r = app
        .send(Method::DELETE, "/v1/customers/me", Some(&p.token), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty());

    // No trace in any table, nor in any answer.
    for n in &needles {
        assert_eq!(
            traces(&app, n).await,
            Vec::<String>::new(),
            "{n} is still stored"
        );
    }
    let answers = api_answers(&app, &p).await;
    for n in &needles {
        assert!(
            !answers.to_lowercase().contains(&n.to_lowercase()),
            "{n} is still shown: {answers}"
        );
    }

    // The books: the same orders, lines, amounts and statuses; the same analytics.
    for before in orders_before {
        let id = before["id"].as_str().unwrap();
        let after = app
            .get(&format!("/v1/orders/{id}"), &app.admin_token)
            .await
            .body;
        for k in [
            "customer_id",
            "status",
            "payment_status",
            "items",
            "total_amount",
            "currency",
            "carrier",
            "tracking_number",
            "payment_reference",
        ] {
            assert_eq!(after[k], before[k], "{id}: {k}");
        }
        assert_eq!(after["shipping_address"], Value::Null);
    }
    assert_eq!(
        app.get("/v1/analytics/summary", &app.admin_token)
            .await
            .body,
        summary
    );
    let listed = app
        .get(
            &format!("/v1/orders?customer_id={}", p.id),
            &app.admin_token,
        )
        .await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
    // The other customer is untouched.
    let theirs = app.get(&format!("/v1/orders/{others}"), &other).await;
    assert_eq!(theirs.status, StatusCode::OK);

    // The account: pseudonymous, no way in.
    let x = app
        .get(&format!("/v1/customers/{}/export", p.id), &app.admin_token)
        .await
        .body;
    assert_eq!(x["account"]["name"], "(erased)");
    assert!(
        x["account"]["email"]
            .as_str()
            .unwrap()
            .ends_with("@erased.invalid")
    );
    assert_eq!(x["account"]["phone"], Value::Null);
    assert!(x["account"]["erased_at"].is_string());
    assert_eq!(x["cart"], json!([]));
    assert_eq!(x["wishlist"], json!([]));
    app.get("/v1/me", &p.token)
        .await
        .assert_problem(401, "unauthorized");
    let r = app
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": p.email, "password": "password-123"})),
        )
        .await;
    r.assert_problem(401, "unauthorized");
    // Nothing more goes to it: what waited is dropped, and later events queue nothing.
    let log = &x["notifications"];
    for d in log.as_array().unwrap() {
        assert_ne!(d["status"], "pending", "{d}");
        assert_ne!(d["status"], "failed", "{d}");
        assert_eq!(d["target"], Value::Null, "{d}");
    }
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|d| d["last_error"] == "the recipient was erased"),
        "{log}"
    );
    let r = app
        .post(
            &format!("/v1/orders/{}/status", p.shipped),
            &staff,
            json!({"status": "delivered"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post(
            "/v1/notifications",
            &staff,
            json!({"customer_id": p.id, "message": "still there?"}),
        )
        .await;
    r.assert_problem(404, "not_found");
    // The notifier reads events in order: once the other customer's next order is
    // queued, the delivery of the erased one's order was looked at.
    app.paid_order(&other, &p.item, 1).await;
    assert!(
        app.eventually(Duration::from_secs(20), || async {
            let r = app
                .get(
                    &format!("/v1/customers/{other_id}/notifications?limit=200"),
                    &staff,
                )
                .await;
            r.body["data"].as_array().is_some_and(|d| {
                d.iter()
                    .filter(|n| n["kind"] == "placed" && n["channel"] == "email")
                    .count()
                    == 2
            })
        })
        .await,
        "the notifier never got to the later order"
    );
    let n = app
        .get(
            &format!("/v1/customers/{}/notifications?limit=200", p.id),
            &staff,
        )
        .await;
    assert!(
        n.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["kind"] != "delivered"),
        "{}",
        n.body
    );

    // Audited, by whom and about whom, with nothing personal.
    let r = app
        .get("/v1/audit-log?action=customer.erased", &app.admin_token)
        .await;
    let entries = r.body["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["actor"], format!("user:{}", p.id));
    assert_eq!(entries[0]["target_type"], "user");
    assert_eq!(entries[0]["target_id"], p.id.as_str());
    assert_eq!(entries[0]["after"]["role"], "customer");
}
both!(erasure_leaves_no_trace_and_keeps_the_books);

/// Erasing again answers the same and changes nothing; the person's old token is refused.
async fn erasure_is_idempotent(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, token) = app.customer("ida").await;
    for _ in 0..2 {
        let r = app
            .send(
                Method::DELETE,
                &format!("/v1/customers/{id}"),
                Some(&app.admin_token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    }
    let r = app
        .send(Method::DELETE, "/v1/customers/me", Some(&token), None)
        .await;
    r.assert_problem(401, "unauthorized");
    let r = app
        .get("/v1/audit-log?action=customer.erased", &app.admin_token)
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.body);
    // Staff cannot give the erased person a new order; nothing is reserved.
    let item = app.item(500, 3).await;
    let r = app
        .post(
            "/v1/orders",
            &app.admin_token,
            serde_json::json!({"customer_id": id, "items": [{"item_id": item, "quantity": 1}]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert!(r.text.contains("the customer was erased"), "{}", r.text);
    let stock = app
        .get(&format!("/v1/items/{item}"), &app.admin_token)
        .await;
    assert_eq!(stock.body["stock"], 3, "{}", stock.body);
}
both!(erasure_is_idempotent);

/// A customer erases itself only (another's id is not found, and stays); an admin erases
/// anybody but itself; staff and API keys erase nobody, an admin least of all; ids that
/// name nobody are not found.
async fn erasure_authorization(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (a_id, a) = app.customer("abe").await;
    let (b_id, b_token) = app.customer("bea").await;
    let staff = app.staff().await;
    let staff_id = app.get("/v1/me", &staff).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin_id = app.get("/v1/me", &app.admin_token).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, key) = app
        .api_key(&[
            "orders:read",
            "orders:write",
            "items:read",
            "items:write",
            "tracking:write",
            "webhooks:manage",
        ])
        .await;
    let delete = |path: String, token: Option<String>| {
        let app = &app;
        async move {
            app.send(Method::DELETE, &path, token.as_deref(), None)
                .await
        }
    };

    delete(format!("/v1/customers/{b_id}"), Some(a.clone()))
        .await
        .assert_problem(404, "not_found");
    delete(
        format!("/v1/customers/{}", uuid::Uuid::new_v4()),
        Some(a.clone()),
    )
    .await
    .assert_problem(404, "not_found");
    for id in [&b_id, &admin_id, &staff_id] {
        delete(format!("/v1/customers/{id}"), Some(staff.clone()))
            .await
            .assert_problem(403, "forbidden");
    }
    delete("/v1/customers/me".into(), Some(staff.clone()))
        .await
        .assert_problem(403, "forbidden");
    delete(format!("/v1/customers/{b_id}"), Some(key.clone()))
        .await
        .assert_problem(403, "forbidden");
    delete("/v1/customers/me".into(), Some(app.admin_token.clone()))
        .await
        .assert_problem(403, "forbidden");
    for bad in [
        uuid::Uuid::new_v4().to_string(),
        "not-an-id".into(),
        "42".into(),
    ] {
        delete(
            format!("/v1/customers/{bad}"),
            Some(app.admin_token.clone()),
        )
        .await
        .assert_problem(404, "not_found");
    }
    delete(format!("/v1/customers/{b_id}"), None)
        .await
        .assert_problem(401, "unauthorized");
    // Nobody was erased by any of that.
    assert_eq!(app.get("/v1/me", &b_token).await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/me", &staff).await.status, StatusCode::OK);
    let r = app
        .get("/v1/audit-log?action=customer.erased", &app.admin_token)
        .await;
    assert_eq!(r.body["data"], json!([]));

    // The customer itself, by id; an admin, a staff account.
    let r = delete(format!("/v1/customers/{a_id}"), Some(a.clone())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = delete(
        format!("/v1/customers/{staff_id}"),
        Some(app.admin_token.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    app.get("/v1/me", &staff)
        .await
        .assert_problem(401, "unauthorized");
    let r = app
        .get("/v1/audit-log?action=customer.erased", &app.admin_token)
        .await;
    let actors: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        vec![format!("user:{admin_id}"), format!("user:{a_id}")]
    );
}
both!(erasure_authorization);

/// Each node reads an account at most once a second to check it was not erased: the node
/// that erased refuses the person's token at once, another node within a second, and the
/// person's busy token is read once a second per node, not once a request.
async fn erasure_reaches_every_node_within_a_second(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, token) = app.customer("ann").await;
    if b == Backend::Postgres {
        let other = app.another_node(|_| {}).await;
        // The other node has just seen the account active, and holds a live connection.
        assert_eq!(other.get("/v1/me", &token).await.status, StatusCode::OK);
        let mut ws = other.ws("", &token).await;
        let r = app
            .send(
                Method::DELETE,
                &format!("/v1/customers/{id}"),
                Some(&app.admin_token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        app.get("/v1/me", &token)
            .await
            .assert_problem(401, "unauthorized");
        let refused = other
            .eventually(Duration::from_millis(1500), || async {
                other.get("/v1/me", &token).await.status == StatusCode::UNAUTHORIZED
            })
            .await;
        assert!(
            refused,
            "the other node still accepts the erased person's token"
        );
        // Its live connection there ends too (the node follows erasures every second).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            match ws.next(Duration::from_millis(300)).await {
                crate::helpers::Got::Closed(_) => break,
                _ => assert!(
                    tokio::time::Instant::now() < deadline,
                    "the other node kept the erased person's live connection"
                ),
            }
        }
    } else {
        // One node: refused at once, even right after a burst of requests.
        for _ in 0..5 {
            assert_eq!(app.get("/v1/me", &token).await.status, StatusCode::OK);
        }
        let r = app
            .send(Method::DELETE, "/v1/customers/me", Some(&token), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        app.get("/v1/me", &token)
            .await
            .assert_problem(401, "unauthorized");
    }
}
both!(erasure_reaches_every_node_within_a_second);
