//! The Stripe gateway against localstripe (a stateful fake of Stripe's API, from PyPI),
//! started for each test.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp};
use ordo::config::{GatewayKind, Secret, StripeSettings};

/// The localstripe process shared by this test binary. A small shell watchdog stops it
/// when the test process ends, so no stray server is left behind.
pub struct LocalStripe {
    pub url: String,
}

static LOCALSTRIPE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

impl LocalStripe {
    /// Starts localstripe on a free port; its URL once it answers.
    async fn try_start() -> Option<String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let script = format!(
            "localstripe --port {port} >/dev/null 2>&1 & child=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; \
             kill $child 2>/dev/null",
            parent = std::process::id()
        );
        #[expect(
            clippy::zombie_processes,
            reason = "the watchdog ends with the test process, by design"
        )]
        let _watchdog = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .expect("sh");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let up = crate::helpers::eventually(Duration::from_secs(30), || async {
            client
                .get(format!("{url}/v1/customers"))
                .basic_auth("sk_test_x", Some(""))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        up.then_some(url)
    }

    pub async fn start() -> LocalStripe {
        let _ = rustls::crypto::ring::default_provider().install_default();
        crate::helpers::require_peer("localstripe", "command -v localstripe");
        let url = LOCALSTRIPE
            .get_or_init(|| async {
                // A port picked free may be taken again before localstripe binds it (other
                // tests pick ports too): then it exits, and another port is tried.
                for _ in 0..4 {
                    if let Some(url) = Self::try_start().await {
                        return url;
                    }
                }
                panic!("localstripe did not start (pip install localstripe)");
            })
            .await
            .clone();
        LocalStripe { url }
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .basic_auth("sk_test_x", Some(""))
            .send()
            .await
            .expect("localstripe")
            .json()
            .await
            .expect("json")
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .basic_auth("sk_test_x", Some(""))
            .form(form)
            .send()
            .await
            .expect("localstripe")
            .json()
            .await
            .expect("json")
    }

    /// A card payment method that needs 3-D Secure (localstripe knows the test number).
    pub async fn three_d_secure_card(&self) -> String {
        let pm = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", "4000002500003155"),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        pm["id"].as_str().expect("payment method id").to_owned()
    }

    /// Every PaymentIntent localstripe holds for this order (all pages: localstripe is
    /// shared by every test of the run).
    pub async fn intents_of(&self, order_id: &str) -> Vec<Value> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/payment_intents?limit=100&starting_after={a}"),
                None => "/v1/payment_intents?limit=100".to_owned(),
            };
            let page = self.get(&path).await;
            let data = page["data"].as_array().expect("list");
            found.extend(
                data.iter()
                    .filter(|pi| pi["metadata"]["order_id"] == order_id)
                    .cloned(),
            );
            match data.last() {
                Some(last) if page["has_more"] == true => {
                    after = last["id"].as_str().map(str::to_owned);
                }
                _ => return found,
            }
        }
    }
}

async fn app_on(b: Backend, base: &str) -> TestApp {
    let base = base.to_owned();
    TestApp::new(b)
        .with_gateway(GatewayKind::Stripe)
        .with(move |c| {
            c.stripe = Some(StripeSettings {
                api_base: base,
                secret_key: Secret::new("sk_test_ordo"),
            });
            c.payment_timeout = Duration::from_secs(5);
        })
        .spawn()
        .await
}

async fn stripe_charges_and_refunds(b: Backend) {
    let stripe = LocalStripe::start().await;
    let app = app_on(b, &stripe.url).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(1250, 3).await;
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "placed");
    assert_eq!(r.body["payment_status"], "paid");
    let pi = r.body["payment_reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    assert!(pi.starts_with("pi_"), "{pi}");
    let intent = stripe.get(&format!("/v1/payment_intents/{pi}")).await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["amount"], 2500);
    assert_eq!(intent["currency"], "usd");
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(intent["metadata"]["order_id"], id.as_str());

    // Canceling the paid order refunds it through Stripe.
    let c = app
        .post(
            &format!("/v1/orders/{id}/cancel"),
            &token,
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.body["payment_status"], "refunded");
    let refunds = stripe
        .get(&format!("/v1/refunds?payment_intent={pi}"))
        .await;
    let refunds = refunds["data"].as_array().expect("refunds");
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["amount"], 2500);
    assert_eq!(app.stock(&item).await, 3);
}
both!(stripe_charges_and_refunds);

