//! Storage of the audit log: its own rows, and the order timeline's status changes read
//! as audit entries.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::domain::{AuditCursor, AuditFilter, NewAudit};
use crate::history::rollup::Durations;
use crate::storage::{Result, Ts};

/// One entry of the audit log, from either source.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRow {
    pub source: i64,
    pub id: i64,
    pub at: Ts,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// An audit entry as its columns come back from a query (`id, at, actor, action,
/// target_type, target_id, before, after`).
pub(crate) type AuditTuple = (
    i64,
    Ts,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// Stored JSON text, or `None` where there is none (or it does not parse).
fn parse_json(s: Option<String>) -> Option<serde_json::Value> {
    s.and_then(|s| serde_json::from_str(&s).ok())
}

impl From<AuditTuple> for AuditRow {
    fn from((id, at, actor, action, target_type, target_id, before, after): AuditTuple) -> Self {
        AuditRow {
            source: super::domain::SOURCE_AUDIT,
            id,
            at,
            actor,
            action,
            target_type,
            target_id,
            before: parse_json(before),
            after: parse_json(after),
        }
    }
}

impl AuditRow {
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor {
            at_us: self.at.micros(),
            source: self.source,
            id: self.id,
        }
    }
}

#[async_trait]
pub trait AuditStore {
    /// Appends an entry on its own (for what changes nothing else, such as an export).
    async fn append_audit(&self, e: &NewAudit) -> Result<()>;
    /// Entries newest first, after `after`, at most `limit`.
    async fn audit_log(
        &self,
        f: &AuditFilter,
        after: Option<&AuditCursor>,
        limit: u32,
    ) -> Result<Vec<AuditRow>>;
}

/// The analytics summary of the orders created in a range.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub by_status: BTreeMap<String, i64>,
    /// Paid orders' totals per currency (refunded orders are `refunded`, not `paid`).
    pub revenue: BTreeMap<String, i64>,
    /// `YYYY-MM-DD` (UTC) and the orders created that day, oldest first.
    pub per_day: BTreeMap<String, i64>,
    /// Median minutes placed → shipped and shipped → delivered.
    pub median_minutes_to_ship: Option<f64>,
    pub median_minutes_to_deliver: Option<f64>,
    /// Item id, SKU, name and units sold in paid orders, most first.
    pub top_items: Vec<(uuid::Uuid, String, String, i64)>,
}

/// A summary being added up from its parts: exact reads of orders and history rollups.
#[derive(Debug, Default)]
pub(crate) struct SummaryParts {
    pub by_status: BTreeMap<String, i64>,
    pub revenue: BTreeMap<String, i64>,
    pub per_day: BTreeMap<String, i64>,
    pub ship: Durations,
    pub deliver: Durations,
    pub items: BTreeMap<uuid::Uuid, (String, String, i64)>,
}

impl SummaryParts {
    /// Adds units of an item (see [`crate::history::rollup::add_units`]).
    pub fn add_item(&mut self, (id, sku, name, units): (uuid::Uuid, String, String, i64)) {
        crate::history::rollup::add_units(&mut self.items, id, (sku, name, units));
    }

    pub fn finish(self, ship: Option<f64>, deliver: Option<f64>, top: u32) -> Summary {
        let mut top_items: Vec<_> = self
            .items
            .into_iter()
            .filter(|(_, (_, _, units))| *units != 0)
            .map(|(id, (sku, name, units))| (id, sku, name, units))
            .collect();
        top_items.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)));
        top_items.truncate(top as usize);
        Summary {
            by_status: self.by_status,
            revenue: self.revenue,
            per_day: self.per_day.into_iter().filter(|(_, n)| *n != 0).collect(),
            median_minutes_to_ship: ship,
            median_minutes_to_deliver: deliver,
            top_items,
        }
    }
}

#[async_trait]
pub trait AnalyticsStore {
    /// Orders created in `[from, to)`; either end may be open. Whole days of the history
    /// come from its rollups, the rest from the orders themselves.
    async fn summary(&self, from: Option<Ts>, to: Option<Ts>, top: u32) -> Result<Summary>;
}

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(serde_json::Value::to_string)
}

#[path = "."]
pub mod sqlite {
    use crate::history::store::sqlite::rollup_sql as history_sql;
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
    pub(crate) use queries::append_audit;
}

#[path = "."]
pub mod postgres {
    use crate::history::store::postgres::rollup_sql as history_sql;
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    // The same file, compiled once per backend (see `storage`).
    #[allow(clippy::duplicate_mod)]
    mod queries;
    pub(crate) use queries::append_audit;
}
