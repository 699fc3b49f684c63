//! Storage of users, API keys, login failures and server settings.

use async_trait::async_trait;
use uuid::Uuid;

use crate::auth::domain::Role;
use crate::books::domain::NewAudit;
use crate::storage::{Result, Ts};

crate::storage::text_column!(Role);

crate::storage::columns!(
    /// The columns of `UserRow`, in order.
    pub(crate) USER_COLUMNS:
    id, email, password_hash, name, phone, role, created_at, updated_at, erased_at
);

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub name: String,
    pub phone: Option<String>,
    pub role: Role,
    pub created_at: Ts,
    pub updated_at: Ts,
    /// Set when the person was erased (see `privacy`): the row keeps the id for the
    /// books, nothing personal, and no token of it is accepted any more.
    pub erased_at: Option<Ts>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub key_hash: Vec<u8>,
    /// Space-separated scope names.
    pub scopes: String,
    pub created_by: Option<Uuid>,
    pub created_at: Ts,
    pub revoked_at: Option<Ts>,
}

/// Failed logins inside the limiting window.
#[derive(Clone, Copy, Debug, Default)]
pub struct FailureCounts {
    pub by_email: i64,
    pub oldest_by_email: Option<Ts>,
    pub by_ip: i64,
    pub oldest_by_ip: Option<Ts>,
}

#[async_trait]
pub trait AuthStore {
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` unless the key exists; returns whichever value is stored afterwards,
    /// so that concurrent first starts of many nodes agree.
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<String>;
    /// Inserts the user and its audit entry in one transaction.
    async fn insert_user(&self, user: &UserRow, audit: &NewAudit) -> Result<()>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>>;
    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRow>>;
    /// Whether the user exists and was not erased (checked for every access token).
    async fn user_is_active(&self, id: Uuid) -> Result<bool>;
    async fn insert_api_key(&self, key: &ApiKeyRow, audit: &NewAudit) -> Result<()>;
    /// An API key that has not been revoked.
    async fn active_api_key(&self, key_hash: &[u8]) -> Result<Option<ApiKeyRow>>;
    /// Returns false when there was no such active key.
    async fn revoke_api_key(&self, id: Uuid, audit: &NewAudit) -> Result<bool>;
    /// Failed (or still running) login attempts after `since`.
    /// Until when (unix seconds, inclusive) the order's tracking links are revoked.
    async fn links_revoked_at(&self, order_id: Uuid) -> Result<Option<i64>>;
    /// Revokes the order's tracking links issued up to `revoked_at` (unix seconds; never
    /// moves back), with its audit entry, in one transaction.
    async fn revoke_links(&self, order_id: Uuid, revoked_at: i64, audit: &NewAudit) -> Result<()>;
    async fn login_failures(&self, email: &str, ip: &str, since: Ts) -> Result<FailureCounts>;
    /// Records an attempt as failed until `forget_login_attempt` says otherwise.
    async fn record_login_attempt(&self, email: &str, ip: &str, at: Ts) -> Result<i64>;
    async fn forget_login_attempt(&self, id: i64) -> Result<()>;
    async fn prune_login_failures(&self, before: Ts) -> Result<u64>;
}

#[path = "."]
mod sqlite {
    use crate::books::store::sqlite::append_audit;
    use crate::storage::sqlite::{Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}

#[path = "."]
mod postgres {
    use crate::books::store::postgres::append_audit;
    use crate::storage::postgres::{Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}