async fn stripe_declines_cancel_the_order(b: Backend) {
    let stripe = LocalStripe::start().await;
    let app = app_on(b, &stripe.url).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(1250, 3).await;
    let r = app.order(&token, &[(&item, 1)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    // localstripe's card that is declined at charge time.
    let d = app
        .post(
            &format!("/v1/orders/{id}/payments"),
            &token,
            json!({"payment_method": "pm_card_chargeCustomerFail"}),
        )
        .await;
    d.assert_problem(402, "payment_declined");
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "canceled");
    assert_eq!(o.body["payment_status"], "failed");
    assert_eq!(app.stock(&item).await, 3);
    let ev = app.get(&format!("/v1/orders/{id}/events"), &token).await;
    let last = ev.body["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["data"]["note"], "payment declined: card_declined");
}
both!(stripe_declines_cancel_the_order);

async fn an_unreachable_gateway_keeps_the_reservation(b: Backend) {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let app = app_on(b, &format!("http://127.0.0.1:{port}")).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(1250, 3).await;
    let r = app.order(&token, &[(&item, 2)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let p = app
        .post(
            &format!("/v1/orders/{id}/payments"),
            &token,
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    p.assert_problem(503, "unavailable");
    let o = app.get(&format!("/v1/orders/{id}"), &token).await;
    assert_eq!(o.body["status"], "created");
    assert_eq!(o.body["payment_status"], "pending");
    assert_eq!(app.stock(&item).await, 1);
}
both!(an_unreachable_gateway_keeps_the_reservation);

/// After repeated failures the breaker opens: payments fail fast with 503 (the order keeps
/// its reservation), `/readyz` shows it, and after the cool-down a probe goes out again.
async fn a_failing_gateway_opens_the_circuit(b: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let base = format!("http://127.0.0.1:{port}");
    let app = TestApp::spawn_with(b, move |c| {
        c.payment_gateway = GatewayKind::Stripe;
        c.stripe = Some(StripeSettings {
            api_base: base,
            secret_key: Secret::new("sk_test_ordo"),
        });
        c.gateway_policy.retries = 1;
        c.gateway_policy.threshold = 2;
    })
    .await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(100, 10).await;
    let r = app.order(&token, &[(&item, 1)]).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let pay = format!("/v1/orders/{id}/payments");
    // One call with one retry: two failures, and the breaker opens.
    let first = app
        .post(&pay, &token, json!({"payment_method": "pm_card_visa"}))
        .await;
    first.assert_problem(503, "unavailable");
    assert!(
        first.body["detail"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{}",
        first.text
    );
    let ready = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["payment_gateway"]["circuit"], "open");
    // Open: refused at once, without trying.
    let fast = app
        .post(&pay, &token, json!({"payment_method": "pm_card_visa"}))
        .await;
    fast.assert_problem(503, "unavailable");
    assert!(
        fast.body["detail"].as_str().unwrap().contains("paused"),
        "{}",
        fast.text
    );
    assert_eq!(
        app.get(&format!("/v1/orders/{id}"), &token).await.body["status"],
        "created"
    );
    assert_eq!(app.stock(&item).await, 9);
    // After the cool-down the breaker lets a probe through (which fails here: still down).
    app.advance(Duration::from_secs(11));
    let ready: Value = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["payment_gateway"]["circuit"], "half_open");
    let probe = app
        .post(&pay, &token, json!({"payment_method": "pm_card_visa"}))
        .await;
    assert!(
        probe.body["detail"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{}",
        probe.text
    );
    let metrics = app.metrics().await;
    assert!(metrics.contains("ordo_gateway_circuit_state"), "{metrics}");
    assert!(metrics.contains("ordo_gateway_calls_total"), "{metrics}");
}
both!(a_failing_gateway_opens_the_circuit);

/// The charge step's PaymentIntent id, from the order's payment record.
async fn intent_of(app: &TestApp, token: &str, id: &str) -> String {
    let steps = app.get(&format!("/v1/orders/{id}/payments"), token).await;
    steps.body["data"][0]["gateway_reference"]
        .as_str()
        .unwrap_or_else(|| panic!("no reference: {}", steps.text))
        .to_owned()
}

/// A card that needs 3-D Secure: the order waits (202, `created`/`pending`) while the
/// customer authenticates with the bank; the saga keeps asking Stripe about the payment and
/// places the order once it succeeded.
async fn three_d_secure_settles_once_the_customer_authenticates(b: Backend) {
    let stripe = LocalStripe::start().await;
    let app = app_on(b, &stripe.url).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(1250, 3).await;
    let card = stripe.three_d_secure_card().await;
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 1}], "payment_method": card}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "created");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let pi = intent_of(&app, &token, &id).await;
    let intent = stripe.get(&format!("/v1/payment_intents/{pi}")).await;
    assert_eq!(intent["status"], "requires_action", "{intent}");
    // Still waiting for the customer: the saga looks, and leaves the order as it is.
    app.advance(Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.get(&format!("/v1/orders/{id}"), &token).await.body["status"],
        "created"
    );
    // The customer passes the bank's check.
    let secret = intent["client_secret"].as_str().unwrap();
    let done = stripe
        .post(
            &format!("/v1/payment_intents/{pi}/_authenticate"),
            &[("client_secret", secret), ("success", "true")],
        )
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let o = app
        .order_becomes(&token, &id, "status", "placed", Duration::from_secs(2))
        .await;
    assert_eq!(o["payment_status"], "paid");
    assert_eq!(o["payment_reference"], pi.as_str());
    assert_eq!(
        stripe.intents_of(&id).await.len(),
        1,
        "one PaymentIntent per order"
    );
}
both!(three_d_secure_settles_once_the_customer_authenticates);

/// Nobody authenticates: the reservation runs out, the stock returns, and the
/// PaymentIntent is canceled at Stripe, so it can never take the money later.
async fn an_unfinished_payment_is_canceled_at_stripe_when_the_order_expires(b: Backend) {
    let stripe = LocalStripe::start().await;
    let app = app_on(b, &stripe.url).await;
    let (_, token) = app.customer("ann").await;
    let item = app.item(1250, 3).await;
    let card = stripe.three_d_secure_card().await;
    let r = app
        .post(
            "/v1/orders",
            &token,
            json!({"items": [{"item_id": item, "quantity": 2}], "payment_method": card}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let pi = intent_of(&app, &token, &id).await;
    app.advance(Duration::from_secs(901));
    app.order_becomes(&token, &id, "status", "canceled", Duration::from_secs(2))
        .await;
    assert_eq!(app.stock(&item).await, 3);
    let canceled = app
        .eventually(Duration::from_secs(15), || async {
            stripe.get(&format!("/v1/payment_intents/{pi}")).await["status"] == "canceled"
        })
        .await;
    assert!(canceled, "the PaymentIntent was not canceled");
    let steps = app.get(&format!("/v1/orders/{id}/payments"), &token).await;
    assert_eq!(steps.body["data"][0]["status"], "voided", "{}", steps.text);
}
both!(an_unfinished_payment_is_canceled_at_stripe_when_the_order_expires);
