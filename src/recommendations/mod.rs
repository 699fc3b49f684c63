//! "Bought together" recommendations: item-to-item co-occurrence over placed orders.
//!
//! A consumer of the event log (like the notifier) takes each order that reaches
//! `placed` and adds it to the counts: per item, the number of placed orders holding it
//! (`n(i)`), and per pair of items, the number holding both (`n(i, j)`). Counts and the
//! consumer's position are written in one transaction, so each order counts exactly once.
//!
//! The score of `j` for `i` is the cosine of their order sets,
//! `n(i, j) / sqrt(n(i) · n(j))`: a best-seller that is in every other basket does not
//! outrank an item bought mostly *with* `i`. Pairs seen in fewer than `MIN_SUPPORT`
//! orders are ignored (one basket is chance). A customer's recommendations add up the
//! scores over what it bought and wished for, and never offer what it bought (or wished
//! for) or what is out of stock; with no history they are the best-sellers.

pub mod http;
pub mod service;
pub mod store;

/// Orders a pair must have been in together before it is recommended.
pub const MIN_SUPPORT: i64 = 2;
/// A customer's recommendations start from (and never include) the items of its latest
/// this many orders (canceled ones too: they still say what it wanted).
pub const RECENT_ORDERS: i64 = 200;
/// Most of those items kept (most recent first): the exclusions of "bought together".
pub const BOUGHT: usize = 500;
