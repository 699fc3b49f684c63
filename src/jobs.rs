//! Background jobs: every job of a node is declared once, in [`start`], with its period
//! and whether it runs on every node or on one node at a time (a lease named after the
//! job). One driver runs them all alike: a tick every period until shutdown, one `job`
//! span per tick, errors logged and counted (`ordo_job_errors_total{job}`), ticks and
//! their time measured (`ordo_job_ticks_total{job}`, `ordo_job_tick_duration_seconds{job}`).
//! Every job runs on a [`TaskTracker`]: at shutdown a job finishes the tick it is in and
//! stops, and the server waits for that (within the grace period).
//!
//! A job's work stays in its module (the relay in `events`, the notifier in
//! `notifications`, …): a type that implements [`Job`], or one call made each tick
//! ([`step`]). Only its schedule is here.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::app::AppState;
use crate::events::bus::BusFeed;
use crate::events::relay::{RELAY, Relay};
use crate::notifications::service::{NOTIFIER, Notifier};
use crate::recommendations::service::{CONSUMER, Consumer};
use crate::storage::{DynStore, Ts};

/// Where a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// On every node side by side: its work is claimed row by row (`SKIP LOCKED`), or is
    /// the node's own.
    OnEveryNode,
    /// On one node of the cluster at a time: the one holding the lease named after the job
    /// (a PostgreSQL advisory lock; an embedded database has one node anyway). The other
    /// nodes ask for the lease every [`LEASE_RETRY`] and take over when its holder goes.
    OnOneNode,
}

/// What a tick came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Done for now: the next tick comes one period later.
    Idle,
    /// More is waiting (a full batch): the next tick comes at once.
    Busy,
}

/// A background job: [`begin`](Job::begin) when it starts (again), then
/// [`tick`](Job::tick) every period. Implementations live in the module whose work they do.
pub trait Job: Send + 'static {
    /// What one run of the job keeps from tick to tick (a position in the event log). A
    /// new run begins at start, after an error and when this node gets the lease (back).
    type Run: Send;

    fn begin(&mut self) -> impl Future<Output = anyhow::Result<Self::Run>> + Send;

    /// One round of work. `shutdown` is for a tick that waits on something else (the
    /// bus, a queue): it should stop waiting then.
    fn tick(
        &mut self,
        run: &mut Self::Run,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = anyhow::Result<Tick>> + Send;
}

/// How long a node that does not hold a job's lease waits before it asks again.
pub const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How often the holder of a lease checks that it still holds it.
const LEASE_CHECK: Duration = Duration::from_secs(1);
/// The shortest wait before a job that failed begins again.
const RESTART: Duration = Duration::from_secs(1);

