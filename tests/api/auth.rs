//! Identity: registration, login and its rate limit, access tokens, users, API keys, and who
//! may call which route.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ordo::clock::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, Resp, TestApp};

const PASSWORD: &str = "password-123";

async fn register(app: &TestApp, email: &str, password: &str, name: &str) -> Resp {
    app.send(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(json!({"email": email, "password": password, "name": name})),
    )
    .await
}

async fn login(app: &TestApp, email: &str, password: &str) -> Resp {
    app.send(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

async fn me(app: &TestApp, token: Option<&str>) -> Resp {
    app.send(Method::GET, "/v1/me", token, None).await
}

fn id_of(r: &Resp) -> String {
    r.body["id"].as_str().expect("id").to_owned()
}

async fn register_returns_a_customer_and_a_token(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = register(&app, "  Ann@Example.COM ", PASSWORD, "Ann").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let user = &r.body["user"];
    assert!(user["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["name"], "Ann");
    assert_eq!(user["role"], "customer");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 3600);
    let token = r.body["access_token"].as_str().expect("token");
    assert!(!r.text.contains(PASSWORD), "the password is echoed");

    // The token works, and names the same user.
    let m = me(&app, Some(token)).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text);
    assert_eq!(m.body["id"], user["id"]);
    assert_eq!(m.body["email"], "ann@example.com");
    assert_eq!(m.body["role"], "customer");

    // Login answers in the same shape, whatever the case of the e-mail.
    let l = login(&app, "ANN@example.com", PASSWORD).await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    assert_eq!(l.body["user"], *user);
    assert_eq!(l.body["token_type"], "Bearer");
    assert_eq!(l.body["expires_in"], 3600);
    let t2 = l.body["access_token"].as_str().expect("token");
    assert_eq!(me(&app, Some(t2)).await.body["id"], user["id"]);
}
both!(register_returns_a_customer_and_a_token);

async fn registration_is_validated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let ok = register(&app, "dup@example.com", PASSWORD, "Dup").await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);

    register(&app, "dup@example.com", PASSWORD, "Dup")
        .await
        .assert_problem(409, "conflict");
    register(&app, "DUP@Example.Com", "another-password", "Other")
        .await
        .assert_problem(409, "conflict");
    // The first account is untouched by the refused ones.
    assert_eq!(
        login(&app, "dup@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    assert_eq!(
        login(&app, "dup@example.com", "another-password")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let r = register(&app, "short@example.com", "1234567", "Short").await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["password"]);
    // Exactly eight is enough.
    let r = register(&app, "eight@example.com", "12345678", "Eight").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    for bad in ["not-an-email", "a@b", "@example.com", "a b@example.com", ""] {
        let r = register(&app, bad, PASSWORD, "Bad").await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.fields(), vec!["email"], "{bad:?}");
    }
    let r = register(&app, "noname@example.com", PASSWORD, "   ").await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["name"]);

    // Every bad field at once.
    let r = register(&app, "nope", "short", "").await;
    r.assert_problem(422, "validation_failed");
    let mut fields = r.fields();
    fields.sort();
    assert_eq!(fields, vec!["email", "name", "password"]);

    // None of the refused registrations created an account.
    let r = login(&app, "short@example.com", "1234567").await;
    r.assert_problem(401, "unauthorized");
}
both!(registration_is_validated);

async fn wrong_password_and_unknown_email_answer_alike(b: Backend) {
    let app = TestApp::spawn(b).await;
    register(&app, "ann@example.com", PASSWORD, "Ann").await;
    let wrong = login(&app, "ann@example.com", "not-the-password").await;
    wrong.assert_problem(401, "unauthorized");
    let unknown = login(&app, "nobody@example.com", PASSWORD).await;
    unknown.assert_problem(401, "unauthorized");
    assert_eq!(wrong.body, unknown.body);
    assert!(wrong.body["access_token"].is_null());
}
both!(wrong_password_and_unknown_email_answer_alike);

fn retry_after(r: &Resp) -> u64 {
    r.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {:?}", r.headers))
}

