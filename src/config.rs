//! Settings: defaults in code, overridden by flags and `ORDO_*` / `DATABASE_URL` environment,
//! validated once at start. Secrets never appear in `Debug` output or logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// A value that must not be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How hard the embedded database pushes each commit to disk before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// Every commit is flushed to disk before it is acknowledged: it survives a power cut.
    #[default]
    Full,
    /// As `full`, and the directory is flushed too when the WAL is created or truncated.
    Extra,
    /// Commits survive a crash of the process, but a power cut or a kernel crash may lose
    /// the last ones (checkpoints still flush).
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GatewayKind {
    Simulated,
    Stripe,
}

/// Flags and environment of `ordo serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to serve HTTP (HTTPS when TLS is set).
    #[arg(long, env = "ORDO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// JetStream event bus shared by all nodes (unset: in-process bus).
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// The JetStream stream events go to (unset: `ORDO_EVENTS_<shop id>`, named after this
    /// database's identity, so that shops sharing one NATS server never share a stream).
    #[arg(long, env = "ORDO_NATS_STREAM")]
    pub nats_stream: Option<String>,
    /// Seconds between pings on a WebSocket (SSE: keep-alive comments).
    #[arg(long, env = "ORDO_WS_PING_INTERVAL", default_value_t = 20)]
    pub ws_ping_interval: u64,
    /// Seconds a WebSocket may stay silent (no pong, no message) before it is closed.
    #[arg(long, env = "ORDO_WS_IDLE_TIMEOUT", default_value_t = 60)]
    pub ws_idle_timeout: u64,
    /// Events a real-time connection may have waiting; past that it is too slow and is
    /// closed (it reconnects with the last id it saw).
    #[arg(long, env = "ORDO_REALTIME_QUEUE", default_value_t = 1024)]
    pub realtime_queue: usize,
    /// Open real-time connections (WebSocket + SSE) per caller, per node.
    #[arg(long, env = "ORDO_REALTIME_MAX_PER_CALLER", default_value_t = 16)]
    pub realtime_max_per_caller: usize,
    /// SMTP server for e-mail (`smtp://host:port`, `smtps://user:pass@host`); unset: e-mails
    /// are recorded, not sent.
    #[arg(long, env = "ORDO_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    #[arg(
        long,
        env = "ORDO_EMAIL_FROM",
        default_value = "Ordo <orders@localhost>"
    )]
    pub email_from: String,
    /// `twilio` to send SMS; unset: SMS are recorded, not sent.
    #[arg(long, env = "ORDO_SMS_PROVIDER")]
    pub sms_provider: Option<String>,
    #[arg(
        long,
        env = "TWILIO_API_BASE",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_base: String,
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<Secret>,
    #[arg(long, env = "TWILIO_FROM")]
    pub twilio_from: Option<String>,
    /// Seconds before each retry of a notification or webhook; then `dead`.
    #[arg(
        long,
        env = "ORDO_DELIVERY_RETRY_SCHEDULE",
        default_value = "5,30,120,600,1800,7200"
    )]
    pub delivery_retry_schedule: String,
    /// Allow webhook URLs on loopback and private networks (tests, single-host setups).
    #[arg(long, env = "ORDO_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// The address customers reach the shop at (links in notifications); unset:
    /// `http://<listen>`.
    #[arg(long, env = "ORDO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds the read-only tracking link in a notification stays valid.
    #[arg(long, env = "ORDO_TRACKING_LINK_TTL", default_value_t = 2_592_000)]
    pub tracking_link_ttl: u64,
    /// On start, ensure this admin user exists.
    #[arg(long, env = "ORDO_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "ORDO_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,
    /// Signing key for access tokens (unset: generated once and stored in the database).
    #[arg(long, env = "ORDO_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "ORDO_TOKEN_TTL", default_value_t = 3600)]
    pub token_ttl: u64,
    /// How long an unpaid order holds its stock, in seconds.
    #[arg(long, env = "ORDO_RESERVATION_TTL", default_value_t = 900)]
    pub reservation_ttl: u64,
    #[arg(
        long,
        env = "ORDO_PAYMENT_GATEWAY",
        value_enum,
        default_value = "simulated"
    )]
    pub payment_gateway: GatewayKind,
    /// Stripe's API (or a compatible fake, such as localstripe).
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,
    /// Signing secret of Stripe's webhooks (`POST /v1/webhooks/stripe`).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,
    /// AfterShip's webhook secret (`POST /v1/carriers/aftership/webhook`); unset, it answers 503.
    #[arg(long, env = "ORDO_AFTERSHIP_WEBHOOK_SECRET", hide_env_values = true)]
    pub aftership_webhook_secret: Option<Secret>,
    /// Extra attempts after a failed gateway call (exponential backoff with jitter).
    #[arg(long, env = "ORDO_GATEWAY_RETRIES", default_value_t = 2)]
    pub gateway_retries: u32,
    /// Failed gateway calls in a row that open the circuit breaker.
    #[arg(long, env = "ORDO_GATEWAY_BREAKER_THRESHOLD", default_value_t = 5)]
    pub gateway_breaker_threshold: u32,
    /// How long an open breaker refuses calls before it lets one probe through, in ms.
    #[arg(
        long,
        env = "ORDO_GATEWAY_BREAKER_COOLDOWN_MS",
        default_value_t = 10_000
    )]
    pub gateway_breaker_cooldown_ms: u64,
    /// How long one gateway call may take before the order is answered as pending, in ms.
    #[arg(long, env = "ORDO_PAYMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub payment_timeout_ms: u64,
    /// Latency the simulated gateway adds to every call, in ms (benchmarks).
    #[arg(long, env = "ORDO_SIMULATED_GATEWAY_LATENCY_MS", default_value_t = 0)]
    pub simulated_gateway_latency_ms: u64,
    #[arg(long, env = "ORDO_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "ORDO_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Requests per minute per caller (token or IP); unset: no limit.
    #[arg(long, env = "ORDO_RATE_LIMIT_PER_MIN")]
    pub rate_limit_per_min: Option<u32>,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    #[arg(long, env = "ORDO_TRUST_PROXY_HEADERS", default_value_t = false)]
    pub trust_proxy_headers: bool,
    /// Search answers each node keeps (ranked ids and facets, checked against the search
    /// generation on every use, so never stale); 0: none.
    #[arg(long, env = "ORDO_SEARCH_CACHE_ENTRIES", default_value_t = 4096)]
    pub search_cache_entries: usize,
    /// Pages of order lists each node keeps, rendered (checked against the orders' versions
    /// on every use, so never stale); 0: none.
    #[arg(long, env = "ORDO_ORDER_PAGE_CACHE_ENTRIES", default_value_t = 2048)]
    pub order_page_cache_entries: usize,
    /// Seconds after an order ended (delivered, or canceled and settled) before it moves to
    /// the order history (API.md "History").
    #[arg(long, env = "ORDO_ARCHIVE_AFTER", default_value_t = 2_592_000)]
    pub archive_after: u64,
    /// Seconds between two runs of the archive job (one node at a time).
    #[arg(long, env = "ORDO_ARCHIVE_INTERVAL", default_value_t = 60)]
    pub archive_interval: u64,
    /// For measuring only: the readers of the event log (relay, notifier, recommendations
    /// consumer) do not run, so nothing is pushed, notified or counted.
    #[arg(
        long,
        env = "ORDO_BENCH_IDLE_EVENT_READERS",
        default_value_t = false,
        hide = true
    )]
    pub idle_event_readers: bool,
    #[arg(long, env = "ORDO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Seconds in-flight requests get to finish after SIGTERM / Ctrl-C.
    #[arg(long, env = "ORDO_SHUTDOWN_GRACE", default_value_t = 30)]
    pub shutdown_grace: u64,
}

