//! PostgreSQL backend: one pool shared by every module; many `ordo` nodes may share the
//! database.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{Dialect, Error, Store};
use crate::orders::place_pg::{Placer, spawn_placer};
use crate::orders::transition_pg::{Transitioner, spawn_transitioner};

pub type Db = sqlx::Postgres;
pub const DIALECT: Dialect = Dialect::Postgres;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Workers that place concurrent orders in one transaction (`0`: none).
    group_commit: usize,
    /// Started with the first order.
    placer: Arc<OnceLock<Placer>>,
    /// Started with the first transition.
    transitioner: Arc<OnceLock<Transitioner>>,
}

impl PgStore {
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        // Every statement Ordo sends is a short keyed OLTP query. With the default
        // `plan_cache_mode`, PostgreSQL may re-plan the order-placement statement on every
        // execution (its array parameters make the generic plan look dearer than it is);
        // generic plans measured 25% more orders per second.
        //
        // No JIT: every statement is short, and JIT only starts when the planner misjudges
        // a statement as expensive (stale statistics after a burst of orders), where
        // compiling costs more milliseconds than the query itself.
        let options = PgConnectOptions::from_str(url)?
            .options([("plan_cache_mode", "force_generic_plan"), ("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(2))
            // While the server is down (a restart, a fail-over) a request waits this long
            // for a connection, then is answered 503 with `Retry-After`.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            group_commit: 0,
            placer: Arc::default(),
            transitioner: Arc::default(),
        })
    }

    /// Places concurrent orders together with `workers` workers (`0`: each on its own).
    pub fn with_group_commit(mut self, workers: usize) -> Self {
        self.group_commit = workers;
        self
    }

    /// The group-commit queue, if group commit is on.
    pub(crate) fn placer(&self) -> Option<&Placer> {
        (self.group_commit > 0).then(|| {
            self.placer
                .get_or_init(|| spawn_placer(self.pool.clone(), self.group_commit))
        })
    }

    /// The group-commit queue for transitions, if group commit is on.
    pub(crate) fn transitioner(&self) -> Option<&Transitioner> {
        (self.group_commit > 0).then(|| {
            self.transitioner
                .get_or_init(|| spawn_transitioner(self.pool.clone(), self.group_commit))
        })
    }

    /// Closes the pool and waits until every connection has ended (a database with no
    /// sessions left may be dropped or used as a template at once).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn migrate(&self) -> Result<(), Error> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }
}

impl Store for PgStore {
    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .boxed()
    }
}
