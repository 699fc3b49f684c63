//! Order routes: place, read, search, pay, change status, track, cancel, timeline.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::domain::{CarrierStatus, Command, MAX_LINES, OrderStatus, Quantity};
use super::error::OrderError;
use super::pages::{Listed, etag_of};
use super::payment::Payment;
use super::service::{ChangeDetails, PlaceOrder, actor_of};
use super::store::{EventRow, NewEvent, OrderCursor, OrderFilter, OrderRecord};
use crate::app::AppState;
use crate::auth::domain::{Permission, Principal};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::{
    Json, Page, Path, QueryParams, Validator, decode_cursor, encode_cursor, parse_json,
};
use crate::ids::OrderId;
use crate::inventory::domain::parse_text;
use crate::payments::parse_payment_method;
use crate::storage::Ts;

/// The one place an order's failure becomes an HTTP answer.
impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotFound => ApiError::NotFound,
            OrderError::Refused(why) => ApiError::InvalidTransition(why),
            OrderError::Conflict(why) => ApiError::Conflict(why),
            OrderError::CartChanged => ApiError::Conflict(e.to_string()),
            OrderError::UnknownCustomer => ApiError::validation("customer_id", "no such customer"),
            OrderError::UnknownItem { line } => {
                ApiError::validation(format!("items[{line}].item_id"), "no such item")
            }
            OrderError::InsufficientStock { line, item_id } => ApiError::InsufficientStock {
                item_id: item_id.to_string(),
                field: format!("items[{line}].quantity"),
            },
            OrderError::MixedCurrencies => ApiError::validation("items", e.to_string()),
            OrderError::GatewayUnavailable(_) => ApiError::Unavailable(e.to_string()),
            OrderError::Store(e) => e.into(),
            OrderError::Internal(e) => ApiError::Internal(e),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(pay_order, order_payments))
        .routes(routes!(change_status))
        .routes(routes!(add_tracking))
        .routes(routes!(cancel_order))
        .routes(routes!(order_events))
        .routes(routes!(create_tracking_link, revoke_tracking_links))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    #[schema(format = Uuid)]
    item_id: String,
    #[schema(minimum = 1, maximum = 1000)]
    quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<OrderLineRequest>,
    /// Required when staff or an integration places the order.
    #[schema(format = Uuid)]
    customer_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    shipping_address: Option<serde_json::Value>,
    #[schema(pattern = r"^[A-Za-z][A-Za-z0-9_]{0,254}$")]
    payment_method: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLineResponse {
    item_id: String,
    sku: String,
    name: String,
    quantity: i32,
    unit_price: i64,
    line_total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderResponse {
    id: String,
    customer_id: String,
    status: String,
    payment_status: String,
    items: Vec<OrderLineResponse>,
    total_amount: i64,
    currency: String,
    #[schema(value_type = Option<Object>)]
    shipping_address: Option<serde_json::Value>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    /// `YYYY-MM-DD`, or null: the carrier's estimate, else a prediction from the same
    /// carrier's delivered orders once the order is shipped.
    estimated_delivery: Option<String>,
    /// Where `estimated_delivery` came from: `carrier` or `predicted` (null when there is none).
    estimated_delivery_source: Option<String>,
    /// The gateway's id of the payment (e.g. a Stripe PaymentIntent), for reconciliation.
    payment_reference: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
}

impl From<OrderRecord> for OrderResponse {
    fn from(r: OrderRecord) -> Self {
        let o = r.order;
        OrderResponse {
            id: o.id.to_string(),
            customer_id: o.customer_id.to_string(),
            status: o.status.as_str().into(),
            payment_status: o.payment_status.as_str().into(),
            items: r
                .lines
                .into_iter()
                .map(|l| OrderLineResponse {
                    item_id: l.item_id.to_string(),
                    sku: l.sku,
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    line_total: l.line_total,
                })
                .collect(),
            total_amount: o.total_amount,
            currency: o.currency,
            shipping_address: o.shipping_address.map(|j| j.0),
            carrier: o.carrier,
            tracking_number: o.tracking_number,
            estimated_delivery: o.estimated_delivery,
            estimated_delivery_source: o.estimated_delivery_source,
            payment_reference: o.payment_reference,
            created_at: o.created_at.0,
            updated_at: o.updated_at.0,
            expires_at: o.expires_at.map(|t| t.0),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventData {
    order_id: String,
    customer_id: String,
    status: String,
    previous_status: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    note: Option<String>,
    location: Option<String>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    carrier_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_delivery: Option<String>,
}
/// One entry of an order's timeline, as also pushed to real-time clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventResponse {
    /// The monotonic event sequence, as a string.
    id: String,
    event: String,
    data: EventData,
}

impl From<EventRow> for EventResponse {
    fn from(e: EventRow) -> Self {
        EventResponse {
            id: e.id.to_string(),
            event: e.event,
            data: EventData {
                order_id: e.order_id.to_string(),
                customer_id: e.customer_id.to_string(),
                status: e.status,
                previous_status: e.previous_status,
                at: e.at.0,
                note: e.note,
                location: e.location,
                carrier: e.carrier,
                tracking_number: e.tracking_number,
                description: e.description,
                carrier_status: e.carrier_status,
                estimated_delivery: e.estimated_delivery,
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    data: Vec<EventResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    #[schema(pattern = r"^[A-Za-z][A-Za-z0-9_]{0,254}$")]
    payment_method: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    status: OrderStatus,
    note: Option<String>,
    location: Option<String>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    expected_status: Option<OrderStatus>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackingRequest {
    description: String,
    location: Option<String>,
    /// RFC 3339; defaults to now.
    #[schema(format = DateTime)]
    occurred_at: Option<String>,
    #[schema(value_type = Option<CarrierStatus>)]
    carrier_status: Option<String>,
    /// A date, `YYYY-MM-DD`.
    #[schema(format = Date)]
    estimated_delivery: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    reason: Option<String>,
}

fn parse_timestamp(field: &str, raw: &str) -> Result<Ts, crate::error::FieldError> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map(Ts::truncated)
        .map_err(|_| crate::error::FieldError::new(field, "must be an RFC 3339 timestamp"))
}

/// Parses the order lines: 1..=100 lines, distinct items, quantity 1..=1000.
fn parse_lines(v: &mut Validator, items: &[OrderLineRequest]) -> Vec<(Uuid, i32)> {
    if items.is_empty() {
        v.push("items", "must have at least one line");
    } else if items.len() > MAX_LINES {
        v.push("items", format!("must have at most {MAX_LINES} lines"));
    }
    let mut lines = Vec::with_capacity(items.len());
    for (i, line) in items.iter().enumerate() {
        let id = Uuid::parse_str(line.item_id.trim()).ok();
        if id.is_none() {
            v.push(format!("items[{i}].item_id"), "no such item");
        }
        let qty = Quantity::parse(line.quantity);
        if qty.is_none() {
            v.push(
                format!("items[{i}].quantity"),
                "must be a whole number from 1 to 1000",
            );
        }
        if let Some(id) = id {
            if lines.iter().any(|(other, _)| *other == id) {
                v.push(
                    format!("items[{i}].item_id"),
                    "appears in more than one line",
                );
            }
            lines.push((id, qty.map_or(0, Quantity::get)));
        }
    }
    lines
}

fn order_response(status: StatusCode, rec: OrderRecord) -> (StatusCode, Json<OrderResponse>) {
    (status, Json(rec.into()))
}

/// Place an order: every line is reserved in one transaction, or none is. With
/// `payment_method`, payment runs as part of the call.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", security(("bearer" = [])), request_body = CreateOrderRequest,
    responses((status = 201, body = OrderResponse), (status = 202, body = OrderResponse, description = "gateway did not answer in time"),
              (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_order(
    State(state): State<AppState>,
    caller: Principal,
    Json(req): Json<CreateOrderRequest>,
) -> ApiResult<(StatusCode, Json<OrderResponse>)> {
    caller.require(Permission::WriteOrders)?;
    let mut v = Validator::default();
    let lines = parse_lines(&mut v, &req.items);
    let requested_customer = match req
        .customer_id
        .as_deref()
        .map(|s| Uuid::parse_str(s.trim()))
    {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            v.push("customer_id", "no such customer");
            None
        }
    };
    let payment_method = req
        .payment_method
        .as_deref()
        .and_then(|m| v.check(parse_payment_method("payment_method", m)));
    let shipping_address = parse_shipping_address(&mut v, req.shipping_address);
    let customer_id = match (caller.own_customer_id(), requested_customer) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(ApiError::Forbidden("a customer may only order for itself"));
        }
        (Some(own), _) => Some(own),
        (None, Some(asked)) => Some(asked),
        (None, None) => {
            if req.customer_id.is_none() {
                v.push(
                    "customer_id",
                    "is required when staff or an integration places an order",
                );
            }
            None
        }
    };
    v.finish()?;
    let Some(customer_id) = customer_id else {
        return Err(ApiError::validation("customer_id", "no such customer"));
    };
    // Staff and integrations name the customer: an erased person gets no new orders (they
    // would hold personal data again). A customer's own token is refused once erased.
    if caller.own_customer_id().is_none() && !state.store.user_is_active(customer_id).await? {
        let known = state.store.user_by_id(customer_id).await?.is_some();
        return Err(ApiError::validation(
            "customer_id",
            if known {
                "the customer was erased"
            } else {
                "no such customer"
            },
        ));
    }
    let actor = actor_of(&caller);
    place_and_pay(
        &state,
        PlaceOrder {
            customer_id,
            lines,
            shipping_address,
            payment_method,
            cart_version: None,
        },
        &actor,
    )
    .await
}

/// Places an order and, with a payment method, pays it: the answer of `POST /v1/orders`
/// (201, or 202 when the gateway did not answer in time). Checkout from a cart places on
/// its own and is answered by `pay_placed`.
pub(crate) async fn place_and_pay(
    state: &AppState,
    req: PlaceOrder,
    actor: &str,
) -> ApiResult<(StatusCode, Json<OrderResponse>)> {
    let payment_method = req.payment_method.clone();
    let rec = state.orders.place(req, actor).await?;
    pay_placed(state, rec, payment_method, actor).await
}

/// The answer to a placement: with a payment method, after the charge (which placing
/// with one has claimed already).
pub(crate) async fn pay_placed(
    state: &AppState,
    rec: OrderRecord,
    payment_method: Option<String>,
    actor: &str,
) -> ApiResult<(StatusCode, Json<OrderResponse>)> {
    let Some(method) = payment_method else {
        return Ok(order_response(StatusCode::CREATED, rec));
    };
    // Placing with a payment method claimed the payment call already.
    Ok(match state.orders.charge(rec, method, actor).await? {
        Payment::Paid(rec) | Payment::Declined(rec) | Payment::Expired(rec) => {
            order_response(StatusCode::CREATED, rec)
        }
        Payment::Pending(rec) => order_response(StatusCode::ACCEPTED, rec),
    })
}

/// A shipping address as an order takes it: an object or a string of at most 4 KiB.
pub(crate) fn parse_shipping_address(
    v: &mut Validator,
    raw: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    match raw {
        Some(a @ (serde_json::Value::Object(_) | serde_json::Value::String(_)))
            if a.to_string().len() <= 4096 =>
        {
            Some(a)
        }
        Some(serde_json::Value::Null) | None => None,
        Some(_) => {
            v.push(
                "shipping_address",
                "must be an object or a string of at most 4 KiB",
            );
            None
        }
    }
}

/// One order (a customer: only its own). Answers carry an `ETag`; `If-None-Match` with it
/// gets `304 Not Modified` while the order is unchanged.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path), ("If-None-Match" = Option<String>, Header, description = "an `ETag` of an earlier answer")),
    responses((status = 200, body = OrderResponse), (status = 304, description = "unchanged since the `ETag` given"), (status = 404, body = Problem)))]
async fn get_order(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Permission::ReadOrders)?;
    let id = id.uuid();
    let if_none_match = if_none_match(&headers);
    if let Some(h) = if_none_match
        && let Some(etag) = state.orders.not_modified(&caller, id, h).await?
    {
        return Ok(not_modified(&etag));
    }
    let rec = state.orders.get(&caller, id).await?;
    let etag = etag_of(&[(rec.order.id, rec.order.version)]);
    let body = serde_json::to_vec(&OrderResponse::from(rec)).map_err(ApiError::internal)?;
    Ok(with_etag(Bytes::from(body), &etag))
}

/// Search orders, newest first. A customer sees only its own, whatever it passes.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", security(("bearer" = [])),
    params(("status" = Option<Vec<OrderStatus>>, Query, description = "repeatable"), ("customer_id" = Option<String>, Query, description = "a customer id (one that does not exist matches nothing)"),
           ("created_after" = Option<String>, Query, format = DateTime), ("created_before" = Option<String>, Query, format = DateTime),
           ("q" = Option<String>, Query, description = "an order id, or the start of the customer's e-mail"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200), ("cursor" = Option<String>, Query),
           ("If-None-Match" = Option<String>, Header, description = "an `ETag` of an earlier answer")),
    responses((status = 200, body = Page<OrderResponse>), (status = 304, description = "unchanged since the `ETag` given"), (status = 422, body = Problem)))]
