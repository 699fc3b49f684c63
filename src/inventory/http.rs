//! Item and stock routes.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::domain::{
    ItemSort, parse_attributes, parse_currency, parse_price, parse_sku, parse_stock, parse_text,
};
use super::service::{ItemError, NewItem};
use super::store::{ItemChange, ItemCursor, ItemFilter, ItemRow};
use crate::app::AppState;
use crate::auth::domain::{Permission, Principal, parse_name};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::{Json, Page, Path, QueryParams, Validator, decode_cursor, encode_cursor};
use crate::ids::ItemId;

/// The one place an item's failure becomes an HTTP answer.
impl From<ItemError> for ApiError {
    fn from(e: ItemError) -> Self {
        match e {
            ItemError::NotFound => ApiError::NotFound,
            ItemError::SkuTaken(_) | ItemError::StockOutOfRange => {
                ApiError::Conflict(e.to_string())
            }
            ItemError::Store(e) => e.into(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_item, list_items))
        .routes(routes!(get_item, update_item))
        .routes(routes!(supplier_inventory))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResponse {
    id: String,
    sku: String,
    name: String,
    category: Option<String>,
    description: Option<String>,
    /// Minor units.
    price: i64,
    currency: String,
    /// What can still be sold now; reserved units are not in it.
    stock: i64,
    #[schema(value_type = Object)]
    attributes: serde_json::Value,
    supplier_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<ItemRow> for ItemResponse {
    fn from(r: ItemRow) -> Self {
        ItemResponse {
            id: r.id.to_string(),
            sku: r.sku,
            name: r.name,
            category: r.category,
            description: r.description,
            price: r.price,
            currency: r.currency,
            stock: r.stock,
            attributes: r.attributes.0,
            supplier_id: r.supplier_id,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateItemRequest {
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    sku: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"^\s*\S[\s\S]*$")]
    name: String,
    #[schema(max_length = 100)]
    category: Option<String>,
    #[schema(max_length = 10000)]
    description: Option<String>,
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    price: i64,
    /// ISO 4217, e.g. `USD`.
    #[schema(pattern = r"^[A-Za-z]{3}$")]
    currency: String,
    #[schema(minimum = 0, maximum = 1000000000)]
    stock: i64,
    #[schema(value_type = Option<Object>)]
    attributes: Option<serde_json::Value>,
    #[schema(max_length = 100)]
    supplier_id: Option<String>,
}
/// `null` clears a field; an absent field is left as it is.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateItemRequest {
    #[schema(min_length = 1, max_length = 200, pattern = r"^\s*\S[\s\S]*$")]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 100)]
    category: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 10000)]
    description: Option<Option<String>>,
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    price: Option<i64>,
    /// The new absolute stock.
    #[schema(minimum = 0, maximum = 1000000000)]
    stock: Option<i64>,
    /// Added to the current stock (negative removes); safe under concurrent orders. Not
    /// together with `stock`.
    #[schema(minimum = -1000000000, maximum = 1000000000)]
    stock_adjustment: Option<i64>,
    #[schema(value_type = Option<Object>)]
    attributes: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryLine {
    item_id: String,
    sku: String,
    stock: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SupplierInventory {
    supplier_id: String,
    items: Vec<InventoryLine>,
}

/// Create an item (staff, `items:write`).
#[utoipa::path(post, path = "/v1/items", tag = "items", security(("bearer" = [])), request_body = CreateItemRequest,
    responses((status = 201, body = ItemResponse), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_item(
    State(state): State<AppState>,
    caller: Principal,
    Json(req): Json<CreateItemRequest>,
) -> ApiResult<(StatusCode, Json<ItemResponse>)> {
    caller.require(Permission::WriteItems)?;
    let mut v = Validator::default();
    let sku = v.check(parse_sku("sku", &req.sku));
    let name = v.check(parse_name("name", &req.name));
    let category = v.check(parse_text("category", req.category.as_deref(), 100));
    let description = v.check(parse_text(
        "description",
        req.description.as_deref(),
        10_000,
    ));
    let price = v.check(parse_price("price", req.price));
    let currency = v.check(parse_currency("currency", &req.currency));
    let stock = v.check(parse_stock("stock", req.stock));
    let attributes = v.check(parse_attributes(
        "attributes",
        req.attributes.unwrap_or_default(),
    ));
    let supplier_id = v.check(parse_text("supplier_id", req.supplier_id.as_deref(), 100));
    v.finish()?;
    let (
        Some(sku),
        Some(name),
        Some(category),
        Some(description),
        Some(price),
        Some(currency),
        Some(stock),
        Some(attributes),
        Some(supplier_id),
    ) = (
        sku,
        name,
        category,
        description,
        price,
        currency,
        stock,
        attributes,
        supplier_id,
    )
    else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validator passed with missing fields"
        )));
    };
    let item = state
        .items
        .create(
            NewItem {
                sku,
                name,
                category,
                description,
                price,
                currency,
                stock,
                attributes,
                supplier_id,
            },
            &caller.key(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(item.into())))
}

