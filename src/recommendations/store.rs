//! Storage of the co-purchase counts and the reads behind recommendations.

use async_trait::async_trait;
use uuid::Uuid;

use crate::inventory::store::ItemRow;
use crate::storage::{Result, Ts};

/// `item` and `other` were in `together` placed orders; each was in `item_orders` and
/// `other_orders` placed orders.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PairRow {
    pub item_id: Uuid,
    pub other_id: Uuid,
    pub together: i64,
    pub item_orders: i64,
    pub other_orders: i64,
}

/// What a read starts from, read together.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// The counts' generation (0 before the consumer first counted).
    pub generation: i64,
    /// The customer's newest live order: a new order changes it.
    pub newest_order: Option<Uuid>,
    /// The customer's wishlist, newest first.
    pub wished: Vec<Uuid>,
}

#[async_trait]
pub trait RecommendationStore {
    /// Adds these orders to the counts and moves consumer `name` to `position`, in one
    /// transaction; when there are orders, moves the counts' generation `counts` there too.
    async fn record_purchases(
        &self,
        name: &str,
        counts: &str,
        orders: &[Uuid],
        position: i64,
        at: Ts,
    ) -> Result<()>;
    /// Each item's best `per_item` partners by cosine, seen together at least
    /// `min_support` times.
    async fn neighbours(
        &self,
        items: &[Uuid],
        min_support: i64,
        per_item: u32,
    ) -> Result<Vec<PairRow>>;
    /// Items of the customer's latest `RECENT_ORDERS` orders, most recent first.
    async fn bought(&self, customer: Uuid, limit: u32) -> Result<Vec<Uuid>>;
    /// In one read: the generation `counts` of the co-purchase counts, and the customer's
    /// newest live order and wishlist.
    async fn recommendation_inputs(&self, counts: &str, customer: Option<Uuid>) -> Result<Inputs>;
    /// These items, those in stock only.
    async fn items_in_stock(&self, ids: &[Uuid]) -> Result<Vec<ItemRow>>;
    /// The items in most placed orders, in stock only.
    async fn best_sellers(&self, limit: u32) -> Result<Vec<ItemRow>>;
}

#[path = "."]
mod sqlite {
    use sqlx::QueryBuilder;
    use uuid::Uuid;

    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
    use queries::push_ids;

    /// The lines (`order_id`, `item_id`) of these orders, as the derived table `a`.
    fn push_lines_of(b: &mut QueryBuilder<Db>, orders: &[Uuid]) {
        b.push("(SELECT order_id, item_id FROM order_items WHERE order_id IN ");
        push_ids(b, orders);
        b.push(") a");
    }
}

#[path = "."]
mod postgres {
    use sqlx::QueryBuilder;
    use uuid::Uuid;

    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;

    /// The lines (`order_id`, `item_id`) of these orders, as the derived table `a`: one
    /// index lookup per order whatever the statistics say. A rollup runs right after a
    /// burst of orders, before autovacuum has analyzed them, when the planner would scan
    /// all of `order_items` for a few dozen orders.
    fn push_lines_of(b: &mut QueryBuilder<Db>, orders: &[Uuid]) {
        b.push("(SELECT l.order_id, l.item_id FROM unnest(")
            .push_bind(orders.to_vec())
            .push(
                "::uuid[]) AS o(id) CROSS JOIN LATERAL \
                 (SELECT order_id, item_id FROM order_items WHERE order_id = o.id OFFSET 0) l) a",
            );
    }
}
