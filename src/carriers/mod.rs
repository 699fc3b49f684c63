//! Carriers and delivery estimates.
//!
//! - `domain`: AfterShip's tags mapped onto carrier and order statuses, carrier aliases,
//!   the prediction statistic.
//! - `service`: applying a tracking update through the order state machine; predicted
//!   delivery dates and carriers' delivery times.
//! - `http`: `POST /v1/carriers/aftership/webhook` (signature check, parsing).
//! - `store`: handled event ids, scans with estimates, delivery times.

pub mod domain;
pub mod http;
pub mod service;
pub mod store;
