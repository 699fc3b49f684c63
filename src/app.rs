//! The application: shared state and the router. (Serving is `server.rs`, the background
//! jobs are `jobs.rs`.)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
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
use crate::http::MAX_BODY;
use crate::http::middleware::{RateLimit, authenticate, observe, rate_limit};
use crate::inventory::service::ItemService;
use crate::notifications::service::NotificationService;
use crate::orders::service::OrderService;
use crate::payments::resilience::Resilient;
use crate::payments::stripe::StripeGateway;
use crate::payments::{PaymentGateway, SimulatedGateway};
use crate::privacy::service::PrivacyService;
use crate::recommendations::service::RecommendationService;
use crate::search::service::SearchService;
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
    pub search: SearchService,
    pub metrics: PrometheusHandle,
    pub rate_limit: Option<RateLimit>,
    pub gateway: Arc<dyn PaymentGateway>,
    /// This node's real-time connections.
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn EventBus>,
    pub notifications: Arc<NotificationService>,
    pub carriers: CarrierService,
    pub privacy: PrivacyService,
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
        .merge(crate::privacy::http::router())
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
            config.pg_group_commit,
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
        )
        .with_page_cache(config.order_page_cache_entries);
        let hub = Hub::new(config.realtime.queue);
        let bus: Arc<dyn EventBus> = match &config.nats_url {
            Some(url) => Arc::new(
                NatsBus::connect(url, config.nats_stream.as_deref(), store.as_ref()).await?,
            ),
            None => Arc::new(InProcessBus::new(hub.clone())),
        };
        let notifications = NotificationService::new(
            store.clone(),
            clock.clone(),
            &config.notifications,
            auth.links().clone(),
        )?;
        let openapi = serde_json::to_string(&openapi())?;
        let search = SearchService::new(store.clone(), config.search_cache_entries);
        Ok(AppState(Arc::new(Services {
            rate_limit: config.rate_limit_per_min.and_then(RateLimit::per_minute),
            config: Arc::new(config),
            items: ItemService::new(store.clone(), clock.clone()),
            shop: ShopService::new(store.clone(), clock.clone()),
            recommendations: RecommendationService::new(store.clone(), clock.clone()),
            search,
            carriers: CarrierService::new(store.clone(), clock.clone(), orders.clone()),
            privacy: PrivacyService::new(store.clone(), clock.clone()),
            store,
            clock,
            auth,
            orders,
            gateway,
            hub,
            bus,
            notifications: Arc::new(notifications),
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
