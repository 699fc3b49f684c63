//! Routes: a customer's notification preferences and delivery log, and webhook endpoints
//! (register, list, delete, rotate the secret, deliveries, resend).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::domain::{Channel, Preferences, WEBHOOK_TYPES};
use super::store::{DeliveryRow, EndpointRow, message_id_of};
use crate::app::AppState;
use crate::auth::domain::{Permission, Principal, Role};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::{Json, Page, Path, QueryParams, Validator, decode_cursor, encode_cursor};
use crate::ids::{DeliveryId, EndpointId, UserRef};
use crate::inventory::domain::parse_text;
use crate::notifications::service::NotificationError;
use crate::orders::service::actor_of;
use crate::storage::Ts;

/// The one place a notification failure becomes an HTTP answer.
impl From<NotificationError> for ApiError {
    fn from(e: NotificationError) -> Self {
        match e {
            NotificationError::NotFound => ApiError::NotFound,
            NotificationError::BadUrl(why) => ApiError::validation("url", why),
            NotificationError::StillTrying => ApiError::Conflict(e.to_string()),
            NotificationError::Store(e) => e.into(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(customer_notifications))
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(endpoint_deliveries))
        .routes(routes!(resend_delivery))
        .routes(routes!(send_message))
}

/// Longest message from the shop, in characters.
pub const MESSAGE_MAX: usize = 2000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    customer_id: String,
    /// One of the customer's orders the message is about.
    order_id: Option<String>,
    /// 1 to 2000 characters.
    message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    data: Vec<DeliveryResponse>,
}

/// Send a message from the shop to one customer (staff): on each channel it opted into
/// (e-mail, SMS), through the delivery queue, with retries and the delivery log.
#[utoipa::path(post, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])), request_body = MessageRequest,
    responses((status = 202, body = DeliveryList, description = "one delivery per channel the customer opted into (none: an empty list)"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn send_message(
    State(state): State<AppState>,
    caller: Principal,
    Json(req): Json<MessageRequest>,
) -> ApiResult<(StatusCode, Json<DeliveryList>)> {
    if !caller.is_staff() {
        return Err(ApiError::Forbidden("only staff send messages to customers"));
    }
    let mut v = Validator::default();
    let message = req.message.trim();
    if message.is_empty() {
        v.push("message", "must not be empty");
    } else if message.chars().count() > MESSAGE_MAX {
        v.push(
            "message",
            format!("must be at most {MESSAGE_MAX} characters"),
        );
    }
    let order_id = match req.order_id.as_deref().map(|s| Uuid::parse_str(s.trim())) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            v.push("order_id", "no such order of this customer");
            None
        }
    };
    v.finish()?;
    let customer = match Uuid::parse_str(req.customer_id.trim()) {
        Ok(id) => state.store.user_by_id(id).await?,
        Err(_) => None,
    }
    .filter(|u| u.role == Role::Customer && u.erased_at.is_none())
    .ok_or(ApiError::NotFound)?;
    if let Some(o) = order_id {
        let rec = state.store.order(o).await?;
        if rec.is_none_or(|r| r.order.customer_id != customer.id) {
            return Err(ApiError::validation(
                "order_id",
                "no such order of this customer",
            ));
        }
    }
    let rows = state
        .notifications
        .send_shop_message(&customer, order_id, message, &actor_of(&caller))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeliveryList {
            data: rows.into_iter().map(Into::into).collect(),
        }),
    ))
}

/// The customer a route is about: the caller itself (or `me`), or any customer for staff.
/// Anybody else's is "not found".
async fn customer(state: &AppState, caller: &Principal, who: UserRef) -> ApiResult<Uuid> {
    let id = caller.named(who).ok_or(ApiError::NotFound)?;
    match caller.own_customer_id() {
        Some(own) if own == id => return Ok(id),
        Some(_) => return Err(ApiError::NotFound),
        None => {}
    }
    if !caller.is_staff() {
        return Err(ApiError::Forbidden("only the customer itself or staff"));
    }
    match state.store.user_by_id(id).await? {
        Some(u) if u.role == Role::Customer => Ok(id),
        _ => Err(ApiError::NotFound),
    }
}

/// A customer's channels.
#[utoipa::path(get, path = "/v1/customers/{id}/notification-preferences", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "a customer id, or me")),
    responses((status = 200, body = Preferences), (status = 404, body = Problem)))]
