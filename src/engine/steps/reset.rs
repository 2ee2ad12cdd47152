//! `reset`: the selected events go back to `pending`, batch by batch, each batch with its
//! checkpoint. Committed writes run `parallel_batches` batches side by side, each a transaction
//! on a connection of its own (one set-based `UPDATE` keeps one core of the database busy; the
//! batches side by side keep as many); a rehearsal runs them one by one in its one transaction.

use tokio::task::JoinSet;

use crate::engine::binds::audited;
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::state::{Batch, Checkpoint};
use crate::engine::writes::Writes;
use crate::plan::model::ResetStep;
use crate::plan::selection::quote_ident;

use super::StepContext;

/// Where the step starts: its checkpoint, the rows it touched so far, and the batches done
/// beyond the checkpoint (by batches that committed side by side).
#[derive(Debug, Clone, Copy)]
pub struct Start<'p> {
    pub checkpoint: i64,
    pub touched: i64,
    pub ahead: &'p [(i64, i64)],
}

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
    let todo = Todo::new(start, i64::from(ctx.plan.raw.rate_limit.batch_size), total);
    let at_once = ctx.plan.raw.rate_limit.parallel_batches.max(1) as usize;
    match writes.side_by_side().filter(|_| at_once > 1) {
        Some(pool) => side_by_side::<W, C>(ctx, pool, at_once, clock, step, sql, todo).await,
        None => one_by_one(ctx, writes, clock, step, &sql, todo).await,
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

/// The batches still to do, in order, and what is done so far.
#[derive(Debug, Clone, Copy)]
struct Todo<'p> {
    next: i64,
    batch: i64,
    total: i64,
    ahead: &'p [(i64, i64)],
    /// Events of the selection whose batch is done.
    events_done: i64,
    touched: i64,
}

impl<'p> Todo<'p> {
    fn new(start: Start<'p>, batch: i64, total: i64) -> Todo<'p> {
        Todo {
            next: start.checkpoint,
            batch: batch.max(1),
            total,
            ahead: start.ahead,
            events_done: start.checkpoint + crate::engine::state::events_in(start.ahead),
            touched: start.touched,
        }
    }

    /// The next batch not done yet: from the checkpoint on, skipping those done beyond it.
    fn pop(&mut self) -> Option<(i64, i64)> {
        while let Some(&(_, upto)) = self.ahead.iter().find(|&&(f, _)| f == self.next) {
            self.next = upto;
        }
        if self.next >= self.total {
            return None;
        }
        let from = self.next;
        let upto = (from + self.batch).min(self.total);
        // A batch done beyond the checkpoint by an earlier attempt ends this one where it starts.
        let upto = self
            .ahead
            .iter()
            .map(|&(f, _)| f)
            .filter(|&f| f > from && f < upto)
            .min()
            .unwrap_or(upto);
        self.next = upto;
        Some((from, upto))
    }

    fn finished(&self) -> bool {
        let mut peek = *self;
        peek.pop().is_none()
    }
}

/// Batches one after another, each committing with its checkpoint (or, rehearsed, in a savepoint).
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
        let tx = writes
            .begin()
            .await
            .map_err(|e| ctx.db_failed(&step.id, done, e))?;
        let batch = Batch {
            step: &step.id,
            from,
            upto,
            rows: 0,
            total: todo.total,
        };
        let (rows, stop) = reset_and_record::<W>(tx, sql, ctx.run_id, ctx.lease, batch)
            .await
            .map_err(|fault| fault.into_run_error(ctx, &step.id, done))?;
        ctx.note_stop(stop);
        todo.events_done += upto - from;
        todo.touched += rows;
        ctx.emit(RunEvent::Progress {
            step: step.id.clone(),
            done: todo.events_done as u64,
            total: todo.total as u64,
        });
    }
    Ok(todo.touched as u64)
}

