//! Full-text item search: the index (SQLite FTS5, or PostgreSQL `tsvector` with trigrams)
//! is kept by triggers in each item's own transaction; stock and price are read from
//! `items` at query time, so a sold-out item leaves the results at once.

pub mod domain;
pub mod http;
pub mod service;
pub mod store;