/// Every background job of a node. Adding a job is one more `every` line here (and a row
/// in the table of docs/ARCHITECTURE.md). Names are stable: they label the metrics, and
/// a one-node job's name is its lease (and, for a reader of the event log, its stored
/// position), shared with nodes running other versions.
pub fn start(state: &AppState, shutdown: &CancellationToken) -> Jobs {
    let s = state;
    let jobs = Jobs::new(s.store.clone(), shutdown.clone());
    // With a shared bus one relay serves the cluster; else each node relays into its own hub.
    let relay_runs = if s.bus.shared() {
        Runs::OnOneNode
    } else {
        Runs::OnEveryNode
    };
    let relay = Relay::new(
        s.store.clone(),
        s.bus.clone(),
        s.hub.clone(),
        s.clock.clone(),
    );
    // Measuring what the readers cost (ORDO_BENCH_IDLE_EVENT_READERS): none of them runs.
    let readers = !s.config.idle_event_readers;
    if readers {
        jobs.every(RELAY, Duration::from_millis(10), relay_runs, relay);
    }
    if readers && s.bus.shared() {
        let feed = BusFeed::new(s.bus.clone(), s.hub.clone(), s.store.clone());
        jobs.every("bus_feed", RESTART, Runs::OnEveryNode, feed);
    }
    jobs.every(
        "sweeper",
        Duration::from_secs(1),
        Runs::OnEveryNode,
        step(s, |s| async move { s.orders.expire_due(100).await }),
    );
    jobs.every(
        "payment_saga",
        Duration::from_secs(1),
        Runs::OnEveryNode,
        step(s, |s| async move { s.orders.run_due_payments(50).await }),
    );
    if readers {
        let notifier = Notifier::new(s.notifications.clone());
        jobs.every(
            NOTIFIER,
            Duration::from_millis(50),
            Runs::OnOneNode,
            notifier,
        );
        let consumer = Consumer::new(s.recommendations.clone());
        jobs.every(
            CONSUMER,
            Duration::from_millis(50),
            Runs::OnOneNode,
            consumer,
        );
    }
    jobs.every(
        "delivery",
        Duration::from_millis(200),
        Runs::OnEveryNode,
        step(s, |s| async move { s.notifications.deliver_due(50).await }),
    );
    jobs.every(
        "delivery_queue_gauge",
        Duration::from_secs(5),
        Runs::OnEveryNode,
        step(s, |s| async move { s.notifications.measure_queue().await }),
    );
    if let Some(receipts) = s.notifications.receipt_writer() {
        jobs.every("push_receipts", Duration::ZERO, Runs::OnEveryNode, receipts);
    }
    if let Some(sqlite) = s.store.sqlite() {
        let checkpoints = crate::storage::sqlite::Checkpoints::new(sqlite.clone());
        let period = s.config.sqlite_checkpoint_interval;
        jobs.every("sqlite_checkpoint", period, Runs::OnEveryNode, checkpoints);
    }
    jobs.every(
        "archive",
        s.config.archive_interval,
        Runs::OnOneNode,
        crate::history::Archiver::new(s.clone()),
    );
    jobs.every(
        "erasure_watch",
        Duration::from_secs(1),
        Runs::OnEveryNode,
        crate::privacy::ErasureWatch::new(s.clone()),
    );
    jobs.every(
        "housekeeping",
        Duration::from_secs(600),
        Runs::OnEveryNode,
        step(s, housekeeping),
    );
    // Histograms hold their samples until they are summarised: without a scrape of
    // /metrics they would grow without end.
    jobs.every(
        "metrics_upkeep",
        Duration::from_secs(5),
        Runs::OnEveryNode,
        step(s, |s| async move {
            s.metrics.run_upkeep();
            Ok::<_, anyhow::Error>(())
        }),
    );
    jobs
}

/// Forgets what is kept for a while only: idempotency keys, login failures, handled
/// carrier event ids, the rate limiter's idle callers.
async fn housekeeping(s: AppState) -> anyhow::Result<()> {
    let now = s.clock.now();
    let pruned = [
        s.store
            .idempotency_prune(Ts::truncated(now - crate::idempotency::RETENTION))
            .await
            .context("pruning idempotency keys"),
        s.auth.prune().await.context("pruning login failures"),
        s.store
            .prune_carrier_events(Ts::truncated(
                now - crate::carriers::service::EVENT_RETENTION,
            ))
            .await
            .context("pruning carrier event ids"),
    ];
    if let Some(rl) = &s.rate_limit {
        rl.shrink();
    }
    // Each one is tried even when another failed.
    pruned.into_iter().try_for_each(|r| r.map(drop))
}

/// A job whose tick is one call with the app's state (`f`); it is idle after each.
pub fn step<F, Fut, T, E>(state: &AppState, f: F) -> Step<F>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send,
    E: Into<anyhow::Error>,
{
    Step {
        state: state.clone(),
        f,
    }
}

pub struct Step<F> {
    state: AppState,
    f: F,
}