/// One item (any signed-in caller, `items:read`).
#[utoipa::path(get, path = "/v1/items/{id}", tag = "items", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = ItemResponse), (status = 404, body = Problem)))]
async fn get_item(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<ItemId>,
) -> ApiResult<Json<ItemResponse>> {
    caller.require(Permission::ReadItems)?;
    Ok(Json(state.items.get(id.uuid()).await?.into()))
}

/// Change an item or its stock (staff, `items:write`).
#[utoipa::path(patch, path = "/v1/items/{id}", tag = "items", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = UpdateItemRequest,
    responses((status = 200, body = ItemResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_item(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<ItemId>,
    Json(req): Json<UpdateItemRequest>,
) -> ApiResult<Json<ItemResponse>> {
    caller.require(Permission::WriteItems)?;
    let id = id.uuid();
    let mut v = Validator::default();
    let change = ItemChange {
        name: req
            .name
            .as_deref()
            .and_then(|n| v.check(parse_name("name", n))),
        category: req
            .category
            .map(|c| v.check(parse_text("category", c.as_deref(), 100)).flatten()),
        description: req.description.map(|d| {
            v.check(parse_text("description", d.as_deref(), 10_000))
                .flatten()
        }),
        price: req.price.and_then(|p| v.check(parse_price("price", p))),
        stock: req.stock.and_then(|s| v.check(parse_stock("stock", s))),
        stock_adjustment: req.stock_adjustment,
        attributes: req
            .attributes
            .and_then(|a| v.check(parse_attributes("attributes", a))),
    };
    if change.stock.is_some() && change.stock_adjustment.is_some() {
        v.push("stock_adjustment", "cannot be combined with stock");
    }
    if let Some(adj) = change.stock_adjustment
        && adj.abs() > super::domain::MAX_STOCK
    {
        v.push("stock_adjustment", "must be between -10^9 and 10^9");
    }
    v.finish()?;
    Ok(Json(
        state.items.update(id, change, &caller.key()).await?.into(),
    ))
}

/// List items: `query`, `category`, `min_price`, `max_price`, `in_stock`, `sort=price|-price|name`, paged.
#[utoipa::path(get, path = "/v1/items", tag = "items", security(("bearer" = [])),
    params(("query" = Option<String>, Query), ("category" = Option<String>, Query), ("min_price" = Option<i64>, Query),
           ("max_price" = Option<i64>, Query), ("in_stock" = Option<bool>, Query), ("sort" = Option<String>, Query),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<ItemResponse>), (status = 422, body = Problem)))]
async fn list_items(
    State(state): State<AppState>,
    caller: Principal,
    q: QueryParams,
) -> ApiResult<Json<Page<ItemResponse>>> {
    caller.require(Permission::ReadItems)?;
    let mut v = Validator::default();
    let filter = ItemFilter {
        query: q
            .one("query")
            .or(q.one("q"))
            .map(|s| s.chars().take(200).collect()),
        category: q.one("category").map(str::to_owned),
        min_price: v.check(q.parse("min_price", "a whole number")).flatten(),
        max_price: v.check(q.parse("max_price", "a whole number")).flatten(),
        in_stock: v.check(q.bool("in_stock")).flatten(),
        supplier_id: q.one("supplier_id").map(str::to_owned),
    };
    let sort = v
        .check(ItemSort::parse(q.one("sort")))
        .unwrap_or(ItemSort::Name);
    let limit = v.check(q.limit()).unwrap_or(50);
    let cursor = q
        .one("cursor")
        .and_then(|c| v.check(decode_cursor::<ItemCursor>(c)))
        .and_then(|c| {
            if c.sort == sort.as_str() {
                Some(c)
            } else {
                v.push("cursor", "belongs to a list in another order");
                None
            }
        });
    v.finish()?;
    let (rows, next) = state
        .items
        .list(&filter, sort, cursor.as_ref(), limit)
        .await?;
    Ok(Json(Page {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor: next.map(|c| encode_cursor(&c)),
    }))
}

/// Stock of every item a supplier provides (staff, `items:read`).
#[utoipa::path(get, path = "/v1/suppliers/{supplier_id}/inventory", tag = "items", security(("bearer" = [])),
    params(("supplier_id" = String, Path)),
    responses((status = 200, body = SupplierInventory), (status = 404, body = Problem)))]
async fn supplier_inventory(
    State(state): State<AppState>,
    caller: Principal,
    Path(supplier_id): Path<String>,
) -> ApiResult<Json<SupplierInventory>> {
    caller.require(Permission::ReadInventory)?;
    let filter = ItemFilter {
        supplier_id: Some(supplier_id.clone()),
        ..ItemFilter::default()
    };
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let (rows, next) = state
            .items
            .list(&filter, ItemSort::Name, after.as_ref(), 200)
            .await?;
        items.extend(rows.into_iter().map(|r| InventoryLine {
            item_id: r.id.to_string(),
            sku: r.sku,
            stock: r.stock,
        }));
        match next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    if items.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(SupplierInventory { supplier_id, items }))
}
