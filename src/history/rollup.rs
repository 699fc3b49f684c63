//! Rollups of the order history: what the analytics summary needs of archived orders, per
//! UTC day of creation, so that a summary over a long history reads a few rows per day
//! instead of every archived order (issue 15: "maintained rollups").
//!
//! - **Kept in step.** A move into the history adds the batch's [`Delta`], a move back
//!   subtracts it, in the transaction that deletes the orders from one side (see
//!   `history::store`). Archived orders have ended, so nothing else changes what they add.
//! - **Exact medians.** Medians do not add up, so each archived order's two durations are
//!   kept (`history_durations`) with a count per 2 %-wide [`bucket`] and day. A median counts
//!   its way to the bucket that holds the middle rank, then reads that bucket's exact values
//!   only ([`Durations`]).
//! - **Reads.** A summary reads the range's whole days from the rollups plus the live
//!   orders, and its partial first and last days from every order (`books::queries`).

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::storage::Ts;

/// Placed → shipped.
pub const KIND_SHIP: i16 = 1;
/// Shipped → delivered.
pub const KIND_DELIVER: i16 = 2;

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// Rollup rows per UTC day, and per UTC month (their `day` is the period's first midnight).
pub const GRAIN_DAY: i16 = 1;
pub const GRAIN_MONTH: i16 = 2;
pub const GRAINS: [i16; 2] = [GRAIN_DAY, GRAIN_MONTH];

/// Each bucket's upper bound is this times its lower one.
const GROWTH: f64 = 1.02;

/// The bucket of a duration: 0 below a second, then 2 %-wide buckets. Larger durations
/// never fall in a smaller bucket, so values sorted by bucket are sorted.
pub fn bucket(us: i64) -> i32 {
    if us < 1_000_000 {
        return 0;
    }
    let secs = us as f64 / 1_000_000.0;
    // A duration of a year is bucket 873; the cast cannot truncate for real durations.
    1 + (secs.ln() / GROWTH.ln()).floor() as i32
}

/// Midnight (UTC) of the day `t` falls on, in microseconds.
pub fn day_of(t: Ts) -> i64 {
    t.micros().div_euclid(DAY_US) * DAY_US
}

/// The first midnight of the month `t` falls in.
pub fn month_of(t: Ts) -> i64 {
    let day = Ts::from_micros(day_of(t)).map_or(t.0, |d| d.0);
    let first = day.replace_day(1).unwrap_or(day);
    Ts(first).micros()
}

/// The first midnight of the month after the one `t` falls in.
fn next_month(t: Ts) -> i64 {
    let first = Ts::from_micros(month_of(t)).map_or(t.0, |d| d.0);
    let (y, m) = (first.year(), first.month());
    let (y, m) = if m == time::Month::December {
        (y + 1, time::Month::January)
    } else {
        (y, m.next())
    };
    Ts(first
        .replace_day(1)
        .and_then(|d| d.replace_month(m))
        .and_then(|d| d.replace_year(y))
        .unwrap_or(first))
    .micros()
}

/// The start of the period of `grain` that `t` falls in.
pub fn period_of(grain: i16, t: Ts) -> i64 {
    if grain == GRAIN_MONTH {
        month_of(t)
    } else {
        day_of(t)
    }
}

/// The rollup rows that make up the whole days `[from, to)` (either end open): whole
/// months from month rows, the days around them from day rows. Each is (grain, first
/// period start, end), `None` meaning open.
pub fn segments(from: Option<Ts>, to: Option<Ts>) -> Vec<(i16, Option<Ts>, Option<Ts>)> {
    let ts = |us: i64| Ts::from_micros(us).ok();
    // The first whole month: the one `from` starts, or the next.
    let first = from.map(|f| {
        if month_of(f) == f.micros() {
            f.micros()
        } else {
            next_month(f)
        }
    });
    let last = to.map(month_of);
    if let (Some(f), Some(l)) = (first, last)
        && f >= l
    {
        return vec![(GRAIN_DAY, from, to)];
    }
    let mut out = vec![(GRAIN_MONTH, first.and_then(ts), last.and_then(ts))];
    if let (Some(from), Some(f)) = (from, first)
        && from.micros() < f
    {
        out.push((GRAIN_DAY, Some(from), ts(f)));
    }
    if let (Some(to), Some(l)) = (to, last)
        && l < to.micros()
    {
        out.push((GRAIN_DAY, ts(l), Some(to)));
    }
    out
}

