//! Group commit: writes from many requests share one transaction.
//!
//! A request hands its write (an order to place, a transition to apply) to a queue and
//! waits for the answer. A worker takes every write waiting (up to [`MAX_BATCH`]), does
//! them together, commits once and answers each. Under load this spreads BEGIN/COMMIT,
//! the WAL flush and the round trips over many writes; alone, a write is a batch of one
//! and waits for nobody. Each backend says how a batch is written (`place_sqlite`,
//! `place_pg`, `transition_pg`); this module only queues and answers.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::storage::{Error, Result};

/// Most writes one transaction takes.
pub(crate) const MAX_BATCH: usize = 64;

struct Job<J, T> {
    job: J,
    reply: oneshot::Sender<Result<T>>,
}

/// The queue in front of a backend's batch workers. Dropping it (with the store) ends them.
pub(crate) struct GroupCommit<J, T> {
    queue: mpsc::Sender<Job<J, T>>,
}

impl<J: Send + 'static, T: Send + 'static> GroupCommit<J, T> {
    /// Starts `workers` tasks that each take a batch and run `write` on it, which answers
    /// one outcome per job, in order. `what` names the writes in the batch-size metric. With more than one worker, one batch is being
    /// committed while the next is gathered and placed.
    pub(crate) fn spawn<F, Fut>(what: &'static str, workers: usize, write: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<T>>> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        for _ in 0..workers.max(1) {
            let (rx, write) = (rx.clone(), write.clone());
            tokio::spawn(async move {
                let mut jobs: Vec<Job<J, T>> = Vec::with_capacity(MAX_BATCH);
                loop {
                    // The lock is held only while waiting for work, so the next worker
                    // gathers the next batch while this one places its own.
                    if rx.lock().await.recv_many(&mut jobs, MAX_BATCH).await == 0 {
                        break;
                    }
                    let (batch, replies): (Vec<J>, Vec<_>) =
                        jobs.drain(..).map(|j| (j.job, j.reply)).unzip();
                    metrics::histogram!("ordo_group_commit_batch_size", "write" => what)
                        .record(batch.len() as f64);
                    let outcomes = write(batch).await;
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
            });
        }
        GroupCommit { queue }
    }

    /// Queues the job and waits for its outcome.
    pub(crate) async fn submit(&self, job: J) -> Result<T> {
        let gone = || Error::Database(sqlx::Error::PoolClosed);
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { job, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Writes a batch with `together` when it holds several jobs. If that fails as a whole
/// (one job's fault, such as an order for a customer who does not exist, or a lost race
/// such as a deadlock: nothing of the batch stays), each job is written on its own with
/// `alone` (given the job's index) and gets its own answer.
pub(crate) async fn together_or_alone<T, Fut>(
    what: &'static str,
    len: usize,
    together: impl Future<Output = Result<Vec<T>>>,
    alone: impl Fn(usize) -> Fut,
) -> Vec<Result<T>>
where
    Fut: Future<Output = Result<T>>,
{
    if len > 1 {
        match together.await {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
            Err(e) => {
                tracing::debug!(error = %e, writes = len, what, "group commit failed; writing one by one");
                metrics::counter!("ordo_group_commit_fallbacks_total", "write" => what)
                    .increment(1);
            }
        }
    }
    let mut outcomes = Vec::with_capacity(len);
    for i in 0..len {
        outcomes.push(alone(i).await);
    }
    outcomes
}
