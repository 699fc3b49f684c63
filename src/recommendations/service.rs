//! The consumer that keeps the counts, and the two reads: an item's partners and a
//! customer's recommendations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::MIN_SUPPORT;
use super::store::PairRow;
use crate::clock::Clock;
use crate::error::ApiResult;
use crate::events::outbox::Outbox;
use crate::inventory::store::ItemRow;
use crate::jobs::{Job, Tick};
use crate::orders::store::STATUS_EVENT;
use crate::storage::DynStore;

/// The consumer's name in `outbox_cursors` and for its lease.
pub const CONSUMER: &str = "recommendations";
/// Events read per batch.
const BATCH: u32 = 500;
/// Most history items a customer's recommendations start from, and most pairs read.
const SEEDS: u32 = 100;
const PAIRS: u32 = 2000;

/// What a customer's recommendations are based on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    BoughtTogether,
    /// No history (or nothing bought with it yet): the best-sellers.
    Popular,
}

#[derive(Clone)]
pub struct RecommendationService {
    store: DynStore,
    clock: Arc<dyn Clock>,
}

/// `n(i, j) / sqrt(n(i) · n(j))`.
fn cosine(p: &PairRow) -> f64 {
    let denominator = ((p.item_orders.max(1) as f64) * (p.other_orders.max(1) as f64)).sqrt();
    p.together as f64 / denominator
}

/// Partners ranked by their summed cosine over all seeds, best first; `exclude` never.
fn rank(pairs: &[PairRow], exclude: &HashSet<Uuid>) -> Vec<(Uuid, f64)> {
    let mut score: HashMap<Uuid, f64> = HashMap::new();
    for p in pairs.iter().filter(|p| !exclude.contains(&p.other_id)) {
        *score.entry(p.other_id).or_default() += cosine(p);
    }
    let mut ranked: Vec<(Uuid, f64)> = score.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

impl RecommendationService {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        RecommendationService { store, clock }
    }

    /// Items bought with `item`, best first, in stock, none of `exclude`.
    pub async fn bought_together(
        &self,
        item: Uuid,
        exclude: &[Uuid],
        limit: u32,
    ) -> ApiResult<Vec<ItemRow>> {
        let pairs = self.store.partners(&[item], MIN_SUPPORT, PAIRS).await?;
        let mut never: HashSet<Uuid> = exclude.iter().copied().collect();
        never.insert(item);
        self.in_stock(rank(&pairs, &never), limit).await
    }

    /// A customer's recommendations, from what it bought and wished for.
    pub async fn for_customer(
        &self,
        customer: Uuid,
        limit: u32,
    ) -> ApiResult<(Basis, Vec<ItemRow>)> {
        let bought = self.store.bought(customer, SEEDS).await?;
        let wished = self.store.wished(customer).await?;
        let never: HashSet<Uuid> = bought.iter().chain(&wished).copied().collect();
        let seeds: Vec<Uuid> = bought
            .iter()
            .chain(&wished)
            .copied()
            .take(SEEDS as usize)
            .collect();
        let pairs = self.store.partners(&seeds, MIN_SUPPORT, PAIRS).await?;
        let found = self.in_stock(rank(&pairs, &never), limit).await?;
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

    /// The ranked items that are in stock, in rank order, at most `limit`.
    async fn in_stock(&self, ranked: Vec<(Uuid, f64)>, limit: u32) -> ApiResult<Vec<ItemRow>> {
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
            .record_purchases(CONSUMER, &placed, batch.end, r.clock.ts())
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

    fn pair(other: u128, together: i64, a: i64, b: i64) -> PairRow {
        PairRow {
            item_id: Uuid::from_u128(1),
            other_id: Uuid::from_u128(other),
            together,
            item_orders: a,
            other_orders: b,
        }
    }

    #[test]
    fn best_sellers_do_not_drown_the_rest() {
        // 2 of 8 orders of A hold the best-seller E (in 100 orders), 2 hold C (in 2).
        let pairs = [pair(5, 2, 8, 100), pair(3, 2, 8, 2), pair(2, 3, 8, 3)];
        let ranked = rank(&pairs, &HashSet::new());
        let order: Vec<u128> = ranked.iter().map(|r| r.0.as_u128()).collect();
        assert_eq!(order, vec![2, 3, 5]);
        assert!((ranked[1].1 - 0.5).abs() < 1e-9);
        let never: HashSet<Uuid> = [Uuid::from_u128(2)].into();
        assert_eq!(rank(&pairs, &never)[0].0, Uuid::from_u128(3));
    }
}
