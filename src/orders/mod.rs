//! Orders: atomic placement, the state machine, payment, fulfilment, timeline and search.

pub mod domain;
pub mod http;
mod place_pg;
mod place_sqlite;
pub mod service;
pub mod store;
