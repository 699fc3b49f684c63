//! The order history (API.md "History"): ended orders move out of the live tables after
//! `ORDO_ARCHIVE_AFTER`, and every read sees them exactly as before; a late change moves
//! an order back and works as it would have.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp};

const DAY: Duration = Duration::from_secs(86_400);

async fn app(b: Backend) -> TestApp {
    TestApp::spawn_with(b, |c| {
        c.archive_after = DAY;
        c.archive_interval = Duration::from_millis(100);
        // The tests move the clock by days.
        c.token_ttl = 30 * DAY;
    })
    .await
}

/// Rows of `table` in the live tables and in the history.
async fn rows(app: &TestApp, table: &str) -> (i64, i64) {
    use sqlx::Connection;
    if app.db_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        let path = app.db_url.trim_start_matches("sqlite://");
        sqlx::query("ATTACH DATABASE ?1 AS history")
            .bind(format!("{path}.history"))
            .execute(&mut c)
            .await
            .unwrap();
        let count = |t: String| sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(t));
        let live = count(format!("SELECT count(*) FROM main.{table}"))
            .fetch_one(&mut c)
            .await
            .unwrap();
        let old = count(format!("SELECT count(*) FROM history.{table}"))
            .fetch_one(&mut c)
            .await
            .unwrap();
        (live, old)
    } else {
        let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        let count = |t: String| sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(t));
        let live = count(format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut c)
            .await
            .unwrap();
        let old = count(format!("SELECT count(*) FROM {table}_history"))
            .fetch_one(&mut c)
            .await
            .unwrap();
        (live, old)
    }
}

/// Waits until `n` orders are in the history and `live` in the live tables (on SQLite a
/// move copies first, then deletes).
async fn archived(app: &TestApp, live: i64, n: i64) {
    let ok = app
        .eventually(Duration::from_secs(20), || async {
            rows(app, "orders").await == (live, n)
        })
        .await;
    assert!(
        ok,
        "never {n} archived orders: {:?}",
        rows(app, "orders").await
    );
}

