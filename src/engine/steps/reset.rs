//! `reset`: the selected events go back to `pending`, batch by batch, each batch with its checkpoint.

use crate::engine::binds::audited;
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::state::Checkpoint;
use crate::engine::writes::Writes;
use crate::plan::model::ResetStep;
use crate::plan::selection::quote_ident;

use super::StepContext;

pub async fn run<W: Writes, C: Clock>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    clock: &mut C,
    step: &ResetStep,
    checkpoint: i64,
    touched: i64,
) -> Result<u64, RunError> {
    let target = &ctx.plan.raw.target;
    let c = &target.columns;
    let clear_processed_at = if step.clear_processed_at {
        format!(", {} = NULL", quote_ident(&c.processed_at))
    } else {
        String::new()
    };
    let sql = format!(
        "UPDATE {table} e SET {status} = 'pending', {retry} = 0, {error} = NULL{clear_processed_at} \
         FROM {selection} s WHERE s.run_id = $1 AND s.seq > $2 AND s.seq <= $3 AND e.{event_id} = s.event_id",
        table = quote_ident(&target.events_table),
        status = quote_ident(&c.status),
        retry = quote_ident(&c.retry_count),
        error = quote_ident(&c.error_message),
        selection = writes.selection_table(),
        event_id = quote_ident(&c.event_id),
    );
    let batch = i64::from(ctx.plan.raw.rate_limit.batch_size);
    let total = ctx.limit as i64;
    let (mut done, mut touched) = (checkpoint, touched);
    while done < total {
        let upto = (done + batch).min(total);
        clock.pace((upto - done) as u64).await;
        // Checked after the pacing (or a hold outside the window), right before the batch.
        ctx.cancel.check()?;
        let fail = |e: sqlx::Error| ctx.db_failed(&step.id, done as u64, e);
        let mut tx = writes.begin().await.map_err(fail)?;
        let rows = sqlx::query(audited(&sql))
            .bind(ctx.run_id)
            .bind(done)
            .bind(upto)
            .execute(&mut *tx)
            .await
            .map_err(fail)?
            .rows_affected() as i64;
        touched += rows;
        let at = Checkpoint {
            step: &step.id,
            checkpoint: upto,
            touched,
            done: upto >= total,
            wrote_rows: true,
        };
        let stop = W::checkpoint(&mut tx, ctx.run_id, ctx.lease, &at).await?;
        ctx.note_stop(stop);
        tx.commit().await.map_err(fail)?;
        done = upto;
        ctx.emit(RunEvent::Progress {
            step: step.id.clone(),
            done: done as u64,
            total: total as u64,
        });
    }
    if total == 0 {
        ctx.checkpoint_alone(writes, Checkpoint::finished(&step.id, 0))
            .await?;
    }
    Ok(touched as u64)
}
