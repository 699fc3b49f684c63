//! The books: the audit log (who changed what and when), on both backends.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp};

async fn me(app: &TestApp, token: &str) -> String {
    let r = app.get("/v1/me", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

/// Every entry of the log for `query`, page by page (`limit` per page).
async fn audit_pages(app: &TestApp, query: &str, limit: u32) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/v1/audit-log?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = app.get(&path, &app.admin_token).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        all.extend(r.body["data"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
    panic!("the audit log never ended");
}

fn of_action<'a>(entries: &'a [Value], action: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["action"] == action).collect()
}

/// Each kind of action is in the log with its actor, its target and (where it applies) the
/// values before and after; filters and paging agree with the whole log.
async fn audit_log_records_each_action(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.notifications.webhook_allow_private = true).await;
    let admin_id = me(&app, &app.admin_token).await;
    let staff = app.staff().await;
    let staff_id = me(&app, &staff).await;
    let (customer_id, customer) = app.customer("cora").await;

    // Items: created and changed by staff.
    let r = app
        .post(
            "/v1/items",
            &staff,
            json!({"sku": "AUD-1", "name": "Lamp", "price": 1000, "currency": "USD", "stock": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let item = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .patch(
            &format!("/v1/items/{item}"),
            &staff,
            json!({"price": 1250, "stock": 7}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A refused change (duplicate SKU) writes nothing to the log.
    let r = app
        .post(
            "/v1/items",
            &staff,
            json!({"sku": "AUD-1", "name": "Lamp", "price": 1000, "currency": "USD", "stock": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Keys and endpoints: by the admin.
    let (key_id, _key) = app.api_key(&["orders:read"]).await;
    let r = app
        .send(
            Method::DELETE,
            &format!("/v1/api-keys/{key_id}"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .post(
            "/v1/webhook-endpoints",
            &app.admin_token,
            json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let endpoint = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .send(
            Method::DELETE,
            &format!("/v1/webhook-endpoints/{endpoint}"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // Orders: placed and paid by the customer, shipped by staff; another canceled (refunded).
    let shipped = app.paid_order(&customer, &item, 1).await;
    let r = app
        .post(
            &format!("/v1/orders/{shipped}/status"),
            &staff,
            json!({"status": "shipped"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let refunded = app.paid_order(&customer, &item, 1).await;
    let r = app
        .post(
            &format!("/v1/orders/{refunded}/cancel"),
            &customer,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.order_becomes(
        &customer,
        &refunded,
        "payment_status",
        "refunded",
        Duration::from_secs(5),
    )
    .await;

    let all = audit_pages(&app, "", 200).await;

    let users = of_action(&all, "user.created");
    assert!(users.iter().any(|e| e["target_id"] == staff_id.as_str()
        && e["actor"] == format!("user:{admin_id}")
        && e["after"]["role"] == "staff"));
    // A customer that registers creates itself.
    assert!(users.iter().any(|e| e["target_id"] == customer_id.as_str()
        && e["actor"] == format!("user:{customer_id}")
        && e["actor_type"] == "user"
        && e["actor_id"] == customer_id.as_str()
        && e["after"]["role"] == "customer"));
    // No personal data in the log.
    assert!(!all.iter().any(|e| e.to_string().contains("@example.com")));

    let created = of_action(&all, "item.created");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["actor"], format!("user:{staff_id}"));
    assert_eq!(created[0]["target_type"], "item");
    assert_eq!(created[0]["target_id"], item.as_str());
    assert_eq!(created[0]["after"]["price"], 1000);
    let updated = of_action(&all, "item.updated");
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert_eq!(updated[0]["before"], json!({"price": 1000, "stock": 10}));
    assert_eq!(updated[0]["after"], json!({"price": 1250, "stock": 7}));

    let k = of_action(&all, "api_key.created");
    assert_eq!(k.len(), 1);
    assert_eq!(k[0]["target_id"], key_id.as_str());
    assert_eq!(k[0]["after"]["scopes"], "orders:read");
    assert_eq!(
        of_action(&all, "api_key.revoked")[0]["target_id"],
        key_id.as_str()
    );
    assert_eq!(
        of_action(&all, "webhook_endpoint.created")[0]["target_id"],
        endpoint.as_str()
    );
    assert_eq!(
        of_action(&all, "webhook_endpoint.deleted")[0]["target_id"],
        endpoint.as_str()
    );

    let changes = of_action(&all, "order.status_changed");
    let ship = changes
        .iter()
        .find(|e| e["target_id"] == shipped.as_str() && e["after"]["status"] == "shipped")
        .expect("the shipment is in the log");
    assert_eq!(ship["actor"], format!("user:{staff_id}"));
    assert_eq!(ship["target_type"], "order");
    assert_eq!(ship["before"]["status"], "placed");
    assert!(changes.iter().any(|e| e["target_id"] == refunded.as_str()
        && e["before"]["status"] == "placed"
        && e["after"]["status"] == "canceled"
        && e["actor"] == format!("user:{customer_id}")));
    let refunds = of_action(&all, "order.refunded");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["target_id"], refunded.as_str());
    assert_eq!(refunds[0]["after"]["payment_status"], "refunded");
    // Placement itself is not a change of status: nothing for it.
    assert!(!changes.iter().any(|e| e["after"]["status"] == "created"));

    // Newest first, no entry twice, and small pages give the same log.
    let at: Vec<&str> = all.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = at.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(at, sorted);
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len());
    let paged = audit_pages(&app, "", 2).await;
    assert_eq!(paged, all);

    // Filters.
    let by_staff = audit_pages(&app, &format!("actor={staff_id}"), 3).await;
    assert!(!by_staff.is_empty());
    assert!(
        by_staff
            .iter()
            .all(|e| e["actor"] == format!("user:{staff_id}"))
    );
    assert_eq!(
        by_staff.len(),
        all.iter()
            .filter(|e| e["actor"] == format!("user:{staff_id}"))
            .count()
    );
    let typed = audit_pages(&app, &format!("actor=user:{staff_id}"), 50).await;
    assert_eq!(typed, by_staff);
    let only = audit_pages(&app, "action=item.updated", 50).await;
    assert_eq!(only.len(), 1);
    let refunds_only = audit_pages(&app, "action=order.refunded", 50).await;
    assert_eq!(refunds_only.len(), 1);
    // A time window: everything up to an entry's time excludes it (`to` is exclusive).
    let newest = all[0]["at"].as_str().unwrap().to_owned();
    let before_newest = audit_pages(&app, &format!("to={}", newest.replace('+', "%2B")), 50).await;
    assert!(
        before_newest
            .iter()
            .all(|e| e["at"].as_str().unwrap() < newest.as_str())
    );
    let from_newest = audit_pages(&app, &format!("from={}", newest.replace('+', "%2B")), 50).await;
    assert!(
        from_newest
            .iter()
            .all(|e| e["at"].as_str().unwrap() >= newest.as_str())
    );
    assert_eq!(before_newest.len() + from_newest.len(), all.len());
    let nobody = audit_pages(&app, &format!("actor={}", uuid::Uuid::now_v7()), 50).await;
    assert!(nobody.is_empty());
}
both!(audit_log_records_each_action);

/// Only admins read the log; bad filters are 422 and the log has no way to change it.
async fn audit_log_is_for_admins_and_append_only(b: Backend) {
    let app = TestApp::spawn(b).await;
    let staff = app.staff().await;
    let (_, customer) = app.customer("cid").await;
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
    for token in [&staff, &customer, &key] {
        app.get("/v1/audit-log", token)
            .await
            .assert_problem(403, "forbidden");
    }
    app.send(Method::GET, "/v1/audit-log", None, None)
        .await
        .assert_problem(401, "unauthorized");
    for (query, field) in [
        ("action=item.deleted", "action"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
    ] {
        let r = app
            .get(&format!("/v1/audit-log?{query}"), &app.admin_token)
            .await;
        r.assert_problem(422, "validation_failed");
        assert!(
            r.fields().contains(&field.to_owned()),
            "{query}: {}",
            r.body
        );
    }
    let long = "x".repeat(201);
    app.get(&format!("/v1/audit-log?actor={long}"), &app.admin_token)
        .await
        .assert_problem(422, "validation_failed");
    // No route edits or deletes the log.
    for m in [Method::DELETE, Method::PATCH, Method::PUT, Method::POST] {
        let r = app
            .send(
                m.clone(),
                "/v1/audit-log",
                Some(&app.admin_token),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
    }
    let before = audit_pages(&app, "", 200).await;
    assert!(!before.is_empty());
    // The database itself refuses to change or remove an entry.
    match b {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
            assert!(
                sqlx::query("UPDATE audit_log SET actor = 'x'")
                    .execute(&pool)
                    .await
                    .is_err()
            );
            assert!(
                sqlx::query("DELETE FROM audit_log")
                    .execute(&pool)
                    .await
                    .is_err()
            );
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
            assert!(
                sqlx::query("UPDATE audit_log SET actor = 'x'")
                    .execute(&pool)
                    .await
                    .is_err()
            );
            assert!(
                sqlx::query("DELETE FROM audit_log")
                    .execute(&pool)
                    .await
                    .is_err()
            );
        }
    }
    assert_eq!(audit_pages(&app, "", 200).await, before);
}
both!(audit_log_is_for_admins_and_append_only);

async fn summary(app: &TestApp, token: &str, query: &str) -> Value {
    let r = app
        .get(&format!("/v1/analytics/summary?{query}"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
    r.body
}

fn enc(ts: &Value) -> String {
    ts.as_str().unwrap().replace('+', "%2B")
}

/// Every field of the summary against data counted by hand, for all time and for ranges.
async fn analytics_summary_counts_by_hand(b: Backend) {
    // The test moves the clock by a day: tokens must outlive it.
    let app = TestApp::spawn_with(b, |c| c.token_ttl = Duration::from_secs(7 * 86400)).await;
    let staff = app.staff().await;
    let (_, customer) = app.customer("ana").await;
    let a = app
        .item_with(json!({"sku": "AN-A", "name": "Anvil", "price": 1000, "stock": 50}))
        .await;
    let b_item = app
        .item_with(json!({"sku": "AN-B", "name": "Bolt", "price": 250, "stock": 50}))
        .await;
    let status = |id: String, to: &'static str| {
        let app = &app;
        let staff = &staff;
        async move {
            let r = app
                .post(
                    &format!("/v1/orders/{id}/status"),
                    staff,
                    json!({"status": to}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
    };
    let created_at = |id: String| {
        let app = &app;
        async move {
            app.get(&format!("/v1/orders/{id}"), &app.admin_token)
                .await
                .body["created_at"]
                .clone()
        }
    };

    // Order 1: 2 × Anvil, shipped after 30 minutes, delivered 60 minutes later.
    let o1 = app.paid_order(&customer, &a, 2).await;
    app.advance(Duration::from_secs(30 * 60));
    status(o1.clone(), "shipped").await;
    app.advance(Duration::from_secs(60 * 60));
    status(o1.clone(), "delivered").await;
    // Order 2: 3 × Bolt, shipped after 10 minutes, not delivered yet.
    let o2 = app.paid_order(&customer, &b_item, 3).await;
    app.advance(Duration::from_secs(10 * 60));
    status(o2.clone(), "shipped").await;
    // Order 4: 1 × Anvil, paid, then canceled and refunded: no revenue, not sold.
    let o4 = app.paid_order(&customer, &a, 1).await;
    let r = app
        .post(&format!("/v1/orders/{o4}/cancel"), &customer, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.order_becomes(&customer, &o4, "payment_status", "refunded", Duration::ZERO)
        .await;
    // A day later: order 5 (1 × Bolt, placed) and order 3 (unpaid, created).
    app.advance(Duration::from_secs(24 * 3600));
    let o5 = app.paid_order(&customer, &b_item, 1).await;
    let o3 = app.new_order(&customer, &b_item).await;

    let all = summary(&app, &staff, "").await;
    assert_eq!(
        all["orders_by_status"],
        json!({"created": 1, "placed": 1, "processing": 0, "shipped": 1, "delivered": 1, "canceled": 1})
    );
    assert_eq!(all["revenue"], json!({"USD": 2000 + 750 + 250}));
    let mut days: std::collections::BTreeMap<String, i64> = Default::default();
    for id in [&o1, &o2, &o3, &o4, &o5] {
        let at = created_at(id.clone()).await;
        *days
            .entry(at.as_str().unwrap()[..10].to_owned())
            .or_default() += 1;
    }
    let expected_days: Vec<Value> = days
        .iter()
        .map(|(d, n)| json!({"date": d, "orders": n}))
        .collect();
    assert_eq!(all["orders_per_day"], json!(expected_days));
    assert_eq!(all["median_minutes_to_ship"], json!(20.0));
    assert_eq!(all["median_minutes_to_deliver"], json!(60.0));
    assert_eq!(
        all["top_items"],
        json!([
            {"item_id": b_item, "sku": "AN-B", "name": "Bolt", "quantity": 4},
            {"item_id": a, "sku": "AN-A", "name": "Anvil", "quantity": 2},
        ])
    );
    // The admin reads the same.
    assert_eq!(summary(&app, &app.admin_token, "").await, all);

    // From order 5 on: only orders 5 and 3.
    let t5 = created_at(o5.clone()).await;
    let late = summary(&app, &staff, &format!("from={}", enc(&t5))).await;
    assert_eq!(
        late["orders_by_status"],
        json!({"created": 1, "placed": 1, "processing": 0, "shipped": 0, "delivered": 0, "canceled": 0})
    );
    assert_eq!(late["revenue"], json!({"USD": 250}));
    assert_eq!(late["median_minutes_to_ship"], Value::Null);
    assert_eq!(late["median_minutes_to_deliver"], Value::Null);
    assert_eq!(
        late["top_items"],
        json!([{"item_id": b_item, "sku": "AN-B", "name": "Bolt", "quantity": 1}])
    );
    // Up to order 5 (exclusive): orders 1, 2 and 4.
    let early = summary(&app, &staff, &format!("to={}", enc(&t5))).await;
    assert_eq!(early["revenue"], json!({"USD": 2750}));
    assert_eq!(early["orders_by_status"]["canceled"], 1);
    assert_eq!(early["orders_by_status"]["placed"], 0);
    assert_eq!(early["median_minutes_to_ship"], json!(20.0));
    // Only order 2's window: from its creation to order 4's.
    let t2 = created_at(o2.clone()).await;
    let t4 = created_at(o4.clone()).await;
    let two = summary(&app, &staff, &format!("from={}&to={}", enc(&t2), enc(&t4))).await;
    assert_eq!(two["revenue"], json!({"USD": 750}));
    assert_eq!(two["median_minutes_to_ship"], json!(10.0));
    assert_eq!(two["median_minutes_to_deliver"], Value::Null);
    // An empty range: zeros, empty lists, nulls.
    let none = summary(
        &app,
        &staff,
        "from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(none["revenue"], json!({}));
    assert_eq!(none["orders_per_day"], json!([]));
    assert_eq!(none["top_items"], json!([]));
    assert_eq!(none["orders_by_status"]["placed"], 0);
    assert_eq!(none["median_minutes_to_ship"], Value::Null);
}
both!(analytics_summary_counts_by_hand);

/// Staff and admins only; bad dates and reversed ranges are 422.
async fn analytics_summary_is_for_staff(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, customer) = app.customer("cid").await;
    let (_, key) = app
        .api_key(&["orders:read", "orders:write", "items:read", "items:write"])
        .await;
    for token in [&customer, &key] {
        app.get("/v1/analytics/summary", token)
            .await
            .assert_problem(403, "forbidden");
    }
    app.send(Method::GET, "/v1/analytics/summary", None, None)
        .await
        .assert_problem(401, "unauthorized");
    let staff = app.staff().await;
    for (query, field) in [
        ("from=last-week", "from"),
        ("to=2026-02-30T00:00:00Z", "to"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
    ] {
        let r = app
            .get(&format!("/v1/analytics/summary?{query}"), &staff)
            .await;
        r.assert_problem(422, "validation_failed");
        assert!(
            r.fields().contains(&field.to_owned()),
            "{query}: {}",
            r.body
        );
    }
}
both!(analytics_summary_is_for_staff);
