//! What every step gets: the plan, the run, the binds, the reporter and the stop flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::binds::BindScope;
use crate::engine::error::RunError;
use crate::engine::events::{Reporter, RunEvent};
use crate::engine::state::Checkpoint;
use crate::engine::writes::Writes;
use crate::plan::Plan;

/// Set by SIGINT/SIGTERM (or `replay stop`); steps stop at the next batch boundary.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn check(&self) -> Result<(), RunError> {
        if self.is_cancelled() {
            Err(RunError::Interrupted)
        } else {
            Ok(())
        }
    }
}

pub struct StepContext<'a> {
    pub plan: &'a Plan,
    pub run_id: uuid::Uuid,
    /// The fencing token of this executor's lease on the run; every checkpoint proves it.
    pub lease: i64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub binds: &'a BindScope,
    /// Events in the frozen selection.
    pub total: u64,
    /// Events the batch steps process: the whole selection when applying, the first batch when
    /// rehearsing (unless `--rehearse-all`); the rest of a rehearsal is counted, not run.
    pub limit: u64,
    pub cancel: &'a Cancel,
    pub reporter: &'a mut dyn Reporter,
    /// This process as one of the run's executors, claiming batches alongside the others
    /// (`None` when rehearsing: nothing is shared).
    pub executor: Option<&'a crate::engine::claims::Executor>,
}

impl StepContext<'_> {
    /// A checkpoint said `replay stop` was requested: stop before the next batch.
    pub fn note_stop(&self, requested: bool) {
        if requested {
            self.cancel.cancel();
        }
    }

    /// Records a checkpoint in a transaction of its own: for a step with nothing else to commit
    /// with it (a wait, a purge, a single message, an empty step).
    pub async fn checkpoint_alone<W: Writes>(
        &self,
        writes: &mut W,
        at: Checkpoint<'_>,
    ) -> Result<(), RunError> {
        let fail = |e: sqlx::Error| self.db_failed(at.step, at.checkpoint as u64, e);
        let mut tx = writes.begin().await.map_err(fail)?;
        let stop = W::checkpoint(&mut tx, self.run_id, self.lease, &at).await?;
        self.note_stop(stop);
        tx.commit().await.map_err(fail)
    }

    pub fn emit(&mut self, event: RunEvent) {
        self.reporter.event(&event);
    }

    /// A database error inside a step: a passing fault is retried from the checkpoint by the
    /// driver; anything else fails the step (and so rolls back).
    pub fn db_failed(&self, step: &str, done: u64, e: sqlx::Error) -> RunError {
        let transient = crate::engine::error::is_transient(&e);
        if transient || crate::engine::error::is_lasting_fault(&e) {
            RunError::Database {
                doing: format!(
                    "running step `{step}` (after {done} of {} events)",
                    self.total
                ),
                message: crate::engine::error::describe_sqlx(&e),
                transient,
            }
        } else {
            self.failed(step, done, crate::engine::error::describe_sqlx(&e))
        }
    }

    pub fn failed(&self, step: &str, done: u64, message: impl Into<String>) -> RunError {
        RunError::Step {
            step: step.to_string(),
            done,
            total: self.total,
            message: message.into(),
        }
    }
}
