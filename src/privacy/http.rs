//! `GET /v1/customers/{id}/export`: one JSON document with everything Ordo holds about a
//! person (GDPR art. 15/20). `DELETE /v1/customers/{id}`: its erasure (art. 17).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::store::{PersonRecords, SavedItemRow};
use crate::app::AppState;
use crate::auth::domain::Principal;
use crate::books::http::{AuditEntryResponse, rfc3339};
use crate::error::ApiError;
use crate::error::{ApiResult, Problem};
use crate::http::{Json, Path};
use crate::ids::UserRef;
use crate::notifications::domain::Preferences;
use crate::notifications::http::DeliveryResponse;
use crate::orders::http::{EventResponse, OrderResponse, PaymentResponse};
use crate::orders::store::{EventRow, OrderLineRow, OrderRecord};
use crate::payments::store::PaymentRow;
use crate::privacy::service::PrivacyError;

/// The one place an export's or an erasure's failure becomes an HTTP answer.
impl From<PrivacyError> for ApiError {
    fn from(e: PrivacyError) -> Self {
        match e {
            PrivacyError::NotFound => ApiError::NotFound,
            PrivacyError::Forbidden(why) => ApiError::Forbidden(why),
            PrivacyError::Store(e) => e.into(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_customer))
        .routes(routes!(erase_customer))
}

/// What the document is: its shape may grow, never change meaning.
pub const EXPORT_FORMAT: &str = "ordo.customer-export.v1";

/// The person's account.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedAccount {
    id: String,
    email: String,
    name: String,
    phone: Option<String>,
    role: String,
    created_at: String,
    updated_at: String,
    /// When the person was erased (then nothing above is personal any more).
    erased_at: Option<String>,
}

/// An order as `GET /v1/orders/{id}` shows it, with the payment method it was paid with,
/// its whole timeline and its payment steps.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedOrder {
    #[serde(flatten)]
    order: OrderResponse,
    payment_method: Option<String>,
    events: Vec<EventResponse>,
    payments: Vec<PaymentResponse>,
}

/// A cart line or a wishlist entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedItem {
    item_id: String,
    sku: String,
    name: String,
    /// Always 1 on the wishlist.
    quantity: i32,
    added_at: String,
}

/// A message from the shop to the person (`POST /v1/notifications`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedMessage {
    id: String,
    order_id: Option<String>,
    message: String,
    created_at: String,
}

/// A live connection of the person received this event.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedPushReceipt {
    event_id: String,
    at: String,
}

/// A failed sign-in with the person's e-mail (kept 15 minutes, for the login limits).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedFailedLogin {
    at: String,
    ip: String,
}

/// Everything Ordo holds about one person, in the shapes the API shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerExportResponse {
    /// `ordo.customer-export.v1`
    format: &'static str,
    exported_at: String,
    account: ExportedAccount,
    /// As they apply now (the defaults when the person never set them).
    notification_preferences: Preferences,
    /// Oldest first.
    orders: Vec<ExportedOrder>,
    cart: Vec<ExportedItem>,
    wishlist: Vec<ExportedItem>,
    /// Notifications sent (or to be sent) to the person: the delivery log.
    notifications: Vec<DeliveryResponse>,
    messages: Vec<ExportedMessage>,
    push_receipts: Vec<ExportedPushReceipt>,
    failed_logins: Vec<ExportedFailedLogin>,
    /// Audit entries about the person's account and those it made (its orders' status
    /// changes are in their timelines).
    audit_log: Vec<AuditEntryResponse>,
}

fn item(r: SavedItemRow) -> ExportedItem {
    ExportedItem {
        item_id: r.item_id.to_string(),
        sku: r.sku,
        name: r.name,
        quantity: r.quantity,
        added_at: rfc3339(r.added_at),
    }
}

