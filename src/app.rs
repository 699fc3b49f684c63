//! The application: shared state, the router, background jobs, and `run` (serve until the
//! shutdown token fires, then let in-flight requests finish).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::service::AuthService;
use crate::carriers::service::CarrierService;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, GatewayKind};
use crate::error::ApiError;
use crate::events::bus::{EventBus, InProcessBus};
use crate::events::hub::Hub;
use crate::events::nats::NatsBus;
use crate::events::relay::Relay;
use crate::http::MAX_BODY;
use crate::http::middleware::{RateLimit, authenticate, observe, rate_limit};
use crate::inventory::service::ItemService;
use crate::notifications::service::NotificationService;
use crate::orders::service::OrderService;
use crate::payments::resilience::Resilient;
use crate::payments::stripe::StripeGateway;
use crate::payments::{PaymentGateway, SimulatedGateway};
use crate::recommendations::service::RecommendationService;
use crate::shop::service::ShopService;
use crate::storage::DynStore;

/// Shared by every request; cloning it is one reference-count increment.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub clock: Arc<dyn Clock>,
    pub auth: AuthService,
    pub items: ItemService,
    pub orders: OrderService,
    pub shop: ShopService,
    pub recommendations: RecommendationService,
    pub metrics: PrometheusHandle,
    pub rate_limit: Option<RateLimit>,
    pub gateway: Arc<dyn PaymentGateway>,
    /// This node's real-time connections.
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn EventBus>,
    pub notifications: Arc<NotificationService>,
    pub carriers: CarrierService,
    /// Push receipts waiting to be written (taken by the job that writes them).
    receipts: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<(i64, uuid::Uuid)>>>,
    openapi: Arc<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Ordo", description = "Order processing and order tracking service"),
    modifiers(&BearerAuth),
    components(schemas(crate::error::Problem, crate::error::FieldError))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or API key")
                    .build(),
            ),
        );
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::auth::http::router())
        .merge(crate::inventory::http::router())
        .merge(crate::orders::http::router())
        .merge(crate::payments::webhooks::router())
        .merge(crate::events::http::router())
        .merge(crate::notifications::http::router())
        .merge(crate::shop::http::router())
        .merge(crate::carriers::http::router())
        .merge(crate::search::http::router())
        .merge(crate::recommendations::http::router())
        .merge(crate::books::http::router())
}

/// The OpenAPI document of every route, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_routes().split_for_parts();
    crate::http::openapi::document_errors(&mut doc);
    doc
}

