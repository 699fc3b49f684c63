//! Cart, checkout and wishlist routes under `/v1/users/{user_id}` (`me` works).

use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::domain::{CartRefusal, MAX_CART_LINES, parse_op};
use super::service::ShopError;
use super::store::{CartRow, WishRow};
use crate::app::AppState;
use crate::auth::domain::{Permission, Principal};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::{Json, Path, Validator, parse_json};
use crate::ids::{ItemId, UserRef};
use crate::inventory::http::ItemResponse;
use crate::orders::error::OrderError;
use crate::orders::http::{OrderResponse, parse_shipping_address, pay_placed};
use crate::orders::service::{PlaceOrder, actor_of};
use crate::payments::parse_payment_method;

/// The one place a cart's or a wishlist's failure becomes an HTTP answer.
impl From<ShopError> for ApiError {
    fn from(e: ShopError) -> Self {
        match e {
            ShopError::NotFound => ApiError::NotFound,
            ShopError::Cart(CartRefusal::UnknownItem) | ShopError::UnknownItem => {
                ApiError::validation("item_id", "no such item")
            }
            ShopError::Cart(CartRefusal::TooMany) => {
                ApiError::validation("quantity", "a cart line holds at most 1000")
            }
            ShopError::Cart(CartRefusal::TooManyLines) => ApiError::validation(
                "item_id",
                format!("a cart holds at most {MAX_CART_LINES} different items"),
            ),
            ShopError::Cart(CartRefusal::MixedCurrencies) => ApiError::validation(
                "item_id",
                "is priced in another currency than the rest of the cart",
            ),
            ShopError::WishlistFull => ApiError::validation("item_id", e.to_string()),
            ShopError::Store(e) => e.into(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_cart, add_to_cart))
        .routes(routes!(set_cart_line, remove_from_cart))
        .routes(routes!(checkout_cart))
        .routes(routes!(get_wishlist, add_to_wishlist))
        .routes(routes!(remove_from_wishlist))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartLineResponse {
    item_id: String,
    sku: String,
    name: String,
    quantity: i32,
    /// The item's price now.
    unit_price: i64,
    line_total: i64,
    /// False when the item's stock no longer covers the line.
    available: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartResponse {
    items: Vec<CartLineResponse>,
    total_amount: i64,
    /// `null` for an empty cart.
    currency: Option<String>,
}

impl From<CartRow> for CartResponse {
    fn from(c: CartRow) -> Self {
        let currency = c.lines.first().map(|l| l.currency.clone());
        let items: Vec<CartLineResponse> = c
            .lines
            .into_iter()
            .map(|l| CartLineResponse {
                item_id: l.item_id.to_string(),
                sku: l.sku,
                name: l.name,
                quantity: l.quantity,
                unit_price: l.unit_price,
                line_total: l.unit_price * i64::from(l.quantity),
                available: l.stock >= i64::from(l.quantity),
            })
            .collect();
        CartResponse {
            total_amount: items.iter().map(|l| l.line_total).sum(),
            items,
            currency,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddToCartRequest {
    #[schema(format = Uuid)]
    item_id: String,
    /// 1..=1000 to add to the line; 0 removes it.
    #[schema(minimum = 0, maximum = 1000)]
    quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCartLineRequest {
    /// The line's new quantity, 0..=1000; 0 removes it.
    #[schema(minimum = 0, maximum = 1000)]
    quantity: i64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    #[schema(value_type = Option<Object>)]
    shipping_address: Option<serde_json::Value>,
    #[schema(pattern = r"^[A-Za-z][A-Za-z0-9_]{0,254}$")]
    payment_method: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WishRequest {
    item_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WishlistEntry {
    item: ItemResponse,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    added_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WishlistResponse {
    data: Vec<WishlistEntry>,
}

fn wishlist_response(rows: Vec<WishRow>) -> WishlistResponse {
    WishlistResponse {
        data: rows
            .into_iter()
            .map(|w| WishlistEntry {
                item: w.item.into(),
                added_at: w.added_at.0,
            })
            .collect(),
    }
}
/// An item id in a body: malformed is as unknown as an id nobody has.
fn body_item_id(v: &mut Validator, raw: &str) -> Option<Uuid> {
    let id = Uuid::parse_str(raw.trim()).ok();
    if id.is_none() {
        v.push("item_id", "no such item");
    }
    id
}

/// A customer's cart with the items' current names, SKUs and prices.
#[utoipa::path(get, path = "/v1/users/{user_id}/cart", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "a user id, or `me`")),
    responses((status = 200, body = CartResponse), (status = 404, body = Problem)))]
async fn get_cart(
    State(state): State<AppState>,
    caller: Principal,
    Path(user_id): Path<UserRef>,
) -> ApiResult<Json<CartResponse>> {
    caller.require(Permission::ReadOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    Ok(Json(state.shop.cart(owner).await?.into()))
}

/// Add to the cart (to the line of the same item, if there is one); quantity 0 removes the line.
#[utoipa::path(post, path = "/v1/users/{user_id}/cart", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path)), request_body = AddToCartRequest,
    responses((status = 200, body = CartResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn add_to_cart(
    State(state): State<AppState>,
    caller: Principal,
    Path(user_id): Path<UserRef>,
    Json(req): Json<AddToCartRequest>,
) -> ApiResult<Json<CartResponse>> {
    caller.require(Permission::WriteOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    let mut v = Validator::default();
    let item = body_item_id(&mut v, &req.item_id);
    let op = parse_op(req.quantity, false);
    if op.is_none() {
        v.push("quantity", "must be a whole number from 0 to 1000");
    }
    v.finish()?;
    let (Some(item), Some(op)) = (item, op) else {
        return Err(ApiError::validation("item_id", "no such item"));
    };
    Ok(Json(state.shop.change_cart(owner, item, op).await?.into()))
}

/// Set a cart line's quantity (0 removes it).
#[utoipa::path(put, path = "/v1/users/{user_id}/cart/{item_id}", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path), ("item_id" = String, Path)), request_body = SetCartLineRequest,
    responses((status = 200, body = CartResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn set_cart_line(
    State(state): State<AppState>,
    caller: Principal,
    Path((user_id, item_id)): Path<(UserRef, ItemId)>,
    Json(req): Json<SetCartLineRequest>,
) -> ApiResult<Json<CartResponse>> {
    caller.require(Permission::WriteOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    let item = item_id.uuid();
    let op = parse_op(req.quantity, true)
        .ok_or_else(|| ApiError::validation("quantity", "must be a whole number from 0 to 1000"))?;
    match state.shop.change_cart(owner, item, op).await {
        // The item is in the path: an unknown one is a resource that does not exist.
        Err(ShopError::Cart(CartRefusal::UnknownItem)) => Err(ApiError::NotFound),
        other => Ok(Json(other?.into())),
    }
}

/// Remove an item from the cart (removing one that is not there changes nothing).
#[utoipa::path(delete, path = "/v1/users/{user_id}/cart/{item_id}", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path), ("item_id" = String, Path)),
    responses((status = 200, body = CartResponse), (status = 404, body = Problem)))]
async fn remove_from_cart(
    State(state): State<AppState>,
    caller: Principal,
    Path((user_id, item_id)): Path<(UserRef, ItemId)>,
) -> ApiResult<Json<CartResponse>> {
    caller.require(Permission::WriteOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    let item = item_id.uuid();
    let cart = state.shop.cart(owner).await?;
    if !cart.lines.iter().any(|l| l.item_id == item) {
        return Ok(Json(cart.into()));
    }
    Ok(Json(
        state
            .shop
            .change_cart(owner, item, super::domain::CartOp::Set(0))
            .await?
            .into(),
    ))
}

/// Place one order from the cart, exactly as `POST /v1/orders` would (reservation, payment,
/// `Idempotency-Key`); the cart is emptied in the order's own transaction, and only if the
/// order was created. A cart that changed meanwhile (or a second checkout) is 409.
#[utoipa::path(post, path = "/v1/users/{user_id}/cart/checkout", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path)), request_body = CheckoutRequest,
    responses((status = 201, body = OrderResponse), (status = 202, body = OrderResponse, description = "gateway did not answer in time"),
              (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn checkout_cart(
    State(state): State<AppState>,
    caller: Principal,
    Path(user_id): Path<UserRef>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<OrderResponse>)> {
    caller.require(Permission::WriteOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    let req: CheckoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CheckoutRequest::default()
    } else {
        parse_json(&body)?
    };
    let mut v = Validator::default();
    let payment_method = req
        .payment_method
        .as_deref()
        .and_then(|m| v.check(parse_payment_method("payment_method", m)));
    let shipping_address = parse_shipping_address(&mut v, req.shipping_address);
    v.finish()?;
    let actor = actor_of(&caller);
    let mut cart = state.shop.to_check_out(owner, false).await?;
    let placed = loop {
        if cart.lines.is_empty() {
            state.shop.checked_out(owner);
            return Err(ApiError::validation("cart", "is empty"));
        }
        let order = PlaceOrder {
            customer_id: owner,
            lines: cart.lines.to_vec(),
            shipping_address: shipping_address.clone(),
            payment_method: payment_method.clone(),
            cart_version: Some(cart.version),
        };
        match state.orders.place(order, &actor).await {
            // The kept cart was behind (nothing was written): read it and try once more, as
            // if it had been read now.
            Err(OrderError::CartChanged) if cart.kept => {
                cart = state.shop.to_check_out(owner, true).await?;
            }
            other => break other,
        }
    };
    state.shop.checked_out(owner);
    pay_placed(&state, placed?, payment_method, &actor).await
}

/// A customer's wishlist, newest first, with the items' details.
#[utoipa::path(get, path = "/v1/users/{user_id}/wishlist", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path)),
    responses((status = 200, body = WishlistResponse), (status = 404, body = Problem)))]
async fn get_wishlist(
    State(state): State<AppState>,
    caller: Principal,
    Path(user_id): Path<UserRef>,
) -> ApiResult<Json<WishlistResponse>> {
    caller.require(Permission::ReadOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    Ok(Json(wishlist_response(state.shop.wishlist(owner).await?)))
}

/// Add an item to the wishlist: 201 when it was new, 200 when it was there already.
#[utoipa::path(post, path = "/v1/users/{user_id}/wishlist", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path)), request_body = WishRequest,
    responses((status = 201, body = WishlistResponse), (status = 200, body = WishlistResponse),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn add_to_wishlist(
    State(state): State<AppState>,
    caller: Principal,
    Path(user_id): Path<UserRef>,
    Json(req): Json<WishRequest>,
) -> ApiResult<(StatusCode, Json<WishlistResponse>)> {
    caller.require(Permission::WriteOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    let mut v = Validator::default();
    let item = body_item_id(&mut v, &req.item_id);
    v.finish()?;
    let Some(item) = item else {
        return Err(ApiError::validation("item_id", "no such item"));
    };
    let added = state.shop.wish(owner, item).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(wishlist_response(state.shop.wishlist(owner).await?)),
    ))
}

/// Remove an item from the wishlist (removing one that is not there changes nothing).
#[utoipa::path(delete, path = "/v1/users/{user_id}/wishlist/{item_id}", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path), ("item_id" = String, Path)),
    responses((status = 200, body = WishlistResponse), (status = 404, body = Problem)))]
async fn remove_from_wishlist(
    State(state): State<AppState>,
    caller: Principal,
    Path((user_id, item_id)): Path<(UserRef, ItemId)>,
) -> ApiResult<Json<WishlistResponse>> {
    caller.require(Permission::WriteOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    state.shop.unwish(owner, item_id.uuid()).await?;
    Ok(Json(wishlist_response(state.shop.wishlist(owner).await?)))
}
