//! Integration tests: the real server over HTTP, on SQLite and on the real PostgreSQL.

mod helpers;

mod auth;
mod cli;
mod concurrency;
mod errors;
mod idempotency;
mod items;
mod ops;
mod orders;
mod search;
