//! Identity operations: accounts, passwords (Argon2id), access tokens (JWT, HS256 pinned),
//! API keys (stored as SHA-256 hashes, shown once), login rate limits.

use std::sync::Arc;
use std::time::Duration;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::domain::{Email, NewPassword, Principal, Role, Scope};
use super::links::{LinkClaims, LinkError, LinkSigner};
use super::store::{ApiKeyRow, UserRow};
use crate::books::domain::{self as books, NewAudit};
use crate::clock::Clock;
use crate::config::Secret;
use crate::storage::{DynStore, Error as StoreError, Ts};

/// What can go wrong with accounts, credentials and keys; an HTTP answer only at the edge
/// (`impl From<AuthError> for ApiError` in `http.rs`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The credential is not one (or no longer): why, in words a client may see.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Too many failed logins lately; try again after this long.
    #[error("rate limited for {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("a user with this e-mail already exists")]
    EmailTaken,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0:#}")]
    Internal(anyhow::Error),
}

pub type AuthResult<T> = Result<T, AuthError>;

impl AuthError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AuthError::Internal(e.into())
    }
}

const JWT_SETTING: &str = "jwt_secret";
const ISSUER: &str = "ordo";
const API_KEY_PREFIX: &str = "ordo_";
/// Clock skew tolerated between nodes when judging token expiry.
const TOKEN_LEEWAY_SECS: u64 = 5;
/// Failed logins are counted over this window.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_FAILURES_PER_EMAIL: i64 = 10;
pub const MAX_FAILURES_PER_IP: i64 = 100;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    iss: String,
    iat: i64,
    exp: i64,
}

#[derive(Clone)]
pub struct AuthService {
    store: DynStore,
    clock: Arc<dyn Clock>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    token_ttl: Duration,
    links: LinkSigner,
    /// A real Argon2id hash of a random password, verified against when an e-mail is
    /// unknown so that both failures take the same time.
    dummy_hash: Arc<String>,
    accounts: Arc<Accounts>,
}

/// How long this node trusts an account it has just read as active (not erased).
const ACTIVE_FOR: Duration = Duration::from_secs(1);
/// Most accounts remembered as active; a full table starts over.
const ACTIVE_MAX: usize = 100_000;

/// This node's memory of accounts: which were active a moment ago (so that a busy
/// customer's requests read its account once a second, not once each), and which were
/// erased here (an erasure is for good, so that answer never expires).
#[derive(Default)]
struct Accounts {
    active: std::sync::Mutex<std::collections::HashMap<Uuid, std::time::Instant>>,
    erased: std::sync::Mutex<std::collections::HashSet<Uuid>>,
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

pub struct NewUser {
    pub email: Email,
    pub password: NewPassword,
    pub name: String,
    pub phone: Option<String>,
    pub role: Role,
}

impl AuthService {
    /// Loads the signing key: `ORDO_JWT_SECRET`, or one generated on the first start and
    /// stored in the database so every node shares it.
    pub async fn new(
        store: DynStore,
        clock: Arc<dyn Clock>,
        jwt_secret: Option<&Secret>,
        token_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let secret = match jwt_secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => {
                let fresh = base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>());
                let stored = store.put_setting_if_absent(JWT_SETTING, &fresh).await?;
                base64::engine::general_purpose::STANDARD.decode(stored)?
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = TOKEN_LEEWAY_SECS;
        // Expiry is judged by our clock, not the system's, so tests can move time.
        validation.validate_exp = false;
        let dummy_hash =
            hash_password(&base64::engine::general_purpose::STANDARD.encode(random_bytes::<16>()))
                .await?;
        Ok(AuthService {
            store,
            clock,
            links: LinkSigner::new(&secret),
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            token_ttl,
            dummy_hash: Arc::new(dummy_hash),
            accounts: Arc::default(),
        })
    }