async fn status(app: &TestApp, id: &str, body: Value) {
    let r = app
        .post(&format!("/v1/orders/{id}/status"), &app.admin_token, body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Ships (UPS, `tracking`) and delivers a paid order.
async fn deliver(app: &TestApp, id: &str, tracking: &str) {
    status(app, id, json!({"status": "processing"})).await;
    status(
        app,
        id,
        json!({"status": "shipped", "carrier": "UPS", "tracking_number": tracking, "location": "Leipzig"}),
    )
    .await;
    status(app, id, json!({"status": "delivered"})).await;
}

/// Everything the API shows about these orders and their customer, as staff and as the
/// customer: each order and its timeline, lists with filters and cursors,
/// search by e-mail and by id, the export (orders with their payments) and the analytics
/// summary.
async fn everything(
    app: &TestApp,
    ids: &[&str],
    customer: &str,
    token: &str,
    email: &str,
) -> Value {
    let staff = &app.admin_token;
    let mut out = serde_json::Map::new();
    for id in ids {
        for path in [
            format!("/v1/orders/{id}"),
            format!("/v1/orders/{id}/events"),
        ] {
            let r = app.get(&path, token).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
            out.insert(path, r.body);
        }
    }
    // A customer's list, a page at a time.
    let mut path = "/v1/orders?limit=2".to_owned();
    for page in 0.. {
        let r = app.get(&path, token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        out.insert(format!("page {page}"), r.body["data"].clone());
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/orders?limit=2&cursor={c}"),
            None => break,
        }
    }
    let q = &email[..email.find('@').unwrap()];
    for path in [
        "/v1/orders?status=delivered&limit=50".to_owned(),
        "/v1/orders?status=canceled&limit=50".to_owned(),
        format!("/v1/orders?q={q}&limit=50"),
        format!("/v1/orders?q={}", ids[0]),
        format!("/v1/orders?customer_id={customer}&limit=50"),
    ] {
        let r = app.get(&path, staff).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        out.insert(path, r.body["data"].clone());
    }
    let r = app
        .get(&format!("/v1/customers/{customer}/export"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for part in ["orders", "account"] {
        out.insert(format!("export {part}"), r.body[part].clone());
    }
    let r = app.get("/v1/analytics/summary", staff).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    out.insert("summary".into(), r.body);
    Value::Object(out)
}

/// Delivered and canceled (refunded) orders move to the history a day after they ended;
/// an order still going does not. Every answer about them is the same before and after,
/// the live tables no longer hold them, and the move is counted.
async fn archived_orders_read_exactly_as_before(b: Backend) {
    let app = app(b).await;
    let item = app.item(1_250, 100).await;
    let (customer, token) = app.customer("hilda").await;
    let me = app.get("/v1/me", &token).await.body;
    let email = me["email"]
        .as_str()
        .unwrap_or_else(|| panic!("{me}"))
        .to_owned();
    let delivered = app.paid_order(&token, &item, 2).await;
    deliver(&app, &delivered, "1ZHIST1").await;
    let canceled = app.paid_order(&token, &item, 1).await;
    let r = app
        .post(
            &format!("/v1/orders/{canceled}/cancel"),
            &token,
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    app.order_becomes(
        &token,
        &canceled,
        "payment_status",
        "refunded",
        Duration::from_millis(10),
    )
    .await;
    let going = app.paid_order(&token, &item, 3).await;
    let other_delivered = app.paid_order(&token, &item, 1).await;
    deliver(&app, &other_delivered, "1ZHIST2").await;
    let ids = [
        delivered.as_str(),
        canceled.as_str(),
        going.as_str(),
        other_delivered.as_str(),
    ];

    let before = everything(&app, &ids, &customer, &token, &email).await;
    let tag = app.get("/v1/orders?limit=20", &token).await.headers["etag"].clone();
    assert_eq!(
        rows(&app, "orders").await,
        (4, 0),
        "nothing is moved before its time"
    );

    app.advance(DAY + Duration::from_secs(60));
    archived(&app, 1, 3).await;
    assert_eq!(rows(&app, "orders").await, (1, 3));
    assert_eq!(rows(&app, "order_items").await, (1, 3));
    let (live_events, old_events) = rows(&app, "order_events").await;
    assert!(
        live_events >= 2 && old_events >= 10,
        "{live_events} {old_events}"
    );
    let (_, old_payments) = rows(&app, "payment_transactions").await;
    assert!(
        old_payments >= 4,
        "charges and the refund move too: {old_payments}"
    );

    let after = everything(&app, &ids, &customer, &token, &email).await;
    for (k, v) in before.as_object().unwrap() {
        assert_eq!(v, &after[k], "{k} reads differently once archived");
    }
    // Their versions did not move: the list's entity tag still names the page.
    let r = app
        .client
        .get(format!("{}/v1/orders?limit=20", app.url))
        .bearer_auth(&token)
        .header("if-none-match", tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // Nobody else sees them.
    let (_, stranger) = app.customer("stranger").await;
    for id in ids {
        let r = app.get(&format!("/v1/orders/{id}"), &stranger).await;
        r.assert_problem(404, "not_found");
    }
    let metrics = app.metrics().await;
    // Counted (process-wide: other tests of this process archive too).
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ordo_orders_archived_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ordo_orders_archived_total in /metrics"));
    assert!(counted >= 3, "{counted}");
}
both!(archived_orders_read_exactly_as_before);

/// A carrier scan for an archived order is written (the order comes back to the live
/// tables and leaves again later); a change the order refuses is refused as before (409,
/// not 404); its tracking links can still be revoked; erasure reaches the history.
async fn archived_orders_still_change(b: Backend) {
    let app = app(b).await;
    let item = app.item(900, 100).await;
    let (customer, token) = app.customer("ines").await;
    let id = app.paid_order(&token, &item, 1).await;
    deliver(&app, &id, "1ZLATE").await;
    let events_before = app
        .get(&format!("/v1/orders/{id}/events"), &token)
        .await
        .body;
    let n = events_before["data"].as_array().map_or(0, Vec::len);
    assert!(n >= 4, "{events_before}");
    app.advance(DAY + Duration::from_secs(60));
    archived(&app, 0, 1).await;

    // Refused as before.
    app.post(&format!("/v1/orders/{id}/cancel"), &token, json!({}))
        .await
        .assert_problem(409, "invalid_transition");
    let r = app
        .post(
            &format!("/v1/orders/{id}/status"),
            &app.admin_token,
            json!({"status": "processing"}),
        )
        .await;
    r.assert_problem(409, "invalid_transition");

    // A late scan.
    app.advance(DAY + Duration::from_secs(60));
    archived(&app, 0, 1).await;
    let r = app
        .post(
            &format!("/v1/orders/{id}/tracking"),
            &app.admin_token,
            json!({"description": "Returned to sender", "location": "Leipzig", "carrier_status": "exception"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let events = app
        .get(&format!("/v1/orders/{id}/events"), &token)
        .await
        .body;
    let list = events["data"].as_array().unwrap();
    assert_eq!(list.len(), n + 1, "{events}");
    assert!(
        list.iter()
            .any(|e| e["data"]["description"] == "Returned to sender"),
        "{events}"
    );
    assert_eq!(rows(&app, "orders").await.1, 0, "back in the live tables");
    assert_eq!(
        app.get(&format!("/v1/orders/{id}"), &token).await.body["status"],
        "delivered"
    );

    // It leaves again a day after its last change; the mark that kept it live goes.
    assert_eq!(count(&app, "history_restored").await, 1);
    app.advance(DAY + Duration::from_secs(60));
    archived(&app, 0, 1).await;
    assert_eq!(count(&app, "history_restored").await, 0);
    assert_eq!(
        app.get(&format!("/v1/orders/{id}/events"), &token)
            .await
            .body,
        events,
        "the same timeline from the history"
    );

    // Links of an archived order can be revoked.
    let r = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/orders/{id}/tracking-links"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    // Erasure reaches archived orders: the address and the free text go, the amounts stay.
    app.advance(DAY + Duration::from_secs(60));
    archived(&app, 0, 1).await;
    let o = app
        .get(&format!("/v1/orders/{id}"), &app.admin_token)
        .await
        .body;
    let r = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/customers/{customer}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let erased = app
        .get(&format!("/v1/orders/{id}"), &app.admin_token)
        .await
        .body;
    assert_eq!(erased["total_amount"], o["total_amount"]);
    assert!(erased["shipping_address"].is_null(), "{erased}");
    let events = app
        .get(&format!("/v1/orders/{id}/events"), &app.admin_token)
        .await
        .body;
    assert!(
        events["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["data"]["location"].is_null()),
        "{events}"
    );
}
both!(archived_orders_still_change);

/// Rows of a table in the main database.
async fn count(app: &TestApp, table: &str) -> i64 {
    use sqlx::Connection;
    let sql = format!("SELECT count(*) FROM {table}");
    if app.db_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

/// Runs `sql` on the test's database (both backends understand it).
async fn execute(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    if app.db_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .unwrap();
    }
}

/// The analytics summary for ranges with and without whole days, partial first and last
/// days, open ends and a range inside one day.
async fn summaries(app: &TestApp, base: time::OffsetDateTime) -> Vec<(String, Value)> {
    use time::format_description::well_known::Rfc3339;
    let midnight = |t: time::OffsetDateTime| t.replace_time(time::Time::MIDNIGHT);
    let at = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap().replace('+', "%2B");
    let day = time::Duration::DAY;
    let h = time::Duration::HOUR;
    let month = midnight(base).replace_day(1).unwrap();
    let ranges = [
        String::new(),
        format!("?from={}", at(midnight(base) + day)),
        format!("?to={}", at(midnight(base) + 2 * day)),
        format!(
            "?from={}&to={}",
            at(base + 6 * h),
            at(base + 2 * day + 3 * h)
        ),
        format!(
            "?from={}&to={}",
            at(midnight(base)),
            at(midnight(base) + 3 * day)
        ),
        format!("?from={}&to={}", at(base - h), at(base + h)),
        format!("?from={}", at(base + 30 * day)),
        // Whole months (month rollups), then days of the month after.
        format!("?from={}&to={}", at(month), at(month + 70 * day)),
        format!(
            "?from={}&to={}",
            at(month - 40 * day),
            at(month + 33 * day + 5 * h)
        ),
    ];
    let mut out = Vec::new();
    for q in ranges {
        let r = app
            .get(&format!("/v1/analytics/summary{q}"), &app.admin_token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        out.push((q, r.body));
    }
    out
}

/// The same summaries read from every order, not the rollups.
async fn exact_summaries(app: &TestApp, base: time::OffsetDateTime) -> Vec<(String, Value)> {
    execute(app, "UPDATE history_rollup_state SET built = false").await;
    let exact = summaries(app, base).await;
    execute(app, "UPDATE history_rollup_state SET built = true").await;
    exact
}

/// Moves the clock by `minutes`.
fn wait(app: &TestApp, minutes: u64) {
    app.advance(Duration::from_secs(minutes * 60));
}

/// The analytics summary reads archived orders' whole days from rollups kept by the
/// moves: every field, for every kind of range, equals what the orders themselves say
/// (with live and archived orders, after a move back, and after a rebuild).
async fn analytics_over_the_history_match_the_orders(b: Backend) {
    let app = app(b).await;
    let item = app.item(1_000, 100).await;
    let (_, token) = app.customer("jolene").await;
    let base = app.clock_now();
    let ship = |id: String, tracking: &'static str| {
        let app = &app;
        async move {
            status(app, &id, json!({"status": "processing"})).await;
            status(
                app,
                &id,
                json!({"status": "shipped", "carrier": "UPS", "tracking_number": tracking}),
            )
            .await;
        }
    };
    let delivered = |id: String| {
        let app = &app;
        async move { status(app, &id, json!({"status": "delivered"})).await }
    };

    // Day 0: shipped after 90 minutes, delivered 600 later; one canceled and refunded.
    let a = app.paid_order(&token, &item, 1).await;
    wait(&app, 90);
    ship(a.clone(), "1ZROLLA").await;
    wait(&app, 600);
    delivered(a.clone()).await;
    let c = app.paid_order(&token, &item, 2).await;
    let r = app
        .post(&format!("/v1/orders/{c}/cancel"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    app.order_becomes(
        &token,
        &c,
        "payment_status",
        "refunded",
        Duration::from_millis(10),
    )
    .await;
    // Day 1: 45 minutes, then 3,000; one paid and going.
    app.advance(DAY);
    let d = app.paid_order(&token, &item, 3).await;
    wait(&app, 45);
    ship(d.clone(), "1ZROLLD").await;
    wait(&app, 3_000);
    delivered(d.clone()).await;
    let going = app.paid_order(&token, &item, 1).await;
    // Day 3: 10 minutes, then 100; and one shipped after 20 that stays out.
    let e = app.paid_order(&token, &item, 1).await;
    wait(&app, 10);
    ship(e.clone(), "1ZROLLE").await;
    wait(&app, 100);
    delivered(e.clone()).await;
    let f = app.paid_order(&token, &item, 2).await;
    wait(&app, 20);
    ship(f.clone(), "1ZROLLF").await;

    app.advance(2 * DAY);
    archived(&app, 2, 4).await;
    assert_eq!(
        count(&app, "history_rollup_state WHERE built").await,
        1,
        "the rollups are read"
    );
    let rolled = summaries(&app, base).await;
    let exact = exact_summaries(&app, base).await;
    assert_eq!(rolled, exact);
    let all = &rolled[0].1;
    assert_eq!(all["orders_by_status"]["delivered"], 3, "{all}");
    assert_eq!(all["orders_by_status"]["canceled"], 1, "{all}");
    assert_eq!(all["orders_by_status"]["placed"], 1, "{all}");
    assert_eq!(all["orders_by_status"]["shipped"], 1, "{all}");
    let revenue: i64 = all["revenue"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(revenue, 8 * 1_000, "all but the refunded order: {all}");
    assert_eq!(all["median_minutes_to_ship"], json!(32.5), "{all}");
    assert_eq!(all["median_minutes_to_deliver"], json!(600.0), "{all}");
    assert_eq!(all["top_items"][0]["quantity"], 8, "{all}");
    let days: i64 = all["orders_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["orders"].as_i64().unwrap())
        .sum();
    assert_eq!(days, 6, "{all}");
    let durations = count(&app, "history_durations").await;
    assert_eq!(durations, 6, "three archived orders shipped and delivered");

    // A late scan moves an order back: the rollups give it up, nothing reads differently.
    let r = app
        .post(
            &format!("/v1/orders/{a}/tracking"),
            &app.admin_token,
            json!({"description": "Signed for", "carrier_status": "exception"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(rows(&app, "orders").await, (3, 3));
    assert_eq!(summaries(&app, base).await, exact);
    assert_eq!(exact_summaries(&app, base).await, exact);
    assert_eq!(count(&app, "history_durations").await, 4);

    // Rolled up afresh (as after an upgrade): the same again.
    execute(&app, "UPDATE history_rollup_state SET built = false").await;
    assert_eq!(app.state.store.rebuild_rollups().await.unwrap(), Some(3));
    assert_eq!(app.state.store.rebuild_rollups().await.unwrap(), None);
    assert_eq!(summaries(&app, base).await, exact);
    let _ = (going, f);
}
both!(analytics_over_the_history_match_the_orders);
