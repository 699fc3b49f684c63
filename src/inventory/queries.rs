//! SQL of the inventory module, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;
use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use crate::books::domain::NewAudit;
use crate::inventory::store::{
    ITEM_COLUMNS, ItemChange, ItemCursor, ItemFilter, ItemRow, ItemSort, ItemStore, UpdateOutcome,
};
use crate::storage::{Dialect, Error, Result};

/// Escapes LIKE wildcards so that a search string is matched literally.
fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[async_trait]
impl ItemStore for Backend {
    async fn insert_item(&self, i: &ItemRow, audit: &NewAudit) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        sqlx::query::<Db>(
            "INSERT INTO items (id, sku, name, category, description, price, currency, stock, attributes, \
             supplier_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(i.id)
        .bind(&i.sku)
        .bind(&i.name)
        .bind(&i.category)
        .bind(&i.description)
        .bind(i.price)
        .bind(&i.currency)
        .bind(i.stock)
        .bind(&i.attributes)
        .bind(&i.supplier_id)
        .bind(i.created_at)
        .bind(i.updated_at)
        .execute(&mut *tx)
        .await?;
        append_audit(&mut *tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn item(&self, id: Uuid) -> Result<Option<ItemRow>> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1");
        Ok(sqlx::query_as::<Db, ItemRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn update_item(
        &self,
        id: Uuid,
        c: &ItemChange,
        audit: &NewAudit,
    ) -> Result<UpdateOutcome> {
        let mut tx = self.writer().begin().await?;
        // The row as it was, locked until the change and its audit entry commit (SQLite has
        // one writer: the transaction alone keeps others out).
        let lock = if DIALECT == Dialect::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1{lock}");
        let Some(old) = sqlx::query_as::<Db, ItemRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(UpdateOutcome::NotFound);
        };
        let mut q = QueryBuilder::<Db>::new("UPDATE items SET updated_at = ");
        q.push_bind(audit.at);
        if let Some(v) = &c.name {
            q.push(", name = ").push_bind(v.clone());
        }
        if let Some(v) = &c.category {
            q.push(", category = ").push_bind(v.clone());
        }
        if let Some(v) = &c.description {
            q.push(", description = ").push_bind(v.clone());
        }
        if let Some(v) = c.price {
            q.push(", price = ").push_bind(v);
        }
        if let Some(v) = c.stock {
            q.push(", stock = ").push_bind(v);
        }
        if let Some(v) = c.stock_adjustment {
            q.push(", stock = stock + ").push_bind(v);
        }
        if let Some(v) = &c.attributes {
            q.push(", attributes = ").push_bind(Json(v.clone()));
        }
        q.push(" WHERE id = ").push_bind(id);
        q.push(" RETURNING ").push(ITEM_COLUMNS);
        match q
            .build_query_as::<ItemRow>()
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::from)
        {
            Ok(Some(row)) => {
                let (before, after) = item_diff(&old, &row);
                append_audit(&mut *tx, &audit.clone().before(before).after(after)).await?;
                tx.commit().await?;
                Ok(UpdateOutcome::Updated(row))
            }
            Ok(None) => Ok(UpdateOutcome::NotFound),
            Err(Error::Check) if c.stock_adjustment.is_some() => Ok(UpdateOutcome::StockOutOfRange),
            Err(e) => Err(e),
        }
    }

    async fn list_items(
        &self,
        f: &ItemFilter,
        sort: ItemSort,
        after: Option<&ItemCursor>,
        limit: u32,
    ) -> Result<Vec<ItemRow>> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {ITEM_COLUMNS} FROM items WHERE 1 = 1"));
        if let Some(s) = &f.query {
            let pat = like_pattern(s);
            let like = " LIKE ";
            q.push(" AND (lower(name)")
                .push(like)
                .push_bind(pat.clone())
                .push(" ESCAPE '\\'");
            q.push(" OR lower(sku)")
                .push(like)
                .push_bind(pat.clone())
                .push(" ESCAPE '\\'");
            q.push(" OR lower(coalesce(description, ''))")
                .push(like)
                .push_bind(pat)
                .push(" ESCAPE '\\')");
        }
        if let Some(v) = &f.category {
            q.push(" AND category = ").push_bind(v.clone());
        }
        if let Some(v) = &f.supplier_id {
            q.push(" AND supplier_id = ").push_bind(v.clone());
        }
        if let Some(v) = f.min_price {
            q.push(" AND price >= ").push_bind(v);
        }
        if let Some(v) = f.max_price {
            q.push(" AND price <= ").push_bind(v);
        }
        match f.in_stock {
            Some(true) => {
                q.push(" AND stock > 0");
            }
            Some(false) => {
                q.push(" AND stock = 0");
            }
            None => {}
        }
        // Keyset paging: (sort key, id) strictly after the cursor, in the sort's direction.
        if let Some(c) = after {
            match sort {
                ItemSort::Name => {
                    q.push(" AND (name > ")
                        .push_bind(c.name.clone().unwrap_or_default());
                    q.push(" OR (name = ")
                        .push_bind(c.name.clone().unwrap_or_default());
                    q.push(" AND id > ").push_bind(c.id).push("))");
                }
                ItemSort::Price => {
                    q.push(" AND (price > ")
                        .push_bind(c.price.unwrap_or_default());
                    q.push(" OR (price = ")
                        .push_bind(c.price.unwrap_or_default());
                    q.push(" AND id > ").push_bind(c.id).push("))");
                }
                ItemSort::PriceDesc => {
                    q.push(" AND (price < ")
                        .push_bind(c.price.unwrap_or_default());
                    q.push(" OR (price = ")
                        .push_bind(c.price.unwrap_or_default());
                    q.push(" AND id < ").push_bind(c.id).push("))");
                }
            }
        }
        q.push(match sort {
            ItemSort::Name => " ORDER BY name, id",
            ItemSort::Price => " ORDER BY price, id",
            ItemSort::PriceDesc => " ORDER BY price DESC, id DESC",
        });
        q.push(" LIMIT ").push_bind(i64::from(limit));
        Ok(q.build_query_as::<ItemRow>()
            .fetch_all(self.reader())
            .await?)
    }
}