async fn list_orders(
    State(state): State<AppState>,
    caller: Principal,
    q: QueryParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Permission::ReadOrders)?;
    let mut v = Validator::default();
    let mut filter = OrderFilter::default();
    for s in q.all("status") {
        match OrderStatus::parse(s) {
            Some(st) => filter.statuses.push(st.as_str().to_owned()),
            None => v.push("status", format!("{s:?} is not an order status")),
        }
    }
    // An id that cannot exist matches nothing, like any unknown customer.
    filter.customer_id = q
        .one("customer_id")
        .map(|s| Uuid::parse_str(s).unwrap_or_else(|_| Uuid::nil()));
    filter.created_after = q
        .value("created_after")
        .map_or_else(|e| v.check(Err(e)), Some)
        .flatten()
        .and_then(|s| v.check(parse_timestamp("created_after", s)));
    filter.created_before = q
        .value("created_before")
        .map_or_else(|e| v.check(Err(e)), Some)
        .flatten()
        .and_then(|s| v.check(parse_timestamp("created_before", s)));
    if let Some(text) = q.one("q").map(str::trim).filter(|s| !s.is_empty()) {
        match Uuid::parse_str(text) {
            Ok(id) => filter.order_id = Some(id),
            Err(_) => filter.email_prefix = Some(text.to_lowercase().chars().take(254).collect()),
        }
    }
    if let Some(own) = caller.own_customer_id() {
        filter.customer_id = Some(own);
        filter.email_prefix = None;
    }
    let limit = v.check(q.limit()).unwrap_or(50);
    let cursor = q
        .one("cursor")
        .and_then(|c| v.check(decode_cursor::<OrderCursor>(c)));
    v.finish()?;
    let listed = state
        .orders
        .list_page(
            filter,
            cursor,
            limit,
            if_none_match(&headers),
            |rows, next| {
                let page = Page::<OrderResponse> {
                    data: rows.into_iter().map(Into::into).collect(),
                    next_cursor: next.map(|c| encode_cursor(&c)),
                };
                Ok(Bytes::from(
                    serde_json::to_vec(&page).map_err(OrderError::internal)?,
                ))
            },
        )
        .await?;
    Ok(match listed {
        Listed::NotModified { etag } => not_modified(&etag),
        Listed::Page(page) => with_etag(page.body.clone(), &page.etag),
    })
}

