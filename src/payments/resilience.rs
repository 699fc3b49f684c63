//! Retries with exponential backoff and jitter, and a circuit breaker, around any gateway.
//!
//! Retrying is safe because every call carries an idempotency key that stays the same
//! across retries of one step. After `threshold` failed calls in a row the breaker opens:
//! calls fail at once with `CircuitOpen` (the API answers 503 and the order keeps its
//! reservation) until `cool_down` has passed. Then one probe call is let through
//! (half-open): if it succeeds the breaker closes, if not it opens again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest, VoidOutcome,
};
use crate::clock::Clock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Extra attempts after a failed call.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one, with ±50 % jitter.
    pub backoff: Duration,
    /// Failed calls in a row that open the breaker.
    pub threshold: u32,
    pub cool_down: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retries: 2,
            backoff: Duration::from_millis(50),
            threshold: 5,
            cool_down: Duration::from_secs(10),
        }
    }
}

struct Breaker {
    failures: u32,
    opened_at: Option<OffsetDateTime>,
    probing: bool,
}

pub struct Resilient {
    inner: Arc<dyn PaymentGateway>,
    policy: Policy,
    clock: Arc<dyn Clock>,
    breaker: Mutex<Breaker>,
}

impl Resilient {
    pub fn new(inner: Arc<dyn PaymentGateway>, policy: Policy, clock: Arc<dyn Clock>) -> Self {
        let r = Resilient {
            inner,
            policy,
            clock,
            breaker: Mutex::new(Breaker {
                failures: 0,
                opened_at: None,
                probing: false,
            }),
        };
        r.publish(BreakerState::Closed);
        r
    }

    pub fn state(&self) -> BreakerState {
        let b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        self.state_of(&b)
    }

    fn state_of(&self, b: &Breaker) -> BreakerState {
        match b.opened_at {
            None => BreakerState::Closed,
            Some(at) if self.clock.now() - at >= self.policy.cool_down => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    fn publish(&self, state: BreakerState) {
        let v = match state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!("ordo_gateway_circuit_state", "gateway" => self.inner.name()).set(v);
    }

    /// May a call go out now? In half-open state only one probe at a time.
    fn admit(&self) -> Result<(), GatewayError> {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        match self.state_of(&b) {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen if !b.probing => {
                b.probing = true;
                self.publish(BreakerState::HalfOpen);
                Ok(())
            }
            _ => Err(GatewayError::CircuitOpen),
        }
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        b.probing = false;
        if ok {
            b.failures = 0;
            b.opened_at = None;
        } else {
            b.failures += 1;
            if b.failures >= self.policy.threshold || b.opened_at.is_some() {
                b.opened_at = Some(self.clock.now());
            }
        }
        let state = self.state_of(&b);
        drop(b);
        self.publish(state);
    }

    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, GatewayError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let mut wait = self.policy.backoff;
        let mut last_error = None;
        for attempt in 0..=self.policy.retries {
            if let Err(open) = self.admit() {
                // A retry stopped by the breaker reports what actually went wrong.
                return Err(last_error.unwrap_or(open));
            }
            // A call dropped before it answered (the caller's deadline passed) counts as a
            // failure, and frees the half-open probe for the next call.
            let mut unanswered = Unanswered(Some(self));
            let result = f().await;
            unanswered.0 = None;
            match result {
                Ok(v) => {
                    self.record(true);
                    metrics::counter!("ordo_gateway_calls_total", "op" => op, "outcome" => "ok")
                        .increment(1);
                    return Ok(v);
                }
                Err(e) => {
                    self.record(false);
                    metrics::counter!("ordo_gateway_calls_total", "op" => op, "outcome" => "error")
                        .increment(1);
                    if attempt == self.policy.retries {
                        return Err(e);
                    }
                    tracing::warn!(op, attempt, error = %e, "gateway call failed; retrying");
                    last_error = Some(e);
                    tokio::time::sleep(jitter(wait)).await;
                    wait *= 2;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| GatewayError::Unavailable("no attempt was made".into())))
    }
}

/// Records a failure for a call that was dropped before it answered.
struct Unanswered<'a>(Option<&'a Resilient>);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.0 {
            r.record(false);
            metrics::counter!("ordo_gateway_calls_total", "op" => "any", "outcome" => "no_answer")
                .increment(1);
        }
    }
}

/// `d` ± 50 %, so that many nodes retrying do not hit the gateway in step.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>())
}

