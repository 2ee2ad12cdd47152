//! A batch-wise step done through claims, so that every executor of the run can share it: each
//! of this executor's lanes claims the step's next free batch, waits for the run's pace, and does
//! the batch in a transaction that commits with its record (fenced by the claim). For this
//! executor the step ends when every batch is done, by whichever executor: that is the barrier
//! before the next step.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::engine::claims::{self, Claim, Executor};
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::pace::Clock;
use crate::engine::state::Batch;

use super::StepContext;

/// What one batch of a step does, inside the batch's transaction.
pub trait BatchWork {
    /// Does the batch of selection `seq` in `from + 1 ..= upto`; returns the rows it changed.
    async fn run(&self, conn: &mut PgConnection, from: i64, upto: i64) -> Result<i64, Fault>;

    /// Effects outside the database (an HTTP call), made once the batch is claimed and before
    /// its transaction opens, so that no session idles in a transaction (past the server's
    /// `idle_in_transaction_session_timeout`) while an endpoint takes its time. Returns what
    /// they touched; the batch's transaction then only records them, also once a stop was
    /// requested (they happened, as a publish's confirms). `None`: the work is all in `run`.
    async fn outside(&self, _pool: &PgPool, _from: i64, _upto: i64) -> Result<Option<i64>, Fault> {
        Ok(None)
    }
}

/// Why a batch failed.
pub enum Fault {
    /// Its database work (classified as the step's failure or a passing fault).
    Db(sqlx::Error),
    /// Its record: a lost claim, a run that stopped running.
    Run(RunError),
    /// The plan's logic (rows outside the step's bounds, a bind that cannot be made).
    Plan(String),
}

impl Fault {
    fn into_run_error(self, ctx: &StepContext<'_>, step: &str, done: u64) -> RunError {
        match self {
            Fault::Db(e) => ctx.db_failed(step, done, e),
            Fault::Run(e) => e,
            Fault::Plan(message) => ctx.failed(step, done, message),
        }
    }
}

/// How long a lane waits before looking again when every batch left is claimed by others.
const HELD_BY_OTHERS: Duration = Duration::from_millis(50);

/// What this executor's lanes share.
struct Lanes<'c, 'p, C> {
    ctx: RefCell<&'c mut StepContext<'p>>,
    clock: tokio::sync::Mutex<&'c mut C>,
    /// A lane failed: the others finish the batch they hold and claim no more.
    failing: Cell<bool>,
    /// Events of the step done when this executor came to it, and done by it since.
    events_done: Cell<i64>,
}

