//! Orders: atomic placement, the state machine, payment, fulfilment, timeline and search.

mod allocate;
pub mod domain;
pub mod error;
mod group_commit;
pub mod http;
pub mod pages;
pub mod payment;
pub(crate) mod place_pg;
pub(crate) mod place_sqlite;
pub mod service;
pub mod store;
pub(crate) mod transition_pg;
pub(crate) mod transition_sqlite;