/// Up to `at_once` batches at a time, each a task with a transaction of its own that commits
/// with its checkpoint. Whatever happens, every batch that started is waited for before the step
/// returns: a retry reads the checkpoints only once no commit of this attempt is in flight.
async fn side_by_side<W: Writes, C: Clock>(
    ctx: &mut StepContext<'_>,
    pool: sqlx::PgPool,
    at_once: usize,
    clock: &mut C,
    step: &ResetStep,
    sql: String,
    mut todo: Todo<'_>,
) -> Result<u64, RunError> {
    let sql: std::sync::Arc<str> = sql.into();
    let mut running = JoinSet::new();
    let mut failed: Option<RunError> = None;
    loop {
        while failed.is_none() && running.len() < at_once && !ctx.cancel.is_cancelled() {
            let Some((from, upto)) = todo.pop() else {
                break;
            };
            // The other batches run on while this one waits for its turn (or for the window).
            clock.pace((upto - from) as u64).await;
            if ctx.cancel.is_cancelled() {
                // Not started: the resume does it.
                todo.next = from;
                break;
            }
            let (pool, sql, step_id) = (pool.clone(), sql.clone(), step.id.clone());
            let (run_id, lease, total) = (ctx.run_id, ctx.lease, todo.total);
            running.spawn(async move {
                let tx = pool.begin().await.map_err(Fault::Db)?;
                let batch = Batch {
                    step: &step_id,
                    from,
                    upto,
                    rows: 0,
                    total,
                };
                let (rows, stop) = reset_and_record::<W>(tx, &sql, run_id, lease, batch).await?;
                Ok::<_, Fault>((upto - from, rows, stop))
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let error = match joined {
            Ok(Ok((events, rows, stop))) => {
                ctx.note_stop(stop);
                todo.events_done += events;
                todo.touched += rows;
                ctx.emit(RunEvent::Progress {
                    step: step.id.clone(),
                    done: todo.events_done as u64,
                    total: todo.total as u64,
                });
                continue;
            }
            Ok(Err(fault)) => fault.into_run_error(ctx, &step.id, todo.events_done as u64),
            Err(panicked) => RunError::Database {
                doing: format!("running a batch of step `{}`", step.id),
                message: panicked.to_string(),
                transient: false,
            },
        };
        failed = Some(match failed {
            Some(earlier) if outranks(&earlier, &error) => earlier,
            _ => error,
        });
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if !todo.finished() {
        // Stopped (a signal, `replay stop`) with batches left: every started one is committed.
        ctx.cancel.check()?;
    }
    Ok(todo.touched as u64)
}

/// Of two batches' errors, the one the driver must act on: a lost lease (write nothing more)
/// before the plan's failure (roll back) before a passing fault (retry).
fn outranks(a: &RunError, b: &RunError) -> bool {
    use crate::engine::error::FaultClass::*;
    let rank = |e: &RunError| match e.class() {
        LeaseLost => 0,
        Transient => 2,
        _ => 1,
    };
    rank(a) <= rank(b)
}

/// One batch in its transaction: the reset, then its checkpoint, then the commit. Returns the
/// rows reset and whether `replay stop` was requested.
async fn reset_and_record<W: Writes>(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    sql: &str,
    run_id: uuid::Uuid,
    lease: i64,
    batch: Batch<'_>,
) -> Result<(i64, bool), Fault> {
    let rows = sqlx::query(audited(sql))
        .bind(run_id)
        .bind(batch.from)
        .bind(batch.upto)
        .execute(&mut *tx)
        .await
        .map_err(Fault::Db)?
        .rows_affected() as i64;
    let stop = W::checkpoint_batch(&mut tx, run_id, lease, &Batch { rows, ..batch })
        .await
        .map_err(Fault::Run)?;
    tx.commit().await.map_err(Fault::Db)?;
    Ok((rows, stop))
}

/// Why a batch failed: its database work, or its checkpoint (a lost lease).
enum Fault {
    Db(sqlx::Error),
    Run(RunError),
}

impl Fault {
    fn into_run_error(self, ctx: &StepContext<'_>, step: &str, done: u64) -> RunError {
        match self {
            Fault::Db(e) => ctx.db_failed(step, done, e),
            Fault::Run(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Start, Todo};

    fn all(mut todo: Todo<'_>) -> Vec<(i64, i64)> {
        std::iter::from_fn(|| todo.pop()).collect()
    }

    #[test]
    fn batches_run_from_the_checkpoint_and_skip_those_done_beyond_it() {
        let from = |checkpoint, ahead| Start {
            checkpoint,
            touched: 0,
            ahead,
        };
        assert_eq!(
            all(Todo::new(from(0, &[]), 100, 250)),
            [(0, 100), (100, 200), (200, 250)]
        );
        assert_eq!(
            all(Todo::new(from(100, &[(200, 300), (400, 450)]), 100, 450)),
            [(100, 200), (300, 400)]
        );
        // Done beyond the checkpoint with another batch size: never overlapped.
        assert_eq!(
            all(Todo::new(from(0, &[(50, 150)]), 100, 300)),
            [(0, 50), (150, 250), (250, 300)]
        );
        let t = Todo::new(from(100, &[(200, 300)]), 100, 300);
        assert_eq!((t.events_done, t.next), (200, 100));
    }
}
