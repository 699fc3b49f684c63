//! Storage of the payment gateway's webhook events (handled once per event id).

use async_trait::async_trait;

use crate::storage::{Result, Ts};

#[async_trait]
pub trait PaymentStore {
    /// Records a gateway event; false if it was recorded before (a replay).
    async fn record_gateway_event(&self, id: &str, kind: &str, at: Ts) -> Result<bool>;
    /// Forgets an event whose handling failed, so that the gateway's retry is handled.
    async fn forget_gateway_event(&self, id: &str) -> Result<()>;
}

mod sqlite {
    use crate::storage::sqlite::{Db, SqliteStore as Backend};
    include!("queries.rs");
}

mod postgres {
    use crate::storage::postgres::{Db, PgStore as Backend};
    include!("queries.rs");
}
