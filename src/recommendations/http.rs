//! `GET /v1/users/{user_id}/recommendations` and `GET /v1/items/{id}/bought-together`.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::Basis;
use crate::app::AppState;
use crate::auth::domain::{Permission, Principal};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::{Json, Path, QueryParams};
use crate::ids::{ItemId, UserRef};
use crate::inventory::http::ItemResponse;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(customer_recommendations))
        .routes(routes!(bought_together))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationsResponse {
    data: Vec<ItemResponse>,
    /// `bought_together` (from the customer's orders and wishlist) or `popular` (no
    /// history to go on: the best-sellers).
    basis: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BoughtTogetherResponse {
    data: Vec<ItemResponse>,
}

/// `?limit=` in 1..=50, default 10.
fn limit(q: &QueryParams) -> ApiResult<u32> {
    match q
        .parse::<u32>("limit", "a whole number from 1 to 50")
        .map_err(|e| ApiError::Validation(vec![e]))?
    {
        None => Ok(10),
        Some(n @ 1..=50) => Ok(n),
        Some(_) => Err(ApiError::validation(
            "limit",
            "must be a whole number from 1 to 50",
        )),
    }
}

/// Items bought together with what this customer bought or wished for, best first; never
/// what it bought, never out of stock; the best-sellers when it has no history.
#[utoipa::path(get, path = "/v1/users/{user_id}/recommendations", tag = "shop", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "a user id, or `me`"), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = RecommendationsResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn customer_recommendations(
    State(state): State<AppState>,
    caller: Principal,
    Path(user_id): Path<UserRef>,
    q: QueryParams,
) -> ApiResult<Json<RecommendationsResponse>> {
    caller.require(Permission::ReadOrders)?;
    let owner = state.shop.owner(&caller, user_id).await?;
    let limit = limit(&q)?;
    let (basis, items) = state.recommendations.for_customer(owner, limit).await?;
    Ok(Json(RecommendationsResponse {
        data: items.into_iter().map(Into::into).collect(),
        basis: match basis {
            Basis::BoughtTogether => "bought_together",
            Basis::Popular => "popular",
        },
    }))
}

/// Items often bought with this one (cosine of their order sets, seen together in at
/// least two orders), best first, in stock only; for a customer, none it bought already.
#[utoipa::path(get, path = "/v1/items/{id}/bought-together", tag = "items", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = BoughtTogetherResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn bought_together(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<ItemId>,
    q: QueryParams,
) -> ApiResult<Json<BoughtTogetherResponse>> {
    caller.require(Permission::ReadItems)?;
    let item = state.items.get(id.uuid()).await?;
    let limit = limit(&q)?;
    let items = state
        .recommendations
        .bought_together(item.id, caller.own_customer_id(), limit)
        .await?;
    Ok(Json(BoughtTogetherResponse {
        data: items.into_iter().map(Into::into).collect(),
    }))
}
