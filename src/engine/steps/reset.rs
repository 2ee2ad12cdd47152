//! `reset`: the selected events go back to `pending`, batch by batch, each batch with its
//! checkpoint. Committed writes run `parallel_batches` batches side by side, each a transaction
//! on a connection of its own (one set-based `UPDATE` keeps one core of the database busy; a
//! reset in batches keeps two); a rehearsal runs them one by one in its one transaction.

use tokio::task::JoinSet;

use crate::engine::binds::audited;
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::state::{Batch, Checkpoint};
use crate::engine::writes::{Lanes, Writes};
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
    let side_by_side = ctx.plan.raw.rate_limit.parallel_batches.max(1) as usize;
    match writes.lanes().filter(|_| side_by_side > 1) {
        Some(lanes) => in_lanes(ctx, &lanes, side_by_side, clock, step, sql, todo).await,
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
    done: i64,
    touched: i64,
}

impl<'p> Todo<'p> {
    fn new(start: Start<'p>, batch: i64, total: i64) -> Todo<'p> {
        let ahead_done: i64 = start.ahead.iter().map(|(f, u)| u - f).sum();
        Todo {
            next: start.checkpoint,
            batch: batch.max(1),
            total,
            ahead: start.ahead,
            done: start.checkpoint + ahead_done,
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

    fn finished(&mut self) -> bool {
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
        let fail = |e: sqlx::Error| ctx.db_failed(&step.id, todo.done as u64, e);
        let mut tx = writes.begin().await.map_err(fail)?;
        let rows = reset_batch(&mut tx, sql, ctx.run_id, from, upto)
            .await
            .map_err(fail)?;
        let batch = Batch {
            step: &step.id,
            from,
            upto,
            rows,
            total: todo.total,
        };
        let stop = W::checkpoint_batch(&mut tx, ctx.run_id, ctx.lease, &batch).await?;
        ctx.note_stop(stop);
        tx.commit().await.map_err(fail)?;
        todo.done += upto - from;
        todo.touched += rows;
        ctx.emit(RunEvent::Progress {
            step: step.id.clone(),
            done: todo.done as u64,
            total: todo.total as u64,
        });
    }
    Ok(todo.touched as u64)
}

/// Up to `side_by_side` batches at once, each a task with a transaction of its own that commits
/// with its checkpoint. Whatever happens, every batch that started is waited for before the step
/// returns: a retry reads the checkpoints only once no commit of this attempt is in flight.
async fn in_lanes<C: Clock>(
    ctx: &mut StepContext<'_>,
    lanes: &Lanes,
    side_by_side: usize,
    clock: &mut C,
    step: &ResetStep,
    sql: String,
    mut todo: Todo<'_>,
) -> Result<u64, RunError> {
    let sql: std::sync::Arc<str> = sql.into();
    let mut running = JoinSet::new();
    let mut first_error: Option<RunError> = None;
    loop {
        while first_error.is_none() && running.len() < side_by_side && !ctx.cancel.is_cancelled() {
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
            let (lanes, sql, step_id) = (lanes.clone(), sql.clone(), step.id.clone());
            let (run_id, lease, total) = (ctx.run_id, ctx.lease, todo.total);
            running.spawn(async move {
                let batch = |rows| Batch {
                    step: &step_id,
                    from,
                    upto,
                    rows,
                    total,
                };
                let mut tx = lanes.begin().await.map_err(Fault::Db)?;
                let rows = reset_batch(&mut tx, &sql, run_id, from, upto)
                    .await
                    .map_err(Fault::Db)?;
                let stop = Lanes::checkpoint(&mut tx, run_id, lease, &batch(rows))
                    .await
                    .map_err(Fault::Run)?;
                tx.commit().await.map_err(Fault::Db)?;
                Ok::<_, Fault>((upto - from, rows, stop))
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok(Ok((events, rows, stop))) => {
                ctx.note_stop(stop);
                todo.done += events;
                todo.touched += rows;
                ctx.emit(RunEvent::Progress {
                    step: step.id.clone(),
                    done: todo.done as u64,
                    total: todo.total as u64,
                });
            }
            Ok(Err(fault)) => {
                let e = match fault {
                    Fault::Db(e) => ctx.db_failed(&step.id, todo.done as u64, e),
                    Fault::Run(e) => e,
                };
                first_error.get_or_insert(e);
            }
            Err(panicked) => {
                first_error.get_or_insert(RunError::Database {
                    doing: format!("running a batch of step `{}`", step.id),
                    message: panicked.to_string(),
                    transient: false,
                });
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if !todo.finished() {
        // Stopped (a signal, `replay stop`) with batches left: every started one is committed.
        ctx.cancel.check()?;
    }
    Ok(todo.touched as u64)
}

/// Why a batch run as a task failed: its database work, or its checkpoint (a lost lease).
enum Fault {
    Db(sqlx::Error),
    Run(RunError),
}

async fn reset_batch(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    run_id: uuid::Uuid,
    from: i64,
    upto: i64,
) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query(audited(sql))
        .bind(run_id)
        .bind(from)
        .bind(upto)
        .execute(conn)
        .await?
        .rows_affected() as i64)
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
        assert_eq!((t.done, t.next), (200, 100));
    }
}
