//! Searching orders: filters, visibility, newest-first order and cursor paging that stays
//! correct while orders are being placed.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::both;
use crate::helpers::{Backend, Resp, TestApp};

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn ids(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {}", r.text))
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn list(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    ids(&app.get(&format!("/v1/orders?{query}"), token).await)
}

/// Places a one-line order and returns its id and `created_at`.
async fn place(app: &TestApp, token: &str, item: &str) -> (String, String) {
    let r = app.order(token, &[(item, 1)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (
        r.body["id"].as_str().expect("id").to_owned(),
        r.body["created_at"]
            .as_str()
            .expect("created_at")
            .to_owned(),
    )
}

/// Registers a customer under a known e-mail; returns (id, token).
async fn customer_with_email(app: &TestApp, email: &str) -> (String, String) {
    let r = app
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": email, "password": "password-123", "name": "Someone"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (
        r.body["user"]["id"].as_str().expect("id").to_owned(),
        r.body["access_token"].as_str().expect("token").to_owned(),
    )
}

fn rev(v: &[&String]) -> Vec<String> {
    v.iter().rev().map(|s| (*s).clone()).collect()
}

async fn status_filters_repeat(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let staff = app.staff().await;
    let item = app.item(100, 50).await;
    let (created, _) = place(&app, &ann, &item).await;
    let r = app
        .post(
            "/v1/orders",
            &ann,
            json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(r.body["status"], "placed", "{}", r.text);
    let placed = r.body["id"].as_str().expect("id").to_owned();
    let (canceled, _) = place(&app, &ann, &item).await;
    let c = app
        .post(&format!("/v1/orders/{canceled}/cancel"), &ann, json!({}))
        .await;
    assert_eq!(c.body["status"], "canceled", "{}", c.text);

    assert_eq!(
        list(&app, &staff, "status=created").await,
        vec![created.clone()]
    );
    assert_eq!(
        list(&app, &staff, "status=placed").await,
        vec![placed.clone()]
    );
    assert_eq!(
        list(&app, &staff, "status=created&status=canceled").await,
        [canceled.clone(), created.clone()]
    );
    assert_eq!(
        list(&app, &staff, "status=canceled&status=placed&status=created").await,
        [canceled.clone(), placed.clone(), created.clone()]
    );
    assert!(list(&app, &staff, "status=delivered").await.is_empty());
    // A customer filters its own the same way.
    assert_eq!(
        list(&app, &ann, "status=canceled&status=created").await,
        [canceled.clone(), created]
    );

    for query in [
        "status=lost",
        "status=created&status=nope",
        "status=Created",
    ] {
        let r = app.get(&format!("/v1/orders?{query}"), &staff).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.fields(), vec!["status"], "{query}");
    }
}
both!(status_filters_repeat);

async fn customers_see_only_their_own(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (ann_id, ann) = customer_with_email(&app, "ann@example.com").await;
    let (bob_id, bob) = customer_with_email(&app, "bob@example.com").await;
    let staff = app.staff().await;
    let item = app.item(100, 50).await;
    let (a1, _) = place(&app, &ann, &item).await;
    let (b1, _) = place(&app, &bob, &item).await;
    let (a2, _) = place(&app, &ann, &item).await;

    // Staff: everything, or one customer's.
    assert_eq!(
        list(&app, &staff, "").await,
        [a2.clone(), b1.clone(), a1.clone()]
    );
    assert_eq!(
        list(&app, &staff, &format!("customer_id={ann_id}")).await,
        [a2.clone(), a1.clone()]
    );
    assert_eq!(
        list(&app, &staff, &format!("customer_id={bob_id}")).await,
        vec![b1.clone()]
    );
    let nobody = uuid::Uuid::now_v7();
    assert!(
        list(&app, &staff, &format!("customer_id={nobody}"))
            .await
            .is_empty()
    );

    // Customers: only their own, whatever they ask for.
    assert_eq!(list(&app, &ann, "").await, [a2.clone(), a1.clone()]);
    assert_eq!(
        list(&app, &bob, &format!("customer_id={ann_id}")).await,
        vec![b1.clone()]
    );
    assert!(list(&app, &bob, &format!("q={a1}")).await.is_empty());
    assert_eq!(list(&app, &bob, "q=ann").await, vec![b1.clone()]);
    assert_eq!(list(&app, &bob, &format!("q={b1}")).await, vec![b1.clone()]);
    for o in [&a1, &a2] {
        app.get(&format!("/v1/orders/{o}"), &bob)
            .await
            .assert_problem(404, "not_found");
    }

    // Integrations with orders:read see everything, and filter like staff.
    let (_, key) = app.api_key(&["orders:read"]).await;
    assert_eq!(
        list(&app, &key, "").await,
        [a2.clone(), b1.clone(), a1.clone()]
    );
    assert_eq!(
        list(&app, &key, &format!("customer_id={bob_id}")).await,
        [b1]
    );
    assert_eq!(list(&app, &key, "q=ANN").await, [a2, a1]);
}
both!(customers_see_only_their_own);

fn shift(ts: &str, secs: i64, offset_hours: i8) -> String {
    let t = OffsetDateTime::parse(ts, &Rfc3339).expect("RFC 3339 created_at");
    let off = time::UtcOffset::from_hms(offset_hours, 0, 0).expect("offset");
    (t + time::Duration::seconds(secs))
        .to_offset(off)
        .format(&Rfc3339)
        .expect("format")
}

async fn created_between(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let staff = app.staff().await;
    let item = app.item(100, 50).await;
    let (o1, t1) = place(&app, &ann, &item).await;
    app.advance(Duration::from_secs(60));
    let (o2, t2) = place(&app, &ann, &item).await;
    app.advance(Duration::from_secs(60));
    let (o3, t3) = place(&app, &ann, &item).await;
    assert!(t1 < t2 && t2 < t3, "{t1} {t2} {t3}");

    let q = |after: Option<&str>, before: Option<&str>| {
        let mut parts = Vec::new();
        if let Some(a) = after {
            parts.push(format!("created_after={}", enc(a)));
        }
        if let Some(b) = before {
            parts.push(format!("created_before={}", enc(b)));
        }
        parts.join("&")
    };
    // Bounds are exclusive.
    assert_eq!(
        list(&app, &staff, &q(Some(&t1), None)).await,
        rev(&[&o2, &o3])
    );
    assert_eq!(
        list(&app, &staff, &q(None, Some(&t3))).await,
        rev(&[&o1, &o2])
    );
    assert_eq!(
        list(&app, &staff, &q(Some(&t1), Some(&t3))).await,
        vec![o2.clone()]
    );
    assert!(list(&app, &staff, &q(Some(&t3), None)).await.is_empty());
    assert!(
        list(&app, &staff, &q(Some(&t3), Some(&t1)))
            .await
            .is_empty()
    );
    // Between the orders, written in another offset: the same instants.
    let after = shift(&t1, 30, 2);
    let before = shift(&t3, -30, -5);
    assert!(
        after.contains("+02:00") && before.contains("-05:00"),
        "{after} {before}"
    );
    assert_eq!(
        list(&app, &staff, &q(Some(&after), Some(&before))).await,
        vec![o2.clone()]
    );
    assert_eq!(
        list(&app, &ann, &q(Some(&after), None)).await,
        rev(&[&o2, &o3])
    );

    for (query, field) in [
        ("created_after=yesterday", "created_after"),
        ("created_after=2024-13-01T00:00:00Z", "created_after"),
        ("created_before=2024-01-01", "created_before"),
        ("created_before=1700000000", "created_before"),
    ] {
        let r = app.get(&format!("/v1/orders?{query}"), &staff).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.fields(), vec![field], "{query}");
    }
    let r = app
        .get("/v1/orders?created_after=nope&created_before=never", &staff)
        .await;
    let mut fields = r.fields();
    fields.sort();
    assert_eq!(fields, ["created_after", "created_before"]);
}
both!(created_between);

async fn q_finds_an_order_or_a_customer_by_email_prefix(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, annabel) = customer_with_email(&app, "Annabel.Lee@Example.com").await;
    let (_, anna) = customer_with_email(&app, "anna@example.org").await;
    let (_, bob) = customer_with_email(&app, "bob@example.com").await;
    let staff = app.staff().await;
    let item = app.item(100, 50).await;
    let (l1, _) = place(&app, &annabel, &item).await;
    let (n1, _) = place(&app, &anna, &item).await;
    let (b1, _) = place(&app, &bob, &item).await;
    let (l2, _) = place(&app, &annabel, &item).await;

    // An order id.
    assert_eq!(
        list(&app, &staff, &format!("q={b1}")).await,
        vec![b1.clone()]
    );
    assert_eq!(
        list(&app, &staff, &format!("q={}", enc(&format!(" {n1} ")))).await,
        vec![n1.clone()]
    );
    assert!(
        list(&app, &staff, &format!("q={}", uuid::Uuid::now_v7()))
            .await
            .is_empty()
    );
    // The start of an e-mail, in any case.
    assert_eq!(
        list(&app, &staff, "q=annabel").await,
        [l2.clone(), l1.clone()]
    );
    assert_eq!(
        list(&app, &staff, "q=ANNABEL.L").await,
        [l2.clone(), l1.clone()]
    );
    assert_eq!(
        list(&app, &staff, "q=Ann").await,
        [l2.clone(), n1.clone(), l1.clone()]
    );
    assert_eq!(
        list(
            &app,
            &staff,
            &format!("q={}", enc("annabel.lee@example.com"))
        )
        .await,
        [l2.clone(), l1.clone()]
    );
    // Only the start, and wildcards are plain characters.
    assert!(list(&app, &staff, "q=example").await.is_empty());
    assert!(
        list(&app, &staff, &format!("q={}", enc("%")))
            .await
            .is_empty()
    );
    assert!(
        list(&app, &staff, &format!("q={}", enc("_nna")))
            .await
            .is_empty()
    );
    assert!(
        list(&app, &staff, &format!("q={}", enc("%@example.com")))
            .await
            .is_empty()
    );
    // Combined with other filters.
    let c = app
        .post(&format!("/v1/orders/{l1}/cancel"), &annabel, json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(
        list(&app, &staff, "q=ann&status=canceled").await,
        vec![l1.clone()]
    );
    assert_eq!(list(&app, &staff, "q=ann&status=created").await, [l2, n1]);
}
both!(q_finds_an_order_or_a_customer_by_email_prefix);

/// Follows `next_cursor` from the first page; `between` runs after each page.
async fn walk<F, Fut>(
    app: &TestApp,
    token: &str,
    query: &str,
    mut between: F,
) -> (Vec<String>, usize)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => format!("/v1/orders?{query}"),
            Some(c) => format!("/v1/orders?{query}&cursor={}", enc(c)),
        };
        let r = app.get(&path, token).await;
        seen.extend(ids(&r));
        pages += 1;
        assert!(pages < 100, "paging does not end");
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(r.body["next_cursor"].is_null(), "{}", r.text);
                return (seen, pages);
            }
        }
        between(pages).await;
    }
}

