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

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(serde_json::Value::to_string)
}

pub mod sqlite {
    use crate::storage::sqlite::{Db, SqliteStore as Backend};
    include!("queries.rs");
}

pub mod postgres {
    use crate::storage::postgres::{Db, PgStore as Backend};
    include!("queries.rs");
}
