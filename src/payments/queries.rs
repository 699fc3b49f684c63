// SQL of gateway events, compiled once per backend (see `storage`).

use async_trait::async_trait;

use super::PaymentStore;
use crate::storage::{Result, Ts};

#[async_trait]
impl PaymentStore for Backend {
    async fn record_gateway_event(&self, id: &str, kind: &str, at: Ts) -> Result<bool> {
        let r = sqlx::query::<Db>(
            "INSERT INTO gateway_events (id, type, received_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(kind)
        .bind(at)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn forget_gateway_event(&self, id: &str) -> Result<()> {
        sqlx::query::<Db>("DELETE FROM gateway_events WHERE id = $1").bind(id).execute(self.writer()).await?;
        Ok(())
    }
}