async fn failed_logins_are_limited_per_email(b: Backend) {
    let app = TestApp::spawn(b).await;
    register(&app, "ann@example.com", PASSWORD, "Ann").await;
    register(&app, "bob@example.com", PASSWORD, "Bob").await;

    // Nine failures, then successes: successes are not counted.
    for _ in 0..9 {
        login(&app, "ann@example.com", "wrong-password")
            .await
            .assert_problem(401, "unauthorized");
    }
    for _ in 0..5 {
        assert_eq!(
            login(&app, "ann@example.com", PASSWORD).await.status,
            StatusCode::OK
        );
    }
    // The tenth failure is still answered normally...
    login(&app, "Ann@Example.com", "wrong-password")
        .await
        .assert_problem(401, "unauthorized");
    // ...and from then on even the right password is refused.
    let r = login(&app, "ann@example.com", PASSWORD).await;
    r.assert_problem(429, "rate_limited");
    assert!(r.body["access_token"].is_null());
    let wait = retry_after(&r);
    assert!((1..=900).contains(&wait), "Retry-After {wait}");
    assert!(wait >= 880, "the window is 15 minutes: Retry-After {wait}");
    login(&app, "ann@example.com", "wrong-password")
        .await
        .assert_problem(429, "rate_limited");

    // Only this e-mail is limited.
    assert_eq!(
        login(&app, "bob@example.com", PASSWORD).await.status,
        StatusCode::OK
    );

    // Still limited just before the window ends.
    app.advance(Duration::from_secs(14 * 60));
    login(&app, "ann@example.com", PASSWORD)
        .await
        .assert_problem(429, "rate_limited");
    app.advance(Duration::from_secs(60 + 1));
    let r = login(&app, "ann@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
both!(failed_logins_are_limited_per_email);

async fn failed_logins_for_unknown_emails_are_limited_too(b: Backend) {
    let app = TestApp::spawn(b).await;
    for _ in 0..10 {
        login(&app, "ghost@example.com", PASSWORD)
            .await
            .assert_problem(401, "unauthorized");
    }
    let r = login(&app, "ghost@example.com", PASSWORD).await;
    r.assert_problem(429, "rate_limited");
    retry_after(&r);
    // Registering is not limited, and then the window still holds for login.
    let reg = register(&app, "ghost@example.com", PASSWORD, "Ghost").await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.text);
    login(&app, "ghost@example.com", PASSWORD)
        .await
        .assert_problem(429, "rate_limited");
}
both!(failed_logins_for_unknown_emails_are_limited_too);

async fn failed_logins_are_limited_per_ip(b: Backend) {
    let app = TestApp::spawn(b).await;
    register(&app, "ann@example.com", PASSWORD, "Ann").await;
    // 100 failures from one address, spread over many e-mails (none reaches 10).
    for i in 0..100 {
        login(
            &app,
            &format!("guess{}@example.com", i % 20),
            "wrong-password",
        )
        .await
        .assert_problem(401, "unauthorized");
    }
    let r = login(&app, "ann@example.com", PASSWORD).await;
    r.assert_problem(429, "rate_limited");
    retry_after(&r);
    app.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(
        login(&app, "ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}
both!(failed_logins_are_limited_per_ip);

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

async fn jwt_secret(app: &TestApp) -> Vec<u8> {
    let stored = app
        .state
        .store
        .setting("jwt_secret")
        .await
        .expect("read setting")
        .expect("a stored secret");
    base64::engine::general_purpose::STANDARD
        .decode(stored)
        .expect("base64 secret")
}

fn sign(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("sign")
}

async fn only_genuine_unexpired_tokens_are_accepted(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (id, token) = app.customer("ann").await;
    assert_eq!(me(&app, Some(&token)).await.status, StatusCode::OK);
    let now = app.clock.now().unix_timestamp();
    let admin_claims =
        json!({"sub": id, "role": "admin", "iss": "ordo", "iat": now, "exp": now + 3600});

    // No credential, or one that is not a bearer token.
    me(&app, None).await.assert_problem(401, "unauthorized");
    for header in [
        "Basic YWRtaW46YWRtaW4=".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer garbage".to_owned(),
        format!("Token {token}"),
    ] {
        let r = app
            .client
            .get(format!("{}/v1/me", app.url))
            .header("Authorization", &header)
            .send()
            .await
            .expect("request");
        Resp::read(r).await.assert_problem(401, "unauthorized");
    }

    // A token whose payload was changed (customer -> admin) keeps its old signature.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload")).expect("json");
    payload["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    me(&app, Some(&tampered))
        .await
        .assert_problem(401, "unauthorized");
    app.post(
        "/v1/users",
        &tampered,
        json!({"email": "evil@example.com", "password": PASSWORD, "name": "Evil", "role": "admin"}),
    )
    .await
    .assert_problem(401, "unauthorized");
    // A damaged signature.
    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[5] = if sig[5] == 'A' { 'B' } else { 'A' };
    let damaged = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        sig.into_iter().collect::<String>()
    );
    me(&app, Some(&damaged))
        .await
        .assert_problem(401, "unauthorized");

    // Signed with another secret.
    let forged = sign(
        Algorithm::HS256,
        &admin_claims,
        b"not-the-server-secret-not-the-server-secret",
    );
    me(&app, Some(&forged))
        .await
        .assert_problem(401, "unauthorized");

    // `alg: none`, with and without the trailing dot.
    let header = b64(&json!({"alg": "none", "typ": "JWT"}));
    for none in [
        format!("{header}.{}.", b64(&admin_claims)),
        format!("{header}.{}", b64(&admin_claims)),
    ] {
        me(&app, Some(&none))
            .await
            .assert_problem(401, "unauthorized");
        app.post(
            "/v1/api-keys",
            &none,
            json!({"name": "x", "scopes": ["orders:read"]}),
        )
        .await
        .assert_problem(401, "unauthorized");
    }

    // With the real secret: the right algorithm and claims pass (so the refusals above are
    // about the token, not the way this test builds it), anything else does not.
    let secret = jwt_secret(&app).await;
    let customer_claims =
        json!({"sub": id, "role": "customer", "iss": "ordo", "iat": now, "exp": now + 3600});
    let genuine = sign(Algorithm::HS256, &customer_claims, &secret);
    assert_eq!(me(&app, Some(&genuine)).await.body["id"], id.as_str());
    let hs512 = sign(Algorithm::HS512, &customer_claims, &secret);
    me(&app, Some(&hs512))
        .await
        .assert_problem(401, "unauthorized");
    let mut other_issuer = customer_claims.clone();
    other_issuer["iss"] = json!("someone-else");
    me(&app, Some(&sign(Algorithm::HS256, &other_issuer, &secret)))
        .await
        .assert_problem(401, "unauthorized");
    let mut no_exp = customer_claims.clone();
    no_exp.as_object_mut().expect("object").remove("exp");
    me(&app, Some(&sign(Algorithm::HS256, &no_exp, &secret)))
        .await
        .assert_problem(401, "unauthorized");

    // Expiry follows the server's clock: fine just before the hour, refused after it.
    app.advance(Duration::from_secs(3590));
    assert_eq!(me(&app, Some(&token)).await.status, StatusCode::OK);
    app.advance(Duration::from_secs(20));
    let r = me(&app, Some(&token)).await;
    r.assert_problem(401, "unauthorized");
    // A fresh login gives a token that works again.
    let fresh = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(me(&app, Some(&fresh)).await.body["role"], "admin");
}
both!(only_genuine_unexpired_tokens_are_accepted);

async fn admins_create_users(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app
        .post(
            "/v1/users",
            &app.admin_token,
            json!({"email": "Stef@Example.com", "password": PASSWORD, "name": "Stef", "role": "staff"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["email"], "stef@example.com");
    assert_eq!(r.body["name"], "Stef");
    assert_eq!(r.body["role"], "staff");
    assert!(r.body["id"].is_string());
    assert!(r.body.get("password").is_none() && r.body.get("password_hash").is_none());
    let staff = app.login("stef@example.com", PASSWORD).await;
    let m = me(&app, Some(&staff)).await;
    assert_eq!(m.body["role"], "staff");
    assert_eq!(m.body["id"], r.body["id"]);

    // Same e-mail again.
    app.post(
        "/v1/users",
        &app.admin_token,
        json!({"email": "stef@example.com", "password": PASSWORD, "name": "Stef", "role": "admin"}),
    )
    .await
    .assert_problem(409, "conflict");
    // An unknown role, a short password.
    let r = app
        .post(
            "/v1/users",
            &app.admin_token,
            json!({"email": "x@example.com", "password": PASSWORD, "name": "X", "role": "root"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["role"]);
    let r = app
        .post(
            "/v1/users",
            &app.admin_token,
            json!({"email": "x@example.com", "password": "short", "name": "X", "role": "staff"}),
        )
        .await;
    assert_eq!(r.fields(), vec!["password"]);

    // Customers and staff may not.
    let (_, customer) = app.customer("ann").await;
    for token in [&customer, &staff] {
        app.post(
            "/v1/users",
            token,
            json!({"email": "boss@example.com", "password": PASSWORD, "name": "Boss", "role": "admin"}),
        )
        .await
        .assert_problem(403, "forbidden");
    }
    login(&app, "boss@example.com", PASSWORD)
        .await
        .assert_problem(401, "unauthorized");

    // A new admin is a full admin.
    let r = app
        .post(
            "/v1/users",
            &app.admin_token,
            json!({"email": "second@example.com", "password": PASSWORD, "name": "Second", "role": "admin"}),
        )
        .await;
    assert_eq!(r.body["role"], "admin");
    let second = app.login("second@example.com", PASSWORD).await;
    let k = app
        .post(
            "/v1/api-keys",
            &second,
            json!({"name": "ci", "scopes": ["items:read"]}),
        )
        .await;
    assert_eq!(k.status, StatusCode::CREATED, "{}", k.text);
}
both!(admins_create_users);

async fn api_keys_have_exactly_their_scopes_until_revoked(b: Backend) {
    let app = TestApp::spawn(b).await;
    let item = app.item(100, 5).await;
    let r = app
        .post(
            "/v1/api-keys",
            &app.admin_token,
            json!({"name": "warehouse", "scopes": ["orders:read", "items:read", "orders:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["name"], "warehouse");
    let mut scopes: Vec<&str> = r.body["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| s.as_str().expect("scope"))
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, vec!["items:read", "orders:read"]);
    let id = id_of(&r);
    let key = r.body["key"].as_str().expect("key").to_owned();
    assert!(key.len() >= 32, "{key}");

    // Who am I.
    let m = me(&app, Some(&key)).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text);
    assert_eq!(m.body["id"], id.as_str());
    assert_eq!(m.body["role"], "integration");

    // Allowed by its scopes.
    let l = app.get("/v1/orders", &key).await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.text);
    assert!(l.body["data"].is_array());
    let i = app.get(&format!("/v1/items/{item}"), &key).await;
    assert_eq!(i.status, StatusCode::OK, "{}", i.text);
    assert_eq!(i.body["id"], item.as_str());
    // Not allowed.
    app.post(
        "/v1/items",
        &key,
        json!({"sku": "K-1", "name": "Key item", "price": 1, "currency": "USD", "stock": 1}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        "/v1/api-keys",
        &key,
        json!({"name": "escalate", "scopes": ["items:write"]}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.patch(&format!("/v1/items/{item}"), &key, json!({"stock": 0}))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(app.stock(&item).await, 5);

    // A made-up key with the right prefix, while the real one is active.
    let last = if key.ends_with('x') { 'y' } else { 'x' };
    me(&app, Some(&format!("{}{last}", &key[..key.len() - 1])))
        .await
        .assert_problem(401, "unauthorized");
    me(&app, Some("ordo_"))
        .await
        .assert_problem(401, "unauthorized");

    // Revoked: refused at once; a second revocation finds nothing.
    let d = app
        .send(
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    assert!(d.text.is_empty());
    app.get("/v1/orders", &key)
        .await
        .assert_problem(401, "unauthorized");
    me(&app, Some(&key))
        .await
        .assert_problem(401, "unauthorized");
    app.send(
        Method::DELETE,
        &format!("/v1/api-keys/{id}"),
        Some(&app.admin_token),
        None,
    )
    .await
    .assert_problem(404, "not_found");
    for unknown in [uuid::Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        app.send(
            Method::DELETE,
            &format!("/v1/api-keys/{unknown}"),
            Some(&app.admin_token),
            None,
        )
        .await
        .assert_problem(404, "not_found");
    }
}
both!(api_keys_have_exactly_their_scopes_until_revoked);

async fn api_key_requests_are_validated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app
        .post(
            "/v1/api-keys",
            &app.admin_token,
            json!({"name": "bad", "scopes": ["orders:read", "orders:delete"]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["scopes[1]"]);
    let r = app
        .post(
            "/v1/api-keys",
            &app.admin_token,
            json!({"name": "none", "scopes": []}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["scopes"]);
    let r = app
        .post(
            "/v1/api-keys",
            &app.admin_token,
            json!({"name": " ", "scopes": ["items:read"]}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.fields(), vec!["name"]);
}
both!(api_key_requests_are_validated);

async fn every_route_refuses_callers_it_does_not_serve(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (ann_id, ann) = app.customer("ann").await;
    let (_, bob) = app.customer("bob").await;
    let staff = app.staff().await;
    let (_, orders_read) = app.api_key(&["orders:read"]).await;
    let (_, orders_write) = app.api_key(&["orders:write"]).await;
    let (_, items_read) = app.api_key(&["items:read"]).await;
    let (_, items_write) = app.api_key(&["items:write"]).await;
    let (_, tracking) = app.api_key(&["tracking:write"]).await;
    let (_, all) = app
        .api_key(&[
            "orders:read",
            "orders:write",
            "items:read",
            "items:write",
            "tracking:write",
            "webhooks:manage",
        ])
        .await;
    let (victim_key, victim_secret) = app.api_key(&["items:read"]).await;
    let item = app.item_with(json!({"supplier_id": "acme"})).await;
    let r = app.order(&ann, &[(&item, 1)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let order = id_of(&r);

    let token = |who: &str| -> &str {
        match who {
            "ann" => &ann,
            "bob" => &bob,
            "staff" => &staff,
            "orders:read" => &orders_read,
            "orders:write" => &orders_write,
            "items:read" => &items_read,
            "items:write" => &items_write,
            "tracking:write" => &tracking,
            "all scopes" => &all,
            other => panic!("no caller {other}"),
        }
    };
    let new_user =
        json!({"email": "x@example.com", "password": PASSWORD, "name": "X", "role": "admin"});
    let new_key = json!({"name": "x", "scopes": ["items:read"]});
    let new_item =
        json!({"sku": "NEW-1", "name": "New", "price": 1, "currency": "USD", "stock": 1});
    let line = json!({"items": [{"item_id": item, "quantity": 1}], "customer_id": ann_id});
    let pay = json!({"payment_method": "pm_card_visa"});
    let scan = json!({"description": "scan"});
    let status = json!({"status": "canceled"});
    let none = Value::Null;
    let o = |suffix: &str| format!("/v1/orders/{order}{suffix}");
    let item_path = format!("/v1/items/{item}");
    let key_path = format!("/v1/api-keys/{victim_key}");
    let inventory = "/v1/suppliers/acme/inventory".to_owned();
    let (users, keys, items, orders) = (
        "/v1/users".to_owned(),
        "/v1/api-keys".to_owned(),
        "/v1/items".to_owned(),
        "/v1/orders".to_owned(),
    );
    let price = json!({"price": 1});
    let empty = json!({});
    // (caller, method, path, body, expected status)
    let refusals: Vec<(&str, Method, String, &Value, u16)> = vec![
        // Identity: users and keys are for admins only.
        ("ann", Method::POST, users.clone(), &new_user, 403),
        ("staff", Method::POST, users.clone(), &new_user, 403),
        ("all scopes", Method::POST, users, &new_user, 403),
        ("ann", Method::POST, keys.clone(), &new_key, 403),
        ("staff", Method::POST, keys.clone(), &new_key, 403),
        ("all scopes", Method::POST, keys, &new_key, 403),
        ("ann", Method::DELETE, key_path.clone(), &none, 403),
        ("staff", Method::DELETE, key_path.clone(), &none, 403),
        ("all scopes", Method::DELETE, key_path, &none, 403),
        // Items: writing is for staff and items:write, reading for users and items:read.
        ("ann", Method::POST, items.clone(), &new_item, 403),
        ("items:read", Method::POST, items.clone(), &new_item, 403),
        ("orders:write", Method::POST, items.clone(), &new_item, 403),
        ("orders:read", Method::GET, item_path.clone(), &none, 403),
        ("tracking:write", Method::GET, item_path.clone(), &none, 403),
        ("ann", Method::PATCH, item_path.clone(), &price, 403),
        ("items:read", Method::PATCH, item_path.clone(), &price, 403),
        ("orders:write", Method::PATCH, item_path, &price, 403),
        ("orders:read", Method::GET, items, &none, 403),
        ("ann", Method::GET, inventory.clone(), &none, 403),
        ("orders:read", Method::GET, inventory.clone(), &none, 403),
        ("items:write", Method::GET, inventory, &none, 403),
        // Orders: someone else's is not found; a missing permission is forbidden.
        ("orders:read", Method::POST, orders.clone(), &line, 403),
        ("items:write", Method::POST, orders.clone(), &line, 403),
        ("tracking:write", Method::POST, orders.clone(), &line, 403),
        ("items:read", Method::GET, orders.clone(), &none, 403),
        ("orders:write", Method::GET, orders, &none, 403),
        ("bob", Method::GET, o(""), &none, 404),
        ("items:read", Method::GET, o(""), &none, 403),
        ("bob", Method::POST, o("/payments"), &pay, 404),
        ("orders:read", Method::POST, o("/payments"), &pay, 403),
        ("ann", Method::POST, o("/status"), &status, 403),
        ("orders:read", Method::POST, o("/status"), &status, 403),
        ("items:write", Method::POST, o("/status"), &status, 403),
        ("ann", Method::POST, o("/tracking"), &scan, 403),
        ("orders:write", Method::POST, o("/tracking"), &scan, 403),
        ("orders:read", Method::POST, o("/tracking"), &scan, 403),
        ("bob", Method::POST, o("/cancel"), &empty, 404),
        ("orders:read", Method::POST, o("/cancel"), &empty, 403),
        ("tracking:write", Method::POST, o("/cancel"), &empty, 403),
        ("bob", Method::GET, o("/events"), &none, 404),
        ("items:read", Method::GET, o("/events"), &none, 403),
    ];
    for (who, method, path, body, expected) in refusals {
        let sent = (!body.is_null()).then(|| body.clone());
        let r = app
            .send(method.clone(), &path, Some(token(who)), sent)
            .await;
        assert_eq!(
            r.status.as_u16(),
            expected,
            "{method} {path} {body} as {who}: {}",
            r.text
        );
        let code = if expected == 404 {
            "not_found"
        } else {
            "forbidden"
        };
        r.assert_problem(expected, code);
        assert!(!r.text.contains(&order), "{}", r.text);
    }

    // Nothing changed: the order, the item, the users, the victim key.
    let o = app.get(&format!("/v1/orders/{order}"), &ann).await;
    assert_eq!(o.body["status"], "created");
    assert_eq!(o.body["payment_status"], "pending");
    let it = app.get(&format!("/v1/items/{item}"), &ann).await;
    assert_eq!(it.body["price"], 1000);
    assert_eq!(it.body["stock"], 9);
    let items = app.get("/v1/items", &ann).await;
    assert_eq!(items.body["data"].as_array().expect("data").len(), 1);
    let orders = app.get("/v1/orders", &staff).await;
    assert_eq!(orders.body["data"].as_array().expect("data").len(), 1);
    login(&app, "x@example.com", PASSWORD)
        .await
        .assert_problem(401, "unauthorized");
    let inv = app.get("/v1/suppliers/acme/inventory", &staff).await;
    assert_eq!(inv.status, StatusCode::OK, "{}", inv.text);

    assert_eq!(
        app.get("/v1/items", &victim_secret).await.status,
        StatusCode::OK
    );
    // And the callers are served where they should be.
    assert_eq!(
        app.get("/v1/items", &items_read).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/v1/suppliers/acme/inventory", &items_read)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/v1/orders/{order}"), &orders_read)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(me(&app, Some(&all)).await.body["role"], "integration");
}
both!(every_route_refuses_callers_it_does_not_serve);

async fn parallel_guesses_do_not_escape_the_login_limit(b: Backend) {
    let app = TestApp::spawn(b).await;
    register(&app, "ann@example.com", PASSWORD, "Ann").await;
    // 40 guesses at once: the limit is on guesses, so at most 10 may be checked.
    let guesses: Vec<String> = (0..40).map(|n| format!("guess-{n}")).collect();
    let answers =
        futures::future::join_all(guesses.iter().map(|g| login(&app, "ann@example.com", g))).await;
    let checked = answers
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    for r in answers
        .iter()
        .filter(|r| r.status != StatusCode::UNAUTHORIZED)
    {
        r.assert_problem(429, "rate_limited");
    }
    assert!(
        checked <= 10,
        "{checked} of 40 parallel guesses were checked"
    );
}
both!(parallel_guesses_do_not_escape_the_login_limit);
