//! SQL of the search module, compiled once per backend (see `storage`). The backends differ
//! only in how they find the matching items (`Backend::hits`).

use super::*;

use async_trait::async_trait;
use sqlx::QueryBuilder;

use uuid::Uuid;

use crate::inventory::store::{ITEM_COLUMNS, ItemRow};
use crate::search::domain::{SearchQuery, SearchSort};
use crate::search::store::{AtGeneration, SearchResult, SearchStore};
use crate::storage::Result;

/// The search statement: the items (`facets` false) or the per-category counts. With
/// words, the backend's `hits` (item_id, score, name, category, price, in_stock) are
/// filtered, sorted and cut to `limit` before the shown rows are read from `items`.
fn statement(hits: Option<&Hits>, q: &SearchQuery, facets: bool) -> QueryBuilder<Db> {
    let mut b = QueryBuilder::<Db>::new("");
    let Some(h) = hits else {
        // No words: browse `items` by its own indexes.
        let what = if facets {
            "items.category, count(*)".to_owned()
        } else {
            ITEM_COLUMNS.to_owned()
        };
        b.push(format!("SELECT {what} FROM items WHERE 1 = 1"));
        filters(&mut b, q, "items", "items.stock > 0", facets);
        if facets {
            b.push(FACETS_TAIL);
            return b;
        }
        b.push(format!(" ORDER BY {}", order(q.sort, "items", None)));
        b.push(" LIMIT ").push_bind(i64::from(q.limit));
        return b;
    };
    for p in &h.pieces {
        match p {
            Piece::Sql(s) => {
                b.push(s);
            }
            Piece::Bind(v) => {
                b.push_bind(v.clone());
            }
            Piece::Score(score) => {
                b.push(if facets { "0" } else { score });
            }
        }
    }
    if facets {
        b.push("SELECT hits.category, count(*) FROM hits WHERE 1 = 1");
        filters(&mut b, q, "hits", "hits.in_stock", true);
        b.push(FACETS_TAIL);
        return b;
    }
    let columns = ITEM_COLUMNS
        .split(", ")
        .map(|c| format!("items.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    b.push(format!(
        "SELECT {columns} FROM (SELECT hits.item_id, hits.score, hits.name, hits.price FROM hits WHERE 1 = 1"
    ));
    filters(&mut b, q, "hits", "hits.in_stock", false);
    b.push(format!(
        " ORDER BY {} LIMIT ",
        order(q.sort, "hits", Some(h.best_first))
    ))
    .push_bind(i64::from(q.limit));
    b.push(format!(
        ") hits JOIN items ON items.id = hits.item_id ORDER BY {}",
        order(q.sort, "hits", Some(h.best_first))
    ));
    b
}

const FACETS_TAIL: &str =
    " AND category IS NOT NULL GROUP BY category ORDER BY count(*) DESC, category LIMIT 100";

/// The filters of `q` on `table`'s columns; the facets ignore the category filter.
fn filters(b: &mut QueryBuilder<Db>, q: &SearchQuery, table: &str, in_stock: &str, facets: bool) {
    if let (Some(c), false) = (&q.category, facets) {
        b.push(format!(" AND {table}.category = "))
            .push_bind(c.clone());
    }
    if let Some(p) = q.min_price {
        b.push(format!(" AND {table}.price >= ")).push_bind(p);
    }
    if let Some(p) = q.max_price {
        b.push(format!(" AND {table}.price <= ")).push_bind(p);
    }
    if !q.include_out_of_stock {
        b.push(format!(" AND {in_stock}"));
    }
}

/// The ORDER BY of a sort over `table` (`hits` has `item_id` and, with words, a score that
/// sorts `best_first`).
fn order(sort: SearchSort, table: &str, best_first: Option<&str>) -> String {
    let id = if table == "hits" { "item_id" } else { "id" };
    match (sort, best_first) {
        (SearchSort::Relevance, Some(best)) => {
            format!("{table}.score {best}, {table}.name, {table}.{id}")
        }
        (SearchSort::Relevance | SearchSort::Name, _) => format!("{table}.name, {table}.{id}"),
        (SearchSort::Price, _) => format!("{table}.price, {table}.{id}"),
        (SearchSort::PriceDesc, _) => format!("{table}.price DESC, {table}.{id}"),
    }
}

#[async_trait]
impl SearchStore for Backend {
    async fn search_items(&self, q: &SearchQuery) -> Result<SearchResult> {
        // Read first: a change that commits during the search makes the answer newer than
        // its label, never older, so a cached answer is never used past its generation.
        let generation = self.search_generation().await?;
        let hits = if q.words.is_empty() {
            None
        } else {
            Some(self.hits(&q.words).await?)
        };
        let items = statement(hits.as_ref(), q, false)
            .build_query_as::<ItemRow>()
            .fetch_all(self.reader())
            .await?;
        let categories = statement(hits.as_ref(), q, true)
            .build_query_as::<(String, i64)>()
            .fetch_all(self.reader())
            .await?;
        Ok(SearchResult {
            generation,
            items,
            categories,
        })
    }

    async fn items_at_generation(&self, ids: &[Uuid]) -> Result<(i64, Vec<ItemRow>)> {
        if ids.is_empty() {
            return Ok((self.search_generation().await?, Vec::new()));
        }
        let mut b = QueryBuilder::<Db>::new(format!(
            "SELECT (SELECT n FROM search_generation) AS generation, {ITEM_COLUMNS} FROM items WHERE id IN ("
        ));
        let mut list = b.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        b.push(")");
        let rows = b
            .build_query_as::<AtGeneration>()
            .fetch_all(self.reader())
            .await?;
        match rows.first() {
            Some(first) => {
                let generation = first.generation;
                Ok((generation, rows.into_iter().map(|r| r.item).collect()))
            }
            // Every one of them is gone, which changed the generation.
            None => Ok((self.search_generation().await?, Vec::new())),
        }
    }
}

impl Backend {
    async fn search_generation(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar::<Db, i64>("SELECT n FROM search_generation")
                .fetch_one(self.reader())
                .await?,
        )
    }
}
