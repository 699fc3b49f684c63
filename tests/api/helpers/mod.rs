//! The test harness: every test gets its own database and its own server on port 0, and
//! talks to it over real HTTP.
//!
//! - `databases`: a database of its own per test, copied from a migrated template.
//! - `app`: `TestApp` (the server, its clock, requests, users, items and orders) and `Resp`.
//! - `sockets`: a WebSocket client of `/v1/ws`.
//! - `peers`: a recording HTTP receiver standing in for providers, and `require_peer`.

mod app;
mod databases;
mod peers;
mod sockets;

pub use app::*;
pub use databases::*;
pub use peers::*;
pub use sockets::*;

/// Waits until `check` holds, looking every 20 ms, for at most `within`; true if it came
/// to hold. The one way tests wait for something asynchronous (a job, a consumer, another
/// process) instead of a fixed sleep or a hand-written loop.
pub async fn eventually<F, Fut>(within: std::time::Duration, check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_every(within, std::time::Duration::from_millis(20), check).await
}

/// As [`eventually`], looking every `every`.
pub async fn eventually_every<F, Fut>(
    within: std::time::Duration,
    every: std::time::Duration,
    mut check: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend: `both!(name)` expects `async fn name(Backend)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    };
}
