//! Notifications to customers and webhooks to integrations.
//!
//! - `domain`: which events matter, channels and preferences, the retry schedule,
//!   Standard Webhooks signatures, the address guard, the texts.
//! - `channels`: SMTP, Twilio and HTTP webhook senders.
//! - `service`: preferences, the log and push receipts; `service::endpoints` (webhook
//!   endpoints), `service::notifier` (events → deliveries) and `service::worker`
//!   (deliveries → providers).
//! - `http`: preferences, delivery logs and webhook endpoint routes.
//! - `store`: preferences, endpoints, the delivery queue, push receipts.

pub mod channels;
pub mod domain;
pub mod http;
pub mod service;
pub mod store;
