//! Privacy: a person's data export (GDPR art. 15/20) and erasure (art. 17).
//!
//! This is the one module that knows every table holding data about a person: the export
//! reads them all in one snapshot, and the erasure rewrites them all in one transaction
//! with its audit entry. A table added later that holds personal data belongs in
//! `queries.rs` here (the privacy tests scan every table for a person's traces).

pub mod domain;
pub mod http;
pub mod service;
pub mod store;
