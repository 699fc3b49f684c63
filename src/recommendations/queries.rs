// SQL of the recommendations module, compiled once per backend (see `storage`).

use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::recommendations::RECENT_ORDERS;
use super::{PairRow, RecommendationStore};
use crate::inventory::store::{ITEM_COLUMNS, ItemRow};
use crate::storage::{Dialect, Result, Ts};

fn push_ids(b: &mut QueryBuilder<Db>, ids: &[Uuid]) {
    b.push("(");
    let mut list = b.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    b.push(")");
}

#[async_trait]
impl RecommendationStore for Backend {
    async fn record_purchases(
        &self,
        name: &str,
        orders: &[Uuid],
        position: i64,
        at: Ts,
    ) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        if !orders.is_empty() {
            let mut b = QueryBuilder::<Db>::new(
                "INSERT INTO item_order_counts (item_id, orders) SELECT a.item_id, count(DISTINCT a.order_id) FROM ",
            );
            push_lines_of(&mut b, orders);
            b.push(
                " GROUP BY a.item_id \
                 ON CONFLICT (item_id) DO UPDATE SET orders = item_order_counts.orders + excluded.orders",
            );
            b.build().execute(&mut *tx).await?;
            let mut b = QueryBuilder::<Db>::new(
                "INSERT INTO item_pairs (item_id, other_id, orders) \
                 SELECT a.item_id, b.item_id, count(DISTINCT a.order_id) FROM ",
            );
            push_lines_of(&mut b, orders);
            b.push(match DIALECT {
                Dialect::Postgres => {
                    " CROSS JOIN LATERAL (SELECT item_id FROM order_items b \
                     WHERE b.order_id = a.order_id AND b.item_id <> a.item_id OFFSET 0) b"
                }
                Dialect::Sqlite => {
                    " JOIN order_items b ON b.order_id = a.order_id AND b.item_id <> a.item_id"
                }
            });
            b.push(
                " GROUP BY a.item_id, b.item_id \
                 ON CONFLICT (item_id, other_id) DO UPDATE SET orders = item_pairs.orders + excluded.orders",
            );
            b.build().execute(&mut *tx).await?;
        }
        let greatest = match DIALECT {
            Dialect::Postgres => "greatest",
            Dialect::Sqlite => "max",
        };
        let sql = format!(
            "INSERT INTO outbox_cursors (name, position, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET position = {greatest}(outbox_cursors.position, excluded.position), \
             updated_at = excluded.updated_at"
        );
        sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(position)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn partners(&self, items: &[Uuid], min_support: i64, limit: u32) -> Result<Vec<PairRow>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut b = QueryBuilder::<Db>::new(
            "SELECT p.item_id, p.other_id, p.orders AS together, a.orders AS item_orders, o.orders AS other_orders \
             FROM item_pairs p JOIN item_order_counts a ON a.item_id = p.item_id \
             JOIN item_order_counts o ON o.item_id = p.other_id WHERE p.item_id IN ",
        );
        push_ids(&mut b, items);
        b.push(" AND p.orders >= ").push_bind(min_support);
        b.push(" ORDER BY p.orders DESC, p.other_id LIMIT ")
            .push_bind(i64::from(limit));
        Ok(b.build_query_as::<PairRow>()
            .fetch_all(self.reader())
            .await?)
    }

    async fn bought(&self, customer: Uuid, limit: u32) -> Result<Vec<Uuid>> {
        // The latest orders only, newest first through `orders_customer`: the work is
        // bounded by RECENT_ORDERS, not by how long the customer's history is. The bound is
        // in the text, not a parameter: PostgreSQL's generic plan cannot see a parameter's
        // LIMIT and joins every order line instead.
        let sql = format!(
            "SELECT l.item_id FROM (SELECT id, created_at FROM orders_all \
             WHERE customer_id = $1 AND status <> 'canceled' \
             ORDER BY created_at DESC, id DESC LIMIT {RECENT_ORDERS}) o \
             JOIN order_items_all l ON l.order_id = o.id \
             GROUP BY l.item_id ORDER BY max(o.created_at) DESC, l.item_id LIMIT $2"
        );
        Ok(sqlx::query_scalar::<Db, Uuid>(sqlx::AssertSqlSafe(sql))
            .bind(customer)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?)
    }

    async fn wished(&self, customer: Uuid) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar::<Db, Uuid>(
            "SELECT item_id FROM wishlist_items WHERE customer_id = $1 ORDER BY added_at DESC, item_id",
        )
        .bind(customer)
        .fetch_all(self.reader())
        .await?)
    }

    async fn items_in_stock(&self, ids: &[Uuid]) -> Result<Vec<ItemRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut b = QueryBuilder::<Db>::new(format!(
            "SELECT {ITEM_COLUMNS} FROM items WHERE stock > 0 AND id IN "
        ));
        push_ids(&mut b, ids);
        Ok(b.build_query_as::<ItemRow>()
            .fetch_all(self.reader())
            .await?)
    }

    async fn best_sellers(&self, limit: u32) -> Result<Vec<ItemRow>> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM item_order_counts c JOIN items ON items.id = c.item_id \
             WHERE items.stock > 0 ORDER BY c.orders DESC, items.id LIMIT $1"
        );
        Ok(sqlx::query_as::<Db, ItemRow>(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?)
    }
}