#[async_trait]
impl PaymentGateway for Resilient {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn health(&self) -> &'static str {
        self.state().as_str()
    }

    fn store_reference_before_confirm(&self) -> bool {
        self.inner.store_reference_before_confirm()
    }

    async fn prepare(&self, req: &ChargeRequest) -> Result<String, GatewayError> {
        self.call("prepare", || self.inner.prepare(req)).await
    }

    async fn confirm(
        &self,
        req: &ChargeRequest,
        reference: &str,
    ) -> Result<ChargeOutcome, GatewayError> {
        self.call("confirm", || self.inner.confirm(req, reference))
            .await
    }

    async fn retrieve(
        &self,
        req: &ChargeRequest,
        reference: &str,
    ) -> Result<ChargeOutcome, GatewayError> {
        self.call("retrieve", || self.inner.retrieve(req, reference))
            .await
    }

    async fn void(
        &self,
        req: &ChargeRequest,
        reference: &str,
    ) -> Result<VoidOutcome, GatewayError> {
        self.call("void", || self.inner.void(req, reference)).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<String, GatewayError> {
        self.call("refund", || self.inner.refund(req)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::clock::ManualClock;

    /// A gateway that fails its first `fail_first` calls, then succeeds.
    struct Flaky {
        calls: AtomicU32,
        fail_first: u32,
    }

    #[async_trait]
    impl PaymentGateway for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn prepare(&self, _: &ChargeRequest) -> Result<String, GatewayError> {
            Ok("ref".into())
        }
        async fn confirm(&self, _: &ChargeRequest, _: &str) -> Result<ChargeOutcome, GatewayError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail_first {
                Err(GatewayError::Unavailable("down".into()))
            } else {
                Ok(ChargeOutcome::Succeeded {
                    reference: format!("ref{n}"),
                })
            }
        }
        async fn retrieve(
            &self,
            r: &ChargeRequest,
            s: &str,
        ) -> Result<ChargeOutcome, GatewayError> {
            self.confirm(r, s).await
        }
        async fn void(&self, _: &ChargeRequest, _: &str) -> Result<VoidOutcome, GatewayError> {
            Ok(VoidOutcome::Voided)
        }
        async fn refund(&self, _: &RefundRequest) -> Result<String, GatewayError> {
            Ok("re".into())
        }
    }

    fn req() -> ChargeRequest {
        ChargeRequest {
            idempotency_key: "k".into(),
            order_id: "o".into(),
            amount: 1,
            currency: "USD".into(),
            payment_method: "pm_card_visa".into(),
        }
    }

    fn setup(fail_first: u32, retries: u32) -> (Arc<Flaky>, Arc<ManualClock>, Resilient) {
        let flaky = Arc::new(Flaky {
            calls: AtomicU32::new(0),
            fail_first,
        });
        let clock = Arc::new(ManualClock::default());
        let policy = Policy {
            retries,
            backoff: Duration::from_millis(1),
            threshold: 3,
            cool_down: Duration::from_secs(10),
        };
        let r = Resilient::new(flaky.clone(), policy, clock.clone());
        (flaky, clock, r)
    }

    #[tokio::test]
    async fn a_probe_that_never_answers_does_not_jam_the_breaker() {
        let (_, clock, r) = setup(10, 0);
        for _ in 0..3 {
            let _ = r.confirm(&req(), "ref").await;
        }
        assert_eq!(r.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(11));
        // The probe is dropped before it answers (the caller's deadline passed) …
        let hung = tokio::time::timeout(Duration::from_millis(1), async {
            let never = Resilient::call(&r, "confirm", || {
                futures::future::pending::<Result<(), GatewayError>>()
            });
            never.await
        })
        .await;
        assert!(hung.is_err());
        // … which counts as a failure: open again, and after the cool-down the next probe
        // goes out instead of being refused for ever.
        assert_eq!(r.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(11));
        assert_eq!(r.state(), BreakerState::HalfOpen);
        assert!(!matches!(
            r.confirm(&req(), "ref").await,
            Err(GatewayError::CircuitOpen)
        ));
    }

    #[tokio::test]
    async fn transient_failures_are_retried() {
        let (flaky, _, r) = setup(2, 2);
        assert!(matches!(
            r.confirm(&req(), "ref").await,
            Ok(ChargeOutcome::Succeeded { .. })
        ));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        assert_eq!(r.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn the_breaker_opens_fails_fast_then_probes() {
        let (flaky, clock, r) = setup(4, 0);
        for _ in 0..3 {
            assert!(matches!(
                r.confirm(&req(), "ref").await,
                Err(GatewayError::Unavailable(_))
            ));
        }
        assert_eq!(r.state(), BreakerState::Open);
        // Open: no call reaches the gateway.
        assert!(matches!(
            r.confirm(&req(), "ref").await,
            Err(GatewayError::CircuitOpen)
        ));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        // After the cool-down one probe goes out; it fails (4th failure), so it opens again.
        clock.advance(Duration::from_secs(11));
        assert_eq!(r.state(), BreakerState::HalfOpen);
        assert!(matches!(
            r.confirm(&req(), "ref").await,
            Err(GatewayError::Unavailable(_))
        ));
        assert_eq!(r.state(), BreakerState::Open);
        // The next probe succeeds and closes it.
        clock.advance(Duration::from_secs(11));
        assert!(r.confirm(&req(), "ref").await.is_ok());
        assert_eq!(r.state(), BreakerState::Closed);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 5);
    }
}
