//! Privacy: a person's export and erasure, on both backends.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp};

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

    let r = app
        .post(
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

    let r = app
        .post(
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
