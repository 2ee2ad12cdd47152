//! The steps of a run, in order, each from its checkpoint: the one loop that applying and
//! rehearsing share. What differs is only what the traits do: where writes go (`Writes`), where
//! messages go (`Broker`), how time passes (`Clock`) and where progress is recorded (`Journal`).

use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::engine::broker::Broker;
use crate::engine::error::RunError;
use crate::engine::events::RunEvent;
use crate::engine::http::Requests;
use crate::engine::pace::Clock;
use crate::engine::report::{Report, StepReport};
use crate::engine::state::{self, StepProgress};
use crate::engine::steps::{self, StepContext};
use crate::engine::writes::Writes;
use crate::plan::model::Step;

/// Where a run's progress is read from and its log written to.
pub trait Journal {
    /// Each step's progress so far (nothing, for a run that starts or a rehearsal).
    async fn progress(&mut self) -> Result<HashMap<String, StepProgress>, RunError>;
    /// One entry of the run log.
    async fn log(&mut self, kind: &str, step: Option<&str>, detail: Value);
}

/// The run's records in the `replay` schema.
pub struct Recorded {
    pub pool: PgPool,
    pub run_id: uuid::Uuid,
}

impl Journal for Recorded {
    async fn progress(&mut self) -> Result<HashMap<String, StepProgress>, RunError> {
        state::step_progress(&self.pool, self.run_id).await
    }

    async fn log(&mut self, kind: &str, step: Option<&str>, detail: Value) {
        state::log(&self.pool, self.run_id, kind, step, detail).await;
    }
}

/// A rehearsal records nothing: every step starts from the beginning.
pub struct Unrecorded;

impl Journal for Unrecorded {
    async fn progress(&mut self) -> Result<HashMap<String, StepProgress>, RunError> {
        Ok(HashMap::new())
    }

    async fn log(&mut self, _kind: &str, _step: Option<&str>, _detail: Value) {}
}

/// Runs every one of `steps` (the plan's, or the canary's records of them) that is not done yet,
/// in order; reports each.
#[allow(clippy::too_many_arguments)]
pub async fn run_all<W: Writes, B: Broker, H: Requests, C: Clock, J: Journal>(
    ctx: &mut StepContext<'_>,
    steps: &[Step],
    writes: &mut W,
    broker: &mut B,
    requests: &H,
    clock: &mut C,
    journal: &mut J,
    report: &mut Report,
) -> Result<(), RunError> {
    let progress = journal.progress().await?;
    for step in steps {
        let at = progress.get(step.id()).cloned().unwrap_or_default();
        // Where the step resumes: its checkpoint, and batches done beyond it (side by side).
        let resumed_at = at.events_done();
        let StepProgress {
            done,
            checkpoint,
            touched,
            ahead,
        } = at;
        if done {
            report.steps.push(StepReport {
                id: step.id().into(),
                kind: step.kind().into(),
                touched: touched as u64,
                resumed_from: None,
                rehearsed: None,
            });
            continue;
        }
        // `replay stop` and signals are honoured before every step, once-steps included.
        ctx.cancel.check()?;
        ctx.emit(RunEvent::StepStarted {
            step: step.id().into(),
            kind: step.kind().into(),
            total: ctx.total,
            done: resumed_at as u64,
        });
        journal
            .log(
                "step_started",
                Some(step.id()),
                json!({"checkpoint": checkpoint, "done": resumed_at}),
            )
            .await;
        let touched = match step {
            Step::Reset(s) => {
                let start = crate::engine::batches::Start {
                    checkpoint,
                    touched,
                    ahead: &ahead,
                };
                steps::reset(ctx, writes, clock, s, start).await?
            }
            Step::Sql(s) => steps::sql(ctx, writes, clock, s, checkpoint, touched).await?,
            Step::Publish(s) => {
                steps::publish(ctx, writes, broker, clock, s, checkpoint, touched).await?
            }
            Step::Wait(s) => steps::wait(ctx, writes, broker, clock, s).await?,
            Step::PurgeQueue(s) => steps::purge(ctx, writes, broker, s).await?,
            Step::Http(s) => {
                steps::http(ctx, writes, requests, clock, s, checkpoint, touched).await?
            }
        };
        ctx.emit(RunEvent::StepFinished {
            step: step.id().into(),
            touched,
        });
        journal
            .log(
                "step_finished",
                Some(step.id()),
                json!({"touched": touched}),
            )
            .await;
        let batch_wise = matches!(
            step,
            Step::Reset(_) | Step::Sql(_) | Step::Publish(_) | Step::Http(_)
        );
        report.steps.push(StepReport {
            id: step.id().into(),
            kind: step.kind().into(),
            touched,
            resumed_from: (resumed_at > 0).then_some(resumed_at as u64),
            rehearsed: (batch_wise && ctx.limit < ctx.total).then_some(ctx.limit),
        });
    }
    Ok(())
}
