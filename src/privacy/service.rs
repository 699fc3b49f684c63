//! Privacy operations: the export and the erasure of a person's data, both audited.

use std::sync::Arc;

use super::domain::{
    Access, DROPPED_DELIVERY, ERASED_PASSWORD_HASH, ERASED_TEXT, erased_email, first_look,
    may_erase, may_export,
};
use super::store::{Erased, Erasure, PersonRecords};
use crate::auth::domain::Principal;
use crate::books::domain::{self as books, NewAudit};
use crate::clock::Clock;
use crate::ids::UserRef;
use crate::storage::{DynStore, Ts};

/// What can go wrong with an export or an erasure; an HTTP answer only at the edge
/// (`impl From<PrivacyError> for ApiError` in `http.rs`).
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// Nobody, or somebody the caller may not know exists.
    #[error("not found")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Store(#[from] crate::storage::Error),
}

pub type PrivacyResult<T> = Result<T, PrivacyError>;

#[derive(Clone)]
pub struct PrivacyService {
    store: DynStore,
    clock: Arc<dyn Clock>,
}

fn check(a: Access) -> PrivacyResult<()> {
    match a {
        Access::Allowed => Ok(()),
        Access::NotFound => Err(PrivacyError::NotFound),
        Access::Forbidden(why) => Err(PrivacyError::Forbidden(why)),
    }
}

impl PrivacyService {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        PrivacyService { store, clock }
    }

    /// Everything held about the person `who` names (`me` or an id), and when it was read.
    /// The export is in the audit log before anybody sees it: an export that cannot be
    /// recorded is not handed out.
    #[tracing::instrument(skip_all, fields(subject = %who))]
    pub async fn export(
        &self,
        caller: &Principal,
        who: UserRef,
    ) -> PrivacyResult<(PersonRecords, Ts)> {
        let id = caller.named(who).ok_or(PrivacyError::NotFound)?;
        check(may_export(caller, id))?;
        let records = self
            .store
            .person_records(id)
            .await?
            .ok_or(PrivacyError::NotFound)?;
        let now = self.clock.ts();
        let audit = NewAudit::new(now, caller.key(), books::CUSTOMER_EXPORTED, "user", id);
        self.store.append_audit(&audit).await?;
        Ok((records, now))
    }

    /// Erases the person `who` names (`me` or an id): see `store::PrivacyStore::erase_person`.
    /// Erasing again changes nothing and answers the same. Returns the erased id.
    #[tracing::instrument(skip_all, fields(subject = %who))]
    pub async fn erase(&self, caller: &Principal, who: UserRef) -> PrivacyResult<uuid::Uuid> {
        let id = caller.named(who).ok_or(PrivacyError::NotFound)?;
        check(first_look(caller, id))?;
        let user = self
            .store
            .user_by_id(id)
            .await?
            .ok_or(PrivacyError::NotFound)?;
        check(may_erase(caller, id, user.role))?;
        let now = self.clock.ts();
        let erasure = Erasure {
            id,
            at: now,
            email: erased_email(id),
            name: ERASED_TEXT,
            password_hash: ERASED_PASSWORD_HASH,
            text: ERASED_TEXT,
            dropped: DROPPED_DELIVERY,
            audit: NewAudit::new(now, caller.key(), books::CUSTOMER_ERASED, "user", id)
                .after(serde_json::json!({"role": user.role.as_str()})),
        };
        match self.store.erase_person(&erasure).await? {
            Erased::Now => {
                tracing::info!(user_id = %id, "erased");
                Ok(id)
            }
            Erased::Already => Ok(id),
            Erased::NoSuchUser => Err(PrivacyError::NotFound),
        }
    }
}
