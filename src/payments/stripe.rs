//! Stripe's HTTP API as a `PaymentGateway`: a PaymentIntent is created (prepare), then
//! confirmed; it is looked up by id, canceled (void) and refunded. Every POST carries an
//! idempotency key. Tested against localstripe.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest, VoidOutcome,
};
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

    async fn get(&self, path: &str) -> Result<reqwest::Response, GatewayError> {
        self.client
            .get(format!("{}{path}", self.base))
            .basic_auth(self.secret_key.expose(), Some(""))
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(format!("stripe: {}", without_url(&e))))
    }

    /// A PaymentIntent from a successful answer; anything else is the gateway failing.
    async fn intent(res: reqwest::Response) -> Result<PaymentIntent, GatewayError> {
        let status = res.status();
        if !status.is_success() {
            return Err(GatewayError::Unavailable(format!(
                "stripe answered {status}"
            )));
        }
        res.json()
            .await
            .map_err(|_| GatewayError::Unavailable("stripe: unreadable answer".into()))
    }
}

/// What a PaymentIntent's status means for the order.
fn outcome_of(pi: PaymentIntent) -> ChargeOutcome {
    match pi.status.as_str() {
        "succeeded" | "requires_capture" => ChargeOutcome::Succeeded { reference: pi.id },
        // Prepared, never confirmed (a crash between the two steps).
        "requires_confirmation" => ChargeOutcome::Unconfirmed { reference: pi.id },
        // Waiting for the customer (3-D Secure) or the bank.
        "processing" | "requires_action" => ChargeOutcome::Pending { reference: pi.id },
        // `requires_payment_method` after a confirm: the card was refused.
        other => ChargeOutcome::Declined {
            reason: other.to_owned(),
        },
    }
}

/// Sorts an unsuccessful answer to a charge: gateway trouble, or a decline.
async fn refusal(res: reqwest::Response) -> Result<ChargeOutcome, GatewayError> {
    let status = res.status();
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::CONFLICT
    {
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

    async fn prepare(&self, req: &ChargeRequest) -> Result<String, GatewayError> {
        let form = [
            ("amount", req.amount.to_string()),
            ("currency", req.currency.to_lowercase()),
            ("payment_method", req.payment_method.clone()),
            ("payment_method_types[]", "card".to_owned()),
            ("metadata[order_id]", req.order_id.clone()),
        ];
        let res = self
            .post("/v1/payment_intents", &req.idempotency_key, &form)
            .await?;
        let status = res.status();
        if status.is_client_error()
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
            && status != reqwest::StatusCode::CONFLICT
        {
            // An unusable payment method is refused at creation already: say so at the
            // confirm step, where declines are handled.
            return Ok(format!("declined:{}", status.as_u16()));
        }
        Ok(Self::intent(res).await?.id)
    }

    async fn confirm(
        &self,
        req: &ChargeRequest,
        reference: &str,
    ) -> Result<ChargeOutcome, GatewayError> {
        if let Some(code) = reference.strip_prefix("declined:") {
            return Ok(ChargeOutcome::Declined {
                reason: format!("the payment method was refused ({code})"),
            });
        }
        let res = self
            .post(
                &format!("/v1/payment_intents/{reference}/confirm"),
                &format!("{}-confirm", req.idempotency_key),
                &[],
            )
            .await?;
        if res.status().is_success() {
            return Ok(outcome_of(Self::intent(res).await?));
        }
        if res.status() == reqwest::StatusCode::BAD_REQUEST {
            // Most likely confirmed already (a retry whose first try got through): the
            // PaymentIntent itself says how it went.
            return match self.retrieve(req, reference).await? {
                ChargeOutcome::Unconfirmed { .. } => refusal(res).await,
                other => Ok(other),
            };
        }
        refusal(res).await
    }

    async fn retrieve(
        &self,
        _: &ChargeRequest,
        reference: &str,
    ) -> Result<ChargeOutcome, GatewayError> {
        if reference.starts_with("declined:") {
            return Ok(ChargeOutcome::Declined {
                reason: "the payment method was refused".into(),
            });
        }
        let res = self
            .get(&format!("/v1/payment_intents/{reference}"))
            .await?;
        Ok(outcome_of(Self::intent(res).await?))
    }

    async fn void(
        &self,
        req: &ChargeRequest,
        reference: &str,
    ) -> Result<VoidOutcome, GatewayError> {
        if reference.starts_with("declined:") {
            return Ok(VoidOutcome::Voided);
        }
        let res = self
            .post(
                &format!("/v1/payment_intents/{reference}/cancel"),
                &format!("{}-void", req.idempotency_key),
                &[],
            )
            .await?;
        if res.status().is_success() {
            return Ok(VoidOutcome::Voided);
        }
        // Stripe refuses to cancel a PaymentIntent that succeeded (or was canceled): look.
        match self.retrieve(req, reference).await? {
            ChargeOutcome::Succeeded { reference } => Ok(VoidOutcome::Captured { reference }),
            ChargeOutcome::Declined { .. } => Ok(VoidOutcome::Voided),
            ChargeOutcome::Pending { .. } | ChargeOutcome::Unconfirmed { .. } => Err(
                GatewayError::Unavailable("stripe would not cancel a pending payment".into()),
            ),
        }
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
