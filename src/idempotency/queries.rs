//! SQL of idempotency keys, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;

use crate::idempotency::store::{Begin, IdempotencyStore, KeyRow, StoredResponse};
use crate::storage::{Error, Result, Ts};

#[async_trait]
impl IdempotencyStore for Backend {
    async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        hash: &[u8],
        now: Ts,
        stale_before: Ts,
    ) -> Result<Begin> {
        // Keys past their retention are forgotten, so the same key may start afresh.
        sqlx::query::<Db>(
            "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND created_at < $3",
        )
        .bind(principal)
        .bind(key)
        .bind(stale_before)
        .execute(self.writer())
        .await?;
        let inserted = sqlx::query::<Db>(
            "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (principal, key) DO NOTHING",
        )
        .bind(principal)
        .bind(key)
        .bind(hash)
        .bind(now)
        .execute(self.writer())
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Begin::Started);
        }
        let row = sqlx::query_as::<Db, (Vec<u8>, Option<i32>, Option<String>, Option<Vec<u8>>)>(
            "SELECT request_hash, status, headers, body FROM idempotency_keys WHERE principal = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .fetch_optional(self.writer())
        .await?;
        let corrupt = |what: &str| Error::Corrupt(format!("idempotency key {key}: {what}"));
        Ok(match row {
            // Abandoned between our insert and select: the caller may simply retry.
            None => Begin::Existing(KeyRow {
                request_hash: hash.to_vec(),
                response: None,
            }),
            Some((request_hash, status, content_type, body)) => Begin::Existing(KeyRow {
                request_hash,
                response: match status {
                    None => None,
                    Some(s) => Some(StoredResponse {
                        status: u16::try_from(s)
                            .ok()
                            .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                            .ok_or_else(|| corrupt(&format!("status {s}")))?,
                        content_type,
                        body: body.ok_or_else(|| corrupt("a stored status without a body"))?,
                    }),
                },
            }),
        })
    }

    async fn idempotency_complete(
        &self,
        principal: &str,
        key: &str,
        res: &StoredResponse,
    ) -> Result<()> {
        sqlx::query::<Db>("UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 WHERE principal = $1 AND key = $2")
            .bind(principal)
            .bind(key)
            .bind(i32::from(res.status.as_u16()))
            .bind(&res.content_type)
            .bind(&res.body)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn idempotency_abandon(&self, principal: &str, key: &str) -> Result<()> {
        sqlx::query::<Db>(
            "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND status IS NULL",
        )
        .bind(principal)
        .bind(key)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn idempotency_prune(&self, before: Ts) -> Result<u64> {
        let r = sqlx::query::<Db>("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }
}