impl CustomerExportResponse {
    fn new(r: PersonRecords, at: crate::storage::Ts) -> Self {
        let mut lines: HashMap<Uuid, Vec<OrderLineRow>> = HashMap::new();
        for l in r.lines {
            lines.entry(l.order_id).or_default().push(l.line);
        }
        let mut events: HashMap<Uuid, Vec<EventRow>> = HashMap::new();
        for e in r.events {
            events.entry(e.order_id).or_default().push(e);
        }
        let mut payments: HashMap<Uuid, Vec<PaymentRow>> = HashMap::new();
        for p in r.payments {
            payments.entry(p.order_id).or_default().push(p);
        }
        let orders = r
            .orders
            .into_iter()
            .map(|o| {
                let id = o.id;
                ExportedOrder {
                    payment_method: o.payment_method.clone(),
                    order: OrderRecord {
                        order: o,
                        lines: lines.remove(&id).unwrap_or_default(),
                    }
                    .into(),
                    events: events
                        .remove(&id)
                        .unwrap_or_default()
                        .into_iter()
                        .map(Into::into)
                        .collect(),
                    payments: payments
                        .remove(&id)
                        .unwrap_or_default()
                        .into_iter()
                        .map(Into::into)
                        .collect(),
                }
            })
            .collect();
        let u = r.user;
        CustomerExportResponse {
            format: EXPORT_FORMAT,
            exported_at: rfc3339(at),
            account: ExportedAccount {
                id: u.id.to_string(),
                email: u.email,
                name: u.name,
                phone: u.phone,
                role: u.role.as_str().into(),
                created_at: rfc3339(u.created_at),
                updated_at: rfc3339(u.updated_at),
                erased_at: u.erased_at.map(rfc3339),
            },
            notification_preferences: r.preferences.unwrap_or_default(),
            orders,
            cart: r.cart.into_iter().map(item).collect(),
            wishlist: r.wishlist.into_iter().map(item).collect(),
            notifications: r.deliveries.into_iter().map(Into::into).collect(),
            messages: r
                .messages
                .into_iter()
                .map(|m| ExportedMessage {
                    id: m.id.to_string(),
                    order_id: m.order_id.map(|o| o.to_string()),
                    message: m.message,
                    created_at: rfc3339(m.created_at),
                })
                .collect(),
            push_receipts: r
                .push_receipts
                .into_iter()
                .map(|(event_id, at)| ExportedPushReceipt {
                    event_id: event_id.to_string(),
                    at: rfc3339(at),
                })
                .collect(),
            failed_logins: r
                .failed_logins
                .into_iter()
                .map(|(at, ip)| ExportedFailedLogin {
                    at: rfc3339(at),
                    ip,
                })
                .collect(),
            audit_log: r.audit.into_iter().map(Into::into).collect(),
        }
    }
}

/// Everything Ordo holds about a person, as one JSON document (GDPR art. 15/20): the
/// account, notification preferences, orders with their lines, timelines and payment steps,
/// cart, wishlist, notification delivery log, messages from the shop, push receipts, recent
/// failed sign-ins and the audit entries about the account. For the person itself (`me`)
/// or an admin; another customer's id is "not found". The export is audited
/// (`customer.exported`).
#[utoipa::path(get, path = "/v1/customers/{id}/export", tag = "privacy", security(("bearer" = [])),
    params(("id" = String, Path, description = "a user id, or me")),
    responses((status = 200, body = CustomerExportResponse), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn export_customer(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<UserRef>,
) -> ApiResult<Response> {
    let (records, at) = state.privacy.export(&caller, id).await?;
    let mut res = Json(CustomerExportResponse::new(records, at)).into_response();
    // Personal data: no shared cache keeps a copy.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Erases a person (GDPR art. 17): name, e-mail, phone, shipping addresses, the free text of
/// its orders' timelines, messages to it, its delivery addresses, cart, wishlist and
/// preferences are erased or replaced for good; its orders, lines, amounts and payment steps
/// stay for the books under the same id. Its tokens and tracking links stop working at once;
/// pending notifications to it are dropped. For the customer itself (`me`) or an admin (any
/// account but its own); staff erase nobody. Audited (`customer.erased`). Erasing again
/// answers 204 again and changes nothing.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "privacy", security(("bearer" = [])),
    params(("id" = String, Path, description = "a user id, or me")),
    responses((status = 204, description = "erased (now or before)"), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn erase_customer(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<UserRef>,
) -> ApiResult<StatusCode> {
    let id = state.privacy.erase(&caller, id).await?;
    state.auth.account_erased(id);
    // This node's live connections of the person end now (the token is refused on the
    // reconnect).
    state.hub.disconnect_customer(id);
    Ok(StatusCode::NO_CONTENT)
}
