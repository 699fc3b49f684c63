//! This node's real-time connections and the fan-out to them.
//!
//! Events arrive in id order (from the relay, or from the bus). The hub routes each one to
//! the connections of its customer and to the connections that see everything (staff),
//! never to anybody else, so an event costs a hash lookup, not a pass over every
//! connection. Each connection has a bounded queue: a connection whose queue is full is
//! told to go (a slow client must never hold up the others), and reconnects with the last
//! id it saw.
//!
//! `head` is the id of the last event handed to connections. A new connection registers
//! and reads `head` under the same lock, so "everything up to `head`" (replayed from the
//! database) and "everything after it" (live) meet without a gap or an overlap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::PushEvent;
use super::store::Audience;

/// One connection's end of the hub.
struct Slot {
    id: u64,
    tx: mpsc::Sender<Arc<PushEvent>>,
    /// Cancelled when the connection fell too far behind.
    too_slow: CancellationToken,
}

#[derive(Default)]
struct Inner {
    head: i64,
    next_id: u64,
    by_customer: HashMap<Uuid, Vec<Slot>>,
    everyone: Vec<Slot>,
    per_principal: HashMap<String, usize>,
    /// Customers with at least one open connection, and how many.
    customers_online: HashMap<Uuid, usize>,
}

pub struct Hub {
    inner: Mutex<Inner>,
    /// Set once `head` is known (the relay or the bus said where the stream starts):
    /// until then a new connection could not tell replay from live.
    started: tokio::sync::watch::Sender<bool>,
    /// Events a connection may have queued before it counts as too slow.
    queue: usize,
    /// Cancelled at shutdown: every connection tells its client to reconnect elsewhere.
    closing: CancellationToken,
}

/// A connection's registration; dropping it unregisters.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    audience: Audience,
    principal: String,
    pub rx: mpsc::Receiver<Arc<PushEvent>>,
    pub too_slow: CancellationToken,
    /// Every event up to this id is in the database; every later one comes through `rx`.
    pub head: i64,
}

/// The caller already holds as many connections as it may.
#[derive(Debug)]
pub struct TooManyConnections;

