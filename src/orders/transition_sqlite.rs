//! Transitions on SQLite: concurrent ones share one transaction of the writer (group
//! commit), so that a checkout's `placed`, like its placement, costs a share of one WAL
//! flush instead of one of its own.

use sqlx::SqlitePool;

use super::group_commit::{GroupCommit, together_or_alone};
use super::store::sqlite::apply_transition;
use super::store::{TransitionJob, TransitionOutcome};
use crate::storage::Result;

pub(crate) type Transitioner = GroupCommit<TransitionJob, TransitionOutcome>;

/// One worker: SQLite has one writer. It holds only the pool.
pub(crate) fn spawn_transitioner(writer: SqlitePool) -> Transitioner {
    GroupCommit::spawn("transition", 1, move |batch| {
        let writer = writer.clone();
        async move { transition_batch(&writer, batch).await }
    })
}

/// Applies the batch in one transaction, one job after the other (a second change of an
/// order in the same batch finds its version moved on: stale). If any job fails, nothing
/// of the batch stays and each job is applied again in a transaction of its own.
async fn transition_batch(
    writer: &SqlitePool,
    batch: Vec<TransitionJob>,
) -> Vec<Result<TransitionOutcome>> {
    let batch = &batch;
    together_or_alone(
        "transition",
        batch.len(),
        together(writer, batch),
        |i| async move {
            let mut tx = writer.begin().await?;
            let outcome = apply_transition(&mut tx, &batch[i]).await?;
            tx.commit().await?;
            Ok(outcome)
        },
    )
    .await
}

async fn together(writer: &SqlitePool, batch: &[TransitionJob]) -> Result<Vec<TransitionOutcome>> {
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(apply_transition(&mut tx, job).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}
