//! `purge_queue`: drop every message of a queue (emergency plans).

use crate::engine::broker::Broker;
use crate::engine::error::RunError;
use crate::engine::writes::Writes;
use crate::plan::model::PurgeQueueStep;

use super::StepContext;

pub async fn run<W: Writes, B: Broker>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    broker: &mut B,
    step: &PurgeQueueStep,
) -> Result<u64, RunError> {
    let purged = broker.purge(&step.queue).await?;
    let fail = |e: sqlx::Error| ctx.db_failed(&step.id, 0, e);
    let mut tx = writes.begin().await.map_err(fail)?;
    let stop = W::checkpoint(
        &mut tx,
        ctx.run_id,
        ctx.lease,
        &step.id,
        0,
        purged as i64,
        true,
    )
    .await?;
    ctx.note_stop(stop);
    tx.commit().await.map_err(fail)?;
    Ok(purged)
}