impl Hub {
    pub fn new(queue: usize) -> Arc<Hub> {
        Arc::new(Hub {
            inner: Mutex::default(),
            started: tokio::sync::watch::channel(false).0,
            queue: queue.max(1),
            closing: CancellationToken::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection of `principal` (at most `limit` at once) that may see
    /// `audience`'s events.
    pub fn subscribe(
        self: &Arc<Self>,
        audience: Audience,
        principal: String,
        limit: usize,
    ) -> Result<Subscription, TooManyConnections> {
        let (tx, rx) = mpsc::channel(self.queue);
        let too_slow = CancellationToken::new();
        let mut inner = self.lock();
        let held = inner.per_principal.entry(principal.clone()).or_default();
        if *held >= limit {
            return Err(TooManyConnections);
        }
        *held += 1;
        inner.next_id += 1;
        let id = inner.next_id;
        let slot = Slot {
            id,
            tx,
            too_slow: too_slow.clone(),
        };
        match audience {
            Audience::Customer(c) => {
                inner.by_customer.entry(c).or_default().push(slot);
                *inner.customers_online.entry(c).or_default() += 1;
            }
            Audience::Everyone => inner.everyone.push(slot),
        }
        let head = inner.head;
        metrics::gauge!("ordo_realtime_connections").increment(1.0);
        Ok(Subscription {
            hub: self.clone(),
            id,
            audience,
            principal,
            rx,
            too_slow,
            head,
        })
    }

    fn unsubscribe(&self, s: &Subscription) {
        let mut inner = self.lock();
        match s.audience {
            Audience::Customer(c) => {
                if let Some(slots) = inner.by_customer.get_mut(&c) {
                    slots.retain(|slot| slot.id != s.id);
                    if slots.is_empty() {
                        inner.by_customer.remove(&c);
                    }
                }
                if let Some(n) = inner.customers_online.get_mut(&c) {
                    *n -= 1;
                    if *n == 0 {
                        inner.customers_online.remove(&c);
                    }
                }
            }
            Audience::Everyone => inner.everyone.retain(|slot| slot.id != s.id),
        }
        if let Some(n) = inner.per_principal.get_mut(&s.principal) {
            *n -= 1;
            if *n == 0 {
                inner.per_principal.remove(&s.principal);
            }
        }
        metrics::gauge!("ordo_realtime_connections").decrement(1.0);
    }

    /// Hands `ev` to every connection that may see it. Events at or below `head` were
    /// handed on already (a redelivery from the bus) and are dropped.
    pub fn publish(&self, ev: &Arc<PushEvent>) {
        let mut inner = self.lock();
        if ev.id <= inner.head {
            return;
        }
        inner.head = ev.id;
        let mut dropped = 0u64;
        let customer = inner.by_customer.get(&ev.customer_id).into_iter().flatten();
        for slot in customer.chain(inner.everyone.iter()) {
            match slot.tx.try_send(ev.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    slot.too_slow.cancel();
                }
                // The connection is closing; its registration goes with it.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        drop(inner);
        if dropped > 0 {
            metrics::counter!("ordo_realtime_messages_dropped_total").increment(dropped);
        }
    }

    /// Where the stream starts when this node starts (or the bus says where it is).
    pub fn start_at(&self, id: i64) {
        let mut inner = self.lock();
        inner.head = inner.head.max(id);
        drop(inner);
        self.started.send_replace(true);
    }

    /// Does the hub know where its stream starts?
    pub fn is_started(&self) -> bool {
        *self.started.borrow()
    }

    /// Waits (at most `within`) until the hub knows where the stream starts; false if it
    /// still does not.
    pub async fn started(&self, within: std::time::Duration) -> bool {
        let mut rx = self.started.subscribe();
        tokio::time::timeout(within, rx.wait_for(|s| *s))
            .await
            .is_ok()
    }

    pub fn head(&self) -> i64 {
        self.lock().head
    }

    /// Has this customer an open connection on this node?
    pub fn is_online(&self, customer: Uuid) -> bool {
        self.lock().customers_online.contains_key(&customer)
    }

    pub fn connections(&self) -> usize {
        let inner = self.lock();
        inner.everyone.len() + inner.by_customer.values().map(Vec::len).sum::<usize>()
    }

    /// Ends this node's connections of `customer` (its account was erased): their queues
    /// close, so each session ends as if the stream had; the reconnect is refused.
    pub fn disconnect_customer(&self, customer: Uuid) {
        let mut inner = self.lock();
        inner.by_customer.remove(&customer);
        inner.customers_online.remove(&customer);
    }

    /// Cancelled when the node shuts down.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Ts;

    fn event(id: i64, customer: Uuid) -> Arc<PushEvent> {
        Arc::new(PushEvent {
            id,
            customer_id: customer,
            order_id: Uuid::nil(),
            at: Ts::truncated(time::OffsetDateTime::now_utc()),
            event: "order_status_update".into(),
            status: "placed".into(),
            previous_status: Some("created".into()),
            json: format!("{{\"id\":\"{id}\"}}").into(),
        })
    }

    #[test]
    fn events_reach_their_customer_and_staff_only() {
        let hub = Hub::new(8);
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let mut a = hub
            .subscribe(Audience::Customer(ann), "a".into(), 4)
            .unwrap();
        let mut b = hub
            .subscribe(Audience::Customer(bob), "b".into(), 4)
            .unwrap();
        let mut staff = hub.subscribe(Audience::Everyone, "s".into(), 4).unwrap();
        hub.publish(&event(1, ann));
        assert_eq!(a.rx.try_recv().unwrap().id, 1);
        assert!(b.rx.try_recv().is_err());
        assert_eq!(staff.rx.try_recv().unwrap().id, 1);
        // A redelivery (not above the head) goes nowhere.
        hub.publish(&event(1, ann));
        assert!(a.rx.try_recv().is_err());
        assert_eq!(hub.head(), 1);
        assert!(hub.is_online(ann));
        drop(a);
        assert!(!hub.is_online(ann));
        assert_eq!(hub.connections(), 2);
    }

    #[test]
    fn a_full_queue_marks_the_connection_too_slow() {
        let hub = Hub::new(2);
        let c = Uuid::now_v7();
        let slow = hub.subscribe(Audience::Customer(c), "c".into(), 4).unwrap();
        let mut fast = hub.subscribe(Audience::Everyone, "s".into(), 4).unwrap();
        for id in 1..=3 {
            hub.publish(&event(id, c));
            assert_eq!(fast.rx.try_recv().unwrap().id, id, "others are not held up");
        }
        assert!(slow.too_slow.is_cancelled());
    }

    #[test]
    fn connections_per_principal_are_limited() {
        let hub = Hub::new(2);
        let c = Uuid::now_v7();
        let one = hub.subscribe(Audience::Customer(c), "c".into(), 2).unwrap();
        let _two = hub.subscribe(Audience::Customer(c), "c".into(), 2).unwrap();
        assert!(hub.subscribe(Audience::Customer(c), "c".into(), 2).is_err());
        drop(one);
        assert!(hub.subscribe(Audience::Customer(c), "c".into(), 2).is_ok());
    }

    #[tokio::test]
    async fn a_hub_knows_when_it_has_started() {
        let hub = Hub::new(2);
        assert!(!hub.started(std::time::Duration::from_millis(10)).await);
        hub.start_at(7);
        assert!(hub.started(std::time::Duration::from_millis(10)).await);
    }

    #[test]
    fn a_new_connection_learns_where_live_begins() {
        let hub = Hub::new(2);
        hub.start_at(40);
        hub.publish(&event(41, Uuid::nil()));
        let s = hub.subscribe(Audience::Everyone, "s".into(), 1).unwrap();
        assert_eq!(s.head, 41);
    }
}
