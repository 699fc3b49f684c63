//! The consumer that keeps the counts, and the two reads: an item's partners and a
//! customer's recommendations.
//!
//! Reads go through each item's neighbours: its `NEIGHBOURS` best partners by cosine,
//! computed from the counts in one statement and kept by each node for the counts'
//! generation (the position of the last event that changed them, `outbox_cursors`
//! `recommendations.counts`, written with the counts). A read takes the generation first,
//! so a list is never older than the counts; a batch of newly placed orders moves the
//! generation and the lists are computed again when next asked for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store::PairRow;
use super::{BOUGHT, MIN_SUPPORT};
use crate::cache::{GenerationCache, TaggedCache};
use crate::clock::Clock;
use crate::events::outbox::Outbox;
use crate::inventory::store::ItemRow;
use crate::jobs::{Job, Tick};
use crate::orders::store::STATUS_EVENT;
use crate::storage::{DynStore, Result as StoreResult};

/// The consumer's name in `outbox_cursors` and for its lease.
pub const CONSUMER: &str = "recommendations";
/// The counts' generation in `outbox_cursors`: the position of the last batch that changed them.
pub const COUNTS: &str = "recommendations.counts";
/// Events read per batch.
const BATCH: u32 = 500;
/// Most history items a customer's recommendations start from.
const SEEDS: u32 = 100;
/// Partners kept per item (the model's k): the best by cosine.
pub const NEIGHBOURS: u32 = 100;
/// Items whose neighbours a node keeps.
const CACHED_ITEMS: usize = 50_000;
/// Customers whose bought items a node keeps.
const CACHED_CUSTOMERS: usize = 50_000;

/// What a customer's recommendations are based on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    BoughtTogether,
    /// No history (or nothing bought with it yet): the best-sellers.
    Popular,
}

/// An item's neighbours with their cosine, best first.
type Neighbours = Vec<(Uuid, f64)>;

#[derive(Clone)]
pub struct RecommendationService {
    store: DynStore,
    clock: Arc<dyn Clock>,
    neighbours: Arc<GenerationCache<Uuid, Neighbours>>,
    /// Per customer, for its newest live order: the items of its latest orders.
    bought: Arc<TaggedCache<Uuid, Option<Uuid>, Vec<Uuid>>>,
}

/// `n(i, j) / sqrt(n(i) · n(j))`.
fn cosine(p: &PairRow) -> f64 {
    let denominator = ((p.item_orders.max(1) as f64) * (p.other_orders.max(1) as f64)).sqrt();
    p.together as f64 / denominator
}