/// The first midnight at or after `t`.
pub fn next_midnight(t: Ts) -> i64 {
    let us = t.micros();
    us.div_euclid(DAY_US) * DAY_US
        + if us.rem_euclid(DAY_US) == 0 {
            0
        } else {
            DAY_US
        }
}

/// Microseconds from `a` to `b`, when both happened in that order.
pub fn duration_us(a: Option<Ts>, b: Option<Ts>) -> Option<i64> {
    let us = b?.micros() - a?.micros();
    (us >= 0).then_some(us)
}

/// What one order adds to the rollups.
#[derive(Clone, Debug)]
pub struct OrderFacts {
    pub id: Uuid,
    pub created_at: Ts,
    pub status: String,
    pub currency: String,
    pub paid: bool,
    pub total: i64,
    /// When it first became `placed`, `shipped` and `delivered` (from its timeline).
    pub placed: Option<Ts>,
    pub shipped: Option<Ts>,
    pub delivered: Option<Ts>,
}

/// One order line.
#[derive(Clone, Debug)]
pub struct LineFacts {
    pub order_id: Uuid,
    pub item_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
}

/// One archived order's duration of one kind.
#[derive(Clone, Debug, PartialEq)]
pub struct DurationRow {
    pub order_id: Uuid,
    pub kind: i16,
    pub day: i64,
    pub bucket: i32,
    pub us: i64,
}

/// Counts per order status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderCounts {
    pub orders: i64,
    pub paid: i64,
    pub revenue: i64,
}

/// What a batch of orders adds to the rollups (or, moved back, takes from them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    /// (grain, period, status, currency)
    pub orders: BTreeMap<(i16, i64, String, String), OrderCounts>,
    /// (grain, period, item) → (sku, name, units)
    pub items: BTreeMap<(i16, i64, Uuid), (String, String, i64)>,
    /// (kind, grain, period, bucket) → orders
    pub durations: BTreeMap<(i16, i16, i64, i32), i64>,
    pub rows: Vec<DurationRow>,
}

impl Delta {
    pub fn of(orders: &[OrderFacts], lines: &[LineFacts]) -> Delta {
        let mut d = Delta::default();
        let mut paid = BTreeMap::new();
        for o in orders {
            let day = day_of(o.created_at);
            let durations = [
                (KIND_SHIP, duration_us(o.placed, o.shipped)),
                (KIND_DELIVER, duration_us(o.shipped, o.delivered)),
            ];
            for grain in GRAINS {
                let period = period_of(grain, o.created_at);
                let c = d
                    .orders
                    .entry((grain, period, o.status.clone(), o.currency.clone()))
                    .or_default();
                c.orders += 1;
                if o.paid {
                    c.paid += 1;
                    c.revenue += o.total;
                }
                for (kind, us) in durations {
                    if let Some(us) = us {
                        *d.durations
                            .entry((kind, grain, period, bucket(us)))
                            .or_default() += 1;
                    }
                }
            }
            if o.paid {
                paid.insert(o.id, o.created_at);
            }
            for (kind, us) in durations {
                let Some(us) = us else { continue };
                d.rows.push(DurationRow {
                    order_id: o.id,
                    kind,
                    day,
                    bucket: bucket(us),
                    us,
                });
            }
        }
        for l in lines {
            let Some(created) = paid.get(&l.order_id) else {
                continue;
            };
            for grain in GRAINS {
                add_units(
                    &mut d.items,
                    (grain, period_of(grain, *created), l.item_id),
                    (l.sku.clone(), l.name.clone(), l.quantity),
                );
            }
        }
        d
    }
}

/// Adds units sold of an item under `key`: (SKU, name, units). An item is named by its
/// greatest SKU and name, as the summary's `max()` does.
pub fn add_units<K: Ord>(
    items: &mut BTreeMap<K, (String, String, i64)>,
    key: K,
    (sku, name, units): (String, String, i64),
) {
    let e = items
        .entry(key)
        .or_insert_with(|| (sku.clone(), name.clone(), 0));
    if sku > e.0 {
        e.0 = sku;
    }
    if name > e.1 {
        e.1 = name;
    }
    e.2 += units;
}

impl Delta {
    /// Adds `other`'s counts to these and takes its duration rows.
    pub fn absorb(&mut self, other: Delta) {
        for (k, n) in other.orders {
            let c = self.orders.entry(k).or_default();
            c.orders += n.orders;
            c.paid += n.paid;
            c.revenue += n.revenue;
        }
        for (k, sold) in other.items {
            add_units(&mut self.items, k, sold);
        }
        for (k, n) in other.durations {
            *self.durations.entry(k).or_default() += n;
        }
        self.rows.extend(other.rows);
    }
}

