//! `purge_queue`: drop every message of a queue (emergency plans).

use crate::engine::broker::Broker;
use crate::engine::error::RunError;
use crate::engine::state::Checkpoint;
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
    ctx.checkpoint_alone(writes, Checkpoint::finished(&step.id, purged as i64))
        .await?;
    Ok(purged)
}
