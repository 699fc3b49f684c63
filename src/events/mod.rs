//! Real-time events: the order timeline (`order_events`, written in the same transaction as
//! every change) is the transactional outbox. A relay reads it in order and publishes it
//! on the event bus; every node feeds what the bus carries into its hub, which pushes it
//! to the WebSocket (`/v1/ws`) and Server-Sent Events (`/v1/events`) connections it holds.
//!
//! - `outbox`: reads the log in id order without ever skipping an id that may still commit.
//! - `bus`: the `EventBus` trait and the in-process bus (embedded default, one node).
//! - `nats`: the NATS JetStream bus (`NATS_URL`), shared by many nodes.
//! - `relay`: the job that moves the log onto the bus.
//! - `hub`: this node's connections, and the fan-out to them.
//! - `http`: the `/v1/ws` and `/v1/events` routes, with replay from the database.
//! - `store`: the storage side (reads, replays, positions, leadership).

pub mod bus;
pub mod http;
pub mod hub;
pub mod nats;
pub mod outbox;
pub mod relay;
pub mod store;

use std::sync::Arc;

use uuid::Uuid;

use crate::orders::http::EventResponse;
use crate::orders::store::EventRow;
use crate::storage::Ts;

/// One event as it travels to clients: the API's JSON message, serialised once, with what
/// the hub routes it by.
#[derive(Debug)]
pub struct PushEvent {
    pub id: i64,
    pub customer_id: Uuid,
    pub order_id: Uuid,
    /// When the change happened (for the relay's lag).
    pub at: Ts,
    /// `order_status_update` or `order_tracking_update`, the new status and the one before.
    pub event: String,
    pub status: String,
    pub previous_status: Option<String>,
    /// `{"id":"…","event":"…","data":{…}}`, exactly as API.md shows it.
    pub json: Arc<str>,
}

impl PushEvent {
    /// The event as pushed. Fails only on a row no client could read (a timestamp past
    /// year 9999 has no RFC 3339 form).
    pub fn from_row(row: EventRow) -> Result<Arc<PushEvent>, serde_json::Error> {
        let (id, customer_id, order_id, at) = (row.id, row.customer_id, row.order_id, row.at);
        let (event, status) = (row.event.clone(), row.status.clone());
        let previous_status = row.previous_status.clone();
        let json = serde_json::to_string(&EventResponse::from(row))?;
        Ok(Arc::new(PushEvent {
            id,
            customer_id,
            order_id,
            at,
            event,
            status,
            previous_status,
            json: json.into(),
        }))
    }

    /// The events of these rows. A row that cannot be pushed is logged and counted
    /// (`ordo_events_unpushable_total`) and left out: one broken row does not stop the
    /// stream for everyone, and no client gets an empty message in its place.
    pub fn from_rows(rows: Vec<EventRow>) -> Vec<Arc<PushEvent>> {
        rows.into_iter()
            .filter_map(|row| {
                let id = row.id;
                PushEvent::from_row(row)
                    .inspect_err(|e| {
                        tracing::error!(event_id = id, error = %e, "an event cannot be pushed");
                        metrics::counter!("ordo_events_unpushable_total").increment(1);
                    })
                    .ok()
            })
            .collect()
    }

    /// Does this event notify its customer (and so count as a push when it reaches one of
    /// the customer's connections)?
    pub fn notifies(&self) -> bool {
        crate::notifications::domain::notable(
            &self.event,
            &self.status,
            self.previous_status.as_deref(),
        )
        .is_some()
    }

    /// Reads a message as the bus carries it (the API's JSON).
    pub fn from_json(bytes: &[u8]) -> Option<Arc<PushEvent>> {
        #[derive(serde::Deserialize)]
        struct Message {
            id: String,
            event: String,
            data: Data,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            order_id: Uuid,
            customer_id: Uuid,
            status: String,
            previous_status: Option<String>,
            #[serde(with = "time::serde::rfc3339")]
            at: time::OffsetDateTime,
        }
        let m: Message = serde_json::from_slice(bytes).ok()?;
        Some(Arc::new(PushEvent {
            id: m.id.parse().ok()?,
            customer_id: m.data.customer_id,
            order_id: m.data.order_id,
            at: Ts::truncated(m.data.at),
            event: m.event,
            status: m.data.status,
            previous_status: m.data.previous_status,
            json: std::str::from_utf8(bytes).ok()?.into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_bus() {
        let row = EventRow {
            id: 42,
            order_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            event: "order_status_update".into(),
            status: "shipped".into(),
            previous_status: Some("placed".into()),
            note: Some("on its way".into()),
            location: None,
            carrier: Some("UPS".into()),
            tracking_number: Some("1Z".into()),
            description: None,
            carrier_status: None,
            estimated_delivery: None,
            actor: Some("user:x".into()),
            at: Ts::truncated(time::OffsetDateTime::now_utc()),
        };
        let ev = PushEvent::from_row(row.clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&ev.json).unwrap();
        assert_eq!(v["id"], "42");
        assert_eq!(v["event"], "order_status_update");
        assert_eq!(v["data"]["status"], "shipped");
        assert_eq!(v["data"]["previous_status"], "placed");
        assert_eq!(v["data"]["order_id"], row.order_id.to_string());
        assert!(
            v["data"].get("actor").is_none(),
            "who did it stays internal"
        );
        let back = PushEvent::from_json(ev.json.as_bytes()).unwrap();
        assert_eq!(back.id, 42);
        assert_eq!(back.customer_id, row.customer_id);
        assert_eq!(back.order_id, row.order_id);
        assert_eq!(back.at, row.at);
        assert_eq!(back.json, ev.json);
    }
}
