//! An executor that joins a run in progress (`replay apply --join`, `replay join RUN`): it
//! claims batches of the run's batch-wise steps alongside the executor that drives the run, and
//! waits at every other step (once-steps, verifications, rollback and the audit are the driver's,
//! run once). When the run's lease comes free (its driver died, stalled or went away), it hands
//! back to take the lease and drive the run itself, from the checkpoints.

use std::time::Duration;

use sqlx::PgPool;

use crate::engine::apply::{ApplyOptions, backoff};
use crate::engine::batches::Start;
use crate::engine::binds::BindScope;
use crate::engine::broker;
use crate::engine::claims::{self, Executor};
use crate::engine::connection::Connection;
use crate::engine::error::{FaultClass, RunError};
use crate::engine::events::Reporter;
use crate::engine::report::{Joined, Report};
use crate::engine::state::{self, OpenRun};
use crate::engine::status::RunStatus;
use crate::engine::steps::{self, Cancel, StepContext};
use crate::engine::window;
use crate::engine::writes::Commit;
use crate::plan::Plan;
use crate::plan::model::{PublishEach, SqlEach, Step};

/// How long a joined executor waits before looking at the run again.
const LOOK_AGAIN: Duration = Duration::from_millis(200);

/// How following a run ended.
pub enum Followed {
    /// The run ended; the report says how.
    Ended,
    /// The run's lease is free: take it over and drive the run.
    Lead(state::FreeLease),
}

/// Works on the run's batch-wise steps as they open, until the run ends or its lease comes free.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    plan: &Plan,
    connection: &Connection,
    pool: &PgPool,
    run: &OpenRun,
    executor: &Executor,
    options: &ApplyOptions,
    reporter: &mut dyn Reporter,
    cancel: &Cancel,
    report: &mut Report,
) -> Result<Followed, RunError> {
    report.run_id = Some(run.id.to_string());
    report.joined = Some(Joined::default());
    tracing::info!(run = %run.id, executor = %executor.name, "joined the run in progress");
    let scope = BindScope::new(plan, run.id, run.started_at, state::SELECTION_TABLE);
    let mut writes = Commit { pool: pool.clone() };
    // The run's window, as the operator who started it let it be.
    let overridden = state::overridden_gates(pool, run.id)
        .await?
        .contains(&crate::engine::gates::Gate::Window);
    // The run's guards hold this executor too (the driver records and tells their trips).
    let mut clock = crate::engine::guards::Guarded {
        inner: window::run_clock(plan, pool, run.id, overridden, cancel.clone()),
        guards: crate::engine::guards::Guards::new(
            plan,
            crate::engine::guards::Setting {
                pool: pool.clone(),
                scope: scope.clone(),
                amqp_url: connection.amqp_url.clone(),
                cancel: cancel.clone(),
                leads: false,
                message: None,
            },
        ),
    };
    let mut failures = 0;
    let outcome = loop {
        if let Err(e) = cancel.check() {
            break Err(e);
        }
        let looked = look(plan, pool, run.id).await;
        let work = match looked {
            Ok(Look::Ended(status)) => {
                report.status = status.to_string();
                break match status {
                    RunStatus::Succeeded => Ok(Followed::Ended),
                    status => Err(RunError::NotRunning {
                        run_id: run.id.to_string(),
                        status,
                    }),
                };
            }
            Ok(Look::Lead(free)) => break Ok(Followed::Lead(free)),
            Ok(Look::Wait) => None,
            Ok(Look::Work { step, selected }) => Some((step, selected)),
            Err(e) => match passing(e, &mut failures, options) {
                Ok(wait) => {
                    pause(cancel, wait).await;
                    continue;
                }
                Err(e) => break Err(e),
            },
        };
        let Some((step, selected)) = work else {
            pause(cancel, LOOK_AGAIN).await;
            continue;
        };
        report.selected = selected;
        let progress = state::step_progress(pool, run.id).await.unwrap_or_default();
        let at = progress.get(step.id()).cloned().unwrap_or_default();
        // After a canary, the steps see the events it did not take (as the driver's do).
        let step_scope = match crate::engine::canary::size(plan, selected) {
            Some(n) => BindScope::new(
                plan,
                run.id,
                run.started_at,
                &crate::engine::canary::rest_table(state::SELECTION_TABLE, n),
            ),
            None => scope.clone(),
        };
        let mut ctx = StepContext {
            plan,
            run_id: run.id,
            // A joined executor holds no lease on the run: its batches are fenced by their claims.
            lease: 0,
            started_at: run.started_at,
            binds: &step_scope,
            total: selected,
            limit: selected,
            cancel,
            reporter: &mut *reporter,
            executor: Some(executor),
        };
        let done = match step {
            Step::Reset(s) => {
                let start = Start {
                    checkpoint: at.checkpoint,
                    touched: at.touched,
                    ahead: &at.ahead,
                };
                steps::reset(&mut ctx, &mut writes, &mut clock, s, start).await
            }
            Step::Sql(s) => {
                steps::sql(
                    &mut ctx,
                    &mut writes,
                    &mut clock,
                    s,
                    at.checkpoint,
                    at.touched,
                )
                .await
            }
            Step::Publish(s) => match broker::connect_for(plan, &connection.amqp_url).await {
                Ok(mut broker) => {
                    let published = steps::publish(
                        &mut ctx,
                        &mut writes,
                        &mut broker,
                        &mut clock,
                        s,
                        at.checkpoint,
                        at.touched,
                    )
                    .await;
                    if let Some(b) = broker {
                        b.close().await;
                    }
                    published
                }
                Err(e) => Err(RunError::Broker(e)),
            },
            Step::Http(s) => match crate::engine::http::Endpoints::for_plan(plan) {
                Ok(requests) => {
                    steps::http(
                        &mut ctx,
                        &mut writes,
                        &requests,
                        &mut clock,
                        s,
                        at.checkpoint,
                        at.touched,
                    )
                    .await
                }
                Err(e) => Err(e),
            },
            _ => Ok(0),
        };
        match done {
            Ok(_) => failures = 0,
            // The driver recorded another status: look at the run again.
            Err(RunError::NotRunning { .. }) => {}
            Err(e) => match passing(e, &mut failures, options) {
                Ok(wait) => pause(cancel, wait).await,
                Err(e) => break Err(e),
            },
        }
    };
    report.paused_secs += clock.inner.paused.as_secs_f64() + clock.guards.paused.as_secs_f64();
    clock.guards.finish().await;
    let outcome = match (outcome, clock.guards.stopped.clone()) {
        // This executor obeyed the guard; the run's driver reads it too and decides for the run.
        (Err(RunError::Interrupted), Some(trip)) => Err(RunError::GuardStopped {
            message: format!(
                "{} (this executor stopped; the run's driver reads the guard too and stops the run)",
                trip.message
            ),
            guard: trip.guard,
        }),
        (outcome, _) => outcome,
    };
    if let Ok(Some((batches, events))) = claims::done_by(pool, executor).await {
        report.joined = Some(Joined { batches, events });
    }
    outcome
}

