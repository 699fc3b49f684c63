//! Integration tests: the real server over HTTP, on SQLite and on the real PostgreSQL.

#![expect(
    clippy::unwrap_used,
    reason = "a test that meets an unexpected shape should fail loudly"
)]

mod browser;
mod helpers;

mod auth;
mod books;
mod carriers;
mod cli;
mod cluster;
mod concurrency;
mod conditional;
mod embedded;
mod errors;
mod group_commit;
mod history;
mod idempotency;
mod items;
mod notifications;
mod openapi_conformance;
mod ops;
mod orders;
mod outages;
mod pages;
mod payments;
mod privacy;
mod realtime;
mod recommendations;
mod search;
mod search_fts;
mod shop;
mod shop_streams;
mod stripe;
mod webhooks;