#[derive(Args, Clone, Debug)]
pub struct DbArgs {
    /// `sqlite://path` (embedded, one node) or `postgres://…` (many nodes).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://ordo.db",
        hide_env_values = true
    )]
    pub database_url: Secret,
    /// Database connections per node.
    #[arg(long, env = "ORDO_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
    /// Embedded database only: `full` (a 201 survives a power cut), `extra`, or `normal`
    /// (faster; a power cut may lose the last acknowledged commits).
    #[arg(
        long,
        env = "ORDO_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub sqlite_synchronous: SqliteSync,
    /// PostgreSQL only: how many workers place concurrent orders together, one
    /// transaction per batch (group commit). `0`: every order commits on its own.
    #[arg(long, env = "ORDO_PG_GROUP_COMMIT", default_value_t = 1)]
    pub pg_group_commit: usize,
}

impl DbArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            anyhow::bail!("DATABASE_URL must be sqlite://<path> or postgres://<user>@<host>/<db>");
        }
        if self.db_pool_size == 0 || self.db_pool_size > 1000 {
            anyhow::bail!("ORDO_DB_POOL_SIZE must be between 1 and 1000");
        }
        if self.pg_group_commit > 64 {
            anyhow::bail!("ORDO_PG_GROUP_COMMIT must be between 0 and 64");
        }
        Ok(())
    }
}

