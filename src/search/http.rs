//! `GET /v1/search`: ranked full-text item search with filters, sorts and facets.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::domain::{MAX_QUERY_CHARS, SearchQuery, SearchSort, words};
use crate::app::AppState;
use crate::auth::domain::{Permission, Principal};
use crate::error::{ApiResult, Problem};
use crate::http::{Json, QueryParams, Validator};
use crate::inventory::domain::MAX_PRICE;
use crate::inventory::http::ItemResponse;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Facets {
    /// Matching items per category, with every filter but `category` applied.
    category: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    data: Vec<ItemResponse>,
    facets: Facets,
}

fn price(v: &mut Validator, q: &QueryParams, name: &str) -> Option<i64> {
    match v.check(q.parse::<i64>(name, "a whole number of minor units"))? {
        Some(p) if (0..=MAX_PRICE).contains(&p) => Some(p),
        Some(_) => {
            v.push(name, "must be from 0 to 10^12");
            None
        }
        None => None,
    }
}

/// Search items: `query` (words; each may be the start of a longer one, and a longer one
/// may have a typo), `category`, `min_price`, `max_price`, `in_stock` (default true: items
/// out of stock are left out; false includes them), `sort=relevance|price|-price|name`,
/// `limit` (1..=200, default 50).
#[utoipa::path(get, path = "/v1/search", tag = "items", security(("bearer" = [])),
    params(("query" = Option<String>, Query), ("category" = Option<String>, Query), ("min_price" = Option<i64>, Query),
           ("max_price" = Option<i64>, Query), ("in_stock" = Option<bool>, Query), ("sort" = Option<String>, Query),
           ("limit" = Option<u32>, Query)),
    responses((status = 200, body = SearchResponse), (status = 422, body = Problem)))]
async fn search(
    State(state): State<AppState>,
    caller: Principal,
    q: QueryParams,
) -> ApiResult<Json<SearchResponse>> {
    caller.require(Permission::ReadItems)?;
    let mut v = Validator::default();
    let text = q.one("query").or(q.one("q")).unwrap_or_default();
    if text.chars().count() > MAX_QUERY_CHARS {
        v.push(
            "query",
            format!("must have at most {MAX_QUERY_CHARS} characters"),
        );
    }
    let min_price = price(&mut v, &q, "min_price");
    let max_price = price(&mut v, &q, "max_price");
    if let (Some(lo), Some(hi)) = (min_price, max_price)
        && lo > hi
    {
        v.push("max_price", "must not be below min_price");
    }
    let in_stock = v.check(q.bool("in_stock")).flatten().unwrap_or(true);
    let sort = v
        .check(SearchSort::parse(q.one("sort")))
        .unwrap_or(SearchSort::Relevance);
    let limit = v.check(q.limit()).unwrap_or(50);
    let category = q.one("category").map(str::to_owned);
    if category.as_ref().is_some_and(|c| c.chars().count() > 100) {
        v.push("category", "must have at most 100 characters");
    }
    v.finish()?;
    let query = SearchQuery {
        words: words(text),
        category,
        min_price,
        max_price,
        include_out_of_stock: !in_stock,
        sort,
        limit,
    };
    let found = state.search.search(&query).await?;
    Ok(Json(SearchResponse {
        data: found.items.into_iter().map(Into::into).collect(),
        facets: Facets {
            category: found.categories.into_iter().collect(),
        },
    }))
}
