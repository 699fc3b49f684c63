//! Storage of carts and wishlists.

use async_trait::async_trait;
use uuid::Uuid;

use super::domain::{CartOp, CartRefusal};
use crate::inventory::store::ItemRow;
use crate::storage::{Result, Ts};

/// A cart line with its item as it is now.
#[derive(Clone, Debug)]
pub struct CartLineRow {
    pub item_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub unit_price: i64,
    pub currency: String,
    pub stock: i64,
    pub added_at: Ts,
}

/// A cart read in one snapshot: its version and its lines, in the order they were added.
#[derive(Clone, Debug, Default)]
pub struct CartRow {
    /// 0 for a cart that was never written.
    pub version: i64,
    pub lines: Vec<CartLineRow>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WishRow {
    #[sqlx(flatten)]
    pub item: ItemRow,
    pub added_at: Ts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WishOutcome {
    Added,
    AlreadyThere,
    UnknownItem,
    Full,
}

#[async_trait]
pub trait ShopStore {
    async fn cart(&self, customer: Uuid) -> Result<CartRow>;
    /// Changes one line in one transaction that also moves the cart's version on (which
    /// is what a checkout racing this change notices). A refusal changes nothing.
    async fn change_cart(
        &self,
        customer: Uuid,
        item: Uuid,
        op: CartOp,
        at: Ts,
    ) -> Result<Result<(), CartRefusal>>;
    async fn wishlist(&self, customer: Uuid) -> Result<Vec<WishRow>>;
    async fn add_to_wishlist(&self, customer: Uuid, item: Uuid, at: Ts) -> Result<WishOutcome>;
    /// False when the item was not on the wishlist.
    async fn remove_from_wishlist(&self, customer: Uuid, item: Uuid) -> Result<bool>;
}

#[path = "."]
mod sqlite {
    use crate::storage::sqlite::{Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}

#[path = "."]
mod postgres {
    use crate::storage::postgres::{Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
}