fn assert_once(seen: &[String], expected: &[String]) {
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "repeated: {seen:?}");
    assert_eq!(seen, expected);
}

async fn newest_first_and_paged_exactly_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let staff = app.staff().await;
    let item = app.item(100, 100).await;
    // Some orders in the same instant (ties broken by id), some a second apart.
    let mut placed = Vec::new();
    for n in 0..10 {
        if n % 3 == 0 {
            app.advance(Duration::from_secs(1));
        }
        placed.push(place(&app, &ann, &item).await.0);
    }
    let newest_first: Vec<String> = placed.iter().rev().cloned().collect();
    assert_eq!(list(&app, &staff, "").await, newest_first);
    assert_eq!(list(&app, &ann, "").await, newest_first);

    for token in [&staff, &ann] {
        let (seen, pages) = walk(&app, token, "limit=3", |_| async {}).await;
        assert_once(&seen, &newest_first);
        assert_eq!(pages, 4);
    }
    // A page size that divides the total ends with an empty page, not a lost order.
    let (seen, _) = walk(&app, &staff, "limit=5", |_| async {}).await;
    assert_once(&seen, &newest_first);
    // Paging keeps the filters.
    let (seen, _) = walk(&app, &staff, "limit=2&status=created", |_| async {}).await;
    assert_once(&seen, &newest_first);

    for query in [
        "limit=0",
        "limit=201",
        "limit=x",
        "cursor=garbage",
        "cursor=e30",
    ] {
        let r = app.get(&format!("/v1/orders?{query}"), &staff).await;
        r.assert_problem(422, "validation_failed");
        let field = query.split('=').next().expect("name");
        assert_eq!(r.fields(), vec![field], "{query}");
    }
    assert_eq!(list(&app, &staff, "limit=200").await.len(), 10);
}
both!(newest_first_and_paged_exactly_once);

