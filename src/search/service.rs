//! Search with a per-node answer cache that is never stale.
//!
//! A search that matches thousands of items must rank all of them and count them per
//! category; the same few hundred searches make most of a shop's traffic. Each node keeps
//! the ranked ids and the facets of recent searches with the search generation they were
//! computed at (migration 0013: a counter bumped in the transaction of every item change
//! that can change an answer). A repeated search reads the generation and the listed items'
//! rows in one statement: when the generation is unchanged, the cached ranking still holds
//! and the rows are current (stock and price as of that statement); otherwise the search
//! runs again. Nodes share nothing but the database, so every node sees every change, and a
//! caller always sees its own writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use super::domain::SearchQuery;
use super::store::SearchResult;
use crate::cache::GenerationCache;
use crate::storage::{DynStore, Result};

/// One cached answer.
struct Cached {
    ids: Vec<Uuid>,
    categories: Vec<(String, i64)>,
}

#[derive(Clone)]
pub struct SearchService {
    store: DynStore,
    /// Answers by query (`ORDO_SEARCH_CACHE_ENTRIES`; 0 turns the cache off).
    cache: Arc<GenerationCache<SearchQuery, Cached>>,
    /// Searches answered from the cache (also `ordo_search_cache_total{outcome="hit"}`).
    hits: Arc<AtomicU64>,
}

impl SearchService {
    pub fn new(store: DynStore, capacity: usize) -> Self {
        SearchService {
            store,
            cache: Arc::new(GenerationCache::new(capacity)),
            hits: Arc::default(),
        }
    }

    #[tracing::instrument(skip_all, fields(words = q.words.len()))]
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchResult> {
        if !self.cache.enabled() {
            return self.store.search_items(q).await;
        }
        if let Some((at, c)) = self.cache.get(q) {
            let (generation, rows) = self.store.items_at_generation(&c.ids).await?;
            if generation == at {
                metrics::counter!("ordo_search_cache_total", "outcome" => "hit").increment(1);
                self.hits.fetch_add(1, Ordering::Relaxed);
                let mut by_id: HashMap<Uuid, _> = rows.into_iter().map(|r| (r.id, r)).collect();
                return Ok(SearchResult {
                    generation,
                    items: c.ids.iter().filter_map(|id| by_id.remove(id)).collect(),
                    categories: c.categories.clone(),
                });
            }
            self.cache.saw(generation);
        }
        metrics::counter!("ordo_search_cache_total", "outcome" => "miss").increment(1);
        let found = self.store.search_items(q).await?;
        self.cache.remember(
            q.clone(),
            found.generation,
            Arc::new(Cached {
                ids: found.items.iter().map(|i| i.id).collect(),
                categories: found.categories.clone(),
            }),
        );
        Ok(found)
    }

    /// Searches this node answered from its cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}