fn if_none_match(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
}

/// A JSON body with its entity tag.
fn with_etag(body: Bytes, etag: &str) -> Response {
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    tagged(res, etag)
}

fn not_modified(etag: &str) -> Response {
    tagged(StatusCode::NOT_MODIFIED.into_response(), etag)
}

/// The entity tag; clients may keep the answer but ask again each time (`no-cache`), and
/// it is never for a shared cache (`private`).
fn tagged(mut res: Response, etag: &str) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    res
}

/// Pay a `created` order: 200 `placed`, 402 declined (the order is then canceled), 202 when
/// the gateway did not answer in time.
#[utoipa::path(post, path = "/v1/orders/{id}/payments", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = PayRequest,
    responses((status = 200, body = OrderResponse), (status = 202, body = OrderResponse), (status = 402, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn pay_order(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
    Json(req): Json<PayRequest>,
) -> ApiResult<(StatusCode, Json<OrderResponse>)> {
    caller.require(Permission::WriteOrders)?;
    let id = id.uuid();
    let method = parse_payment_method("payment_method", &req.payment_method)
        .map_err(|e| ApiError::Validation(vec![e]))?;
    let rec = state.orders.get(&caller, id).await?;
    match state.orders.pay(rec, method, &actor_of(&caller)).await? {
        Payment::Paid(rec) => Ok(order_response(StatusCode::OK, rec)),
        Payment::Pending(rec) => Ok(order_response(StatusCode::ACCEPTED, rec)),
        Payment::Declined(_) => Err(ApiError::PaymentDeclined(
            "the payment was declined; the order is canceled and its stock released".into(),
        )),
        Payment::Expired(_) => Err(ApiError::InvalidTransition(
            "the reservation ran out before the gateway answered; the order is canceled and \
             its stock released (money that still comes in is voided or refunded)"
                .into(),
        )),
    }
}

fn details(
    v: &mut Validator,
    note: Option<&str>,
    location: Option<&str>,
    carrier: Option<&str>,
    tracking: Option<&str>,
) -> ChangeDetails {
    ChangeDetails {
        note: v.check(parse_text("note", note, 2000)).flatten(),
        location: v.check(parse_text("location", location, 200)).flatten(),
        carrier: v.check(parse_text("carrier", carrier, 100)).flatten(),
        tracking_number: v
            .check(parse_text("tracking_number", tracking, 100))
            .flatten(),
    }
}

/// Move an order through fulfilment (staff, `orders:write`, `tracking:write`).
#[utoipa::path(post, path = "/v1/orders/{id}/status", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = StatusRequest,
    responses((status = 200, body = OrderResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn change_status(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
    Json(req): Json<StatusRequest>,
) -> ApiResult<Json<OrderResponse>> {
    caller.require(Permission::ChangeStatus)?;
    let id = id.uuid();
    let mut v = Validator::default();
    let d = details(
        &mut v,
        req.note.as_deref(),
        req.location.as_deref(),
        req.carrier.as_deref(),
        req.tracking_number.as_deref(),
    );
    v.finish()?;
    let actor = actor_of(&caller);
    let rec = if req.status == OrderStatus::Canceled {
        state
            .orders
            .cancel(id, None, req.expected_status, &d, &actor)
            .await?
    } else {
        state
            .orders
            .apply(
                id,
                Command::Advance(req.status),
                req.expected_status,
                &d,
                &actor,
            )
            .await?
    };
    Ok(Json(rec.into()))
}

/// Record a carrier scan that does not change the order's status (staff, `tracking:write`).
#[utoipa::path(post, path = "/v1/orders/{id}/tracking", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = TrackingRequest,
    responses((status = 201, body = EventResponse), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn add_tracking(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
    Json(req): Json<TrackingRequest>,
) -> ApiResult<(StatusCode, Json<EventResponse>)> {
    caller.require(Permission::WriteTracking)?;
    let id = id.uuid();
    let mut v = Validator::default();
    let description = v
        .check(parse_text("description", Some(&req.description), 2000))
        .flatten();
    if description.is_none() {
        v.push("description", "must not be empty");
    }
    let location = v
        .check(parse_text("location", req.location.as_deref(), 200))
        .flatten();
    let at = req
        .occurred_at
        .as_deref()
        .and_then(|s| v.check(parse_timestamp("occurred_at", s)));
    let carrier_status = req.carrier_status.as_deref().and_then(|s| match CarrierStatus::parse(s) {
        Some(c) => Some(c.as_str().to_owned()),
        None => {
            v.push("carrier_status", "must be one of info_received, in_transit, out_for_delivery, attempt_failed, available_for_pickup, exception");
            None
        }
    });
    let estimated_delivery = req.estimated_delivery.as_deref().and_then(|s| {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(s.trim(), &fmt) {
            Ok(d) => Some(d.to_string()),
            Err(_) => {
                v.push("estimated_delivery", "must be a date, YYYY-MM-DD");
                None
            }
        }
    });
    v.finish()?;
    let rec = state.orders.get(&caller, id).await?;
    let event = NewEvent {
        description,
        location,
        carrier_status,
        estimated_delivery,
        carrier: rec.order.carrier.clone(),
        tracking_number: rec.order.tracking_number.clone(),
        actor: Some(actor_of(&caller)),
        at,
        ..NewEvent::default()
    };
    let row = state.orders.add_tracking(&rec, event).await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Cancel an order: the customer (its own) or staff. Stock returns; a paid order is refunded.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path)), request_body(content = Option<CancelRequest>, description = "optional: a missing or empty body cancels without a reason"),
    responses((status = 200, body = OrderResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn cancel_order(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
    body: Bytes,
) -> ApiResult<Json<OrderResponse>> {
    caller.require(Permission::WriteOrders)?;
    let id = id.uuid();
    // No body, an empty one or JSON `null`: no reason given.
    let req: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        parse_json::<Option<CancelRequest>>(&body)?.unwrap_or_default()
    };
    let mut v = Validator::default();
    let note = v
        .check(parse_text("reason", req.reason.as_deref(), 2000))
        .flatten();
    v.finish()?;
    // Visibility first: someone else's order is "not found".
    let known = state.orders.get(&caller, id).await?;
    let d = ChangeDetails {
        note,
        ..ChangeDetails::default()
    };
    Ok(Json(
        state
            .orders
            .cancel(id, Some(known), None, &d, &actor_of(&caller))
            .await?
            .into(),
    ))
}

/// The order's whole timeline, oldest first.
#[utoipa::path(get, path = "/v1/orders/{id}/events", tag = "orders", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = EventList), (status = 404, body = Problem)))]
async fn order_events(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
) -> ApiResult<Json<EventList>> {
    caller.require(Permission::ReadOrders)?;
    let rec = state.orders.get(&caller, id.uuid()).await?;
    let events = state.orders.events(rec.order.id).await?;
    Ok(Json(EventList {
        data: events.into_iter().map(Into::into).collect(),
    }))
}

/// A step of an order's payment saga: a charge, or a refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentResponse {
    id: String,
    /// `charge` or `refund`.
    kind: String,
    /// `pending` (the gateway's answer is not known yet), `succeeded`, `failed`, `voided`.
    status: String,
    method: Option<String>,
    amount: i64,
    currency: String,
    /// The gateway's id of the payment (a charge) or of the refund.
    gateway_reference: Option<String>,
    /// Sent with every gateway call of this step.
    idempotency_key: String,
    /// Gateway calls made for this step so far.
    attempts: i32,
    last_error: Option<String>,
    /// When the saga looks at this step again (null: settled).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<crate::payments::store::PaymentRow> for PaymentResponse {
    fn from(p: crate::payments::store::PaymentRow) -> Self {
        PaymentResponse {
            id: p.id.to_string(),
            kind: p.kind.as_str().into(),
            status: p.status.as_str().into(),
            method: p.method,
            amount: p.amount,
            currency: p.currency,
            gateway_reference: p.gateway_reference,
            idempotency_key: p.idempotency_key,
            attempts: p.attempts,
            last_error: p.last_error,
            next_attempt_at: p.next_attempt_at.map(|t| t.0),
            created_at: p.created_at.0,
            updated_at: p.updated_at.0,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentList {
    data: Vec<PaymentResponse>,
}

/// The order's payment steps (charges and refunds), oldest first.
#[utoipa::path(get, path = "/v1/orders/{id}/payments", tag = "orders", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = PaymentList), (status = 404, body = Problem)))]
async fn order_payments(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
) -> ApiResult<Json<PaymentList>> {
    caller.require(Permission::ReadOrders)?;
    let rec = state.orders.get(&caller, id.uuid()).await?;
    let steps = state.orders.payments_of(&rec).await?;
    Ok(Json(PaymentList {
        data: steps.into_iter().map(Into::into).collect(),
    }))
}

/// A tracking link: read and follow this one order without a password, until it expires or
/// the order's links are revoked.
#[derive(Serialize, ToSchema)]
pub struct TrackingLinkResponse {
    /// The credential (`trk_…`): a bearer token for `GET /v1/orders/{id}`, its events and
    /// the streams narrowed to the order.
    pub token: String,
    /// The tracking page with the link in its fragment (never sent to a server).
    pub url: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A new tracking link for the order, to share (the customer, or staff; a link cannot make
/// links). It works even right after the order's links were revoked.
#[utoipa::path(post, path = "/v1/orders/{id}/tracking-links", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 201, body = TrackingLinkResponse), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn create_tracking_link(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
) -> ApiResult<(StatusCode, Json<TrackingLinkResponse>)> {
    caller.require(Permission::WriteOrders)?;
    let rec = state.orders.get(&caller, id.uuid()).await?;
    let (token, claims) = state
        .auth
        .issue_link(
            rec.order.id,
            rec.order.customer_id,
            state.config.notifications.tracking_link_ttl,
        )
        .await?;
    let expires_at = OffsetDateTime::from_unix_timestamp(claims.expires_at)
        .map_err(ApiError::internal)?
        .format(&Rfc3339)
        .map_err(ApiError::internal)?;
    let url = format!(
        "{}/orders/{}#link={token}",
        state.config.notifications.public_url.trim_end_matches('/'),
        rec.order.id
    );
    Ok((
        StatusCode::CREATED,
        Json(TrackingLinkResponse {
            token,
            url,
            expires_at,
        }),
    ))
}

/// Revokes every tracking link of the order made so far (the ones in its e-mails and SMS,
/// and any made through the API), on every node at once; streams following the order
/// through one end at their next check. Audited. Idempotent.
#[utoipa::path(delete, path = "/v1/orders/{id}/tracking-links", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_tracking_links(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<OrderId>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::WriteOrders)?;
    let rec = state.orders.get(&caller, id.uuid()).await?;
    state
        .auth
        .revoke_links(rec.order.id, &actor_of(&caller))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
