// SQL of the search module, compiled once per backend (see `storage`). The backends differ
// only in how they find the matching items (`Backend::hits`).

use async_trait::async_trait;
use sqlx::QueryBuilder;

use uuid::Uuid;

use super::{AtGeneration, SearchResult, SearchStore};
use crate::inventory::store::{ITEM_COLUMNS, ItemRow};
use crate::search::domain::{SearchQuery, SearchSort};
use crate::storage::Result;

/// The search statement: the items (`facets` false) or the per-category counts.
fn statement(hits: Option<&Hits>, q: &SearchQuery, facets: bool) -> QueryBuilder<Db> {
    let mut b = QueryBuilder::<Db>::new("");
    let what = if facets {
        "items.category, count(*)".to_owned()
    } else {
        ITEM_COLUMNS.to_owned()
    };
    match hits {
        Some(h) => {
            for p in &h.pieces {
                match p {
                    Piece::Sql(s) => {
                        b.push(s);
                    }
                    Piece::Bind(v) => {
                        b.push_bind(v.clone());
                    }
                }
            }
            b.push(format!(
                "SELECT {what} FROM hits JOIN items ON items.id = hits.item_id WHERE 1 = 1"
            ));
        }
        None => {
            b.push(format!("SELECT {what} FROM items WHERE 1 = 1"));
        }
    }
    if let (Some(c), false) = (&q.category, facets) {
        b.push(" AND items.category = ").push_bind(c.clone());
    }
    if let Some(p) = q.min_price {
        b.push(" AND items.price >= ").push_bind(p);
    }
    if let Some(p) = q.max_price {
        b.push(" AND items.price <= ").push_bind(p);
    }
    if !q.include_out_of_stock {
        b.push(" AND items.stock > 0");
    }
    if facets {
        b.push(
            " AND items.category IS NOT NULL GROUP BY items.category \
             ORDER BY count(*) DESC, items.category LIMIT 100",
        );
        return b;
    }
    match (q.sort, hits) {
        (SearchSort::Relevance, Some(h)) => {
            b.push(format!(
                " ORDER BY hits.score {}, items.name, items.id",
                h.best_first
            ));
        }
        (SearchSort::Relevance | SearchSort::Name, _) => {
            b.push(" ORDER BY items.name, items.id");
        }
        (SearchSort::Price, _) => {
            b.push(" ORDER BY items.price, items.id");
        }
        (SearchSort::PriceDesc, _) => {
            b.push(" ORDER BY items.price DESC, items.id");
        }
    }
    b.push(" LIMIT ").push_bind(i64::from(q.limit));
    b
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
