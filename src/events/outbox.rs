//! Reading the event log in id order, without ever passing an id that may still commit.
//!
//! On PostgreSQL event ids come from a sequence: a transaction takes its number when it
//! inserts, but the row becomes visible only when it commits, so id 101 can be visible
//! while 100 is not — yet. A reader that moved past 100 would never see it. So the reader
//! hands on only an unbroken run of ids. At a missing id it looks at the transactions the
//! same snapshot saw running: the missing id belongs to one of them (every writer of the
//! log has its transaction id before it takes an event number) or to a transaction that
//! rolled back. Once all of those have ended, a missing id that is still missing never
//! comes, and the reader moves past it. Most gaps are rollbacks (an order refused for
//! stock) and clear within milliseconds.
//!
//! On SQLite the one writer commits in id order and the snapshot lists no transactions:
//! every gap is passed at once.

use std::time::{Duration, Instant};

use super::store::EventStore;
use crate::orders::store::EventRow;
use crate::storage::Result;

/// How long a missing id may hold the reader up before it is given up on. Ordo's own
/// writes are single statements; only a transaction left open by hand gets near this.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

struct Gap {
    /// The first id missing after `position`.
    first: i64,
    /// The transactions that were running when it was seen missing.
    in_flight: Vec<i64>,
    since: Instant,
}

pub struct Outbox {
    position: i64,
    gap: Option<Gap>,
}

/// Events ready to hand on, and the position after them.
#[derive(Debug, Default)]
pub struct Batch {
    pub rows: Vec<EventRow>,
    pub end: i64,
}

impl Outbox {
    /// A reader that hands on the events after `position`.
    pub fn after(position: i64) -> Self {
        Outbox {
            position,
            gap: None,
        }
    }

    /// A reader that starts after the last event that can no longer change: it waits for
    /// the writers running now to end, so that no id below its start can still appear.
    pub async fn at_end(store: &dyn EventStore) -> Result<Self> {
        let last = store.last_event().await?;
        let in_flight = store.ours(last.in_flight).await?;
        let deadline = Instant::now() + GIVE_UP_AFTER;
        while !store.transactions_ended(&in_flight).await? && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Outbox::after(last.rows.last().map_or(0, |r| r.id)))
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    /// The next events that may be handed on, in id order (up to `limit`). Call `advance`
    /// once they are handed on; until then the same events come again.
    pub async fn peek(&mut self, store: &dyn EventStore, limit: u32) -> Result<Batch> {
        // Whether the transactions behind a known gap have ended is asked *before* the
        // read: an id that is missing from a read made after they ended is gone for good.
        let gap_settled = match &self.gap {
            Some(g) => {
                g.since.elapsed() >= GIVE_UP_AFTER || store.transactions_ended(&g.in_flight).await?
            }
            None => false,
        };
        let read = store.events_after(self.position, limit).await?;
        let mut expected = self.position + 1;
        let mut rows = Vec::with_capacity(read.rows.len());
        for row in read.rows {
            if row.id != expected {
                let settled = match &self.gap {
                    Some(g) if g.first == expected => gap_settled,
                    _ => {
                        // A new gap: only our database's writers can fill it.
                        let ours = store.ours(read.in_flight.clone()).await?;
                        let none = ours.is_empty();
                        if !none {
                            self.gap = Some(Gap {
                                first: expected,
                                in_flight: ours,
                                since: Instant::now(),
                            });
                        }
                        none
                    }
                };
                if !settled {
                    break;
                }
                if let Some(g) = &self.gap
                    && g.since.elapsed() >= GIVE_UP_AFTER
                {
                    tracing::warn!(
                        missing = g.first,
                        "an event id stayed missing for a minute; moving past it"
                    );
                }
                self.gap = None;
            }
            expected = row.id + 1;
            rows.push(row);
        }
        Ok(Batch {
            end: rows.last().map_or(self.position, |r| r.id),
            rows,
        })
    }