/// What a joined executor finds when it looks at the run.
enum Look<'p> {
    Ended(RunStatus),
    /// The run's lease is free.
    Lead(state::FreeLease),
    Wait,
    Work {
        step: &'p Step,
        selected: u64,
    },
}

async fn look<'p>(plan: &'p Plan, pool: &PgPool, run_id: uuid::Uuid) -> Result<Look<'p>, RunError> {
    let (run, free) = state::run_and_free_lease(pool, run_id).await?;
    if let Some(free) = free.filter(|_| run.status.joinable()) {
        return Ok(Look::Lead(free));
    }
    match run.status {
        RunStatus::Running => {}
        // The driver is rolling back (or handing over): nothing to claim.
        RunStatus::RollingBack | RunStatus::Interrupted => return Ok(Look::Wait),
        other => return Ok(Look::Ended(other)),
    }
    let Some(selected) = run.selected else {
        // The driver is freezing the selection, judging the gates, taking backups.
        return Ok(Look::Wait);
    };
    // The canary is the driver's alone: nothing after it may start before it passed.
    if crate::engine::canary::size(plan, selected as u64).is_some()
        && !state::logged(pool, run_id, state::CANARY_PASSED).await?
    {
        return Ok(Look::Wait);
    }
    let progress = state::step_progress(pool, run_id).await?;
    let current = plan
        .raw
        .steps
        .iter()
        .find(|s| !progress.get(s.id()).is_some_and(|p| p.done));
    match current {
        Some(step) if claimable(step) && claims::is_open(pool, run_id, step.id()).await? => {
            Ok(Look::Work {
                step,
                selected: selected as u64,
            })
        }
        _ => Ok(Look::Wait),
    }
}

/// Steps whose batches executors share.
fn claimable(step: &Step) -> bool {
    match step {
        Step::Reset(_) => true,
        Step::Sql(s) => s.each == SqlEach::Batch,
        Step::Publish(p) => p.each == PublishEach::Event,
        Step::Http(h) => h.each == crate::plan::model::HttpEach::Event,
        _ => false,
    }
}

/// A passing fault is retried after a backoff (returned), within the budget of faults in a row;
/// anything else ends this executor's part.
fn passing(e: RunError, failures: &mut u32, options: &ApplyOptions) -> Result<Duration, RunError> {
    if e.class() != FaultClass::Transient {
        return Err(e);
    }
    *failures += 1;
    if *failures > options.retries {
        return Err(RunError::RetriesExhausted {
            attempts: *failures,
            last: Box::new(e),
        });
    }
    tracing::warn!(error = %e, attempt = *failures, "a passing fault; looking at the run again");
    Ok(backoff(*failures))
}

/// Waits, cut short by a stop.
async fn pause(cancel: &Cancel, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline && !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50).min(wait)).await;
    }
}
