//! SQL of the recommendations module, compiled once per backend (see `storage`).

use super::*;

use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::inventory::store::{ITEM_COLUMNS, ItemRow};
use crate::recommendations::RECENT_ORDERS;
use crate::recommendations::store::{Inputs, PairRow, RecommendationStore};
use crate::storage::{Dialect, Result, Ts};

pub(super) fn push_ids(b: &mut QueryBuilder<Db>, ids: &[Uuid]) {
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
        counts: &str,
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
        let names: &[&str] = if orders.is_empty() {
            &[name]
        } else {
            &[name, counts]
        };
        for name in names {
            sqlx::query::<Db>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(*name)
                .bind(position)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn neighbours(
        &self,
        items: &[Uuid],
        min_support: i64,
        per_item: u32,
    ) -> Result<Vec<PairRow>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // Ranked by the cosine's square, `n(i,j)² / (n(i)·n(j))` (same order, no `sqrt`);
        // ties by id, as `rank` breaks them.
        let mut b = QueryBuilder::<Db>::new(
            "SELECT item_id, other_id, together, item_orders, other_orders FROM (\
             SELECT p.item_id, p.other_id, p.orders AS together, a.orders AS item_orders, \
             o.orders AS other_orders, row_number() OVER (PARTITION BY p.item_id \
             ORDER BY CAST(p.orders AS DOUBLE PRECISION) * p.orders / (a.orders * o.orders) DESC, \
             p.other_id) AS place \
             FROM item_pairs p JOIN item_order_counts a ON a.item_id = p.item_id \
             JOIN item_order_counts o ON o.item_id = p.other_id WHERE p.item_id IN ",
        );
        push_ids(&mut b, items);
        b.push(" AND p.orders >= ").push_bind(min_support);
        b.push(") ranked WHERE place <= ")
            .push_bind(i64::from(per_item));
        Ok(b.build_query_as::<PairRow>()
            .fetch_all(self.reader())
            .await?)
    }

    async fn bought(&self, customer: Uuid, limit: u32) -> Result<Vec<Uuid>> {
        // The latest orders only, newest first through each half's `customer_id` index:
        // the work is bounded by RECENT_ORDERS, not by how long the customer's history is.
        // Each half is read on its own and its lines joined on their own table: through
        // the `*_all` views SQLite materializes every order line there is. The bound is in
        // the text, not a parameter: PostgreSQL's generic plan cannot see a parameter's
        // LIMIT and joins every order line instead.
        let (orders, items, history_orders, history_items, hidden) = match DIALECT {
            Dialect::Postgres => (
                "orders",
                "order_items",
                "orders_history",
                "order_items_history",
                "",
            ),
            // A history row whose order is live too is a move cut short (see `history`).
            Dialect::Sqlite => (
                "main.orders",
                "main.order_items",
                "history.orders",
                "history.order_items",
                " AND NOT EXISTS (SELECT 1 FROM main.orders m WHERE m.id = h.id)",
            ),
        };
        let newest = |table: &str, hidden: &str| {
            format!(
                "SELECT * FROM (SELECT h.id, h.created_at FROM {table} h \
                 WHERE h.customer_id = $1{hidden} \
                 ORDER BY h.created_at DESC, h.id DESC LIMIT {RECENT_ORDERS})"
            )
        };
        let recent = format!(
            "SELECT id, created_at FROM ({} a UNION ALL {} b) r \
             ORDER BY created_at DESC, id DESC LIMIT {RECENT_ORDERS}",
            newest(orders, ""),
            newest(history_orders, hidden)
        );
        // The lines of those orders, one index look-up per order whatever the statistics
        // say (PostgreSQL hash-joins all of `order_items` when they are stale).
        let lines = |table: &str| match DIALECT {
            Dialect::Postgres => format!(
                "SELECT l.item_id, o.created_at FROM o CROSS JOIN LATERAL \
                 (SELECT item_id FROM {table} WHERE order_id = o.id OFFSET 0) l"
            ),
            Dialect::Sqlite => {
                format!("SELECT l.item_id, o.created_at FROM o JOIN {table} l ON l.order_id = o.id")
            }
        };
        let sql = format!(
            "WITH o AS MATERIALIZED ({recent}) \
             SELECT item_id FROM ({} UNION ALL {}) x \
             GROUP BY item_id ORDER BY max(created_at) DESC, item_id LIMIT $2",
            lines(items),
            lines(history_items)
        );
        Ok(sqlx::query_scalar::<Db, Uuid>(sqlx::AssertSqlSafe(sql))
            .bind(customer)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?)
    }

    async fn recommendation_inputs(&self, counts: &str, customer: Option<Uuid>) -> Result<Inputs> {
        // One row per wished item (one with none): the tags repeat on each. The newest
        // order through `orders_customer` alone.
        let rows = sqlx::query_as::<Db, (Option<i64>, Option<Uuid>, Option<Uuid>)>(
            "SELECT t.generation, t.newest, w.item_id FROM (SELECT \
             (SELECT position FROM outbox_cursors WHERE name = $1) AS generation, \
             (SELECT id FROM orders WHERE customer_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1) AS newest) t \
             LEFT JOIN wishlist_items w ON w.customer_id = $2 ORDER BY w.added_at DESC, w.item_id",
        )
        .bind(counts)
        .bind(customer)
        .fetch_all(self.reader())
        .await?;
        let mut inputs = Inputs::default();
        for (generation, newest, wished) in rows {
            // No row of `outbox_cursors` yet: nothing counted, generation 0.
            inputs.generation = generation.unwrap_or(0);
            inputs.newest_order = newest;
            inputs.wished.extend(wished);
        }
        Ok(inputs)
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
