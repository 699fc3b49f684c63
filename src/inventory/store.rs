//! Storage of items and their stock.

use async_trait::async_trait;
use sqlx::types::Json;
use uuid::Uuid;

use super::domain::ItemSort;
use crate::books::domain::NewAudit;
use crate::storage::{Result, Ts};

pub const ITEM_COLUMNS: &str = "id, sku, name, category, description, price, currency, stock, attributes, supplier_id, created_at, updated_at";

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ItemRow {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: Option<String>,
    pub description: Option<String>,
    pub price: i64,
    pub currency: String,
    pub stock: i64,
    pub attributes: Json<serde_json::Value>,
    pub supplier_id: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

/// A change to an item; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ItemChange {
    pub name: Option<String>,
    pub category: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub price: Option<i64>,
    pub stock: Option<i64>,
    /// Added to the stock (negative removes); refused if the stock would go below zero.
    pub stock_adjustment: Option<i64>,
    pub attributes: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default)]
pub struct ItemFilter {
    /// Case-insensitive substring of name, SKU or description.
    pub query: Option<String>,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: Option<bool>,
    pub supplier_id: Option<String>,
}

/// Where the previous page ended, and in which order the list was sorted.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemCursor {
    /// The `sort` the cursor continues; another sort is refused.
    #[serde(rename = "s")]
    pub sort: String,
    #[serde(rename = "p", skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    #[serde(rename = "n", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub id: Uuid,
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a short-lived return value, moved once"
)]
pub enum UpdateOutcome {
    Updated(ItemRow),
    NotFound,
    /// The adjustment would take the stock below 0 or above the maximum.
    StockOutOfRange,
}

#[async_trait]
pub trait ItemStore {
    /// Inserts the item and its audit entry in one transaction.
    async fn insert_item(&self, item: &ItemRow, audit: &NewAudit) -> Result<()>;
    async fn item(&self, id: Uuid) -> Result<Option<ItemRow>>;
    /// Changes the item and appends `audit` with the changed fields before and after, in
    /// one transaction.
    async fn update_item(
        &self,
        id: Uuid,
        change: &ItemChange,
        audit: &NewAudit,
    ) -> Result<UpdateOutcome>;
    async fn list_items(
        &self,
        filter: &ItemFilter,
        sort: ItemSort,
        after: Option<&ItemCursor>,
        limit: u32,
    ) -> Result<Vec<ItemRow>>;
}

/// The fields an update changed, as they were and as they are.
fn item_diff(old: &ItemRow, new: &ItemRow) -> (serde_json::Value, serde_json::Value) {
    let mut before = serde_json::Map::new();
    let mut after = serde_json::Map::new();
    let mut field = |name: &str, o: serde_json::Value, n: serde_json::Value| {
        if o != n {
            before.insert(name.to_owned(), o);
            after.insert(name.to_owned(), n);
        }
    };
    field("name", old.name.clone().into(), new.name.clone().into());
    field(
        "category",
        old.category.clone().into(),
        new.category.clone().into(),
    );
    field(
        "description",
        old.description.clone().into(),
        new.description.clone().into(),
    );
    field("price", old.price.into(), new.price.into());
    field("stock", old.stock.into(), new.stock.into());
    field(
        "attributes",
        old.attributes.0.clone(),
        new.attributes.0.clone(),
    );
    (before.into(), after.into())
}

#[path = "."]
mod sqlite {
    use super::item_diff;
    use crate::books::store::sqlite::append_audit;
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}

#[path = "."]
mod postgres {
    use super::item_diff;
    use crate::books::store::postgres::append_audit;
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}
