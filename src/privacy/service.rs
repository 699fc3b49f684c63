//! Privacy operations: the export of a person's data, audited.

use std::sync::Arc;

use super::domain::{Access, may_export, subject};
use super::store::PersonRecords;
use crate::auth::domain::Principal;
use crate::books::domain::{self as books, NewAudit};
use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};
use crate::storage::{DynStore, Ts};

#[derive(Clone)]
pub struct PrivacyService {
    store: DynStore,
    clock: Arc<dyn Clock>,
}

fn check(a: Access) -> ApiResult<()> {
    match a {
        Access::Allowed => Ok(()),
        Access::NotFound => Err(ApiError::NotFound),
        Access::Forbidden(why) => Err(ApiError::Forbidden(why)),
    }
}

impl PrivacyService {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        PrivacyService { store, clock }
    }

    /// Everything held about the person `raw` names (`me` or an id), and when it was read.
    /// The export is in the audit log before anybody sees it: an export that cannot be
    /// recorded is not handed out.
    #[tracing::instrument(skip_all, fields(subject = raw))]
    pub async fn export(&self, caller: &Principal, raw: &str) -> ApiResult<(PersonRecords, Ts)> {
        let id = subject(caller, raw).ok_or(ApiError::NotFound)?;
        check(may_export(caller, id))?;
        let records = self
            .store
            .person_records(id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let now = self.clock.ts();
        let audit = NewAudit::new(now, caller.key(), books::CUSTOMER_EXPORTED, "user", id);
        self.store.append_audit(&audit).await?;
        Ok((records, now))
    }
}
