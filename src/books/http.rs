//! `GET /v1/audit-log`: who changed what and when (admin).

use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::domain::{AuditCursor, AuditFilter, actors_of, parse_action};
use super::store::AuditRow;
use crate::app::AppState;
use crate::auth::domain::{Permission, Principal};
use crate::error::{ApiError, ApiResult, FieldError, Problem};
use crate::http::{Json, Page, QueryParams, Validator, decode_cursor, encode_cursor};
use crate::storage::Ts;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit_log))
        .routes(routes!(analytics_summary))
}

/// An entry of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryResponse {
    /// `a<n>` for the log's own rows, `e<n>` for order timeline events.
    id: String,
    at: String,
    /// `user:<id>`, `key:<id>` (an API key) or `system:<what>`.
    actor: String,
    /// `user`, `api_key` or `system`.
    actor_type: String,
    /// The user's or key's id; `null` for the system.
    actor_id: Option<String>,
    action: String,
    target_type: String,
    target_id: String,
    #[schema(value_type = Option<Object>)]
    before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    after: Option<serde_json::Value>,
}

pub(crate) fn rfc3339(t: Ts) -> String {
    t.0.format(&Rfc3339).unwrap_or_default()
}

impl From<AuditRow> for AuditEntryResponse {
    fn from(r: AuditRow) -> Self {
        let (actor_type, actor_id) = match r.actor.split_once(':') {
            Some(("user", id)) => ("user", Some(id.to_owned())),
            Some(("key", id)) => ("api_key", Some(id.to_owned())),
            _ => ("system", None),
        };
        AuditEntryResponse {
            id: format!(
                "{}{}",
                if r.source == super::domain::SOURCE_AUDIT {
                    "a"
                } else {
                    "e"
                },
                r.id
            ),
            at: rfc3339(r.at),
            actor_type: actor_type.to_owned(),
            actor_id,
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            before: r.before,
            after: r.after,
        }
    }
}

pub(crate) fn parse_timestamp(field: &str, raw: &str) -> Result<Ts, FieldError> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map(Ts::truncated)
        .map_err(|_| FieldError::new(field, "must be an RFC 3339 timestamp"))
}

/// The audit log, newest first (admin): status changes and refunds (from the order
/// timeline), item creation and stock/price changes, users, API keys, webhook endpoints,
/// customer exports and erasures. `actor` is `user:<id>`, `key:<id>`, `system:<what>` or a
/// bare id; `from` (inclusive) and `to` (exclusive) are RFC 3339.
#[utoipa::path(get, path = "/v1/audit-log", tag = "books", security(("bearer" = [])),
    params(("actor" = Option<String>, Query, max_length = 200), ("action" = Option<String>, Query),
           ("from" = Option<String>, Query, format = DateTime), ("to" = Option<String>, Query, format = DateTime),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<AuditEntryResponse>), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_audit_log(
    State(state): State<AppState>,
    caller: Principal,
    q: QueryParams,
) -> ApiResult<Json<Page<AuditEntryResponse>>> {
    caller.require(Permission::Administer)?;
    let mut v = Validator::default();
    let mut filter = AuditFilter::default();
    if let Some(a) = q.one("actor") {
        if a.chars().count() > 200 {
            v.push("actor", "must have at most 200 characters");
        } else {
            filter.actors = actors_of(a);
        }
    }
    if let Some(a) = q.one("action") {
        match parse_action(a) {
            Some(a) => filter.action = Some(a),
            None => v.push(
                "action",
                format!("must be one of {}", super::domain::ACTIONS.join(", ")),
            ),
        }
    }
    filter.from = q
        .value("from")
        .map_or_else(|e| v.check(Err(e)), Some)
        .flatten()
        .and_then(|s| v.check(parse_timestamp("from", s)));
    filter.to = q
        .value("to")
        .map_or_else(|e| v.check(Err(e)), Some)
        .flatten()
        .and_then(|s| v.check(parse_timestamp("to", s)));
    if let (Some(f), Some(t)) = (filter.from, filter.to)
        && f > t
    {
        v.push("to", "must not be before from");
    }
    let limit = v.check(q.limit()).unwrap_or(50);
    let cursor = q
        .one("cursor")
        .and_then(|c| v.check(decode_cursor::<AuditCursor>(c)));
    if cursor.is_some_and(|c| Ts::from_micros(c.at_us).is_err()) {
        v.push("cursor", "is not a cursor this server issued");
    }
    v.finish()?;
    let rows = state
        .store
        .audit_log(&filter, cursor.as_ref(), limit)
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last())
        .flatten()
        .map(|r| encode_cursor(&r.cursor()));
    Ok(Json(Page {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

/// Units sold of one item.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopItem {
    item_id: String,
    sku: String,
    name: String,
    quantity: i64,
}

/// Orders created on one day (UTC).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrdersOnDay {
    /// `YYYY-MM-DD`
    date: String,
    orders: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsSummaryResponse {
    /// Orders created in the range, per status (every status, 0 when none).
    orders_by_status: std::collections::BTreeMap<String, i64>,
    /// Minor units per currency: orders placed and later whose money was kept (refunded ones
    /// are left out).
    revenue: std::collections::BTreeMap<String, i64>,
    orders_per_day: Vec<OrdersOnDay>,
    /// Median minutes from `placed` to `shipped`, over the range's shipped orders.
    median_minutes_to_ship: Option<f64>,
    /// Median minutes from `shipped` to `delivered`, over the range's delivered orders.
    median_minutes_to_deliver: Option<f64>,
    /// The ten items sold most (units in paid orders).
    top_items: Vec<TopItem>,
}

const TOP_ITEMS: u32 = 10;

/// Orders, revenue and delivery times for orders created in `[from, to)` (staff). Either
/// end may be left out (all time).
#[utoipa::path(get, path = "/v1/analytics/summary", tag = "books", security(("bearer" = [])),
    params(("from" = Option<String>, Query, format = DateTime), ("to" = Option<String>, Query, format = DateTime)),
    responses((status = 200, body = AnalyticsSummaryResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn analytics_summary(
    State(state): State<AppState>,
    caller: Principal,
    q: QueryParams,
) -> ApiResult<Json<AnalyticsSummaryResponse>> {
    if !caller.is_staff() {
        return Err(ApiError::Forbidden("the analytics are for staff"));
    }
    let mut v = Validator::default();
    let from = q
        .value("from")
        .map_or_else(|e| v.check(Err(e)), Some)
        .flatten()
        .and_then(|s| v.check(parse_timestamp("from", s)));
    let to = q
        .value("to")
        .map_or_else(|e| v.check(Err(e)), Some)
        .flatten()
        .and_then(|s| v.check(parse_timestamp("to", s)));
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        v.push("to", "must not be before from");
    }
    v.finish()?;
    let s = state.store.summary(from, to, TOP_ITEMS).await?;
    let mut orders_by_status: std::collections::BTreeMap<String, i64> =
        crate::orders::domain::OrderStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
    orders_by_status.extend(s.by_status);
    Ok(Json(AnalyticsSummaryResponse {
        orders_by_status,
        revenue: s.revenue,
        orders_per_day: s
            .per_day
            .into_iter()
            .map(|(date, orders)| OrdersOnDay { date, orders })
            .collect(),
        median_minutes_to_ship: s.median_minutes_to_ship,
        median_minutes_to_deliver: s.median_minutes_to_deliver,
        top_items: s
            .top_items
            .into_iter()
            .map(|(id, sku, name, quantity)| TopItem {
                item_id: id.to_string(),
                sku,
                name,
                quantity,
            })
            .collect(),
    }))
}