impl AppState {
    /// Connects to the database (applying migrations), loads keys and bootstraps the admin.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = crate::storage::connect_with(
            config.database_url.expose(),
            config.db_pool_size,
            config.sqlite_synchronous,
        )
        .await?;
        if let Some(sqlite) = store.sqlite() {
            sqlite.hold_serving_lock()?;
        }
        let auth = AuthService::new(
            store.clone(),
            clock.clone(),
            config.jwt_secret.as_ref(),
            config.token_ttl,
        )
        .await?;
        if let Some((email, password)) = &config.admin {
            auth.ensure_admin(email, password).await?;
        }
        let gateway: Arc<dyn PaymentGateway> = match config.payment_gateway {
            GatewayKind::Simulated => {
                Arc::new(SimulatedGateway::new(config.simulated_gateway_latency))
            }
            GatewayKind::Stripe => {
                let s = config
                    .stripe
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("STRIPE_SECRET_KEY is not set"))?;
                Arc::new(StripeGateway::new(
                    &s.api_base,
                    s.secret_key.clone(),
                    config.payment_timeout,
                )?)
            }
        };
        let gateway: Arc<dyn PaymentGateway> = Arc::new(Resilient::new(
            gateway,
            config.gateway_policy,
            clock.clone(),
        ));
        let orders = OrderService::new(
            store.clone(),
            clock.clone(),
            gateway.clone(),
            config.reservation_ttl,
            config.payment_timeout,
        );
        let hub = Hub::new(config.realtime.queue);
        let bus: Arc<dyn EventBus> = match &config.nats_url {
            Some(url) => Arc::new(
                NatsBus::connect(url, config.nats_stream.as_deref(), store.as_ref()).await?,
            ),
            None => Arc::new(InProcessBus::new(hub.clone())),
        };
        let (notifications, receipts) = NotificationService::new(
            store.clone(),
            clock.clone(),
            &config.notifications,
            auth.links().clone(),
        )?;
        let openapi = serde_json::to_string(&openapi())?;
        Ok(AppState(Arc::new(Services {
            rate_limit: config.rate_limit_per_min.and_then(RateLimit::per_minute),
            config: Arc::new(config),
            items: ItemService::new(store.clone(), clock.clone()),
            shop: ShopService::new(store.clone(), clock.clone()),
            recommendations: RecommendationService::new(store.clone(), clock.clone()),
            carriers: CarrierService::new(store.clone(), clock.clone(), orders.clone()),
            store,
            clock,
            auth,
            orders,
            gateway,
            hub,
            bus,
            notifications: Arc::new(notifications),
            receipts: std::sync::Mutex::new(Some(receipts)),
            metrics: crate::telemetry::metrics_handle(),
            openapi: Arc::new(openapi),
        })))
    }

    pub async fn build_default(config: Config) -> anyhow::Result<Self> {
        Self::build(config, Arc::new(SystemClock)).await
    }
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    // Layers run outside-in in the reverse order of these calls.
    let api = api
        .layer(from_fn_with_state(
            state.clone(),
            crate::idempotency::middleware,
        ))
        .layer(from_fn_with_state(state.clone(), rate_limit))
        .layer(from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/v1/openapi.json", get(openapi_json))
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(from_fn(observe))
        .layer(PropagateRequestIdLayer::x_request_id())
        // The span names the path only: a query may carry `access_token`.
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &axum::http::Request<axum::body::Body>| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            },
        ))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// A path nobody serves: a page for a browser, problem+json for everyone else.
async fn not_found(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if crate::web::pages::is_page_request(uri.path(), accept) {
        let res = crate::web::pages::error_page(
            StatusCode::NOT_FOUND,
            "There is nothing at this address.",
        );
        return crate::web::with_security_headers(res);
    }
    ApiError::NotFound.into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 only when the database (and NATS, when configured) answer. The payment gateway's
/// breaker state is shown but does not make the node unready: orders can still be placed
/// and keep their reservation.
async fn readyz(State(state): State<AppState>) -> Response {
    let database = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            "error"
        }
        Err(_) => "timeout",
    };
    let bus = state.bus.health();
    let (status, word) = if database == "ok" && bus.is_ok() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = serde_json::json!({
        "status": word,
        "database": database,
        "event_bus": {"name": state.bus.name(), "state": bus.err().unwrap_or_else(|| "ok".into())},
        "realtime_connections": state.hub.connections(),
        "payment_gateway": {"name": state.gateway.name(), "circuit": state.gateway.health()},
    });
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    if let Some(sqlite) = state.store.sqlite() {
        sqlite.record_wal_size();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
        .into_response()
}

