//! Stripe's HTTP API as a `PaymentGateway`: PaymentIntents created and confirmed in one
//! call, refunds, and an idempotency key on every request. Tested against localstripe.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest};
use crate::config::Secret;

pub struct StripeGateway {
    client: reqwest::Client,
    base: String,
    secret_key: Secret,
}

#[derive(Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(Deserialize)]
struct StripeError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Refund {
    id: String,
}

impl StripeGateway {
    pub fn new(base: &str, secret_key: Secret, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(StripeGateway {
            client,
            base: base.trim_end_matches('/').to_owned(),
            secret_key,
        })
    }

    async fn post(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, String)],
    ) -> Result<reqwest::Response, GatewayError> {
        self.client
            .post(format!("{}{path}", self.base))
            .basic_auth(self.secret_key.expose(), Some(""))
            .header("Idempotency-Key", key)
            .form(form)
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(format!("stripe: {}", without_url(&e))))
    }
}

/// reqwest's errors name the URL; keep the message short and free of query strings.
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "request failed".into()
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let form = [
            ("amount", req.amount.to_string()),
            ("currency", req.currency.to_lowercase()),
            ("payment_method", req.payment_method.clone()),
            ("payment_method_types[]", "card".to_owned()),
            ("confirm", "true".to_owned()),
            ("metadata[order_id]", req.order_id.clone()),
        ];
        let res = self
            .post("/v1/payment_intents", &req.idempotency_key, &form)
            .await?;
        let status = res.status();
        if status.is_success() {
            let pi: PaymentIntent = res
                .json()
                .await
                .map_err(|_| GatewayError::Unavailable("stripe: unreadable answer".into()))?;
            return Ok(match pi.status.as_str() {
                "succeeded" | "requires_capture" => ChargeOutcome::Succeeded { reference: pi.id },
                "processing" | "requires_action" => ChargeOutcome::Pending { reference: pi.id },
                other => ChargeOutcome::Declined {
                    reason: other.to_owned(),
                },
            });
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(GatewayError::Unavailable(format!(
                "stripe answered {status}"
            )));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            // Our key is wrong: nothing the customer can fix.
            return Err(GatewayError::Unavailable(
                "stripe refused the API key".into(),
            ));
        }
        // 402 card errors and 400/404 (an unusable payment method) are declines.
        let reason = res
            .json::<ErrorBody>()
            .await
            .ok()
            .and_then(|b| b.error.decline_code.or(b.error.code).or(b.error.message))
            .unwrap_or_else(|| format!("declined ({status})"));
        Ok(ChargeOutcome::Declined { reason })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<String, GatewayError> {
        let form = [
            ("payment_intent", req.reference.clone()),
            ("amount", req.amount.to_string()),
        ];
        let res = self
            .post("/v1/refunds", &req.idempotency_key, &form)
            .await?;
        let status = res.status();
        if !status.is_success() {
            return Err(GatewayError::Unavailable(format!(
                "stripe refused the refund ({status})"
            )));
        }
        let refund: Refund = res
            .json()
            .await
            .map_err(|_| GatewayError::Unavailable("stripe: unreadable answer".into()))?;
        Ok(refund.id)
    }
}