    /// Is the account there and not erased? Erased on this node: no, at once. Read as
    /// active on this node less than `ACTIVE_FOR` ago: yes. Otherwise it is read.
    async fn account_is_active(&self, id: Uuid) -> AuthResult<bool> {
        if self.accounts.erased.lock().expect("accounts").contains(&id) {
            return Ok(false);
        }
        let fresh = self
            .accounts
            .active
            .lock()
            .expect("accounts")
            .get(&id)
            .is_some_and(|at| at.elapsed() < ACTIVE_FOR);
        if fresh {
            return Ok(true);
        }
        let read_at = std::time::Instant::now();
        let active = self.store.user_is_active(id).await?;
        if active {
            let mut seen = self.accounts.active.lock().expect("accounts");
            if seen.len() >= ACTIVE_MAX {
                seen.clear();
            }
            seen.insert(id, read_at);
        }
        // An erasure on this node while the read was on its way wins.
        Ok(active && !self.accounts.erased.lock().expect("accounts").contains(&id))
    }

    /// The account was erased (its erasure committed): its tokens and links are refused by
    /// this node from now on, and by every other node within `ACTIVE_FOR`.
    pub fn account_erased(&self, id: Uuid) {
        self.accounts.erased.lock().expect("accounts").insert(id);
        self.accounts.active.lock().expect("accounts").remove(&id);
    }

