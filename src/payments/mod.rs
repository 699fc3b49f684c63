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
    /// Prepared but never confirmed (only `retrieve` says this): confirm it to go on.
    Unconfirmed {
        reference: String,
    },
    Declined {
        reason: String,
    },
}

/// What became of a payment that Ordo asked the gateway to call off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoidOutcome {
    /// Called off: no money moved, none will.
    Voided,
    /// Too late: the money had moved already. It must be refunded.
    Captured { reference: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The call may or may not have reached the gateway.
    #[error("the gateway is unavailable: {0}")]
    Unavailable(String),
    /// Too many recent failures: calls are refused without trying (circuit breaker).
    #[error("the gateway is failing; calls are paused for a moment")]
    CircuitOpen,
}

/// A payment gateway. A charge is two steps: `prepare` registers the payment with the
/// gateway and returns its reference without moving money; `confirm` moves it. Between
/// the two Ordo can store the reference, so that whatever happens afterwards (a timeout, a
/// crash) the payment can be looked up (`retrieve`) or called off (`void`) by reference,
/// never by charging again.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn name(&self) -> &'static str;
    /// The gateway's health as seen by Ordo (`/readyz` detail).
    fn health(&self) -> &'static str {
        "unknown"
    }
    /// Must the reference from `prepare` be stored before `confirm`? Not when preparing
    /// again with the same idempotency key gives the same reference at no cost.
    fn store_reference_before_confirm(&self) -> bool {
        true
    }
    /// Registers the payment (idempotent by `req.idempotency_key`); moves no money.
    async fn prepare(&self, req: &ChargeRequest) -> Result<String, GatewayError>;
    /// Moves the money of a prepared payment (idempotent by `req.idempotency_key`).
    async fn confirm(
        &self,
        req: &ChargeRequest,
        reference: &str,
    ) -> Result<ChargeOutcome, GatewayError>;
    /// Where a prepared payment stands, without changing it. A payment that was prepared
    /// but never confirmed is `Pending`.
    async fn retrieve(
        &self,
        req: &ChargeRequest,
        reference: &str,
    ) -> Result<ChargeOutcome, GatewayError>;
    /// Calls off a payment that has not moved money; reports it if it had.
    async fn void(&self, req: &ChargeRequest, reference: &str)
    -> Result<VoidOutcome, GatewayError>;
    async fn refund(&self, req: &RefundRequest) -> Result<String, GatewayError>;
}

/// The default gateway. Its references name the payment method, so that every answer can
/// be worked out again from the reference alone, after a restart too:
/// - `pm_card_visa` succeeds; `pm_card_chargeDeclined` (and any unknown method) is declined;
/// - `pm_sim_no_response` never answers a confirm or a lookup; voiding it succeeds;
/// - `pm_sim_answers_late` takes the money, but its confirm never answers: only a lookup
///   (the saga polling) or a void (which finds it captured) learns the outcome;
/// - `pm_sim_refund_fails_3` succeeds, but refunding it fails three times before it goes
///   through (to exercise refund retries).
#[derive(Default)]
pub struct SimulatedGateway {
    pub latency: Duration,
    refund_failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

const FLAKY_REFUND: &str = "pm_sim_refund_fails_3";

impl SimulatedGateway {
    pub fn new(latency: Duration) -> Self {
        SimulatedGateway {
            latency,
            ..SimulatedGateway::default()
        }
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    /// The outcome of the payment with this reference, had it been confirmed.
    async fn outcome(reference: &str, answer_late: bool) -> ChargeOutcome {
        let method = reference
            .strip_prefix("sim:")
            .and_then(|r| r.split_once(':'))
            .map_or("", |(m, _)| m);
        match method {
            "pm_card_visa" | FLAKY_REFUND => ChargeOutcome::Succeeded {
                reference: reference.to_owned(),
            },
            "pm_sim_answers_late" if answer_late => ChargeOutcome::Succeeded {
                reference: reference.to_owned(),
            },
            "pm_sim_no_response" | "pm_sim_answers_late" => futures::future::pending().await,
            "pm_card_chargeDeclined" => ChargeOutcome::Declined {
                reason: "card_declined".into(),
            },
            _ => ChargeOutcome::Declined {
                reason: "unknown payment method".into(),
            },
        }
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn store_reference_before_confirm(&self) -> bool {
        false
    }

    async fn prepare(&self, req: &ChargeRequest) -> Result<String, GatewayError> {
        Ok(format!(
            "sim:{}:{}",
            req.payment_method, req.idempotency_key
        ))
    }

    async fn confirm(
        &self,
        _: &ChargeRequest,
        reference: &str,
    ) -> Result<ChargeOutcome, GatewayError> {
        self.delay().await;
        Ok(Self::outcome(reference, false).await)
    }

    async fn retrieve(
        &self,
        _: &ChargeRequest,
        reference: &str,
    ) -> Result<ChargeOutcome, GatewayError> {
        self.delay().await;
        Ok(Self::outcome(reference, true).await)
    }

    async fn void(&self, _: &ChargeRequest, reference: &str) -> Result<VoidOutcome, GatewayError> {
        self.delay().await;
        let captured = reference.starts_with("sim:pm_card_visa:")
            || reference.starts_with("sim:pm_sim_answers_late:")
            || reference.starts_with(&format!("sim:{FLAKY_REFUND}:"));
        Ok(if captured {
            VoidOutcome::Captured {
                reference: reference.to_owned(),
            }
        } else {
            VoidOutcome::Voided
        })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<String, GatewayError> {
        self.delay().await;
        if req.reference.starts_with(&format!("sim:{FLAKY_REFUND}:")) {
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
