//! Group commit: orders from many requests share one transaction.
//!
//! A request hands its order to a queue and waits for the answer. A worker takes every
//! order waiting (up to [`MAX_BATCH`]), places them together, commits once and answers
//! each. Under load this spreads BEGIN/COMMIT, the WAL flush and the round trips over
//! many orders; alone, an order is a batch of one and waits for nobody. Each backend says
//! how a batch is placed (`place_sqlite`, `place_pg`); this module only queues and answers.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::store::NewOrder;
use crate::storage::{Error, Result};

/// Most orders one transaction takes.
pub(crate) const MAX_BATCH: usize = 64;

struct Job<T> {
    order: NewOrder,
    reply: oneshot::Sender<Result<T>>,
}

/// The queue in front of a backend's batch workers. Dropping it (with the store) ends them.
pub(crate) struct GroupCommit<T> {
    queue: mpsc::Sender<Job<T>>,
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts `workers` tasks that each take a batch and run `place` on it, which answers
    /// one outcome per order, in order. With more than one worker, one batch is being
    /// committed while the next is gathered and placed.
    pub(crate) fn spawn<F, Fut>(workers: usize, place: F) -> Self
    where
        F: Fn(Vec<NewOrder>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<T>>> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        let rx = Arc::new(Mutex::new(rx));
        let place = Arc::new(place);
        for _ in 0..workers.max(1) {
            let (rx, place) = (rx.clone(), place.clone());
            tokio::spawn(async move {
                let mut jobs: Vec<Job<T>> = Vec::with_capacity(MAX_BATCH);
                loop {
                    // The lock is held only while waiting for work, so the next worker
                    // gathers the next batch while this one places its own.
                    if rx.lock().await.recv_many(&mut jobs, MAX_BATCH).await == 0 {
                        break;
                    }
                    let (orders, replies): (Vec<NewOrder>, Vec<_>) =
                        jobs.drain(..).map(|j| (j.order, j.reply)).unzip();
                    metrics::histogram!("ordo_place_batch_orders").record(orders.len() as f64);
                    let outcomes = place(orders).await;
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
            });
        }
        GroupCommit { queue }
    }

    /// Queues the order and waits for its outcome.
    pub(crate) async fn submit(&self, order: NewOrder) -> Result<T> {
        let gone = || Error::Database(sqlx::Error::PoolClosed);
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { order, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// `sqlx::Error` is not `Clone`; a batch-wide failure is told to every order in it.
pub(crate) fn clone_error(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}