    pub fn issue_token(&self, user: &UserRow) -> AuthResult<IssuedToken> {
        let role = user.role;
        let now = self.clock.now().unix_timestamp();
        let ttl = self.token_ttl.as_secs();
        let claims = Claims {
            sub: user.id,
            role,
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + ttl as i64,
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(AuthError::internal)?;
        Ok(IssuedToken {
            access_token,
            expires_in: ttl,
        })
    }

    /// Was this link revoked (`revoke_links`)? One indexed read, on every use of a link.
    async fn link_revoked(&self, c: &LinkClaims) -> AuthResult<bool> {
        let revoked = self.store.links_revoked_at(c.order_id).await?;
        Ok(revoked.is_some_and(|at| c.issued_at <= at))
    }

    /// A new tracking link for the order, valid for `ttl`; issued after any revocation of
    /// the order's links, so a link made right after revoking the others works.
    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub async fn issue_link(
        &self,
        order_id: Uuid,
        customer_id: Uuid,
        ttl: std::time::Duration,
    ) -> AuthResult<(String, LinkClaims)> {
        let now = self.clock.now().unix_timestamp();
        let revoked = self.store.links_revoked_at(order_id).await?;
        let issued_at = revoked.map_or(now, |at| now.max(at + 1));
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = LinkClaims {
            order_id,
            customer_id,
            expires_at: issued_at.saturating_add(ttl),
            issued_at,
        };
        Ok((self.links.sign(&claims), claims))
    }

    /// Every tracking link of the order issued until now stops working, on every node at
    /// once (streams that hold one end at their next check); audited.
    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub async fn revoke_links(&self, order_id: Uuid, actor: &str) -> AuthResult<()> {
        let now = self.clock.now();
        let audit = NewAudit::new(
            Ts::truncated(now),
            actor,
            books::ORDER_TRACKING_LINKS_REVOKED,
            "order",
            order_id,
        );
        // The revocation is kept beside the order: an archived one comes back first.
        self.store
            .restore_order(order_id, Ts::truncated(now))
            .await?;
        self.store
            .revoke_links(order_id, now.unix_timestamp(), &audit)
            .await?;
        Ok(())
    }

    /// The signer of tracking links (every node derives the same key).
    pub fn links(&self) -> &LinkSigner {
        &self.links
    }

    /// Resolves a bearer credential: an access token (its account checked: an erasure ends
    /// it, see `account_is_active`), a tracking link (likewise), or an API key (looked up
    /// on every request so that revocation takes effect at once).
    pub async fn authenticate(&self, bearer: &str) -> AuthResult<Principal> {
        if bearer.starts_with(super::links::PREFIX) {
            return match self.links.verify(bearer, self.clock.now().unix_timestamp()) {
                // The link of an erased customer's order ends with the account.
                Ok(c) if !self.account_is_active(c.customer_id).await? => {
                    Err(AuthError::Unauthorized("invalid tracking link"))
                }
                Ok(c) if self.link_revoked(&c).await? => Err(AuthError::Unauthorized(
                    "the tracking link was revoked; sign in to see the order",
                )),
                Ok(c) => Ok(Principal::TrackingLink {
                    order_id: c.order_id,
                    customer_id: c.customer_id,
                }),
                Err(LinkError::Expired) => Err(AuthError::Unauthorized(
                    "the tracking link has expired; sign in to see the order",
                )),
                Err(LinkError::Malformed) => Err(AuthError::Unauthorized("invalid tracking link")),
            };
        }
        if let Some(rest) = bearer.strip_prefix(API_KEY_PREFIX) {
            if rest.is_empty() || rest.len() > 128 {
                return Err(AuthError::Unauthorized("invalid API key"));
            }
            let row = self
                .store
                .active_api_key(&sha256(bearer))
                .await?
                .ok_or(AuthError::Unauthorized("invalid or revoked API key"))?;
            let scopes = row
                .scopes
                .split_whitespace()
                .filter_map(Scope::parse)
                .collect();
            return Ok(Principal::ApiKey { id: row.id, scopes });
        }
        let data = jsonwebtoken::decode::<Claims>(bearer, &self.decoding, &self.validation)
            .map_err(|_| AuthError::Unauthorized("invalid access token"))?;
        if data.claims.exp + TOKEN_LEEWAY_SECS as i64 <= self.clock.now().unix_timestamp() {
            return Err(AuthError::Unauthorized("the access token has expired"));
        }
        // An erased account's tokens stop working at once on the node that erased it and
        // within a second on the others (one indexed read per account and second per node).
        if !self.account_is_active(data.claims.sub).await? {
            return Err(AuthError::Unauthorized("invalid access token"));
        }
        Ok(Principal::User {
            id: data.claims.sub,
            role: data.claims.role,
        })
    }

    /// Creates a user; `actor` is who does it (`None`: the new user itself, registering).
    #[tracing::instrument(skip_all)]
    pub async fn create_user(&self, new: NewUser, actor: Option<&str>) -> AuthResult<UserRow> {
        let password_hash = hash_password(new.password.expose())
            .await
            .map_err(AuthError::internal)?;
        let now = self.clock.ts();
        let row = UserRow {
            id: Uuid::now_v7(),
            email: new.email.as_str().to_owned(),
            password_hash,
            name: new.name,
            phone: new.phone,
            role: new.role,
            created_at: now,
            updated_at: now,
            erased_at: None,
        };
        let audit = NewAudit::new(
            now,
            actor.map_or_else(|| format!("user:{}", row.id), str::to_owned),
            books::USER_CREATED,
            "user",
            row.id,
        )
        .after(serde_json::json!({"role": row.role}));
        match self.store.insert_user(&row, &audit).await {
            Ok(()) => Ok(row),
            Err(StoreError::Unique(_)) => Err(AuthError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks rate limits, then the password. Unknown e-mail and wrong password answer alike.
    /// Checks the password under the failed-login limits. Unknown e-mail and wrong password
    /// answer alike.
    ///
    /// The attempt is recorded *before* the password is checked and forgotten again if it
    /// succeeds: parallel guesses each see the ones recorded before them, so they cannot
    /// slip past the limit together.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, email: &str, password: &str, ip: &str) -> AuthResult<UserRow> {
        let email = email.trim().to_lowercase();
        let now = self.clock.now();
        let window = time::Duration::try_from(LOGIN_WINDOW).map_err(AuthError::internal)?;
        let since = crate::storage::Ts::truncated(now - window);
        let attempt = self
            .store
            .record_login_attempt(&email, ip, self.clock.ts())
            .await?;
        let counts = self.store.login_failures(&email, ip, since).await?;
        let blocked_until = [
            (counts.by_email > MAX_FAILURES_PER_EMAIL).then_some(counts.oldest_by_email),
            (counts.by_ip > MAX_FAILURES_PER_IP).then_some(counts.oldest_by_ip),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .map(|oldest| oldest.0 + window)
        .max();
        if let Some(until) = blocked_until {
            // A refused attempt is not a failure: it does not extend the block.
            self.store.forget_login_attempt(attempt).await?;
            let secs = (until - now).whole_seconds().max(1) as u64;
            return Err(AuthError::RateLimited {
                retry_after_secs: secs,
            });
        }
        let user = self.store.user_by_email(&email).await?;
        let hash = user.as_ref().map_or_else(
            || self.dummy_hash.as_str().to_owned(),
            |u| u.password_hash.clone(),
        );
        let ok = verify_password(password, &hash).await && user.is_some();
        match user {
            Some(u) if ok => {
                self.store.forget_login_attempt(attempt).await?;
                Ok(u)
            }
            _ => Err(AuthError::Unauthorized("wrong e-mail or password")),
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn user(&self, id: Uuid) -> AuthResult<UserRow> {
        self.store.user_by_id(id).await?.ok_or(AuthError::NotFound)
    }

    /// Creates an API key; the returned plaintext is shown to the caller once and never stored.
    #[tracing::instrument(skip_all)]
    pub async fn create_api_key(
        &self,
        name: String,
        scopes: Vec<Scope>,
        created_by: Option<Uuid>,
        actor: &str,
    ) -> AuthResult<(ApiKeyRow, String)> {
        let plaintext = format!(
            "{API_KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
        );
        let mut scopes = scopes;
        scopes.sort();
        scopes.dedup();
        let row = ApiKeyRow {
            id: Uuid::now_v7(),
            name,
            key_hash: sha256(&plaintext),
            scopes: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            created_by,
            created_at: self.clock.ts(),
            revoked_at: None,
        };
        let audit = NewAudit::new(
            row.created_at,
            actor,
            books::API_KEY_CREATED,
            "api_key",
            row.id,
        )
        .after(serde_json::json!({"name": row.name, "scopes": row.scopes}));
        self.store.insert_api_key(&row, &audit).await?;
        Ok((row, plaintext))
    }

    #[tracing::instrument(skip_all, fields(api_key_id = %id))]
    pub async fn revoke_api_key(&self, id: Uuid, actor: &str) -> AuthResult<()> {
        let audit = NewAudit::new(
            self.clock.ts(),
            actor,
            books::API_KEY_REVOKED,
            "api_key",
            id,
        );
        if self.store.revoke_api_key(id, &audit).await? {
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }

    /// Makes sure the bootstrap admin exists (idempotent; an existing account is left as is).
    pub async fn ensure_admin(&self, email: &str, password: &Secret) -> anyhow::Result<()> {
        let email =
            Email::parse("ORDO_ADMIN_EMAIL", email).map_err(|e| anyhow::anyhow!(e.message))?;
        if self.store.user_by_email(email.as_str()).await?.is_some() {
            return Ok(());
        }
        let password = NewPassword::parse("ORDO_ADMIN_PASSWORD", password.expose().to_owned())
            .map_err(|e| anyhow::anyhow!("ORDO_ADMIN_PASSWORD {}", e.message))?;
        let new = NewUser {
            email,
            password,
            name: "Administrator".into(),
            phone: None,
            role: Role::Admin,
        };
        match self.create_user(new, Some("system:bootstrap")).await {
            // Another node created it at the same moment.
            Ok(_) | Err(AuthError::EmailTaken) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("creating the admin user: {e}")),
        }
    }

    pub async fn prune(&self) -> anyhow::Result<u64> {
        let window = time::Duration::try_from(LOGIN_WINDOW)?;
        Ok(self
            .store
            .prune_login_failures(crate::storage::Ts::truncated(self.clock.now() - window))
            .await?)
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::fill(&mut b[..]);
    b
}

pub fn sha256(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// Argon2id is deliberately slow; it runs off the async workers.
pub async fn hash_password(password: &str) -> anyhow::Result<String> {
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await?
}

pub async fn verify_password(password: &str, hash: &str) -> bool {
    let pw = password.to_owned();
    let hash = hash.to_owned();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(pw.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}
