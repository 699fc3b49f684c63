//! SQL of the shop module, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;
use uuid::Uuid;

use crate::inventory::store::ITEM_COLUMNS;
use crate::shop::domain::{CartOp, CartRefusal, MAX_CART_LINES, MAX_QUANTITY, MAX_WISHLIST};
use crate::shop::store::{CartLineRow, CartRow, ShopStore, WishOutcome, WishRow};
use crate::storage::{Error, Result, Ts};

type CartJoin = (
    i64,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<Ts>,
);

#[async_trait]
impl ShopStore for Backend {
    async fn cart(&self, customer: Uuid) -> Result<CartRow> {
        // One statement, so that the version and the lines are of one moment.
        let rows = sqlx::query_as::<Db, CartJoin>(
            "SELECT c.version, l.item_id, i.sku, i.name, l.quantity, i.price, i.currency, i.stock, l.added_at \
             FROM carts c LEFT JOIN cart_items l ON l.customer_id = c.customer_id \
             LEFT JOIN items i ON i.id = l.item_id \
             WHERE c.customer_id = $1 ORDER BY l.added_at, l.item_id",
        )
        .bind(customer)
        .fetch_all(self.reader())
        .await?;
        let mut cart = CartRow::default();
        for (version, item_id, sku, name, quantity, price, currency, stock, added_at) in rows {
            cart.version = version;
            if let (
                Some(item_id),
                Some(sku),
                Some(name),
                Some(quantity),
                Some(unit_price),
                Some(currency),
                Some(stock),
                Some(added_at),
            ) = (
                item_id, sku, name, quantity, price, currency, stock, added_at,
            ) {
                cart.lines.push(CartLineRow {
                    item_id,
                    sku,
                    name,
                    quantity,
                    unit_price,
                    currency,
                    stock,
                    added_at,
                });
            }
        }
        Ok(cart)
    }

    async fn change_cart(
        &self,
        customer: Uuid,
        item: Uuid,
        op: CartOp,
        at: Ts,
    ) -> Result<Result<(), CartRefusal>> {
        let mut tx = self.writer().begin().await?;
        // First the cart row: its lock orders this change against a checkout of the cart.
        // A new cart starts at a random version, not 1: a cart deleted (erasure) and made
        // again never repeats a version of the one before, so that a version names one
        // content for good (nodes keep carts by version, see `ShopService`).
        sqlx::query::<Db>(
            "INSERT INTO carts (customer_id, version, updated_at) VALUES ($1, $3, $2) \
             ON CONFLICT (customer_id) DO UPDATE SET version = carts.version + 1, updated_at = excluded.updated_at",
        )
        .bind(customer)
        .bind(at)
        .bind(crate::shop::domain::first_cart_version())
        .execute(&mut *tx)
        .await?;
        let Some(currency) =
            sqlx::query_scalar::<Db, String>("SELECT currency FROM items WHERE id = $1")
                .bind(item)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(Err(CartRefusal::UnknownItem));
        };
        let current = sqlx::query_scalar::<Db, i32>(
            "SELECT quantity FROM cart_items WHERE customer_id = $1 AND item_id = $2",
        )
        .bind(customer)
        .bind(item)
        .fetch_optional(&mut *tx)
        .await?;
        let wanted = op.apply(current);
        if wanted > MAX_QUANTITY {
            return Ok(Err(CartRefusal::TooMany));
        }
        if wanted <= 0 {
            sqlx::query::<Db>("DELETE FROM cart_items WHERE customer_id = $1 AND item_id = $2")
                .bind(customer)
                .bind(item)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Ok(()));
        }
        if current.is_none() {
            let (lines, other) = sqlx::query_as::<Db, (i64, Option<String>)>(
                "SELECT count(*), min(i.currency) FROM cart_items l JOIN items i ON i.id = l.item_id \
                 WHERE l.customer_id = $1",
            )
            .bind(customer)
            .fetch_one(&mut *tx)
            .await?;
            if lines >= MAX_CART_LINES as i64 {
                return Ok(Err(CartRefusal::TooManyLines));
            }
            if other.is_some_and(|c| c != currency) {
                return Ok(Err(CartRefusal::MixedCurrencies));
            }
        }
        let quantity = i32::try_from(wanted).map_err(|_| Error::Check)?;
        sqlx::query::<Db>(
            "INSERT INTO cart_items (customer_id, item_id, quantity, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (customer_id, item_id) DO UPDATE SET quantity = excluded.quantity",
        )
        .bind(customer)
        .bind(item)
        .bind(quantity)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn wishlist(&self, customer: Uuid) -> Result<Vec<WishRow>> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS}, w.added_at FROM wishlist_items w JOIN items ON items.id = w.item_id \
             WHERE w.customer_id = $1 ORDER BY w.added_at DESC, w.item_id"
        );
        Ok(sqlx::query_as::<Db, WishRow>(sqlx::AssertSqlSafe(sql))
            .bind(customer)
            .fetch_all(self.reader())
            .await?)
    }

    async fn add_to_wishlist(&self, customer: Uuid, item: Uuid, at: Ts) -> Result<WishOutcome> {
        let mut tx = self.writer().begin().await?;
        let known = sqlx::query_scalar::<Db, i64>("SELECT count(*) FROM items WHERE id = $1")
            .bind(item)
            .fetch_one(&mut *tx)
            .await?;
        if known == 0 {
            return Ok(WishOutcome::UnknownItem);
        }
        let held = sqlx::query_scalar::<Db, i64>(
            "SELECT count(*) FROM wishlist_items WHERE customer_id = $1",
        )
        .bind(customer)
        .fetch_one(&mut *tx)
        .await?;
        let added = sqlx::query::<Db>(
            "INSERT INTO wishlist_items (customer_id, item_id, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (customer_id, item_id) DO NOTHING",
        )
        .bind(customer)
        .bind(item)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if added == 0 {
            return Ok(WishOutcome::AlreadyThere);
        }
        if held >= MAX_WISHLIST as i64 {
            return Ok(WishOutcome::Full);
        }
        tx.commit().await?;
        Ok(WishOutcome::Added)
    }

    async fn remove_from_wishlist(&self, customer: Uuid, item: Uuid) -> Result<bool> {
        Ok(
            sqlx::query::<Db>("DELETE FROM wishlist_items WHERE customer_id = $1 AND item_id = $2")
                .bind(customer)
                .bind(item)
                .execute(self.writer())
                .await?
                .rows_affected()
                > 0,
        )
    }
}
