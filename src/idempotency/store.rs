//! Storage of idempotency keys and the responses they saved.

use async_trait::async_trait;

use crate::storage::{Result, Ts};

#[derive(Clone, Debug)]
pub struct StoredResponse {
    pub status: axum::http::StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct KeyRow {
    pub request_hash: Vec<u8>,
    /// `None` while the first request is still running.
    pub response: Option<StoredResponse>,
}

#[derive(Debug)]
pub enum Begin {
    /// This request owns the key and must do the work.
    Started,
    Existing(KeyRow),
}

#[async_trait]
pub trait IdempotencyStore {
    /// Claims `(principal, key)` unless a claim newer than `stale_before` exists.
    async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        hash: &[u8],
        now: Ts,
        stale_before: Ts,
    ) -> Result<Begin>;
    async fn idempotency_complete(
        &self,
        principal: &str,
        key: &str,
        res: &StoredResponse,
    ) -> Result<()>;
    /// Gives the key up (the work failed and may be tried again).
    async fn idempotency_abandon(&self, principal: &str, key: &str) -> Result<()>;
    async fn idempotency_prune(&self, before: Ts) -> Result<u64>;
}

#[path = "."]
mod sqlite {
    use crate::storage::sqlite::{Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}

#[path = "."]
mod postgres {
    use crate::storage::postgres::{Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}