/// Background jobs of every node: the event relay and the bus feed, the reservation-expiry
/// sweeper with the payment saga, and housekeeping.
pub fn spawn_jobs(state: &AppState, shutdown: CancellationToken) {
    let relay = Relay {
        store: state.store.clone(),
        bus: state.bus.clone(),
        hub: state.hub.clone(),
        clock: state.clock.clone(),
    };
    tokio::spawn(relay.run(shutdown.clone()));
    let (bus, hub, token) = (state.bus.clone(), state.hub.clone(), shutdown.clone());
    let store = state.store.clone();
    tokio::spawn(async move {
        let floor = match store.cursor(crate::events::relay::RELAY).await {
            Ok(c) => c.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "reading the relay's position failed");
                0
            }
        };
        if let Err(e) = bus.feed(hub, floor, token).await {
            tracing::error!(error = %e, "the event bus feed stopped");
        }
    });
    let (n, token) = (state.notifications.clone(), shutdown.clone());
    tokio::spawn(async move { n.run_notifier(token).await });
    let (r, token) = (state.recommendations.clone(), shutdown.clone());
    tokio::spawn(async move { r.run(token).await });
    let receipts = state
        .receipts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(rx) = receipts {
        let (n, token) = (state.notifications.clone(), shutdown.clone());
        tokio::spawn(async move { n.write_receipts(rx, token).await });
    }
    let (n, token) = (state.notifications.clone(), shutdown.clone());
    tokio::spawn(async move {
        // Deliveries: every node takes what is due.
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut rounds = 0u32;
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = n.deliver_due(50).await {
                        tracing::warn!(error = %e, "delivering notifications failed");
                    }
                    rounds = rounds.wrapping_add(1);
                    if rounds.is_multiple_of(25) && let Err(e) = n.measure_queue().await {
                        tracing::warn!(error = %e, "measuring the delivery queue failed");
                    }
                }
            }
        }
    });
    let s = state.clone();
    let token = shutdown.clone();
    tokio::spawn(async move {
        // The expiry sweeper. It has its own task: slow gateway calls of the payment saga
        // never hold it up.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = s.orders.expire_due(100).await {
                        tracing::warn!(error = %e, "expiring reservations failed");
                    }
                }
            }
        }
    });
    let s = state.clone();
    let token = shutdown.clone();
    tokio::spawn(async move {
        // The payment saga: unanswered charges, voids, refunds owed.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = s.orders.run_due_payments(50).await {
                        tracing::warn!(error = %e, "moving payments on failed");
                    }
                }
            }
        }
    });
    if let Some(sqlite) = state.store.sqlite() {
        tokio::spawn(crate::storage::sqlite::checkpoint_job(
            sqlite.clone(),
            state.config.sqlite_checkpoint_interval,
            shutdown.clone(),
        ));
    }
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let cutoff = crate::storage::Ts::truncated(s.clock.now() - crate::idempotency::RETENTION);
                    if let Err(e) = s.store.idempotency_prune(cutoff).await {
                        tracing::warn!(error = %e, "pruning idempotency keys failed");
                    }
                    if let Err(e) = s.auth.prune().await {
                        tracing::warn!(error = %e, "pruning login failures failed");
                    }
                    let cutoff = crate::storage::Ts::truncated(s.clock.now() - crate::carriers::service::EVENT_RETENTION);
                    if let Err(e) = s.store.prune_carrier_events(cutoff).await {
                        tracing::warn!(error = %e, "pruning carrier event ids failed");
                    }
                    if let Some(rl) = &s.rate_limit {
                        rl.shrink();
                    }
                }
            }
        }
    });
}

/// Raises this process's open-file limit to the most it may have: every connection is a
/// file, and a node holding tens of thousands of WebSockets needs that many.
pub fn raise_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Serves on `listener` until `shutdown` fires, then gives in-flight requests the grace
/// period to finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    spawn_jobs(&state, shutdown.clone());
    // Real-time connections never end by themselves: at shutdown they are told to
    // reconnect (elsewhere), so that the graceful shutdown is not held up by them.
    let hub = state.hub.clone();
    let closing = shutdown.clone();
    tokio::spawn(async move {
        closing.cancelled().await;
        hub.closing().cancel();
    });
    let grace = state.config.shutdown_grace;
    let tls = state.config.tls.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned());
            tokio::select! {
                r = server => r?,
                _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!("shutdown grace period over; closing remaining connections");
                }
            }
        }
        Some((cert, key)) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                h.graceful_shutdown(Some(grace));
            });
            axum_server::from_tcp_rustls(listener.into_std()?, config)?
                .handle(handle)
                .serve(app)
                .await?;
        }
    }
    tracing::info!("server stopped");
    Ok(())
}
