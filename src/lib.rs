//! Ordo: order processing and order tracking.
//!
//! - `app`: shared state and the router.
//! - `server`: `run`: serving (plain or TLS) beside the background jobs, graceful shutdown.
//! - `jobs`: every background job declared once (period, one node or all), and the one
//!   driver that runs them.
//! - `config`: settings from flags and environment, validated at start.
//! - `error`: `ApiError`, the problem+json answer of every failure.
//! - `telemetry`: logs and metrics.
//! - `clock`: time that tests can move.
//! - `failpoint`: crash points for crash tests (`ORDO_FAILPOINT`).
//! - `storage`: the `Store` interface and its SQLite and PostgreSQL backends; the embedded
//!   database's checkpoints, backup and restore, and its copy into PostgreSQL.
//! - `ids`: typed ids (`OrderId`, `ItemId`, `UserId`, …) and `UserRef` (`me` or an id).
//! - `http`: extractors, paging and middleware shared by every route.
//! - `auth`: accounts, tokens, API keys, roles and permissions.
//! - `inventory`: items and stock.
//! - `orders`: placement with atomic reservation, the state machine, timeline, search.
//! - `payments`: the payment gateway interface and the simulated gateway.
//! - `idempotency`: `Idempotency-Key` handling for POST requests.
//! - `events`: the event log as an outbox, the event bus (in-process or NATS JetStream),
//!   the relay, and real-time push over WebSocket and SSE.
//! - `notifications`: notification preferences, e-mail/SMS/push deliveries and outgoing
//!   webhooks, through one durable delivery queue.
//! - `shop`: the shop front's cart, checkout from the cart and wishlist.
//! - `carriers`: inbound carrier tracking webhooks (AfterShip), status mapping, predicted
//!   delivery dates.
//! - `search`: the full-text item index (FTS5 / `tsvector` with trigrams), filters, facets.
//! - `recommendations`: co-purchase counts kept from the event log; "bought together".
//! - `books`: the audit log of staff and system actions, the analytics summary.
//! - `privacy`: a person's data export and erasure (GDPR art. 15, 17, 20).
//! - `bench`: the HTTP load generator behind `ordo bench`.
//! - `web`: the pages (shop front, cart, sign-in, live tracking page, staff console), their
//!   templates and embedded assets.

pub mod app;
pub mod auth;
pub mod bench;
pub mod books;
pub mod cache;
pub mod carriers;
pub mod clock;
pub mod config;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod history;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod inventory;
pub mod jobs;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod privacy;
pub mod recommendations;
pub mod search;
pub mod server;
pub mod shop;
pub mod storage;
pub mod telemetry;
pub mod web;