/// Durations of one kind in a summary: exact values (live orders, partial days) and
/// archived ones counted per bucket.
#[derive(Clone, Debug, Default)]
pub struct Durations {
    pub exact: Vec<i64>,
    pub archived: BTreeMap<i32, i64>,
}

impl Durations {
    fn total(&self) -> i64 {
        self.exact.len() as i64 + self.archived.values().sum::<i64>()
    }

    /// The ranks (0-based, in ascending order) whose values make the median.
    fn ranks(&self) -> Vec<i64> {
        let n = self.total();
        match n {
            0 => vec![],
            _ if n % 2 == 1 => vec![n / 2],
            _ => vec![n / 2 - 1, n / 2],
        }
    }

    /// The exact values per bucket, sorted.
    fn exact_by_bucket(&self) -> BTreeMap<i32, Vec<i64>> {
        let mut by: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for us in &self.exact {
            by.entry(bucket(*us)).or_default().push(*us);
        }
        for v in by.values_mut() {
            v.sort_unstable();
        }
        by
    }

    /// The bucket holding `rank`, and the rank within it.
    fn locate(&self, exact: &BTreeMap<i32, Vec<i64>>, rank: i64) -> Option<(i32, i64)> {
        let mut buckets: Vec<i32> = exact.keys().chain(self.archived.keys()).copied().collect();
        buckets.sort_unstable();
        buckets.dedup();
        let mut below = 0;
        for b in buckets {
            let n = exact.get(&b).map_or(0, |v| v.len() as i64)
                + self.archived.get(&b).copied().unwrap_or(0);
            if rank < below + n {
                return Some((b, rank - below));
            }
            below += n;
        }
        None
    }

    /// The buckets whose archived values the median needs.
    pub fn buckets_needed(&self) -> Vec<i32> {
        let exact = self.exact_by_bucket();
        let mut out: Vec<i32> = self
            .ranks()
            .into_iter()
            .filter_map(|r| self.locate(&exact, r))
            .map(|(b, _)| b)
            .filter(|b| self.archived.get(b).is_some_and(|n| *n > 0))
            .collect();
        out.dedup();
        out
    }

    /// The median in minutes, given the archived values of [`Self::buckets_needed`];
    /// `None` when there are no durations, `Err` when the values read do not match the
    /// counts (rollups out of step with the history).
    pub fn median_minutes(
        &self,
        archived: &BTreeMap<i32, Vec<i64>>,
    ) -> Result<Option<f64>, String> {
        let exact = self.exact_by_bucket();
        let mut values = Vec::new();
        for rank in self.ranks() {
            let (b, at) = self
                .locate(&exact, rank)
                .ok_or_else(|| format!("rank {rank} beyond the durations"))?;
            let mut all = exact.get(&b).cloned().unwrap_or_default();
            let counted = self.archived.get(&b).copied().unwrap_or(0);
            if counted > 0 {
                let read = archived
                    .get(&b)
                    .ok_or_else(|| format!("bucket {b} was not read"))?;
                if read.len() as i64 != counted {
                    return Err(format!(
                        "bucket {b}: {} durations stored, {counted} counted",
                        read.len()
                    ));
                }
                all.extend(read);
                all.sort_unstable();
            }
            let us = all
                .get(usize::try_from(at).map_err(|e| e.to_string())?)
                .ok_or_else(|| format!("rank {at} beyond bucket {b}"))?;
            values.push(*us as f64 / 60_000_000.0);
        }
        Ok(match values.as_slice() {
            [] => None,
            [m] => Some(*m),
            [a, b] => Some((a + b) / 2.0),
            _ => unreachable!("a median has one or two middle values"),
        })
    }
}

/// How a summary over `[from, to)` is read: whole days from the rollups (and the live
/// orders), the partial days at either end from every order.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Ranges read exactly from live and archived orders.
    pub exact: Vec<(Option<Ts>, Option<Ts>)>,
    /// Whole days `[first, last)` (`None`: open), read from the rollups and live orders.
    pub days: Option<(Option<Ts>, Option<Ts>)>,
}