/// Partners ranked by their summed cosine over all lists, best first; `exclude` never.
fn rank<'a>(
    lists: impl IntoIterator<Item = &'a Neighbours>,
    exclude: &HashSet<Uuid>,
) -> Vec<(Uuid, f64)> {
    let mut score: HashMap<Uuid, f64> = HashMap::new();
    for (id, s) in lists.into_iter().flatten() {
        if !exclude.contains(id) {
            *score.entry(*id).or_default() += s;
        }
    }
    let mut ranked: Vec<(Uuid, f64)> = score.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

impl RecommendationService {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        RecommendationService {
            store,
            clock,
            neighbours: Arc::new(GenerationCache::new(CACHED_ITEMS)),
            bought: Arc::new(TaggedCache::new(CACHED_CUSTOMERS)),
        }
    }

    /// The items of the customer's latest orders, most recent first, at most `limit`
    /// (≤ `BOUGHT`), for its newest live order `newest` (read before). Each node keeps them
    /// per customer for that order: a new order changes it, and nothing else changes the
    /// items (order lines never change; moving to the history keeps them; a cancel keeps
    /// them, see `RECENT_ORDERS`).
    async fn bought(
        &self,
        customer: Uuid,
        newest: Option<Uuid>,
        limit: usize,
    ) -> StoreResult<Vec<Uuid>> {
        let items = match self.bought.get(&customer, &newest) {
            Some(items) => items,
            None => {
                let items = Arc::new(self.store.bought(customer, BOUGHT as u32).await?);
                self.bought.remember(customer, newest, items.clone());
                items
            }
        };
        Ok(items.iter().take(limit).copied().collect())
    }

    /// Items bought with `item`, best first, in stock; for a customer, none it bought.
    #[tracing::instrument(skip_all, fields(item_id = %item))]
    pub async fn bought_together(
        &self,
        item: Uuid,
        customer: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ItemRow>> {
        let inputs = self.store.recommendation_inputs(COUNTS, customer).await?;
        let mut never: HashSet<Uuid> = match customer {
            Some(c) => self
                .bought(c, inputs.newest_order, BOUGHT)
                .await?
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        never.insert(item);
        let lists = self.neighbours(&[item], inputs.generation).await?;
        self.in_stock(rank(lists.iter().map(|l| l.as_ref()), &never), limit)
            .await
    }

    /// A customer's recommendations, from what it bought and wished for.
    #[tracing::instrument(skip_all, fields(customer_id = %customer))]
    pub async fn for_customer(
        &self,
        customer: Uuid,
        limit: u32,
    ) -> StoreResult<(Basis, Vec<ItemRow>)> {
        let inputs = self
            .store
            .recommendation_inputs(COUNTS, Some(customer))
            .await?;
        let bought = self
            .bought(customer, inputs.newest_order, SEEDS as usize)
            .await?;
        let wished = inputs.wished;
        let never: HashSet<Uuid> = bought.iter().chain(&wished).copied().collect();
        let seeds: Vec<Uuid> = bought
            .iter()
            .chain(&wished)
            .copied()
            .take(SEEDS as usize)
            .collect();
        let lists = self.neighbours(&seeds, inputs.generation).await?;
        let found = self
            .in_stock(rank(lists.iter().map(|l| l.as_ref()), &never), limit)
            .await?;
        if !found.is_empty() {
            return Ok((Basis::BoughtTogether, found));
        }
        let popular = self
            .store
            .best_sellers(limit + never.len().min(500) as u32)
            .await?
            .into_iter()
            .filter(|i| !never.contains(&i.id))
            .take(limit as usize)
            .collect();
        Ok((Basis::Popular, popular))
    }

    /// The neighbours of these items as of the counts' `generation` (read before): those
    /// this node has for it, the others read in one statement (and kept).
    async fn neighbours(
        &self,
        items: &[Uuid],
        generation: i64,
    ) -> StoreResult<Vec<Arc<Neighbours>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut lists = Vec::with_capacity(items.len());
        let mut missing = Vec::new();
        for item in items {
            match self.neighbours.get_at(item, generation) {
                Some(list) => lists.push(list),
                None => missing.push(*item),
            }
        }
        let hits = (items.len() - missing.len()) as u64;
        metrics::counter!("ordo_recommendations_neighbours_total", "outcome" => "hit")
            .increment(hits);
        metrics::counter!("ordo_recommendations_neighbours_total", "outcome" => "miss")
            .increment(missing.len() as u64);
        if missing.is_empty() {
            return Ok(lists);
        }
        let mut read: HashMap<Uuid, Neighbours> = HashMap::new();
        for p in self
            .store
            .neighbours(&missing, MIN_SUPPORT, NEIGHBOURS)
            .await?
        {
            read.entry(p.item_id)
                .or_default()
                .push((p.other_id, cosine(&p)));
        }
        for item in missing {
            let mut list = read.remove(&item).unwrap_or_default();
            list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let list = Arc::new(list);
            self.neighbours.remember(item, generation, list.clone());
            lists.push(list);
        }
        Ok(lists)
    }

    /// The ranked items that are in stock, in rank order, at most `limit`.
    async fn in_stock(&self, ranked: Vec<(Uuid, f64)>, limit: u32) -> StoreResult<Vec<ItemRow>> {
        // Read a few more than asked for: some may be out of stock.
        let wanted: Vec<Uuid> = ranked
            .iter()
            .take(limit as usize * 2 + 20)
            .map(|r| r.0)
            .collect();
        let mut rows: HashMap<Uuid, ItemRow> = self
            .store
            .items_in_stock(&wanted)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        Ok(wanted
            .iter()
            .filter_map(|id| rows.remove(id))
            .take(limit as usize)
            .collect())
    }
}

/// The consumer that keeps the counts up to date with the event log: a job of one node at
/// a time (`jobs.rs`).
pub struct Consumer(RecommendationService);

impl Consumer {
    pub fn new(service: RecommendationService) -> Self {
        Consumer(service)
    }
}

impl Job for Consumer {
    type Run = Outbox;

    async fn begin(&mut self) -> anyhow::Result<Outbox> {
        Ok(Outbox::after(
            self.0.store.cursor(CONSUMER).await?.unwrap_or(0),
        ))
    }

    async fn tick(&mut self, outbox: &mut Outbox, _: &CancellationToken) -> anyhow::Result<Tick> {
        let r = &self.0;
        let batch = outbox.peek(r.store.as_ref(), BATCH).await?;
        if batch.rows.is_empty() {
            return Ok(Tick::Idle);
        }
        // An order counts once, when it becomes `placed` (paid).
        let placed: Vec<Uuid> = batch
            .rows
            .iter()
            .filter(|e| e.event == STATUS_EVENT && e.status == "placed")
            .map(|e| e.order_id)
            .collect();
        // The position is stored with the counts, in one transaction.
        r.store
            .record_purchases(CONSUMER, COUNTS, &placed, batch.end, r.clock.ts())
            .await?;
        outbox.advance(batch.end);
        metrics::gauge!("ordo_recommendations_position").set(batch.end as f64);
        Ok(if batch.rows.len() == BATCH as usize {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(other: u128, together: i64, a: i64, b: i64) -> (Uuid, f64) {
        let p = PairRow {
            item_id: Uuid::from_u128(1),
            other_id: Uuid::from_u128(other),
            together,
            item_orders: a,
            other_orders: b,
        };
        (p.other_id, cosine(&p))
    }

    #[test]
    fn best_sellers_do_not_drown_the_rest() {
        // 2 of 8 orders of A hold the best-seller E (in 100 orders), 2 hold C (in 2).
        let pairs = vec![pair(5, 2, 8, 100), pair(3, 2, 8, 2), pair(2, 3, 8, 3)];
        let ranked = rank([&pairs], &HashSet::new());
        let order: Vec<u128> = ranked.iter().map(|r| r.0.as_u128()).collect();
        assert_eq!(order, vec![2, 3, 5]);
        assert!((ranked[1].1 - 0.5).abs() < 1e-9);
        let never: HashSet<Uuid> = [Uuid::from_u128(2)].into();
        assert_eq!(rank([&pairs], &never)[0].0, Uuid::from_u128(3));
        // Over several lists the scores add up.
        let other = vec![pair(3, 2, 8, 2)];
        assert_eq!(
            rank([&pairs, &other], &HashSet::new())[0].0,
            Uuid::from_u128(3)
        );
    }
}
