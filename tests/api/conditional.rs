//! Conditional reads of orders and lists (`ETag`, `If-None-Match` → 304) and the per-node
//! cache of rendered list pages: never stale, after the caller's own write, after anybody
//! else's, on another node, and never a way into another customer's orders.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both;
use crate::helpers::{Backend, Resp, TestApp};

async fn get_if(app: &TestApp, path: &str, token: &str, etag: Option<&str>) -> Resp {
    let mut req = app
        .client
        .request(Method::GET, format!("{}{path}", app.url))
        .bearer_auth(token);
    if let Some(t) = etag {
        req = req.header("if-none-match", t);
    }
    Resp::read(req.send().await.unwrap()).await
}

fn etag(r: &Resp) -> String {
    r.headers
        .get("etag")
        .unwrap_or_else(|| panic!("no ETag: {r:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn statuses(r: &Resp) -> Vec<String> {
    r.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {}", r.text))
        .iter()
        .map(|o| o["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn set_status(app: &TestApp, id: &str, status: &str) {
    let r = app
        .post(
            &format!("/v1/orders/{id}/status"),
            &app.admin_token,
            json!({"status": status}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// A list answers with a tag; the same tag back is a 304 without a body while nothing
/// changed, and a full, current page as soon as anything on it changed.
async fn lists_are_conditional_and_never_stale(b: Backend) {
    let app = TestApp::spawn(b).await;
    let item = app.item(500, 100).await;
    let (_, token) = app.customer("ann").await;
    let first = app.paid_order(&token, &item, 1).await;

    let r = get_if(&app, "/v1/orders?limit=20", &token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.content_type(), "application/json");
    assert_eq!(r.headers["cache-control"], "private, no-cache");
    let tag = etag(&r);
    assert_eq!(statuses(&r), ["placed"]);

    // Unchanged: 304, no body, the same tag; without the header, the same page again.
    let same = get_if(&app, "/v1/orders?limit=20", &token, Some(&tag)).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED, "{}", same.text);
    assert_eq!(same.text, "");
    assert_eq!(etag(&same), tag);
    let hits = app.state.orders.page_hits();
    let again = get_if(&app, "/v1/orders?limit=20", &token, None).await;
    assert_eq!(
        app.state.orders.page_hits(),
        hits + 1,
        "served from the cache"
    );
    assert_eq!(again.text, r.text);
    assert_eq!(etag(&again), tag);
    // A list of tags, a weak one, and `*`.
    for header in [
        format!("\"nope\", {tag}"),
        format!("W/{tag}"),
        "*".to_owned(),
    ] {
        let r = get_if(&app, "/v1/orders?limit=20", &token, Some(&header)).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{header}");
    }

    // The caller's own write: a new order is on the page at once.
    let second = app.new_order(&token, &item).await;
    let r = get_if(&app, "/v1/orders?limit=20", &token, Some(&tag)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(statuses(&r), ["created", "placed"]);
    assert_eq!(r.body["data"][0]["id"], second.as_str());
    let tag2 = etag(&r);
    assert_ne!(tag2, tag);

    // Somebody else's write: staff ships the first order.
    set_status(&app, &first, "processing").await;
    let r = get_if(&app, "/v1/orders?limit=20", &token, Some(&tag2)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(statuses(&r), ["created", "processing"]);
    let tag3 = etag(&r);

    // A cancellation by the customer.
    let c = app
        .post(&format!("/v1/orders/{second}/cancel"), &token, json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let r = get_if(&app, "/v1/orders?limit=20", &token, Some(&tag3)).await;
    assert_eq!(statuses(&r), ["canceled", "processing"]);

    // Each page of a cursor walk is its own page, with its own tag.
    let p1 = get_if(&app, "/v1/orders?limit=1", &token, None).await;
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_owned();
    let p2 = get_if(
        &app,
        &format!("/v1/orders?limit=1&cursor={cursor}"),
        &token,
        None,
    )
    .await;
    assert_eq!(statuses(&p2), ["processing"]);
    assert_ne!(etag(&p1), etag(&p2));
    let p2_again = get_if(
        &app,
        &format!("/v1/orders?limit=1&cursor={cursor}"),
        &token,
        Some(&etag(&p2)),
    )
    .await;
    assert_eq!(p2_again.status, StatusCode::NOT_MODIFIED);
}
both!(lists_are_conditional_and_never_stale);

/// Staff's filtered lists are pages like any other: an order that leaves the filter leaves
/// the page, one that enters it appears.
async fn filtered_pages_follow_their_filter(b: Backend) {
    let app = TestApp::spawn(b).await;
    let item = app.item(500, 100).await;
    let (_, token) = app.customer("bob").await;
    let a = app.paid_order(&token, &item, 1).await;
    let b_id = app.paid_order(&token, &item, 1).await;
    let staff = app.staff().await;
    let path = "/v1/orders?status=processing&limit=50";
    let r = get_if(&app, path, &staff, None).await;
    assert_eq!(statuses(&r), Vec::<String>::new());
    let empty = etag(&r);
    set_status(&app, &a, "processing").await;
    let r = get_if(&app, path, &staff, Some(&empty)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"][0]["id"], a.as_str());
    set_status(&app, &b_id, "processing").await;
    set_status(&app, &a, "shipped").await;
    let r = get_if(&app, path, &staff, None).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.body["data"][0]["id"], b_id.as_str());
}
both!(filtered_pages_follow_their_filter);

/// One order: a tag, 304 while unchanged, the current order after any change; a tag is
/// never a way to learn about another customer's order.
async fn one_order_is_conditional_for_its_owner_only(b: Backend) {
    let app = TestApp::spawn(b).await;
    let item = app.item(500, 100).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let id = app.paid_order(&ann, &item, 2).await;
    let path = format!("/v1/orders/{id}");

    let r = get_if(&app, &path, &ann, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/json");
    let tag = etag(&r);
    let same = get_if(&app, &path, &ann, Some(&tag)).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&same), tag);
    assert_eq!(
        get_if(&app, &path, &ann, Some("*")).await.status,
        StatusCode::NOT_MODIFIED
    );

    // Another customer gets 404 with the right tag, with `*`, and without.
    for t in [Some(tag.as_str()), Some("*"), None] {
        get_if(&app, &path, &bob, t)
            .await
            .assert_problem(404, "not_found");
    }
    // Unknown and malformed ids, whatever the tag.
    let unknown = format!("/v1/orders/{}", uuid::Uuid::now_v7());
    get_if(&app, &unknown, &ann, Some("*"))
        .await
        .assert_problem(404, "not_found");
    get_if(&app, "/v1/orders/nope", &ann, Some("*"))
        .await
        .assert_problem(404, "not_found");

    // A change moves the tag.
    set_status(&app, &id, "processing").await;
    let r = get_if(&app, &path, &ann, Some(&tag)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "processing");
    assert_ne!(etag(&r), tag);
    // Staff reads it conditionally too.
    let staff = get_if(&app, &path, &app.admin_token, Some(&etag(&r))).await;
    assert_eq!(staff.status, StatusCode::NOT_MODIFIED);
}
both!(one_order_is_conditional_for_its_owner_only);

/// Another customer's list tag does not open anything: each customer's page is its own.
async fn a_tag_is_no_key_to_another_customers_list(b: Backend) {
    let app = TestApp::spawn(b).await;
    let item = app.item(500, 100).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    app.paid_order(&ann, &item, 1).await;
    app.paid_order(&bob, &item, 1).await;
    let ann_page = get_if(&app, "/v1/orders", &ann, None).await;
    let bob_page = get_if(&app, "/v1/orders", &bob, Some(&etag(&ann_page))).await;
    assert_eq!(bob_page.status, StatusCode::OK);
    assert_ne!(
        bob_page.body["data"][0]["id"],
        ann_page.body["data"][0]["id"]
    );
    assert_ne!(etag(&bob_page), etag(&ann_page));
    // `customer_id` is ignored for a customer, cached or not.
    let ann_id = ann_page.body["data"][0]["customer_id"].as_str().unwrap();
    let r = get_if(
        &app,
        &format!("/v1/orders?customer_id={ann_id}"),
        &bob,
        None,
    )
    .await;
    assert_eq!(
        r.body["data"][0]["customer_id"],
        bob_page.body["data"][0]["customer_id"]
    );
}
both!(a_tag_is_no_key_to_another_customers_list);

/// With the cache off, tags and 304s work the same (computed from the page read).
async fn tags_without_the_page_cache(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.order_page_cache_entries = 0).await;
    let item = app.item(500, 100).await;
    let (_, token) = app.customer("ann").await;
    app.paid_order(&token, &item, 1).await;
    let r = get_if(&app, "/v1/orders", &token, None).await;
    let tag = etag(&r);
    assert_eq!(
        get_if(&app, "/v1/orders", &token, Some(&tag)).await.status,
        StatusCode::NOT_MODIFIED
    );
    app.new_order(&token, &item).await;
    let r = get_if(&app, "/v1/orders", &token, Some(&tag)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(statuses(&r), ["created", "placed"]);
    get_if(&app, "/v1/orders", &token, None).await;
    assert_eq!(app.state.orders.page_hits(), 0, "nothing kept");
}
both!(tags_without_the_page_cache);

/// On PostgreSQL many nodes share the database: a page one node keeps is checked against
/// changes made through another. (SQLite is one node.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_kept_by_one_node_see_changes_made_through_another() {
    let one = TestApp::spawn(Backend::Postgres).await;
    let two = one.another_node(|_| {}).await;
    let item = one.item(500, 100).await;
    let (_, token) = one.customer("ann").await;
    let id = one.paid_order(&token, &item, 1).await;
    let kept = get_if(&two, "/v1/orders", &token, None).await;
    assert_eq!(statuses(&kept), ["placed"]);
    assert_eq!(
        get_if(&two, "/v1/orders", &token, None).await.text,
        kept.text
    );
    set_status(&one, &id, "processing").await;
    let r = get_if(&two, "/v1/orders", &token, None).await;
    assert_eq!(statuses(&r), ["processing"]);
    let r = get_if(
        &two,
        &format!("/v1/orders/{id}"),
        &token,
        Some(&etag(&kept)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "processing");
}