async fn get_preferences(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<UserRef>,
) -> ApiResult<Json<Preferences>> {
    let id = customer(&state, &caller, id).await?;
    Ok(Json(state.notifications.preferences(id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesRequest {
    email: bool,
    sms: bool,
    push: bool,
}

/// Sets a customer's channels (all three).
#[utoipa::path(put, path = "/v1/customers/{id}/notification-preferences", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "a customer id, or me")), request_body = PreferencesRequest,
    responses((status = 200, body = Preferences), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn put_preferences(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<UserRef>,
    Json(req): Json<PreferencesRequest>,
) -> ApiResult<Json<Preferences>> {
    let id = customer(&state, &caller, id).await?;
    let p = Preferences {
        email: req.email,
        sms: req.sms,
        push: req.push,
    };
    Ok(Json(state.notifications.set_preferences(id, p).await?))
}

/// One delivery of a notification or a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    id: String,
    /// The event it is about (null for a message from the shop).
    event_id: Option<String>,
    /// The message from the shop it carries (`POST /v1/notifications`), else null.
    message_id: Option<String>,
    /// `email`, `sms`, `push` or `webhook`.
    channel: String,
    /// `placed`, `shipped`, … (notifications), or the webhook event type.
    kind: String,
    /// The address it goes to (e-mail, phone number, URL; none for push).
    target: Option<String>,
    /// `pending`, `sent`, `failed` (will be retried) or `dead` (given up).
    status: String,
    attempts: i32,
    last_error: Option<String>,
    /// What the provider answered.
    detail: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    sent_at: Option<OffsetDateTime>,
}

impl From<DeliveryRow> for DeliveryResponse {
    fn from(d: DeliveryRow) -> Self {
        DeliveryResponse {
            id: d.id.to_string(),
            event_id: message_id_of(&d).is_none().then(|| d.event_id.to_string()),
            message_id: message_id_of(&d).map(|m| m.to_string()),
            channel: d.channel.as_str().into(),
            kind: d.kind,
            target: d.target,
            status: d.status.as_str().into(),
            attempts: d.attempts,
            last_error: d.last_error,
            detail: d.detail,
            next_attempt_at: d.next_attempt_at.map(|t| t.0),
            created_at: d.created_at.0,
            sent_at: d.sent_at.map(|t| t.0),
        }
    }
}

/// Where a delivery list stopped, and whose list it is.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryCursor {
    t: i64,
    id: Uuid,
    r: Uuid,
}

async fn delivery_page(
    state: &AppState,
    recipient: Uuid,
    q: &QueryParams,
    channels: &[Channel],
) -> ApiResult<Json<Page<DeliveryResponse>>> {
    let mut v = Validator::default();
    let limit = v.check(q.limit()).unwrap_or(50);
    let channel = match q.one("channel") {
        None => None,
        Some(c) => match Channel::parse(c).filter(|c| channels.contains(c)) {
            Some(c) => Some(c),
            None => {
                v.push("channel", "is not a channel of this list");
                None
            }
        },
    };
    let cursor = q
        .one("cursor")
        .and_then(|c| v.check(decode_cursor::<DeliveryCursor>(c)));
    if cursor.as_ref().is_some_and(|c| c.r != recipient) {
        v.push("cursor", "belongs to another list");
    }
    v.finish()?;
    let before = match cursor {
        Some(c) => Some((
            Ts::from_micros(c.t).map_err(|_| ApiError::validation("cursor", "is not valid"))?,
            c.id,
        )),
        None => None,
    };
    let rows = state
        .notifications
        .log(recipient, channel, before, limit)
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last())
        .flatten()
        .map(|last| {
            encode_cursor(&DeliveryCursor {
                t: last.created_at.micros(),
                id: last.id,
                r: recipient,
            })
        });
    Ok(Json(Page {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

/// A customer's notifications, newest first: every delivery and how it went.
#[utoipa::path(get, path = "/v1/customers/{id}/notifications", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "a customer id, or me"), ("channel" = Option<String>, Query),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DeliveryResponse>), (status = 404, body = Problem)))]
async fn customer_notifications(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<UserRef>,
    q: QueryParams,
) -> ApiResult<Json<Page<DeliveryResponse>>> {
    let id = customer(&state, &caller, id).await?;
    delivery_page(
        &state,
        id,
        &q,
        &[Channel::Email, Channel::Sms, Channel::Push],
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointRequest {
    /// An absolute `http`/`https` URL on a public address.
    #[schema(pattern = r"^https?://[^\s/?#]+[^\s]*$")]
    url: String,
    /// Event types: `order.created`, `order.placed`, `order.processing`, `order.shipped`,
    /// `order.delivered`, `order.canceled`, `order.refunded`, `order.tracking_update`, or `*`.
    #[schema(min_items = 1, inline, value_type = Vec<WebhookEventType>)]
    events: Vec<String>,
    description: Option<String>,
}

/// What a webhook endpoint may subscribe to.
#[derive(ToSchema)]
#[expect(dead_code, reason = "documents the accepted strings only")]
enum WebhookEventType {
    #[schema(rename = "order.created")]
    Created,
    #[schema(rename = "order.placed")]
    Placed,
    #[schema(rename = "order.processing")]
    Processing,
    #[schema(rename = "order.shipped")]
    Shipped,
    #[schema(rename = "order.delivered")]
    Delivered,
    #[schema(rename = "order.canceled")]
    Canceled,
    #[schema(rename = "order.refunded")]
    Refunded,
    #[schema(rename = "order.tracking_update")]
    TrackingUpdate,
    #[schema(rename = "*")]
    All,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointResponse {
    id: String,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    /// The signing secret (`whsec_…`): only in the answers that create or rotate it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

fn endpoint_response(e: EndpointRow, with_secret: bool) -> ApiResult<EndpointResponse> {
    Ok(EndpointResponse {
        id: e.id.to_string(),
        url: e.url.clone(),
        events: e.events.list()?.to_vec(),
        description: e.description,
        secret: with_secret.then_some(e.secret),
        created_at: e.created_at.0,
    })
}

/// Registers a webhook endpoint (admin, `webhooks:manage`). Its URL must reach a public
/// address unless `ORDO_WEBHOOK_ALLOW_PRIVATE` is set.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", security(("bearer" = [])), request_body = EndpointRequest,
    responses((status = 201, body = EndpointResponse), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_endpoint(
    State(state): State<AppState>,
    caller: Principal,
    Json(req): Json<EndpointRequest>,
) -> ApiResult<(StatusCode, Json<EndpointResponse>)> {
    caller.require(Permission::ManageWebhooks)?;
    let mut v = Validator::default();
    if req.url.len() > 2048 {
        v.push("url", "must be at most 2048 characters");
    }
    if req.events.is_empty() || req.events.len() > WEBHOOK_TYPES.len() {
        v.push("events", "name at least one event type");
    }
    for (i, e) in req.events.iter().enumerate() {
        if !WEBHOOK_TYPES.contains(&e.as_str()) {
            v.push(
                format!("events[{i}]"),
                format!("must be one of {}", WEBHOOK_TYPES.join(", ")),
            );
        }
    }
    let description = v
        .check(parse_text("description", req.description.as_deref(), 500))
        .flatten();
    v.finish()?;
    let mut events = req.events;
    events.sort();
    events.dedup();
    let row = state
        .notifications
        .create_endpoint(&req.url, events, description, &actor_of(&caller))
        .await?;
    Ok((StatusCode::CREATED, Json(endpoint_response(row, true)?)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    data: Vec<EndpointResponse>,
}

/// Every webhook endpoint (without secrets).
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = EndpointList), (status = 403, body = Problem)))]
async fn list_endpoints(
    State(state): State<AppState>,
    caller: Principal,
) -> ApiResult<Json<EndpointList>> {
    caller.require(Permission::ManageWebhooks)?;
    let rows = state.notifications.endpoints().await?;
    Ok(Json(EndpointList {
        data: rows
            .into_iter()
            .map(|e| endpoint_response(e, false))
            .collect::<ApiResult<_>>()?,
    }))
}

#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = EndpointResponse), (status = 404, body = Problem)))]
async fn get_endpoint(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<EndpointId>,
) -> ApiResult<Json<EndpointResponse>> {
    caller.require(Permission::ManageWebhooks)?;
    let row = state.notifications.endpoint(id.uuid()).await?;
    Ok(Json(endpoint_response(row, false)?))
}

/// Deletes an endpoint: nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = Problem)))]
async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<EndpointId>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::ManageWebhooks)?;
    state
        .notifications
        .delete_endpoint(id.uuid(), &caller.key())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old secret keeps signing too, in seconds (default 86400, at most 7 days).
    #[schema(minimum = 0, maximum = 604800)]
    grace_seconds: Option<u64>,
}

/// A new signing secret. Until the grace period ends, deliveries carry a signature with
/// the old secret as well, so receivers can switch without losing a message.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RotateRequest,
    responses((status = 200, body = EndpointResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<EndpointId>,
    Json(req): Json<RotateRequest>,
) -> ApiResult<Json<EndpointResponse>> {
    caller.require(Permission::ManageWebhooks)?;
    let grace = req.grace_seconds.unwrap_or(86_400);
    if grace > 7 * 86_400 {
        return Err(ApiError::validation(
            "grace_seconds",
            "must be at most 604800 (7 days)",
        ));
    }
    let row = state
        .notifications
        .rotate_secret(id.uuid(), Duration::from_secs(grace))
        .await?;
    Ok(Json(endpoint_response(row, true)?))
}

/// An endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DeliveryResponse>), (status = 404, body = Problem)))]
async fn endpoint_deliveries(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<EndpointId>,
    q: QueryParams,
) -> ApiResult<Json<Page<DeliveryResponse>>> {
    caller.require(Permission::ManageWebhooks)?;
    let row = state.notifications.endpoint(id.uuid()).await?;
    delivery_page(&state, row.id, &q, &[Channel::Webhook]).await
}

/// Sends a delivery again (same `webhook-id`), now.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/resend", tag = "webhooks",
    security(("bearer" = [])), params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, body = DeliveryResponse), (status = 404, body = Problem)))]
async fn resend_delivery(
    State(state): State<AppState>,
    caller: Principal,
    Path((id, delivery)): Path<(EndpointId, DeliveryId)>,
) -> ApiResult<(StatusCode, Json<DeliveryResponse>)> {
    caller.require(Permission::ManageWebhooks)?;
    let endpoint = state.notifications.endpoint(id.uuid()).await?;
    let d = state
        .notifications
        .resend(endpoint.id, delivery.uuid())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(d.into())))
}