    /// The events of the last `peek` were handed on.
    pub fn advance(&mut self, end: i64) {
        self.position = self.position.max(end);
        if self.gap.as_ref().is_some_and(|g| g.first <= self.position) {
            self.gap = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::events::store::{Audience, Lease, OutboxRead};
    use crate::storage::Ts;

    /// A log whose visible rows and running transactions a test sets.
    #[derive(Default)]
    struct Log {
        rows: Mutex<Vec<i64>>,
        running: Mutex<Vec<i64>>,
    }

    fn row(id: i64) -> EventRow {
        EventRow {
            id,
            order_id: uuid::Uuid::nil(),
            customer_id: uuid::Uuid::nil(),
            event: "order_status_update".into(),
            status: "created".into(),
            previous_status: None,
            note: None,
            location: None,
            carrier: None,
            tracking_number: None,
            description: None,
            carrier_status: None,
            estimated_delivery: None,
            actor: None,
            at: Ts::truncated(time::OffsetDateTime::now_utc()),
        }
    }

    #[async_trait]
    impl EventStore for Log {
        async fn events_after(&self, after: i64, limit: u32) -> Result<OutboxRead> {
            let rows = self.rows.lock().unwrap();
            Ok(OutboxRead {
                rows: rows
                    .iter()
                    .filter(|id| **id > after)
                    .take(limit as usize)
                    .map(|id| row(*id))
                    .collect(),
                in_flight: self.running.lock().unwrap().clone(),
            })
        }
        async fn transactions_ended(&self, xids: &[i64]) -> Result<bool> {
            let running = self.running.lock().unwrap();
            Ok(!xids.iter().any(|x| running.contains(x)))
        }
        async fn ours(&self, xids: Vec<i64>) -> Result<Vec<i64>> {
            // Transactions from 900 up belong to another database.
            Ok(xids.into_iter().filter(|x| *x < 900).collect())
        }
        async fn last_event(&self) -> Result<OutboxRead> {
            unimplemented!()
        }
        async fn replay(&self, _: Audience, _: i64, _: i64, _: u32) -> Result<Vec<EventRow>> {
            unimplemented!()
        }
        async fn shop_id(&self) -> Result<String> {
            unimplemented!()
        }
        async fn cursor(&self, _: &str) -> Result<Option<i64>> {
            unimplemented!()
        }
        async fn save_cursor(&self, _: &str, _: i64, _: Ts) -> Result<()> {
            unimplemented!()
        }
        async fn try_lead(&self, _: &str) -> Result<Option<Box<dyn Lease>>> {
            unimplemented!()
        }
        async fn bench_insert_events(&self, _: &[(uuid::Uuid, uuid::Uuid)], _: Ts) -> Result<()> {
            unimplemented!()
        }
    }

    async fn ids(o: &mut Outbox, log: &Log) -> Vec<i64> {
        let b = o.peek(log, 100).await.unwrap();
        o.advance(b.end);
        b.rows.iter().map(|r| r.id).collect()
    }

    #[tokio::test]
    async fn an_id_that_may_still_commit_holds_the_reader() {
        let log = Log::default();
        *log.rows.lock().unwrap() = vec![1, 2, 4, 5];
        *log.running.lock().unwrap() = vec![700];
        let mut o = Outbox::after(0);
        assert_eq!(ids(&mut o, &log).await, [1, 2]);
        // 3 commits late: it comes first, in order.
        log.rows.lock().unwrap().insert(2, 3);
        log.running.lock().unwrap().clear();
        assert_eq!(ids(&mut o, &log).await, [3, 4, 5]);
    }

    #[tokio::test]
    async fn an_id_rolled_back_is_passed_once_its_writers_ended() {
        let log = Log::default();
        *log.rows.lock().unwrap() = vec![1, 3];
        *log.running.lock().unwrap() = vec![700];
        let mut o = Outbox::after(0);
        assert_eq!(ids(&mut o, &log).await, [1]);
        assert_eq!(ids(&mut o, &log).await, Vec::<i64>::new(), "still running");
        // Transaction 700 ended without 2 (it rolled back); another one started since.
        *log.running.lock().unwrap() = vec![701];
        assert_eq!(ids(&mut o, &log).await, [3]);
        assert_eq!(o.position(), 3);
    }

    #[tokio::test]
    async fn with_nothing_running_a_gap_is_passed_at_once() {
        let log = Log::default();
        *log.rows.lock().unwrap() = vec![2, 3, 7];
        let mut o = Outbox::after(0);
        assert_eq!(ids(&mut o, &log).await, [2, 3, 7]);
    }

    #[tokio::test]
    async fn other_databases_transactions_do_not_hold_a_gap() {
        let log = Log::default();
        *log.rows.lock().unwrap() = vec![1, 3];
        *log.running.lock().unwrap() = vec![901, 950];
        let mut o = Outbox::after(0);
        assert_eq!(ids(&mut o, &log).await, [1, 3]);
    }

    #[tokio::test]
    async fn nothing_moves_until_advanced() {
        let log = Log::default();
        *log.rows.lock().unwrap() = vec![1, 2];
        let mut o = Outbox::after(0);
        let b = o.peek(&log, 100).await.unwrap();
        assert_eq!(b.end, 2);
        let again = o.peek(&log, 100).await.unwrap();
        assert_eq!(again.rows.len(), 2, "a failed hand-on is tried again");
    }
}