pub fn split(from: Option<Ts>, to: Option<Ts>) -> Split {
    let ts = |us: i64| Ts::from_micros(us).ok();
    let first = from.map(next_midnight);
    let last = to.map(day_of);
    if let (Some(f), Some(l)) = (first, last)
        && f >= l
    {
        return Split {
            exact: vec![(from, to)],
            days: None,
        };
    }
    let mut exact = Vec::new();
    if let (Some(from), Some(f)) = (from, first)
        && from.micros() < f
    {
        exact.push((Some(from), ts(f)));
    }
    if let (Some(to), Some(l)) = (to, last)
        && l < to.micros()
    {
        exact.push((ts(l), Some(to)));
    }
    Split {
        exact,
        days: Some((first.and_then(ts), last.and_then(ts))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: i64) -> Ts {
        Ts::from_micros(us).unwrap()
    }

    #[test]
    fn buckets_keep_the_order_of_durations() {
        let mut last = bucket(0);
        assert_eq!(last, 0);
        for us in (0..400).map(|i| (1.07f64.powi(i) * 1000.0) as i64) {
            let b = bucket(us);
            assert!(b >= last, "{us} fell below the bucket before");
            last = b;
        }
        // 2 % wide: a value and one 3 % larger never share a bucket above a second.
        assert_ne!(bucket(100_000_000), bucket(103_000_000));
    }

    #[test]
    fn days_are_utc_midnights() {
        assert_eq!(day_of(at(DAY_US + 5)), DAY_US);
        assert_eq!(day_of(at(-5)), -DAY_US);
        assert_eq!(next_midnight(at(DAY_US)), DAY_US);
        assert_eq!(next_midnight(at(DAY_US + 1)), 2 * DAY_US);
    }

    #[test]
    fn a_range_splits_into_whole_days_and_exact_ends() {
        let s = split(Some(at(DAY_US / 2)), Some(at(3 * DAY_US + 7)));
        assert_eq!(
            s.exact,
            vec![
                (Some(at(DAY_US / 2)), Some(at(DAY_US))),
                (Some(at(3 * DAY_US)), Some(at(3 * DAY_US + 7)))
            ]
        );
        assert_eq!(s.days, Some((Some(at(DAY_US)), Some(at(3 * DAY_US)))));
        // Within one day: all exact.
        let s = split(Some(at(5)), Some(at(9)));
        assert_eq!(s.exact, vec![(Some(at(5)), Some(at(9)))]);
        assert_eq!(s.days, None);
        // Open ends and midnights: no exact part.
        let s = split(None, Some(at(2 * DAY_US)));
        assert!(s.exact.is_empty());
        assert_eq!(s.days, Some((None, Some(at(2 * DAY_US)))));
        assert_eq!(split(None, None).days, Some((None, None)));
    }

    #[test]
    fn whole_months_come_from_month_rows() {
        use time::macros::datetime;
        let t = |d: time::OffsetDateTime| Ts(d);
        assert_eq!(
            month_of(t(datetime!(2026-03-17 10:00 UTC))),
            t(datetime!(2026-03-01 0:00 UTC)).micros()
        );
        assert_eq!(
            next_month(t(datetime!(2026-12-31 23:00 UTC))),
            t(datetime!(2027-01-01 0:00 UTC)).micros()
        );
        let s = segments(
            Some(t(datetime!(2026-01-20 0:00 UTC))),
            Some(t(datetime!(2026-04-03 0:00 UTC))),
        );
        assert_eq!(
            s,
            vec![
                (
                    GRAIN_MONTH,
                    Some(t(datetime!(2026-02-01 0:00 UTC))),
                    Some(t(datetime!(2026-04-01 0:00 UTC)))
                ),
                (
                    GRAIN_DAY,
                    Some(t(datetime!(2026-01-20 0:00 UTC))),
                    Some(t(datetime!(2026-02-01 0:00 UTC)))
                ),
                (
                    GRAIN_DAY,
                    Some(t(datetime!(2026-04-01 0:00 UTC))),
                    Some(t(datetime!(2026-04-03 0:00 UTC)))
                ),
            ]
        );
        // No whole month: days only; open ends: months only.
        let (a, b) = (
            t(datetime!(2026-01-20 0:00 UTC)),
            t(datetime!(2026-02-10 0:00 UTC)),
        );
        assert_eq!(
            segments(Some(a), Some(b)),
            vec![(GRAIN_DAY, Some(a), Some(b))]
        );
        assert_eq!(segments(None, None), vec![(GRAIN_MONTH, None, None)]);
        let m = t(datetime!(2026-02-01 0:00 UTC));
        assert_eq!(segments(Some(m), None), vec![(GRAIN_MONTH, Some(m), None)]);
    }

    fn facts(day: i64, status: &str, paid: bool, ship_us: Option<i64>) -> OrderFacts {
        let placed = at(day * DAY_US + 60_000_000);
        OrderFacts {
            id: Uuid::new_v4(),
            created_at: placed,
            status: status.into(),
            currency: "USD".into(),
            paid,
            total: 500,
            placed: Some(placed),
            shipped: ship_us.map(|us| at(placed.micros() + us)),
            delivered: None,
        }
    }

    #[test]
    fn a_delta_counts_orders_revenue_items_and_durations() {
        let a = facts(1, "delivered", true, Some(7_200_000_000));
        let b = facts(1, "canceled", false, None);
        let lines = [
            LineFacts {
                order_id: a.id,
                item_id: Uuid::nil(),
                sku: "A".into(),
                name: "Apple".into(),
                quantity: 3,
            },
            LineFacts {
                order_id: b.id,
                item_id: Uuid::nil(),
                sku: "A".into(),
                name: "Apple".into(),
                quantity: 9,
            },
        ];
        let d = Delta::of(&[a.clone(), b], &lines);
        let day = DAY_US;
        let month = 0;
        assert_eq!(
            d.orders[&(GRAIN_MONTH, month, "delivered".into(), "USD".into())],
            d.orders[&(GRAIN_DAY, day, "delivered".into(), "USD".into())],
            "a month row for each day row"
        );
        assert_eq!(
            d.orders[&(GRAIN_DAY, day, "delivered".into(), "USD".into())],
            OrderCounts {
                orders: 1,
                paid: 1,
                revenue: 500
            }
        );
        assert_eq!(
            d.orders[&(GRAIN_DAY, day, "canceled".into(), "USD".into())].revenue,
            0
        );
        let item = |grain, period| d.items[&(grain, period, Uuid::nil())].2;
        assert_eq!(item(GRAIN_DAY, day), 3, "unpaid lines do not count");
        assert_eq!(item(GRAIN_MONTH, month), 3);
        assert_eq!(d.rows.len(), 1);
        assert_eq!(d.rows[0].us, 7_200_000_000);
        let b = bucket(7_200_000_000);
        assert_eq!(d.durations[&(KIND_SHIP, GRAIN_DAY, day, b)], 1);
        assert_eq!(d.durations[&(KIND_SHIP, GRAIN_MONTH, month, b)], 1);
    }

    #[test]
    fn deltas_of_parts_add_up_to_the_whole() {
        let orders: Vec<OrderFacts> = (0..6)
            .map(|i| facts(i % 3, "delivered", i % 2 == 0, Some(60_000_000 * (i + 1))))
            .collect();
        let mut sum = Delta::default();
        for part in orders.chunks(4) {
            sum.absorb(Delta::of(part, &[]));
        }
        assert_eq!(sum, Delta::of(&orders, &[]));
    }

    /// The median from counts and one bucket's values equals the median of all values.
    #[test]
    fn medians_from_buckets_are_exact() {
        let all: Vec<i64> = (0..101).map(|i| 1_000_000 + i * i * 37_000_000).collect();
        for split_at in [0, 1, 40, 50, 51, 100, 101] {
            for n in [101usize, 100, 2, 1] {
                let values = &all[..n];
                let (exact, archived) = values.split_at(split_at.min(n));
                let mut d = Durations {
                    exact: exact.to_vec(),
                    archived: BTreeMap::new(),
                };
                let mut stored: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
                for us in archived {
                    *d.archived.entry(bucket(*us)).or_default() += 1;
                    stored.entry(bucket(*us)).or_default().push(*us);
                }
                let read = d
                    .buckets_needed()
                    .into_iter()
                    .map(|b| (b, stored[&b].clone()))
                    .collect();
                let minutes: Vec<f64> = values.iter().map(|us| *us as f64 / 60e6).collect();
                assert_eq!(
                    d.median_minutes(&read).unwrap(),
                    crate::books::domain::median(minutes),
                    "{n} values, {split_at} exact"
                );
            }
        }
        assert_eq!(
            Durations::default().median_minutes(&BTreeMap::new()),
            Ok(None)
        );
        let d = Durations {
            exact: vec![],
            archived: BTreeMap::from([(3, 2)]),
        };
        assert!(d.median_minutes(&BTreeMap::from([(3, vec![1])])).is_err());
    }
}