impl<F, Fut, T, E> Job for Step<F>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send,
    E: Into<anyhow::Error>,
{
    type Run = ();

    async fn begin(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn tick(&mut self, _: &mut (), _: &CancellationToken) -> anyhow::Result<Tick> {
        (self.f)(self.state.clone()).await.map_err(Into::into)?;
        Ok(Tick::Idle)
    }
}

/// The jobs of this node, and the tracker that shutdown waits on.
pub struct Jobs {
    tracker: TaskTracker,
    store: DynStore,
    shutdown: CancellationToken,
}

impl Jobs {
    pub fn new(store: DynStore, shutdown: CancellationToken) -> Self {
        Jobs {
            tracker: TaskTracker::new(),
            store,
            shutdown,
        }
    }

    /// Runs `job` every `period` until shutdown (a zero period: again as soon as a tick
    /// ends), on every node or on the one that holds its lease.
    pub fn every<J: Job>(&self, name: &'static str, period: Duration, runs: Runs, job: J) {
        let leases = (runs == Runs::OnOneNode).then(|| self.store.clone());
        self.tracker
            .spawn(drive(name, period, leases, job, self.shutdown.clone()));
    }

    /// Waits until every job has finished the tick it was in when shutdown came, or until
    /// `deadline` (the end of the grace period), whichever is first.
    pub async fn stopped(self, deadline: impl Future<Output = ()>) {
        self.tracker.close();
        tokio::select! {
            _ = self.tracker.wait() => {}
            _ = deadline => {
                tracing::warn!(running = self.tracker.len(), "shutdown grace period over; background jobs still running are left behind");
            }
        }
    }
}

/// Runs `job` until `shutdown`: one tick per period, each in its own span. With `leases`,
/// only while this node holds the job's lease.
async fn drive<J: Job>(
    name: &'static str,
    period: Duration,
    leases: Option<DynStore>,
    mut job: J,
    shutdown: CancellationToken,
) {
    let mut lease = None;
    let mut checked = Instant::now();
    let mut run: Option<J::Run> = None;
    let mut wait = Duration::ZERO;
    loop {
        if !wait.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        let started = Instant::now();
        let ticked = async {
            if let Some(store) = &leases {
                match lease.as_mut() {
                    None => {
                        let Some(l) = store.try_lead(name).await? else {
                            // Another node runs it.
                            return Ok(None);
                        };
                        tracing::info!("this node runs the job");
                        lease = Some(l);
                        checked = Instant::now();
                        run = None;
                    }
                    Some(l) if checked.elapsed() >= LEASE_CHECK => {
                        if !l.alive().await {
                            lease = None;
                            anyhow::bail!("lost the lease");
                        }
                        checked = Instant::now();
                    }
                    Some(_) => {}
                }
            }
            let r = match run.as_mut() {
                Some(r) => r,
                None => run.insert(job.begin().await.context("beginning")?),
            };
            job.tick(r, &shutdown).await.map(Some)
        }
        .instrument(tracing::info_span!("job", job = name))
        .await;
        wait = match ticked {
            // Not this node's turn: not a tick.
            Ok(None) => {
                wait = LEASE_RETRY;
                continue;
            }
            Ok(Some(Tick::Busy)) => Duration::ZERO,
            Ok(Some(Tick::Idle)) => period,
            Err(e) => {
                metrics::counter!("ordo_job_errors_total", "job" => name).increment(1);
                tracing::warn!(
                    job = name,
                    error = format_args!("{e:#}"),
                    "job failed; it begins again"
                );
                // Give the lease up too: another node may do better.
                lease = None;
                run = None;
                period.max(RESTART)
            }
        };
        metrics::counter!("ordo_job_ticks_total", "job" => name).increment(1);
        metrics::histogram!("ordo_job_tick_duration_seconds", "job" => name)
            .record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Busy on its first tick, fails its third; writes what happened (and when) in `log`.
    struct Script {
        log: Arc<Mutex<Vec<String>>>,
        t0: Instant,
        ticks: u32,
    }

    impl Job for Script {
        type Run = u32;

        async fn begin(&mut self) -> anyhow::Result<u32> {
            self.log.lock().expect("log").push("begin".into());
            Ok(0)
        }

        async fn tick(&mut self, run: &mut u32, _: &CancellationToken) -> anyhow::Result<Tick> {
            self.ticks += 1;
            *run += 1;
            let at = (Instant::now() - self.t0).as_secs();
            self.log
                .lock()
                .expect("log")
                .push(format!("tick {run} at {at}s"));
            match self.ticks {
                1 => Ok(Tick::Busy),
                3 => anyhow::bail!("boom"),
                _ => Ok(Tick::Idle),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_every_period_begins_again_after_an_error_and_stops_at_shutdown() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let job = Script {
            log: log.clone(),
            t0: Instant::now(),
            ticks: 0,
        };
        let period = Duration::from_secs(2);
        let task = tokio::spawn(drive("script", period, None, job, shutdown.clone()));
        // Paused time moves on whenever every task waits: this is 9 s of the job's life.
        tokio::time::sleep(Duration::from_secs(9)).await;
        shutdown.cancel();
        task.await.expect("the job stops at shutdown");
        let log = log.lock().expect("log").clone();
        let expected = [
            "begin",
            "tick 1 at 0s",
            // Busy: the next tick comes at once.
            "tick 2 at 0s",
            // Fails: a new run begins a period later.
            "tick 3 at 2s",
            "begin",
            "tick 1 at 4s",
            "tick 2 at 6s",
            "tick 3 at 8s",
        ];
        assert_eq!(log, expected);
    }
}