/// Real-time connections (`/v1/ws`, `/v1/events`).
#[derive(Clone, Copy, Debug)]
pub struct RealtimeSettings {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub queue: usize,
    pub max_per_caller: usize,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        RealtimeSettings {
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            queue: 1024,
            max_per_caller: 16,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TwilioSettings {
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: String,
}

/// Notifications and webhooks.
#[derive(Clone, Debug)]
pub struct NotificationSettings {
    pub smtp_url: Option<Secret>,
    pub email_from: String,
    pub twilio: Option<TwilioSettings>,
    pub retry_schedule: crate::notifications::domain::RetrySchedule,
    pub webhook_allow_private: bool,
    pub public_url: String,
    /// How long the read-only tracking link in a notification stays valid.
    pub tracking_link_ttl: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            smtp_url: None,
            email_from: "Ordo <orders@localhost>".into(),
            twilio: None,
            retry_schedule: crate::notifications::domain::RetrySchedule::default(),
            webhook_allow_private: false,
            public_url: "http://127.0.0.1:8080".into(),
            tracking_link_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Clone, Debug)]
pub struct StripeSettings {
    pub api_base: String,
    pub secret_key: Secret,
}

/// Validated settings of a running server.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: Secret,
    pub db_pool_size: u32,
    /// The embedded database's `synchronous` setting (ignored on PostgreSQL).
    pub sqlite_synchronous: SqliteSync,
    /// Group-commit workers for order placement on PostgreSQL (`0`: off).
    pub pg_group_commit: usize,
    /// How often the embedded database's WAL is checkpointed.
    pub sqlite_checkpoint_interval: Duration,
    pub nats_url: Option<String>,
    /// `None`: named after the database's identity.
    pub nats_stream: Option<String>,
    pub realtime: RealtimeSettings,
    pub notifications: NotificationSettings,
    pub admin: Option<(String, Secret)>,
    pub jwt_secret: Option<Secret>,
    pub token_ttl: Duration,
    pub reservation_ttl: Duration,
    pub payment_gateway: GatewayKind,
    /// Set when `payment_gateway` is `stripe`.
    pub stripe: Option<StripeSettings>,
    pub stripe_webhook_secret: Option<Secret>,
    pub aftership_webhook_secret: Option<Secret>,
    pub payment_timeout: Duration,
    pub gateway_policy: crate::payments::resilience::Policy,
    pub simulated_gateway_latency: Duration,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub rate_limit_per_min: Option<u32>,
    pub trust_proxy_headers: bool,
    /// Search answers each node keeps; 0: none.
    pub search_cache_entries: usize,
    /// Rendered pages of order lists each node keeps; 0: none.
    pub order_page_cache_entries: usize,
    /// How long after it ended an order moves to the history.
    pub archive_after: Duration,
    /// How often the archive job looks for orders to move.
    pub archive_interval: Duration,
    /// For measuring only: the event log's readers do not run.
    pub idle_event_readers: bool,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
}

