//! Orders: atomic placement, the state machine, payment, fulfilment, timeline and search.

pub mod domain;
pub mod http;
pub mod payment;
mod place_pg;
pub(crate) mod place_sqlite;
pub mod service;
pub mod store;
mod transition_pg;
