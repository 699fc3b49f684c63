//! Item operations other modules and the HTTP layer call.

use std::sync::Arc;

use sqlx::types::Json;
use uuid::Uuid;

use super::domain::ItemSort;
use super::store::{ItemChange, ItemCursor, ItemFilter, ItemRow, UpdateOutcome};
use crate::books::domain::{self as books, NewAudit};
use crate::clock::Clock;
use crate::storage::{DynStore, Error as StoreError};

/// What can go wrong with an item, in the catalogue's terms; an HTTP answer only at the
/// edge (`impl From<ItemError> for ApiError` in `http.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("not found")]
    NotFound,
    #[error("an item with SKU {0} already exists")]
    SkuTaken(String),
    #[error("the adjustment would take the stock below 0 or above 10^9")]
    StockOutOfRange,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ItemResult<T> = Result<T, ItemError>;

pub struct NewItem {
    pub sku: String,
    pub name: String,
    pub category: Option<String>,
    pub description: Option<String>,
    pub price: i64,
    pub currency: String,
    pub stock: i64,
    pub attributes: serde_json::Value,
    pub supplier_id: Option<String>,
}

#[derive(Clone)]
pub struct ItemService {
    store: DynStore,
    clock: Arc<dyn Clock>,
}

impl ItemService {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        ItemService { store, clock }
    }

    /// Creates an item; `actor` is recorded in the audit log.
    #[tracing::instrument(skip_all, fields(item_id = tracing::field::Empty))]
    pub async fn create(&self, new: NewItem, actor: &str) -> ItemResult<ItemRow> {
        let now = self.clock.ts();
        let row = ItemRow {
            id: Uuid::now_v7(),
            sku: new.sku,
            name: new.name,
            category: new.category,
            description: new.description,
            price: new.price,
            currency: new.currency,
            stock: new.stock,
            attributes: Json(new.attributes),
            supplier_id: new.supplier_id,
            created_at: now,
            updated_at: now,
        };
        tracing::Span::current().record("item_id", tracing::field::display(row.id));
        let audit = NewAudit::new(now, actor, books::ITEM_CREATED, "item", row.id).after(
            serde_json::json!({"sku": row.sku, "name": row.name, "price": row.price,
                               "currency": row.currency, "stock": row.stock}),
        );
        match self.store.insert_item(&row, &audit).await {
            Ok(()) => Ok(row),
            Err(StoreError::Unique(_)) => Err(ItemError::SkuTaken(row.sku)),
            Err(e) => Err(e.into()),
        }
    }

    #[tracing::instrument(skip_all, fields(item_id = %id))]
    pub async fn get(&self, id: Uuid) -> ItemResult<ItemRow> {
        self.store.item(id).await?.ok_or(ItemError::NotFound)
    }

    /// Changes an item; the audit log gets the changed fields before and after.
    #[tracing::instrument(skip_all, fields(item_id = %id))]
    pub async fn update(&self, id: Uuid, change: ItemChange, actor: &str) -> ItemResult<ItemRow> {
        let audit = NewAudit::new(self.clock.ts(), actor, books::ITEM_UPDATED, "item", id);
        match self.store.update_item(id, &change, &audit).await? {
            UpdateOutcome::Updated(row) => {
                if change.stock.is_some() || change.stock_adjustment.is_some() {
                    tracing::info!(item_id = %row.id, sku = %row.sku, stock = row.stock, "stock changed");
                }
                Ok(row)
            }
            UpdateOutcome::NotFound => Err(ItemError::NotFound),
            UpdateOutcome::StockOutOfRange => Err(ItemError::StockOutOfRange),
        }
    }

    /// One page, and the cursor of the next page when there may be one.
    #[tracing::instrument(skip_all)]
    pub async fn list(
        &self,
        filter: &ItemFilter,
        sort: ItemSort,
        after: Option<&ItemCursor>,
        limit: u32,
    ) -> ItemResult<(Vec<ItemRow>, Option<ItemCursor>)> {
        let rows = self.store.list_items(filter, sort, after, limit).await?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last())
            .flatten()
            .map(|last| ItemCursor {
                sort: sort.as_str().to_owned(),
                price: matches!(sort, ItemSort::Price | ItemSort::PriceDesc).then_some(last.price),
                name: (sort == ItemSort::Name).then(|| last.name.clone()),
                id: last.id,
            });
        Ok((rows, next))
    }
}
