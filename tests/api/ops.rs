//! Operations: health and readiness, Prometheus metrics, the OpenAPI document, the
//! per-caller rate limit and request ids.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, Resp, TestApp};

async fn anon(app: &TestApp, path: &str) -> Resp {
    app.send(Method::GET, path, None, None).await
}

/// The value of the first sample of `metric` (with these exact labels, if given).
fn sample(text: &str, metric: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn health_and_readiness(b: Backend) {
    let app = TestApp::spawn(b).await;
    let h = anon(&app, "/healthz").await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text);
    let r = anon(&app, "/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["database"], "ok");
    assert_eq!(r.body["status"], "ready");
    assert!(
        r.content_type().starts_with("application/json"),
        "{}",
        r.content_type()
    );
    // Probes need no credentials, and a bad one does not get in their way.
    let r = app.get("/readyz", "not-a-token").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
both!(health_and_readiness);

async fn metrics_are_prometheus_text(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 3).await;
    let before = anon(&app, "/metrics").await;
    let placed_before = sample(&before.text, "ordo_orders_placed_total").unwrap_or(0.0);
    let outs_before = sample(&before.text, "ordo_stock_outs_total").unwrap_or(0.0);

    let o = app.order(&token, &[(&item, 2)]).await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.text);
    let order = o.body["id"].as_str().expect("id").to_owned();
    app.order(&token, &[(&item, 2)])
        .await
        .assert_problem(409, "insufficient_stock");
    let got = app.get(&format!("/v1/orders/{order}"), &token).await;
    assert_eq!(got.status, StatusCode::OK);
    let stray = format!("/v1/nothing-{}", uuid::Uuid::new_v4().simple());
    anon(&app, &stray).await.assert_problem(404, "not_found");

    let m = anon(&app, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text);
    assert!(
        m.content_type().starts_with("text/plain"),
        "{}",
        m.content_type()
    );
    let text = &m.text;
    assert!(
        text.contains("# TYPE ordo_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE ordo_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("ordo_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("le=\"+Inf\""), "{text}");
    // Requests are labelled by method, route template and status.
    for labels in [
        r#"method="POST",route="/v1/orders",status="201""#,
        r#"method="POST",route="/v1/orders",status="409""#,
        r#"method="GET",route="/v1/orders/{id}",status="200""#,
    ] {
        assert!(
            text.contains(&format!("ordo_http_requests_total{{{labels}}}")),
            "no ordo_http_requests_total{{{labels}}} in\n{text}"
        );
    }
    // Ids and unknown paths never become label values (unbounded cardinality).
    assert!(!text.contains(&order), "{text}");
    assert!(!text.contains(&stray), "{text}");
    // Business counters moved.
    let placed = sample(text, "ordo_orders_placed_total").expect("ordo_orders_placed_total");
    assert!(
        placed >= placed_before + 1.0,
        "{placed} after {placed_before}"
    );
    let outs = sample(text, "ordo_stock_outs_total").expect("ordo_stock_outs_total");
    assert!(outs >= outs_before + 1.0, "{outs} after {outs_before}");
    // Every sample line is `name{labels} value`.
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().expect("value");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
}
both!(metrics_are_prometheus_text);

/// Every route of the contract, with its methods.
const ROUTES: [(&str, &[&str]); 16] = [
    ("/v1/auth/register", &["post"]),
    ("/v1/auth/login", &["post"]),
    ("/v1/me", &["get"]),
    ("/v1/users", &["post"]),
    ("/v1/api-keys", &["post"]),
    ("/v1/api-keys/{id}", &["delete"]),
    ("/v1/items", &["get", "post"]),
    ("/v1/items/{id}", &["get", "patch"]),
    ("/v1/suppliers/{supplier_id}/inventory", &["get"]),
    ("/v1/orders", &["get", "post"]),
    ("/v1/orders/{id}", &["get"]),
    ("/v1/orders/{id}/payments", &["get", "post"]),
    ("/v1/orders/{id}/status", &["post"]),
    ("/v1/orders/{id}/tracking", &["post"]),
    ("/v1/orders/{id}/cancel", &["post"]),
    ("/v1/orders/{id}/events", &["get"]),
];

async fn openapi_documents_every_route(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = anon(&app, "/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.content_type().starts_with("application/json"),
        "{}",
        r.content_type()
    );
    let doc: Value = serde_json::from_str(&r.text).expect("valid JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    let mut missing = Vec::new();
    for (path, methods) in ROUTES {
        for m in methods {
            if paths.get(path).and_then(|p| p.get(*m)).is_none() {
                missing.push(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    assert!(missing.is_empty(), "not documented: {missing:?}");
    // Every documented operation says what it answers.
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
    // Bearer authentication is declared.
    assert!(
        doc["components"]["securitySchemes"]
            .as_object()
            .is_some_and(|s| !s.is_empty()),
        "{}",
        doc["components"]
    );
}
both!(openapi_documents_every_route);

fn retry_after(r: &Resp) -> Option<u64> {
    r.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn callers_are_rate_limited_separately(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.rate_limit_per_min = Some(5)).await;
    let (_, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    for n in 1..=5 {
        let r = app.get("/v1/me", &ann).await;
        assert_eq!(r.status, StatusCode::OK, "request {n}: {}", r.text);
    }
    let r = app.get("/v1/me", &ann).await;
    r.assert_problem(429, "rate_limited");
    let wait = retry_after(&r).expect("Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // Any route counts against the same caller.
    app.get("/v1/items", &ann)
        .await
        .assert_problem(429, "rate_limited");
    // Another caller is still served, and so is the admin.
    let r = app.get("/v1/me", &bob).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.get("/v1/items", &app.admin_token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Probes are never limited.
    for _ in 0..10 {
        assert_eq!(anon(&app, "/healthz").await.status, StatusCode::OK);
    }
    // Callers without a token are counted by address.
    let mut limited = false;
    for _ in 0..6 {
        let r = anon(&app, "/v1/items").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            r.assert_problem(429, "rate_limited");
            assert!(retry_after(&r).is_some());
            limited = true;
            break;
        }
        r.assert_problem(401, "unauthorized");
    }
    assert!(limited, "anonymous requests were never limited");
}
both!(callers_are_rate_limited_separately);

async fn no_rate_limit_by_default(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, ann) = app.customer("ann").await;
    for _ in 0..30 {
        assert_eq!(app.get("/v1/me", &ann).await.status, StatusCode::OK);
    }
}
both!(no_rate_limit_by_default);

async fn every_response_has_a_request_id(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, token) = app.customer("ann").await;
    let id_of = |r: &Resp| -> String {
        r.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no x-request-id in {:?}", r.headers))
            .to_owned()
    };
    let mut seen = HashSet::new();
    for r in [
        app.get("/v1/me", &token).await,
        app.get("/v1/items", &token).await,
        anon(&app, "/healthz").await,
        anon(&app, "/v1/me").await,
        anon(&app, "/v1/no-such-route").await,
        app.post("/v1/orders", &token, json!({"items": []})).await,
    ] {
        let id = id_of(&r);
        assert!(!id.is_empty());
        assert!(seen.insert(id.clone()), "request id {id} repeated");
    }
    // A caller's own id is kept, so logs can be joined across services.
    let r = app
        .client
        .get(format!("{}/v1/me", app.url))
        .bearer_auth(&token)
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(id_of(&Resp::read(r).await), "trace-abc-123");
}
both!(every_response_has_a_request_id);