async fn paging_is_stable_while_orders_arrive(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let staff = app.staff().await;
    let item = app.item(100, 1000).await;
    let mut placed = Vec::new();
    for n in 0..10 {
        if n == 5 {
            app.advance(Duration::from_secs(1));
        }
        let who = if n % 2 == 0 { &ann } else { &bob };
        placed.push(place(&app, who, &item).await.0);
    }
    let expected: Vec<String> = placed.iter().rev().cloned().collect();

    // Between pages, new orders arrive: in the same instant as the newest ones, and later.
    let arrived = std::sync::Mutex::new(Vec::new());
    let (seen, pages) = walk(&app, &staff, "limit=3", |page| {
        let (app, ann, bob, item, arrived) = (&app, &ann, &bob, &item, &arrived);
        async move {
            if page % 2 == 0 {
                app.advance(Duration::from_secs(1));
            }
            for who in [ann, bob] {
                let id = place(app, who, item).await.0;
                arrived.lock().expect("lock").push(id);
            }
        }
    })
    .await;
    let arrived = arrived.into_inner().expect("lock");
    assert_eq!(pages, 4);
    assert_eq!(arrived.len(), 6);
    // Every order that existed when paging started, once and in order; none of the new.
    assert_once(&seen, &expected);
    // The new ones are all there for the next reader, newest first.
    let now = list(&app, &staff, "limit=200").await;
    assert_eq!(now.len(), 16);
    let newest: Vec<String> = arrived.iter().rev().cloned().collect();
    assert_eq!(now[..6], newest[..]);
    assert_eq!(now[6..], expected[..]);

    // The same for a customer reading its own while it keeps ordering.
    let ann_before = list(&app, &ann, "limit=200").await;
    let (seen, _) = walk(&app, &ann, "limit=2", |_| {
        let (app, ann, item) = (&app, &ann, &item);
        async move {
            place(app, ann, item).await;
        }
    })
    .await;
    assert_once(&seen, &ann_before);
}
both!(paging_is_stable_while_orders_arrive);
