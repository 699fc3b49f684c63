//! Storage of the audit log: its own rows, and the order timeline's status changes read
//! as audit entries.

use async_trait::async_trait;

use super::domain::{AuditCursor, AuditFilter, NewAudit};
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

/// What the analytics summary is made of, for orders created in a range.
#[derive(Clone, Debug, Default)]
pub struct SummaryRows {
    pub by_status: Vec<(String, i64)>,
    /// Paid orders' totals per currency (refunded orders are `refunded`, not `paid`).
    pub revenue: Vec<(String, i64)>,
    /// `YYYY-MM-DD` (UTC) and the orders created that day, oldest first.
    pub per_day: Vec<(String, i64)>,
    /// Per order: when it was placed, shipped and delivered (from the timeline).
    pub milestones: Vec<(Option<Ts>, Option<Ts>, Option<Ts>)>,
    /// Item id, SKU, name and units sold in paid orders, most first.
    pub top_items: Vec<(uuid::Uuid, String, String, i64)>,
}

#[async_trait]
pub trait AnalyticsStore {
    /// Orders created in `[from, to)`; either end may be open.
    async fn summary_rows(&self, from: Option<Ts>, to: Option<Ts>, top: u32)
    -> Result<SummaryRows>;
}

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(serde_json::Value::to_string)
}

pub mod sqlite {
    use crate::storage::sqlite::{DIALECT, Db, SqliteStore as Backend};
    include!("queries.rs");
}

pub mod postgres {
    use crate::storage::postgres::{DIALECT, Db, PgStore as Backend};
    include!("queries.rs");
}
