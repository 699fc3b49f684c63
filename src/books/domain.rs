//! Audit actions, entries to write, and the audit log's filter and cursor.

use serde::{Deserialize, Serialize};

use crate::storage::Ts;

/// Every action the audit log records.
pub const ACTIONS: &[&str] = &[
    ORDER_STATUS_CHANGED,
    ORDER_REFUNDED,
    ITEM_CREATED,
    ITEM_UPDATED,
    USER_CREATED,
    API_KEY_CREATED,
    API_KEY_REVOKED,
    WEBHOOK_ENDPOINT_CREATED,
    WEBHOOK_ENDPOINT_DELETED,
    CUSTOMER_EXPORTED,
    CUSTOMER_ERASED,
    ORDER_TRACKING_LINKS_REVOKED,
];

/// Read from the order timeline (a status event whose status changed).
pub const ORDER_STATUS_CHANGED: &str = "order.status_changed";
/// Read from the order timeline (a status event that kept the status: the payment was refunded).
pub const ORDER_REFUNDED: &str = "order.refunded";
pub const ITEM_CREATED: &str = "item.created";
pub const ITEM_UPDATED: &str = "item.updated";
pub const USER_CREATED: &str = "user.created";
pub const API_KEY_CREATED: &str = "api_key.created";
pub const API_KEY_REVOKED: &str = "api_key.revoked";
pub const WEBHOOK_ENDPOINT_CREATED: &str = "webhook_endpoint.created";
pub const WEBHOOK_ENDPOINT_DELETED: &str = "webhook_endpoint.deleted";
pub const CUSTOMER_EXPORTED: &str = "customer.exported";
pub const CUSTOMER_ERASED: &str = "customer.erased";
pub const ORDER_TRACKING_LINKS_REVOKED: &str = "order.tracking_links_revoked";

/// An audit row to append, in the transaction of the change it records. It never holds
/// personal data (names, e-mails, phones, addresses): ids, roles, prices, stock, scopes.
#[derive(Clone, Debug)]
pub struct NewAudit {
    pub at: Ts,
    /// `user:<id>`, `key:<id>` or `system:<what>` (`Principal::key`).
    pub actor: String,
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl NewAudit {
    pub fn new(
        at: Ts,
        actor: impl Into<String>,
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> Self {
        NewAudit {
            at,
            actor: actor.into(),
            action,
            target_type,
            target_id: target_id.to_string(),
            before: None,
            after: None,
        }
    }

    pub fn before(self, v: serde_json::Value) -> Self {
        NewAudit {
            before: Some(v),
            ..self
        }
    }

    pub fn after(self, v: serde_json::Value) -> Self {
        NewAudit {
            after: Some(v),
            ..self
        }
    }
}

/// Where an entry comes from; part of the order of the log (and of its cursor).
pub const SOURCE_AUDIT: i64 = 0;
pub const SOURCE_TIMELINE: i64 = 1;

/// What the audit log is asked for. `actors` are alternatives (a bare id matches the user
/// and the API key with that id).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actors: Vec<String>,
    pub action: Option<&'static str>,
    pub from: Option<Ts>,
    pub to: Option<Ts>,
    /// Entries about one thing (`user`, id): a customer's export.
    pub target: Option<(&'static str, String)>,
}

/// The log is ordered newest first by (`at`, source, id); the cursor is the last entry seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCursor {
    #[serde(rename = "t")]
    pub at_us: i64,
    #[serde(rename = "s")]
    pub source: i64,
    #[serde(rename = "i")]
    pub id: i64,
}

impl AuditCursor {
    /// The log's sort key: newest first means the greatest key first.
    pub fn cmp_key(&self) -> (i64, i64, i64) {
        (self.at_us, self.source, self.id)
    }
}

/// The action named by `raw`, if it is one the log records.
pub fn parse_action(raw: &str) -> Option<&'static str> {
    ACTIONS.iter().copied().find(|a| *a == raw)
}

/// The actors `raw` stands for: `user:<id>`, `key:<id>`, `system:…` as they are, or a bare
/// id for both the user and the API key with that id.
pub fn actors_of(raw: &str) -> Vec<String> {
    match uuid::Uuid::parse_str(raw) {
        Ok(id) => vec![format!("user:{id}"), format!("key:{id}")],
        Err(_) => vec![raw.to_owned()],
    }
}

/// The median of `values` (the mean of the two middle ones for an even count); `None`
/// when there are none.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Minutes from `a` to `b`, when both happened (and in that order).
pub fn minutes_between(a: Option<Ts>, b: Option<Ts>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let us = b.micros() - a.micros();
    (us >= 0).then(|| us as f64 / 60_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![5.0]), Some(5.0));
        assert_eq!(median(vec![9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(vec![4.0, 1.0, 10.0, 2.0]), Some(3.0));
    }

    #[test]
    fn a_bare_id_is_a_user_or_a_key() {
        let id = uuid::Uuid::nil();
        assert_eq!(
            actors_of(&id.to_string()),
            vec![format!("user:{id}"), format!("key:{id}")]
        );
        assert_eq!(actors_of("system:refund"), vec!["system:refund".to_owned()]);
    }

    #[test]
    fn only_known_actions_parse() {
        assert_eq!(parse_action("item.updated"), Some(ITEM_UPDATED));
        assert_eq!(parse_action("item.deleted"), None);
    }
}
