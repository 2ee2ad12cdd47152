//! `reset`: the selected events go back to `pending`, batch by batch, each batch with its
//! checkpoint. Committed writes go through claims (every executor of the run shares the step),
//! `parallel_batches` at a time per executor, each a transaction on a connection of its own (one
//! set-based `UPDATE` keeps one core of the database busy; the batches side by side keep as
//! many); a rehearsal runs them one by one in its one transaction.

use sqlx::PgConnection;

use crate::engine::batches::{Start, Todo};
use crate::engine::binds::audited;
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::state::Checkpoint;
use crate::engine::writes::Writes;
use crate::plan::model::ResetStep;
use crate::plan::selection::quote_ident;

use super::StepContext;
use super::claimed::{self, BatchWork, Fault};

pub async fn run<W: Writes, C: Clock>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    clock: &mut C,
    step: &ResetStep,
    start: Start<'_>,
) -> Result<u64, RunError> {
    let total = ctx.limit as i64;
    if total == 0 {
        ctx.checkpoint_alone(writes, Checkpoint::finished(&step.id, 0))
            .await?;
        return Ok(0);
    }
    let sql = statement(ctx, step, writes.selection_table());
    let batch = i64::from(ctx.plan.raw.rate_limit.batch_size);
    let lanes = ctx.plan.raw.rate_limit.parallel_batches.max(1) as usize;
    match (writes.shared(), ctx.executor) {
        (Some(pool), Some(executor)) => {
            let work = Reset {
                sql: &sql,
                run_id: ctx.run_id,
            };
            claimed::run(ctx, &pool, executor, clock, &step.id, batch, lanes, &work).await
        }
        _ => {
            one_by_one(
                ctx,
                writes,
                clock,
                step,
                &sql,
                Todo::new(start, batch, total),
            )
            .await
        }
    }
}

/// One batch of the reset.
struct Reset<'s> {
    sql: &'s str,
    run_id: uuid::Uuid,
}

impl BatchWork for Reset<'_> {
    async fn run(&self, conn: &mut PgConnection, from: i64, upto: i64) -> Result<i64, Fault> {
        sqlx::query(audited(self.sql))
            .bind(self.run_id)
            .bind(from)
            .bind(upto)
            .execute(conn)
            .await
            .map(|done| done.rows_affected() as i64)
            .map_err(Fault::Db)
    }
}

/// The reset of one batch: the selection rows `seq` in `$2 + 1 ..= $3` of run `$1`.
fn statement(ctx: &StepContext<'_>, step: &ResetStep, selection: &str) -> String {
    let target = &ctx.plan.raw.target;
    let c = &target.columns;
    let clear_processed_at = if step.clear_processed_at {
        format!(", {} = NULL", quote_ident(&c.processed_at))
    } else {
        String::new()
    };
    format!(
        "UPDATE {table} e SET {status} = 'pending', {retry} = 0, {error} = NULL{clear_processed_at} \
         FROM {selection} s WHERE s.run_id = $1 AND s.seq > $2 AND s.seq <= $3 AND e.{event_id} = s.event_id",
        table = quote_ident(&target.events_table),
        status = quote_ident(&c.status),
        retry = quote_ident(&c.retry_count),
        error = quote_ident(&c.error_message),
        event_id = quote_ident(&c.event_id),
    )
}

/// Batches one after another, each committing with its checkpoint (a rehearsal, in a savepoint
/// each).
async fn one_by_one<W: Writes, C: Clock>(
    ctx: &mut StepContext<'_>,
    writes: &mut W,
    clock: &mut C,
    step: &ResetStep,
    sql: &str,
    mut todo: Todo<'_>,
) -> Result<u64, RunError> {
    while let Some((from, upto)) = todo.pop() {
        clock.pace((upto - from) as u64).await;
        // Checked after the pacing (or a hold outside the window), right before the batch.
        ctx.cancel.check()?;
        let done = todo.events_done as u64;
        let failed = |e| ctx.db_failed(&step.id, done, e);
        let mut tx = writes.begin().await.map_err(failed)?;
        let rows = sqlx::query(audited(sql))
            .bind(ctx.run_id)
            .bind(from)
            .bind(upto)
            .execute(&mut *tx)
            .await
            .map_err(failed)?
            .rows_affected() as i64;
        todo.events_done += upto - from;
        todo.touched += rows;
        let at = Checkpoint {
            step: &step.id,
            checkpoint: upto,
            touched: todo.touched,
            done: todo.finished(),
            wrote_rows: true,
        };
        let stop = W::checkpoint(&mut tx, ctx.run_id, ctx.lease, &at).await?;
        tx.commit().await.map_err(failed)?;
        ctx.note_stop(stop);
        ctx.emit(RunEvent::Progress {
            step: step.id.clone(),
            done: todo.events_done as u64,
            total: todo.total as u64,
        });
    }
    Ok(todo.touched as u64)
}
