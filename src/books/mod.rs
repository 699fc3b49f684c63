//! The books: the audit log of staff and system actions, and the analytics summary.
//!
//! Audit rows are written by the module that makes the change, in its own transaction,
//! through [`store::sqlite::append_audit`] / [`store::postgres::append_audit`]. Order status
//! changes and refunds are read from the order timeline instead, which records them (with
//! their actor) in the order's own transaction: placement writes nothing more.

pub mod domain;
pub mod http;
pub mod store;