/// Runs the step's batches through claims with `lanes` batches at a time; returns the rows the
/// step changed (by every executor).
#[allow(clippy::too_many_arguments)]
pub async fn run<C: Clock, W: BatchWork>(
    ctx: &mut StepContext<'_>,
    pool: &PgPool,
    executor: &Executor,
    clock: &mut C,
    step: &str,
    batch: i64,
    lanes: usize,
    work: &W,
) -> Result<u64, RunError> {
    let total = ctx.limit as i64;
    let cancel = ctx.cancel.clone();
    let left = claims::open_step(pool, ctx.run_id, step, batch, total).await?;
    claims::release_mine(pool, executor, step)
        .await
        .map_err(RunError::db(format!("opening step `{step}`")))?;
    let shared = Lanes {
        ctx: RefCell::new(ctx),
        clock: tokio::sync::Mutex::new(clock),
        failing: Cell::new(false),
        events_done: Cell::new(total - left),
    };
    let results = futures_util::future::join_all(
        (0..lanes.max(1)).map(|_| lane(&shared, pool, executor, step, total, work)),
    )
    .await;
    let mut failed: Option<RunError> = None;
    for error in results.into_iter().filter_map(Result::err) {
        failed = Some(match failed {
            Some(earlier) if outranks(&earlier, &error) => earlier,
            _ => error,
        });
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let reading = || format!("reading the batches of step `{step}`");
    // Stopped (a signal, `replay stop`) with batches left: every batch started is committed.
    if cancel.is_cancelled() {
        let open = claims::open_batches(pool, executor.run_id, step)
            .await
            .map_err(RunError::db(reading()))?;
        if open > 0 {
            return Err(RunError::Interrupted);
        }
    }
    // What the step changed, by every executor.
    crate::engine::state::step_touched(pool, executor.run_id, step)
        .await
        .map_err(RunError::db(reading()))
}

/// One lane: claim, pace, do, record; until no batch of the step is left.
async fn lane<C: Clock, W: BatchWork>(
    shared: &Lanes<'_, '_, C>,
    pool: &PgPool,
    executor: &Executor,
    step: &str,
    total: i64,
    work: &W,
) -> Result<(), RunError> {
    let cancel = shared.ctx.borrow().cancel.clone();
    // Claims are the executor's own bookkeeping: a failure there is never the plan's.
    let failed = |e: sqlx::Error| RunError::db(format!("claiming a batch of step `{step}`"))(e);
    // The lane waits for its turn (the run's rate, the window) before it claims, so that it never
    // holds a claim the others could do while it waits; a turn taken is kept until a claim uses it.
    let mut paced = false;
    let mut polls = 0u32;
    loop {
        if shared.failing.get() || cancel.is_cancelled() {
            return Ok(());
        }
        // No turn is taken for a batch that is not there (the step's tail, or others' batches).
        let next = match paced {
            true => None,
            false => claims::claimable(pool, executor.run_id, step)
                .await
                .map_err(failed)?,
        };
        if let Some(size) = next {
            // The batch's own size: an operator may have cut the batches anew.
            shared.clock.lock().await.pace(size.max(1) as u64).await;
            paced = true;
            if shared.failing.get() || cancel.is_cancelled() {
                return Ok(());
            }
        }
        let claimed = match paced {
            true => claims::claim(pool, executor, step).await.map_err(failed)?,
            false => None,
        };
        let Some(claim) = claimed else {
            if claims::open_batches(pool, executor.run_id, step)
                .await
                .map_err(failed)?
                == 0
            {
                return Ok(());
            }
            // Held by other executors (or lanes): wait for them, or for a claim to run out; now
            // and then, give back at once the claims of executors of this machine that died.
            polls += 1;
            if polls.is_multiple_of(20) {
                claims::release_the_dead(pool, executor.run_id).await?;
            }
            // Nothing is claimed once a stop is requested or the run ended: stop with it.
            let stop = claims::still_running(pool, executor.run_id).await?;
            shared.ctx.borrow().note_stop(stop);
            if !stop {
                tokio::time::sleep(HELD_BY_OTHERS).await;
            }
            continue;
        };
        paced = false;
        if shared.failing.get() || cancel.is_cancelled() {
            // Not started: back to the others (or to the resume).
            claims::release(pool, executor, step, claim).await;
            return Ok(());
        }
        match one_batch(pool, executor, step, claim, total, work).await {
            Ok(stop) => {
                shared
                    .events_done
                    .set(shared.events_done.get() + claim.upto - claim.from);
                let mut ctx = shared.ctx.borrow_mut();
                ctx.note_stop(stop);
                ctx.emit(RunEvent::Progress {
                    step: step.to_string(),
                    done: shared.events_done.get().min(total) as u64,
                    total: total as u64,
                });
            }
            Err(fault) => {
                shared.failing.set(true);
                let ctx = shared.ctx.borrow();
                return Err(fault.into_run_error(&ctx, step, shared.events_done.get() as u64));
            }
        }
    }
}

/// One claimed batch in its transaction: the run must still be running, then the work, then the
/// batch's record under its claim's fence, then the commit. Says whether `replay stop` was
/// requested.
async fn one_batch<W: BatchWork>(
    pool: &PgPool,
    executor: &Executor,
    step: &str,
    claim: Claim,
    total: i64,
    work: &W,
) -> Result<bool, Fault> {
    let outside = work.outside(pool, claim.from, claim.upto).await?;
    let going = match outside {
        Some(_) => claims::Going::Recording,
        None => claims::Going::Running,
    };
    let mut tx = pool.begin().await.map_err(Fault::Db)?;
    let stop = claims::begin_batch(&mut tx, executor.run_id, going)
        .await
        .map_err(Fault::Run)?;
    let rows = match outside {
        Some(rows) => rows,
        None => work.run(&mut tx, claim.from, claim.upto).await?,
    };
    let batch = Batch {
        step,
        from: claim.from,
        upto: claim.upto,
        rows,
        total,
    };
    claims::complete(&mut tx, executor, claim, &batch)
        .await
        .map_err(Fault::Run)?;
    tx.commit().await.map_err(Fault::Db)?;
    Ok(stop)
}

/// Of two lanes' errors, the one the driver must act on: a lost lease or claim (write nothing
/// more) before the plan's failure (roll back) before a passing fault (retry).
fn outranks(a: &RunError, b: &RunError) -> bool {
    use crate::engine::error::FaultClass::*;
    let rank = |e: &RunError| match e.class() {
        LeaseLost => 0,
        Transient | Interrupted => 2,
        _ => 1,
    };
    rank(a) <= rank(b)
}
