//! Cart and wishlist rules: no axum, no SQL.

use crate::orders::domain::{MAX_LINES, Quantity};

/// Most items a wishlist holds.
pub const MAX_WISHLIST: usize = 500;

/// What a request does to one line of a cart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartOp {
    /// Adds this many to the line (creating it).
    Add(i32),
    /// Sets the line's quantity; 0 removes it.
    Set(i32),
}

impl CartOp {
    /// The quantity of a line that holds `current` after this change.
    pub fn apply(self, current: Option<i32>) -> i64 {
        match self {
            CartOp::Add(n) => i64::from(current.unwrap_or(0)) + i64::from(n),
            CartOp::Set(n) => i64::from(n),
        }
    }
}

/// Why a cart change was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartRefusal {
    UnknownItem,
    /// The line would hold more than an order line may (1000).
    TooMany,
    /// A new line in a cart that has `MAX_LINES` already.
    TooManyLines,
    /// The item is priced in another currency than the cart's other lines.
    MixedCurrencies,
}

/// The cart's limits are the order's: a cart is an order not yet placed.
pub const MAX_CART_LINES: usize = MAX_LINES;
pub const MAX_QUANTITY: i64 = 1000;

/// A requested quantity: `Add` needs 1..=1000, `Set` (and `Add` of 0, which removes) 0..=1000.
pub fn parse_op(raw: i64, set: bool) -> Option<CartOp> {
    if raw == 0 {
        return Some(CartOp::Set(0));
    }
    let q = Quantity::parse(raw)?.get();
    Some(if set { CartOp::Set(q) } else { CartOp::Add(q) })
}

/// The version a new cart starts at: random in 1..2^53, so that a cart made again after
/// its customer's erasure deleted it does not repeat a version of the one before (whose
/// content a node may still keep under that version). Adding one per change never
/// overflows.
pub fn first_cart_version() -> i64 {
    (uuid::Uuid::new_v4().as_u128() as i64 & ((1 << 53) - 1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_adds_and_zero_removes() {
        assert_eq!(parse_op(3, false), Some(CartOp::Add(3)));
        assert_eq!(parse_op(0, false), Some(CartOp::Set(0)));
        assert_eq!(parse_op(-1, false), None);
        assert_eq!(parse_op(1001, true), None);
        assert_eq!(CartOp::Add(3).apply(Some(998)), 1001);
        assert_eq!(CartOp::Set(2).apply(Some(998)), 2);
        assert_eq!(CartOp::Add(1).apply(None), 1);
    }

    #[test]
    fn new_carts_start_at_distinct_positive_versions() {
        let a: Vec<i64> = (0..1000).map(|_| first_cart_version()).collect();
        assert!(a.iter().all(|v| (1..1 << 53).contains(v)));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), a.len());
    }
}