impl Config {
    pub fn from_args(a: ServeArgs) -> anyhow::Result<Self> {
        a.db.validate()?;
        let admin = match (a.admin_email, a.admin_password) {
            (Some(e), Some(p)) => {
                if !e.contains('@') {
                    anyhow::bail!("ORDO_ADMIN_EMAIL must be an e-mail address");
                }
                if p.expose().chars().count() < 8 {
                    anyhow::bail!("ORDO_ADMIN_PASSWORD must have at least 8 characters");
                }
                Some((e, p))
            }
            (None, None) => None,
            _ => anyhow::bail!("ORDO_ADMIN_EMAIL and ORDO_ADMIN_PASSWORD must be set together"),
        };
        if let Some(s) = &a.jwt_secret
            && s.expose().len() < 32
        {
            anyhow::bail!("ORDO_JWT_SECRET must have at least 32 bytes");
        }
        if a.token_ttl == 0 || a.reservation_ttl == 0 {
            anyhow::bail!("ORDO_TOKEN_TTL and ORDO_RESERVATION_TTL must be positive");
        }
        let stripe = match (a.payment_gateway, a.stripe_secret_key) {
            (GatewayKind::Stripe, Some(key)) => {
                if !(a.stripe_api_base.starts_with("https://")
                    || a.stripe_api_base.starts_with("http://"))
                {
                    anyhow::bail!("STRIPE_API_BASE must be an http(s) URL");
                }
                Some(StripeSettings {
                    api_base: a.stripe_api_base,
                    secret_key: key,
                })
            }
            (GatewayKind::Stripe, None) => {
                anyhow::bail!("ORDO_PAYMENT_GATEWAY=stripe needs STRIPE_SECRET_KEY")
            }
            (GatewayKind::Simulated, _) => None,
        };
        let tls = match (a.tls_cert, a.tls_key) {
            (Some(c), Some(k)) => {
                for p in [&c, &k] {
                    if !p.is_file() {
                        anyhow::bail!("TLS file {} does not exist", p.display());
                    }
                }
                Some((c, k))
            }
            (None, None) => None,
            _ => anyhow::bail!("ORDO_TLS_CERT and ORDO_TLS_KEY must be set together"),
        };
        if a.rate_limit_per_min == Some(0) {
            anyhow::bail!("ORDO_RATE_LIMIT_PER_MIN must be positive when set");
        }
        if let Some(u) = &a.nats_url
            && !u.starts_with("nats://")
        {
            anyhow::bail!("NATS_URL must start with nats://");
        }
        if let Some(name) = &a.nats_stream
            && (name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            anyhow::bail!("ORDO_NATS_STREAM must be letters, digits, '_' or '-'");
        }
        if a.ws_ping_interval == 0 || a.ws_idle_timeout <= a.ws_ping_interval {
            anyhow::bail!("ORDO_WS_PING_INTERVAL must be positive and below ORDO_WS_IDLE_TIMEOUT");
        }
        let twilio = match a.sms_provider.as_deref() {
            None => None,
            Some("twilio") => match (a.twilio_account_sid, a.twilio_auth_token, a.twilio_from) {
                (Some(account_sid), Some(auth_token), Some(from)) => {
                    if !(a.twilio_api_base.starts_with("https://")
                        || a.twilio_api_base.starts_with("http://"))
                    {
                        anyhow::bail!("TWILIO_API_BASE must be an http(s) URL");
                    }
                    Some(TwilioSettings {
                        api_base: a.twilio_api_base,
                        account_sid,
                        auth_token,
                        from,
                    })
                }
                _ => anyhow::bail!(
                    "ORDO_SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM"
                ),
            },
            Some(other) => anyhow::bail!("ORDO_SMS_PROVIDER must be twilio (not {other:?})"),
        };
        if let Some(u) = &a.smtp_url
            && !(u.expose().starts_with("smtp://") || u.expose().starts_with("smtps://"))
        {
            anyhow::bail!("ORDO_SMTP_URL must start with smtp:// or smtps://");
        }
        if a.email_from.parse::<lettre::message::Mailbox>().is_err() {
            anyhow::bail!(
                "ORDO_EMAIL_FROM must be an e-mail address, e.g. Shop <orders@shop.example>"
            );
        }
        let retry_schedule =
            crate::notifications::domain::RetrySchedule::parse(&a.delivery_retry_schedule)
                .map_err(|e| anyhow::anyhow!("ORDO_DELIVERY_RETRY_SCHEDULE: {e}"))?;
        let public_url = a
            .public_url
            .unwrap_or_else(|| format!("http://{}", a.listen));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            anyhow::bail!("ORDO_PUBLIC_URL must be an http(s) URL");
        }
        if a.realtime_queue == 0 || a.realtime_max_per_caller == 0 {
            anyhow::bail!("ORDO_REALTIME_QUEUE and ORDO_REALTIME_MAX_PER_CALLER must be positive");
        }
        Ok(Config {
            listen: a.listen,
            database_url: a.db.database_url,
            db_pool_size: a.db.db_pool_size,
            sqlite_synchronous: a.db.sqlite_synchronous,
            pg_group_commit: a.db.pg_group_commit,
            sqlite_checkpoint_interval: Duration::from_secs(1),
            nats_url: a.nats_url,
            nats_stream: a.nats_stream,
            realtime: RealtimeSettings {
                ping_interval: Duration::from_secs(a.ws_ping_interval),
                idle_timeout: Duration::from_secs(a.ws_idle_timeout),
                queue: a.realtime_queue,
                max_per_caller: a.realtime_max_per_caller,
            },
            notifications: NotificationSettings {
                smtp_url: a.smtp_url,
                email_from: a.email_from,
                twilio,
                retry_schedule,
                webhook_allow_private: a.webhook_allow_private,
                public_url,
                tracking_link_ttl: Duration::from_secs(a.tracking_link_ttl.max(60)),
            },
            admin,
            jwt_secret: a.jwt_secret,
            token_ttl: Duration::from_secs(a.token_ttl),
            reservation_ttl: Duration::from_secs(a.reservation_ttl),
            payment_gateway: a.payment_gateway,
            stripe,
            stripe_webhook_secret: a.stripe_webhook_secret,
            aftership_webhook_secret: a.aftership_webhook_secret,
            payment_timeout: Duration::from_millis(a.payment_timeout_ms.max(1)),
            gateway_policy: crate::payments::resilience::Policy {
                retries: a.gateway_retries.min(10),
                backoff: Duration::from_millis(50),
                threshold: a.gateway_breaker_threshold.max(1),
                cool_down: Duration::from_millis(a.gateway_breaker_cooldown_ms),
            },
            simulated_gateway_latency: Duration::from_millis(a.simulated_gateway_latency_ms),
            tls,
            rate_limit_per_min: a.rate_limit_per_min,
            trust_proxy_headers: a.trust_proxy_headers,
            search_cache_entries: a.search_cache_entries,
            order_page_cache_entries: a.order_page_cache_entries,
            archive_after: Duration::from_secs(a.archive_after),
            archive_interval: Duration::from_secs(a.archive_interval.max(1)),
            idle_event_readers: a.idle_event_readers,
            log_format: a.log_format,
            shutdown_grace: Duration::from_secs(a.shutdown_grace),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let s = Secret::new("hunter2-hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
