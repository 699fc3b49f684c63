//! Orders: atomic placement, the state machine, payment, fulfilment, timeline and search.

pub mod domain;
pub mod http;
pub mod service;
pub mod store;
