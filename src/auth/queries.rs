//! SQL of the auth module, compiled once per backend (see `storage`). `Db` and `Backend`
//! come from the including module.

use super::*;

use async_trait::async_trait;
use uuid::Uuid;

use crate::auth::store::{ApiKeyRow, AuthStore, FailureCounts, USER_COLUMNS, UserRow};
use crate::books::domain::NewAudit;
use crate::storage::{Result, Ts};

#[async_trait]
impl AuthStore for Backend {
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let v = sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.reader())
            .await?;
        Ok(v)
    }

    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query::<Db>(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(self.writer())
        .await?;
        let v = sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(self.writer())
            .await?;
        Ok(v)
    }

    async fn insert_user(&self, u: &UserRow, audit: &NewAudit) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        sqlx::query::<Db>(
            "INSERT INTO users (id, email, password_hash, name, phone, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(u.id)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(&u.name)
        .bind(&u.phone)
        .bind(u.role)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&mut *tx)
        .await?;
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        Ok(sqlx::query_as::<Db, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(email)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        Ok(sqlx::query_as::<Db, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn user_is_active(&self, id: Uuid) -> Result<bool> {
        Ok(
            sqlx::query_scalar::<Db, i32>(
                "SELECT 1 FROM users WHERE id = $1 AND erased_at IS NULL",
            )
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .is_some(),
        )
    }

    async fn insert_api_key(&self, k: &ApiKeyRow, audit: &NewAudit) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        sqlx::query::<Db>(
            "INSERT INTO api_keys (id, name, key_hash, scopes, created_by, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(k.id)
        .bind(&k.name)
        .bind(&k.key_hash)
        .bind(&k.scopes)
        .bind(k.created_by)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await?;
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn active_api_key(&self, key_hash: &[u8]) -> Result<Option<ApiKeyRow>> {
        Ok(sqlx::query_as::<Db, ApiKeyRow>(
            "SELECT id, name, key_hash, scopes, created_by, created_at, revoked_at \
             FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn revoke_api_key(&self, id: Uuid, audit: &NewAudit) -> Result<bool> {
        let mut tx = self.writer().begin().await?;
        let r = sqlx::query::<Db>(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(audit.at)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn links_revoked_at(&self, order_id: Uuid) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "SELECT revoked_at FROM tracking_link_revocations_all WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn revoke_links(&self, order_id: Uuid, revoked_at: i64, audit: &NewAudit) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        // Never moves back (two revocations racing keep the later).
        let sql = "INSERT INTO tracking_link_revocations (order_id, revoked_at) VALUES ($1, $2) \
                   ON CONFLICT (order_id) DO UPDATE SET revoked_at = CASE \
                   WHEN excluded.revoked_at > tracking_link_revocations.revoked_at \
                   THEN excluded.revoked_at ELSE tracking_link_revocations.revoked_at END";
        sqlx::query::<Db>(sql)
            .bind(order_id)
            .bind(revoked_at)
            .execute(&mut *tx)
            .await?;
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn login_failures(&self, email: &str, ip: &str, since: Ts) -> Result<FailureCounts> {
        let (by_email, oldest_by_email): (i64, Option<Ts>) =
            sqlx::query_as::<Db, (i64, Option<Ts>)>(
                "SELECT count(*), min(at) FROM login_failures WHERE email = $1 AND at > $2",
            )
            .bind(email)
            .bind(since)
            .fetch_one(self.reader())
            .await?;
        let (by_ip, oldest_by_ip): (i64, Option<Ts>) = sqlx::query_as::<Db, (i64, Option<Ts>)>(
            "SELECT count(*), min(at) FROM login_failures WHERE ip = $1 AND at > $2",
        )
        .bind(ip)
        .bind(since)
        .fetch_one(self.reader())
        .await?;
        Ok(FailureCounts {
            by_email,
            oldest_by_email,
            by_ip,
            oldest_by_ip,
        })
    }

    async fn record_login_attempt(&self, email: &str, ip: &str, at: Ts) -> Result<i64> {
        Ok(sqlx::query_scalar::<Db, i64>(
            "INSERT INTO login_failures (email, ip, at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(email)
        .bind(ip)
        .bind(at)
        .fetch_one(self.writer())
        .await?)
    }

    async fn forget_login_attempt(&self, id: i64) -> Result<()> {
        sqlx::query::<Db>("DELETE FROM login_failures WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn prune_login_failures(&self, before: Ts) -> Result<u64> {
        let r = sqlx::query::<Db>("DELETE FROM login_failures WHERE at < $1")
            .bind(before)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }
}
