//! Payments: the `PaymentGateway` interface, the simulated gateway and Stripe, plus the
//! rule that keeps card numbers out of Ordo (PCI scope).

pub mod resilience;
pub mod store;
pub mod stripe;
pub mod webhooks;

use std::time::Duration;

use async_trait::async_trait;

use crate::error::FieldError;

/// One charge of an order. The idempotency key stays the same across retries of the
/// same step, so that the gateway moves money at most once.
#[derive(Clone, Debug)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub payment_method: String,
}

#[derive(Clone, Debug)]
pub struct RefundRequest {
    pub idempotency_key: String,
    pub reference: String,
    pub amount: i64,
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        reference: String,
    },
    /// Accepted, but the money has not moved yet (e.g. 3-D Secure); settles later.
    Pending {
        reference: String,
    },
    Declined {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway is unavailable: {0}")]
    Unavailable(String),
    /// Too many recent failures: calls are refused without trying (circuit breaker).
    #[error("the gateway is failing; calls are paused for a moment")]
    CircuitOpen,
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> &'static str;
    /// The gateway's health as seen by Ordo (`/readyz` detail).
    fn health(&self) -> &'static str {
        "unknown"
    }
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome, GatewayError>;
    async fn refund(&self, req: &RefundRequest) -> Result<String, GatewayError>;
}

/// The default gateway: `pm_card_visa` succeeds, `pm_card_chargeDeclined` (and any other
/// method) is declined, `pm_sim_no_response` never answers. `pm_sim_refund_fails_3`
/// succeeds, but refunding it fails three times before it goes through (to exercise
/// refund retries).
#[derive(Default)]
pub struct SimulatedGateway {
    pub latency: Duration,
    refund_failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

const FLAKY_REFUND: &str = "sim_refundfails_";

impl SimulatedGateway {
    pub fn new(latency: Duration) -> Self {
        SimulatedGateway {
            latency,
            ..SimulatedGateway::default()
        }
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        match req.payment_method.as_str() {
            "pm_card_visa" => Ok(ChargeOutcome::Succeeded {
                reference: format!("sim_{}", req.idempotency_key),
            }),
            "pm_sim_no_response" => futures::future::pending().await,
            "pm_sim_refund_fails_3" => Ok(ChargeOutcome::Succeeded {
                reference: format!("{FLAKY_REFUND}{}", req.idempotency_key),
            }),
            "pm_card_chargeDeclined" => Ok(ChargeOutcome::Declined {
                reason: "card_declined".into(),
            }),
            _ => Ok(ChargeOutcome::Declined {
                reason: "unknown payment method".into(),
            }),
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<String, GatewayError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if req.reference.starts_with(FLAKY_REFUND) {
            let mut failures = self
                .refund_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let n = failures.entry(req.reference.clone()).or_default();
            if *n < 3 {
                *n += 1;
                return Err(GatewayError::Unavailable("simulated refund failure".into()));
            }
        }
        Ok(format!("sim_refund_{}", req.idempotency_key))
    }
}

/// A payment method is a gateway token (`pm_…`), never a card number: anything that looks
/// like a card number (13–19 digits passing Luhn) is refused, and is not echoed back.
pub fn parse_payment_method(field: &str, raw: &str) -> Result<String, FieldError> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if (13..=19).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && luhn(&digits)
    {
        return Err(FieldError::new(
            field,
            "must be a payment method token from the gateway; card numbers are never accepted",
        ));
    }
    let s = raw.trim();
    // A token starts with a letter (`pm_…`, `tok_…`), so a mistyped card number that fails
    // Luhn is still not taken for one.
    let token_like = s.len() <= 255
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !token_like {
        return Err(FieldError::new(
            field,
            "must be a payment method token such as pm_card_visa",
        ));
    }
    Ok(s.to_owned())
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_refused_without_echo() {
        let err = parse_payment_method("payment_method", "4242 4242 4242 4242").unwrap_err();
        assert!(!err.message.contains("4242"));
        assert!(parse_payment_method("payment_method", "4111111111111111").is_err());
        assert!(parse_payment_method("payment_method", "pm_card_visa").is_ok());
        // Not Luhn-valid and not a token either.
        assert!(parse_payment_method("payment_method", "4242424242424241").is_err());
    }

    #[test]
    fn luhn_checks_known_numbers() {
        assert!(luhn("4242424242424242"));
        assert!(luhn("5555555555554444"));
        assert!(!luhn("4242424242424241"));
    }
}
