//! What can go wrong with an order, in the order's terms. The service, the payment saga
//! and the jobs return it; it becomes an HTTP answer once, at the edge
//! (`impl From<OrderError> for ApiError` in `http.rs`), and a job logs it. Code that must
//! tell failures apart matches these variants, never an HTTP status.

use uuid::Uuid;

use super::domain::TransitionError;
use crate::storage::Error as StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// No such order, or one the caller may not see.
    #[error("not found")]
    NotFound,
    /// The state machine, or a rule of the order's life (an expired reservation, nothing
    /// shipped to track), refuses the change in the order's present state.
    #[error("{0}")]
    Refused(String),
    /// Something else came first: another change won every retry, a charge is already
    /// out, the order is no longer in the status the caller named.
    #[error("{0}")]
    Conflict(String),
    /// The cart changed between its read and the placement (another checkout, or a change
    /// to it): nothing was ordered.
    #[error(
        "the cart changed during checkout (another checkout, or a change to it); nothing was \
         ordered: look at the cart and check out again"
    )]
    CartChanged,
    #[error("no such customer")]
    UnknownCustomer,
    /// Line `line` (from 0) names no item.
    #[error("items[{line}].item_id: no such item")]
    UnknownItem { line: usize },
    /// Line `line` asks for more than its item has.
    #[error("items[{line}].quantity: not enough of item {item_id}")]
    InsufficientStock { line: usize, item_id: Uuid },
    #[error("all items of one order must have the same currency")]
    MixedCurrencies,
    /// The payment gateway could not be reached or did not answer; nothing was settled.
    #[error("the payment gateway is unavailable: {0}")]
    GatewayUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0:#}")]
    Internal(anyhow::Error),
}

pub type OrderResult<T> = Result<T, OrderError>;

impl OrderError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        OrderError::Internal(e.into())
    }
}

impl From<TransitionError> for OrderError {
    fn from(e: TransitionError) -> Self {
        OrderError::Refused(e.to_string())
    }
}
