//! The run driver: take the lease, then attempt the run (freeze, gates, back up, the steps with
//! checkpoints, verify, roll back on a plan-logic failure), retrying passing faults from the last
//! checkpoint, and record the outcome. Each error's class decides what happens; see `FaultClass`.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;

use crate::engine::binds::BindScope;
use crate::engine::claims::{self, Executor};
use crate::engine::connection::{Connection, check_tables, describe};
use crate::engine::error::{FaultClass, RunError};
use crate::engine::events::{Reporter, RunEvent};
use crate::engine::join::{self, Followed};
use crate::engine::report::{CanaryReport, Failing, Report, VerificationReport};
use crate::engine::sequence::{self, Recorded};
use crate::engine::state::DEFAULT_LEASE;
use crate::engine::state::{Acquired, Lapse, Lease};
use crate::engine::status::RunStatus;
use crate::engine::steps::{Cancel, StepContext};
use crate::engine::window;
use crate::engine::writes::{Commit, Writes};
use crate::engine::{audit, backup, canary, freeze, gates, guards, rollback, state, verify};
use crate::plan::Plan;
use crate::plan::model::Step;

/// Passing faults retried in one process before the run stops as `interrupted`.
pub const DEFAULT_RETRIES: u32 = 8;
/// The status value of a failed event (Habitat's).
const FAILED_STATUS: &str = "error";
/// How many still-failing events a report names.
const FAILING_LISTED: i64 = 20;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Abandon an unfinished run whose plan or parameters differ, and start anew.
    pub restart: bool,
    /// Gates the operator overrides, with the reason (recorded).
    pub overrides: gates::Overrides,
    /// The run a person confirmed before anything was written (`engine::preview`); `None`
    /// when nobody was asked (`--yes`, or a caller that is not a person).
    pub confirmed: Option<uuid::Uuid>,
    /// A pinned plan to hold the run to, and the staging proof it carries.
    pub pin: crate::engine::pinned::Pin,
    /// Passing faults (lost connections, a restarting broker) retried in this process.
    pub retries: u32,
    /// How long this executor's lease lasts without a heartbeat.
    pub lease: Duration,
    /// Run anew a plan that already succeeded with these parameters, for this reason (audited).
    pub again: Option<String>,
    /// Join the plan's run in progress (`--join`) instead of being refused by its lease; start
    /// or resume it when none is in progress.
    pub join: bool,
    /// Join exactly this run (`replay join RUN`): never start or resume another.
    pub join_run: Option<uuid::Uuid>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            restart: false,
            overrides: gates::Overrides::default(),
            confirmed: None,
            pin: crate::engine::pinned::Pin::default(),
            retries: DEFAULT_RETRIES,
            lease: DEFAULT_LEASE,
            again: None,
            join: false,
            join_run: None,
        }
    }
}

/// What one run needs, for every attempt.
struct Driver<'a> {
    plan: &'a Plan,
    connection: &'a Connection,
    options: &'a ApplyOptions,
    pool: PgPool,
    lease: Lease,
    /// This process as one of the run's executors.
    executor: &'a Executor,
    cancel: &'a Cancel,
    /// The gates passed and the operator confirmed, once for this process: a retry after a
    /// passing fault neither asks again nor refuses at the window (the clock pauses there).
    gated: std::cell::Cell<bool>,
    /// Gates overridden by the operator who started the run (recorded in its log).
    inherited: Vec<gates::Gate>,
}

/// Runs the plan; the report is filled as far as the run went, also on error.
pub async fn apply(
    plan: &Plan,
    connection: &Connection,
    options: &ApplyOptions,
    reporter: &mut dyn Reporter,
    cancel: &Cancel,
    report: &mut Report,
) -> Result<(), RunError> {
    let pool = state::connect_executor(
        &connection.database_url,
        options.lease,
        plan.raw.rate_limit.parallel_batches,
    )
    .await?;
    check_tables(&pool, plan).await?;
    report.connections = describe(&pool, plan, &connection.amqp_url).await?;
    state::migrate(&pool).await?;
    let mut member: Option<Member> = None;
    let result = take_part(
        plan,
        connection,
        options,
        &pool,
        &mut member,
        reporter,
        cancel,
        report,
    )
    .await;
    if let Some(m) = member {
        m.heartbeat.abort();
        m.executor.leave(&pool).await;
        if let Ok(n) = claims::count(&pool, m.executor.run_id).await {
            report.executors = n as u64;
        }
    }
    result
}

/// This process's part in a run: its registration and the heartbeat that keeps its claims.
struct Member {
    executor: Executor,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// Registers this process as an executor of the run, once.
async fn member<'m>(
    pool: &PgPool,
    member: &'m mut Option<Member>,
    run_id: uuid::Uuid,
    options: &ApplyOptions,
    cancel: &Cancel,
) -> Result<&'m Executor, RunError> {
    if member.as_ref().is_none_or(|m| m.executor.run_id != run_id) {
        if let Some(old) = member.take() {
            old.heartbeat.abort();
            old.executor.leave(pool).await;
        }
        let executor = claims::register(pool, run_id, options.lease).await?;
        let heartbeat = executor.heartbeat(pool.clone(), cancel.clone());
        *member = Some(Member {
            executor,
            heartbeat,
        });
    }
    Ok(&member.as_ref().expect("registered above").executor)
}

/// Takes the run's lease and drives the run, or joins the run in progress (`--join`) and takes
/// it over when its lease comes free.
#[allow(clippy::too_many_arguments)]
async fn take_part(
    plan: &Plan,
    connection: &Connection,
    options: &ApplyOptions,
    pool: &PgPool,
    member_slot: &mut Option<Member>,
    reporter: &mut dyn Reporter,
    cancel: &Cancel,
    report: &mut Report,
) -> Result<(), RunError> {
    if let Some(run_id) = options.join_run {
        let run = state::run(pool, run_id).await?;
        if !run.status.joinable() {
            return Err(RunError::Refused(format!(
                "run `{run_id}` is {}; there is nothing to join",
                run.status
            )));
        }
        let executor = member(pool, member_slot, run.id, options, cancel).await?;
        return match follow_then_lead(
            plan, connection, options, pool, &run, executor, reporter, cancel, report,
        )
        .await?
        {
            Some((run, lease)) => {
                lead(
                    plan, connection, options, pool, run, lease, executor, true, reporter, cancel,
                    report,
                )
                .await
            }
            None => Ok(()),
        };
    }
    let taking = state::Taking {
        ttl: options.lease,
        restart: options.restart,
        again: options.again.is_some(),
        because: options.overrides.because.as_deref(),
        join: options.join,
        new_id: options.confirmed,
    };
    let acquired = state::acquire(pool, plan, &connection.operator, taking).await?;
    let (run, lease) = match acquired {
        Acquired::Run { run, lease } => match options.confirmed {
            // Another apply started or resumed a run between the question and now.
            Some(confirmed) if confirmed != run.id => {
                lease.release(pool).await;
                return Err(RunError::Refused(format!(
                    "run `{}` is not the run that was confirmed (`{confirmed}`): the plan's runs \
                     changed while the question was open; nothing was written, apply again to see \
                     them",
                    run.id
                )));
            }
            _ => (run, lease),
        },
        Acquired::Join(run) => {
            let executor = member(pool, member_slot, run.id, options, cancel).await?;
            match follow_then_lead(
                plan, connection, options, pool, &run, executor, reporter, cancel, report,
            )
            .await?
            {
                Some((run, lease)) => {
                    return lead(
                        plan, connection, options, pool, run, lease, executor, true, reporter,
                        cancel, report,
                    )
                    .await;
                }
                None => return Ok(()),
            }
        }
        Acquired::Succeeded {
            run_id,
            finished_at,
        } => {
            report.run_id = Some(run_id.to_string());
            report.status = "already_succeeded".into();
            report.next.push(format!(
                "run `{run_id}` of this plan with these parameters already succeeded at {}; nothing was done \
                 (pass `--again --because \"…\"` to run it anew)",
                finished_at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
            return Ok(());
        }
        Acquired::Changed(open) => {
            let what = if open.plan_hash != plan.hash {
                "the plan changed"
            } else {
                "the parameters differ"
            };
            return Err(RunError::Refused(format!(
                "run `{}` of plan `{}` is unfinished ({}) and {what} since it started (plan hash {} then, {} now); \
                 resume it with the original plan and parameters, or pass `--restart` to abandon it",
                open.id,
                plan.raw.name,
                open.status,
                open.plan_hash.get(..12).unwrap_or(&open.plan_hash),
                plan.short_hash()
            )));
        }
    };
    let executor = member(pool, member_slot, run.id, options, cancel).await?;
    lead(
        plan, connection, options, pool, run, lease, executor, false, reporter, cancel, report,
    )
    .await
}

/// Works on the run beside its lease holder; when the lease comes free, takes it over (only
/// this run, only while it is in progress) and returns it to drive; `None` when the run ended.
#[allow(clippy::too_many_arguments)]
async fn follow_then_lead(
    plan: &Plan,
    connection: &Connection,
    options: &ApplyOptions,
    pool: &PgPool,
    run: &state::OpenRun,
    executor: &Executor,
    reporter: &mut dyn Reporter,
    cancel: &Cancel,
    report: &mut Report,
) -> Result<Option<(state::OpenRun, Lease)>, RunError> {
    loop {
        match join::follow(
            plan, connection, pool, run, executor, options, reporter, cancel, report,
        )
        .await?
        {
            Followed::Ended => return Ok(None),
            Followed::Lead(seen) => match state::take_over(pool, run.id, seen, options.lease).await
            {
                Ok(Some(lease)) => {
                    tracing::warn!(run = %run.id, "the run's lease was free: this executor takes the run over");
                    return Ok(Some((state::run(pool, run.id).await?, lease)));
                }
                // Another executor took it first: go on beside it.
                Ok(None) => {}
                // A passing fault: look at the run again (following retries with its budget).
                Err(e) if e.class() == FaultClass::Transient => {
                    tracing::warn!(error = %e, "could not take the run's lease over; looking again");
                }
                Err(e) => return Err(e),
            },
        }
    }
}

/// Drives the run whose lease this process holds, to its end.
#[allow(clippy::too_many_arguments)]
async fn lead(
    plan: &Plan,
    connection: &Connection,
    options: &ApplyOptions,
    pool: &PgPool,
    run: state::OpenRun,
    lease: Lease,
    executor: &Executor,
    took_over: bool,
    reporter: &mut dyn Reporter,
    cancel: &Cancel,
    report: &mut Report,
) -> Result<(), RunError> {
    report.led = true;
    let pool = pool.clone();
    // The gates the run's operator overrode hold for whoever drives it; an executor that took
    // the run over does not judge again what its starter judged and confirmed.
    let inherited = state::overridden_gates(&pool, run.id).await?;
    // Judged already only if the run got past its gates and its operator's confirmation: an
    // operator still at the prompt (or gone from it) confirmed nothing a joiner could inherit.
    let took_over =
        took_over && run.selected.is_some() && state::logged(&pool, run.id, "confirmed").await?;
    report.run_id = Some(run.id.to_string());
    report.resumed = run.selected.is_some() || run.status == RunStatus::RollingBack;
    if let Some(was) =
        state::repace(&pool, run.id, &plan.raw.rate_limit, &connection.operator).await?
    {
        let now = serde_json::to_value(&plan.raw.rate_limit).unwrap_or_default();
        tracing::warn!(run = %run.id, was = %was, now = %now, "paced as the plan now says: its `rate_limit` changed since the run's last attempt");
    }
    if let Some(because) = options.again.as_ref().filter(|_| !report.resumed) {
        state::log(
            &pool,
            run.id,
            "again",
            None,
            json!({"because": because, "operator": connection.operator}),
        )
        .await;
    }
    let driver = Driver {
        plan,
        connection,
        options,
        pool: pool.clone(),
        lease,
        executor,
        cancel,
        gated: std::cell::Cell::new(took_over),
        inherited,
    };
    let heartbeat = driver.lease.heartbeat(pool.clone(), cancel.clone());
    let stop_watch = watch_stop_requests(pool.clone(), run.id, cancel.clone());
    // Once the heartbeat stopped the run (its lease lapsed), the run gets a grace to end at a
    // batch boundary; a batch whose query hangs on a black-holed connection is then dropped (its
    // transaction never commits), so the executor stops on its own, as the lease requires.
    let result = tokio::select! {
        result = driver.drive(reporter, report) => result,
        () = lapsed(&driver.lease) => {
            tracing::error!(run = %run.id, "the run did not stop within {LAPSE_GRACE:?} of its lease lapsing; abandoning the batch in flight");
            Err(RunError::Interrupted)
        }
    };
    heartbeat.abort();
    stop_watch.abort();
    // A stop the heartbeat caused says why.
    let result = match (result, driver.lease.lapse()) {
        (Err(RunError::Interrupted), Some(Lapse::TakenOver)) => Err(RunError::LeaseLost {
            run_id: run.id.to_string(),
        }),
        (Err(RunError::Interrupted), Some(Lapse::Expired)) => Err(RunError::LeaseExpired {
            run_id: run.id.to_string(),
        }),
        (result, _) => result,
    };
    let result = driver.finish(result, report).await;
    driver.lease.release(&pool).await;
    reporter.event(&RunEvent::RunFinished {
        status: report.status.clone(),
    });
    result
}

impl Driver<'_> {
    /// Attempts the run until it ends, retrying passing faults from the last checkpoint with
    /// backoff, within the retry budget.
    async fn drive(
        &self,
        reporter: &mut dyn Reporter,
        report: &mut Report,
    ) -> Result<(), RunError> {
        let mut failures = 0;
        let mut reached = self.progress_marker().await;
        loop {
            let error = match self.attempt(reporter, report).await {
                Ok(()) => return Ok(()),
                Err(e) if e.class() == FaultClass::Transient => e,
                Err(e) => return Err(e),
            };
            // The budget is for faults in a row: an attempt that moved a checkpoint starts it anew.
            let now = self.progress_marker().await;
            if now > reached {
                failures = 0;
                reached = now;
            }
            failures += 1;
            if failures > self.options.retries {
                return Err(RunError::RetriesExhausted {
                    attempts: failures,
                    last: Box::new(error),
                });
            }
            let wait = backoff(failures);
            tracing::warn!(error = %error, attempt = failures, "a passing fault; retrying from the last checkpoint");
            reporter.event(&RunEvent::Retrying {
                attempt: failures,
                budget: self.options.retries,
                after_ms: wait.as_millis() as u64,
                error: error.to_string(),
            });
            report.retries = failures;
            state::log(
                &self.pool,
                self.lease.run_id,
                "retry",
                None,
                json!({"attempt": failures, "error": error.to_string()}),
            )
            .await;
            let deadline = tokio::time::Instant::now() + wait;
            while tokio::time::Instant::now() < deadline {
                self.cancel.check()?;
                tokio::time::sleep(Duration::from_millis(50).min(wait)).await;
            }
        }
    }

    /// How far the run's checkpoints are (0 when they cannot be read).
    async fn progress_marker(&self) -> i64 {
        state::step_progress(&self.pool, self.lease.run_id)
            .await
            .map(|p| {
                p.values()
                    .map(|s| s.events_done() + i64::from(s.done))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// One attempt, from whatever the run's records say is done.
    async fn attempt(
        &self,
        reporter: &mut dyn Reporter,
        report: &mut Report,
    ) -> Result<(), RunError> {
        let (plan, pool) = (self.plan, &self.pool);
        let run = state::run(pool, self.lease.run_id).await?;
        report.steps.clear();
        report.verifications.clear();
        report.backups.clear();
        let mut writes = Commit { pool: pool.clone() };
        let scope = BindScope::new(plan, run.id, run.started_at, writes.selection_table());
        match run.status {
            // The rollback committed but its acknowledgement was lost: it is done.
            RunStatus::RolledBack => {
                report.rolled_back = true;
                return Err(RunError::RollbackResumed {
                    cause: run.error.clone().unwrap_or_default(),
                });
            }
            s if !s.resumable() => {
                return Err(RunError::Refused(format!(
                    "run `{}` is {s}; there is nothing to resume",
                    run.id
                )));
            }
            _ => {}
        }
        if run.status == RunStatus::RollingBack {
            // A rollback was under way when the last attempt ended: finish it, never the steps.
            let cause = run
                .error
                .clone()
                .unwrap_or_else(|| "an earlier failure".into());
            // A canary that failed is undone over its own events.
            let table =
                canary::undo_table(plan, pool, run.id, run.selected, writes.selection_table())
                    .await?;
            let scope = BindScope::new(plan, run.id, run.started_at, &table);
            self.undo(&scope, &cause, reporter, report).await?;
            return Err(RunError::RollbackResumed { cause });
        }
        let frozen = match (run.selected, run.selection_digest.clone()) {
            (Some(n), Some(digest)) => freeze::Frozen {
                selected: n as u64,
                digest,
            },
            // Frozen before digests were recorded with the size.
            (Some(_), None) => freeze::digest(&mut writes, run.id).await?,
            (None, _) => {
                // Gates first, on a count: nothing is frozen or copied for a run they refuse.
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(RunError::db("counting the selection"))?;
                let counted = freeze::count(&mut conn, plan).await?;
                drop(conn);
                if !self.gated.get() {
                    self.gates(counted, None, report)?;
                }
                let frozen = freeze::freeze(&mut writes, plan, run.id, self.lease.token).await?;
                reporter.event(&RunEvent::SelectionFrozen {
                    selected: frozen.selected,
                });
                if plan.raw.canary.is_some() && canary::size(plan, frozen.selected).is_none() {
                    state::drop_canary_records(pool, run.id).await?;
                }
                frozen
            }
        };
        let selected = frozen.selected;
        report.selected = selected;
        reporter.event(&RunEvent::RunStarted {
            run_id: run.id.to_string(),
            resumed: report.resumed,
            selected,
        });
        report.selection_digest = frozen.digest;
        if !self.gated.get() {
            let pinned_keys = self
                .options
                .pin
                .pinned
                .as_ref()
                .is_some_and(|p| p.selection_keys.is_some());
            let keys = match pinned_keys {
                true => {
                    let mut conn = pool
                        .acquire()
                        .await
                        .map_err(RunError::db("reading the selection's keys"))?;
                    freeze::keys(&mut conn, writes.selection_table(), run.id).await?
                }
                false => None,
            };
            if let Some(within) = self
                .options
                .pin
                .check_selection(
                    &report.target,
                    selected,
                    &report.selection_digest,
                    keys.as_deref(),
                )
                .map_err(RunError::Refused)?
            {
                tracing::warn!("{within}");
                report.warnings.push(within);
            }
            let overlap = self.overlap(run.id).await?;
            self.gates(selected, overlap, report)?;
            for g in report.gates.iter().filter(|g| g.overridden.is_some()) {
                state::log(pool, run.id, "override", None, json!({"gate": g.gate, "because": g.overridden, "operator": self.connection.operator, "detail": g.detail})).await;
            }
            state::log(
                pool,
                run.id,
                "confirmed",
                None,
                json!({"operator": self.connection.operator, "typed": self.options.confirmed.is_some()}),
            )
            .await;
            self.gated.set(true);
        }
        // Every exchange and queue the plan names must exist before the first write.
        let mut broker =
            crate::engine::broker::connect_for(plan, &self.connection.amqp_url).await?;
        // And every http step's secrets and CA file must be there.
        let requests = crate::engine::http::Endpoints::for_plan(plan)?;
        capture_before(plan, pool, &scope, run.id, Judged::Run).await?;
        if let Some(n) = canary::size(plan, selected) {
            let table = canary::canary_table(writes.selection_table(), n);
            let canary_scope = BindScope::new(plan, run.id, run.started_at, &table);
            capture_before(plan, pool, &canary_scope, run.id, Judged::Canary).await?;
        }
        if let Some(pg_dump) = plan.raw.backup.as_ref().and_then(|b| b.pg_dump.as_ref())
            && !state::logged(pool, run.id, "pg_dump").await?
        {
            let path = crate::engine::dump::dump(
                &self.connection.database_url,
                &pg_dump.directory,
                run.id,
            )
            .await?;
            state::log(
                pool,
                run.id,
                "pg_dump",
                None,
                json!({"file": path.display().to_string()}),
            )
            .await;
            report.dump_file = Some(path.display().to_string());
        }
        let already = state::backed_up_tables(pool, run.id).await?;
        for snapshot in backup::take(
            &mut writes,
            plan,
            &scope,
            run.id,
            self.lease.token,
            &already,
        )
        .await?
        {
            reporter.event(&RunEvent::BackupTaken {
                table: snapshot.table.clone(),
                rows: snapshot.rows,
                checksum: snapshot.checksum.clone(),
            });
            report.backups.push(snapshot);
        }
        // Outside the plan's window the run pauses (unless the operator overrode the window);
        // before every batch, the plan's guards are read.
        let overridden = self.options.overrides.gates.contains(&gates::Gate::Window)
            || self.inherited.contains(&gates::Gate::Window);
        let mut clock = guards::Guarded {
            inner: window::run_clock(plan, pool, run.id, overridden, self.cancel.clone()),
            guards: guards::Guards::new(
                plan,
                guards::Setting {
                    pool: pool.clone(),
                    scope: scope.clone(),
                    amqp_url: self.connection.amqp_url.clone(),
                    cancel: self.cancel.clone(),
                    leads: true,
                    message: Some(crate::engine::notify::Message::of(
                        crate::plan::model::NotifyOn::Guard,
                        report,
                        Duration::ZERO,
                    )),
                },
            ),
        };
        report.wrote = true;
        let mut journal = Recorded {
            pool: pool.clone(),
            run_id: run.id,
        };
        let canary = canary::size(plan, selected);
        let outcome = match canary {
            Some(n) => {
                self.canary(
                    n,
                    &run,
                    selected,
                    (
                        &mut writes,
                        &mut broker,
                        &requests,
                        &mut clock,
                        &mut journal,
                    ),
                    reporter,
                    report,
                )
                .await
            }
            None => Ok(()),
        };
        // After a canary, the steps see the events it did not take; the verifications, all.
        let rest = canary.map(|n| canary::rest_table(writes.selection_table(), n));
        let step_scope = match &rest {
            Some(table) => BindScope::new(plan, run.id, run.started_at, table),
            None => scope.clone(),
        };
        let mut ctx = StepContext {
            plan,
            run_id: run.id,
            lease: self.lease.token,
            started_at: run.started_at,
            binds: &step_scope,
            total: selected,
            limit: selected,
            cancel: self.cancel,
            reporter,
            executor: Some(self.executor),
        };
        // A failed canary rolled back its own events already.
        let in_canary = outcome.is_err();
        let outcome = match outcome {
            Ok(()) => {
                sequence::run_all(
                    &mut ctx,
                    &plan.raw.steps,
                    &mut writes,
                    &mut broker,
                    &requests,
                    &mut clock,
                    &mut journal,
                    report,
                )
                .await
            }
            Err(e) => Err(e),
        };
        report.paused_secs += clock.inner.paused.as_secs_f64() + clock.guards.paused.as_secs_f64();
        report.guard_trips.extend(clock.guards.trips.clone());
        let stopped_by = clock.guards.stopped.clone();
        let told = clock.guards.finish().await;
        report.notifications.extend(told);
        if let Some(b) = broker {
            b.close().await;
        }
        // A guard that stopped the run says so, in place of "interrupted".
        let outcome = match (outcome, stopped_by) {
            // (A wait that was the last step ends its poll, not done, when a guard stops the
            // run; a stop is never judged by the verifications.)
            (Err(RunError::Interrupted) | Ok(()), Some(trip)) => Err(RunError::GuardStopped {
                guard: trip.guard,
                message: trip.message,
            }),
            (outcome, _) => outcome,
        };
        if let Err(e) = outcome {
            if e.class() != FaultClass::PlanLogic || in_canary {
                return Err(e);
            }
            ctx.emit(RunEvent::StepFailed {
                step: step_of(&e),
                error: e.to_string(),
            });
            return self.roll_back(&scope, e, ctx.reporter, report).await;
        }
        let failed = verify_all(
            plan,
            pool,
            &scope,
            run.id,
            Judged::Run,
            ctx.reporter,
            &mut report.verifications,
        )
        .await?;
        // A report of what failed again, not a judgement: a query that cannot run (a passing
        // fault, a target without the error column) is a warning, never the run's outcome.
        report.failing = match failing(plan, pool, run.id).await {
            Ok(failing) => failing,
            Err(e) => {
                report
                    .warnings
                    .push(format!("could not list the events that failed again: {e}"));
                None
            }
        };
        if failed > 0 {
            let error = match plan.raw.rollback.is_empty() {
                true => RunError::VerificationFailedNoRollback { failed },
                false => RunError::VerificationFailed { failed },
            };
            return self.roll_back(&scope, error, ctx.reporter, report).await;
        }
        Ok(())
    }

    /// The canary: the plan's steps over the first `n` events, its pause, then the verifications
    /// over those events. A failure rolls back the canary (only its events were touched) and ends
    /// the run; once it passed, the plan's batch-wise steps go on after it, and a resume reports it
    /// from the run log without running it again.
    #[allow(clippy::too_many_arguments)]
    async fn canary<B: crate::engine::broker::Broker, C: crate::engine::pace::Clock>(
        &self,
        n: u64,
        run: &state::OpenRun,
        selected: u64,
        (writes, broker, requests, clock, journal): (
            &mut Commit,
            &mut B,
            &crate::engine::http::Endpoints,
            &mut C,
            &mut Recorded,
        ),
        reporter: &mut dyn Reporter,
        report: &mut Report,
    ) -> Result<(), RunError> {
        let (plan, pool) = (self.plan, &self.pool);
        let table = canary::canary_table(writes.selection_table(), n);
        let scope = BindScope::new(plan, run.id, run.started_at, &table);
        let event_ids = {
            let mut conn = pool
                .acquire()
                .await
                .map_err(RunError::db("reading the canary's events"))?;
            state::first_selected(
                &mut conn,
                writes.selection_table(),
                run.id,
                n.min(20) as i64,
            )
            .await?
        };
        let mut summary = CanaryReport {
            events: n,
            event_ids,
            pause_secs: canary::pause(plan).as_secs_f64(),
            ..CanaryReport::default()
        };
        if let Some(passed) = state::logged_details(pool, run.id, state::CANARY_PASSED)
            .await?
            .into_iter()
            .next()
        {
            summary.passed = Some(true);
            summary.verifications =
                serde_json::from_value(passed["verifications"].clone()).unwrap_or_default();
            report.canary = Some(summary);
            return Ok(());
        }
        let steps = canary::steps(plan);
        let mut ctx = StepContext {
            plan,
            run_id: run.id,
            lease: self.lease.token,
            started_at: run.started_at,
            binds: &scope,
            total: n,
            limit: n,
            cancel: self.cancel,
            reporter,
            executor: Some(self.executor),
        };
        let mut phase = Report::default();
        let outcome = sequence::run_all(
            &mut ctx, &steps, writes, broker, requests, clock, journal, &mut phase,
        )
        .await;
        summary.steps = phase.steps;
        report.canary = Some(summary);
        if let Err(e) = outcome {
            if e.class() != FaultClass::PlanLogic {
                return Err(e);
            }
            ctx.emit(RunEvent::StepFailed {
                step: step_of(&e),
                error: e.to_string(),
            });
            return self.roll_back(&scope, e, ctx.reporter, report).await;
        }
        // A guard that stopped the run after the canary's last batch: it is not judged.
        self.cancel.check()?;
        let pause = canary::pause(plan);
        if !pause.is_zero() {
            tracing::info!(
                "the canary's steps are done; waiting {} before judging it",
                crate::plan::duration::format(pause)
            );
            // The guards are read meanwhile, as between a wait's polls.
            let until = tokio::time::Instant::now() + pause;
            while tokio::time::Instant::now() < until {
                self.cancel.check()?;
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                clock.poll_pause(left.min(Duration::from_millis(500))).await;
            }
            self.cancel.check()?;
        }
        let mut verifications = Vec::new();
        let failed = verify_all(
            plan,
            pool,
            &scope,
            run.id,
            Judged::Canary,
            ctx.reporter,
            &mut verifications,
        )
        .await?;
        if let Some(c) = report.canary.as_mut() {
            c.passed = Some(failed == 0);
            c.verifications = verifications.clone();
        }
        if failed > 0 {
            let error = RunError::CanaryFailed {
                failed,
                canary: n,
                rest: selected - n,
                undone: match plan.raw.rollback.is_empty() {
                    true => "the plan has no rollback actions, so the canary's changes stay",
                    false => "the rollback undid the canary's changes",
                },
            };
            return self.roll_back(&scope, error, ctx.reporter, report).await;
        }
        state::pass_canary(
            pool,
            &self.lease,
            n as i64,
            &canary::batch_wise(plan),
            json!({"events": n, "verifications": verifications}),
        )
        .await
    }

    /// The `overlap` gate, judged once per run before its first write: its frozen selection
    /// against those of every unfinished run on the same target.
    async fn overlap(&self, run_id: uuid::Uuid) -> Result<Option<gates::GateResult>, RunError> {
        // Judged once, before the first write: not again on a resume (nor for a run that wrote
        // before this gate existed).
        if state::logged(&self.pool, run_id, "overlap_checked").await?
            || self.progress_marker().await > 0
        {
            return Ok(None);
        }
        let overridden = self.options.overrides.gates.contains(&gates::Gate::Overlap);
        let found = state::check_overlap(
            &self.pool,
            run_id,
            &self.plan.raw.target.events_table,
            |found| found.is_empty() || overridden,
        )
        .await?;
        Ok(Some(gates::overlap(&found)))
    }

    /// The gates on a selection size, with the rehearsal proof, the overlap with other runs (once
    /// frozen) and the operator's overrides.
    fn gates(
        &self,
        selected: u64,
        overlap: Option<gates::GateResult>,
        report: &mut Report,
    ) -> Result<(), RunError> {
        report.gates = gates::check(self.plan, selected, chrono::Utc::now());
        report.gates.extend(overlap);
        report
            .gates
            .extend(self.options.pin.gates(self.plan, &report.target, false));
        self.options.overrides.apply(&mut report.gates);
        match gates::refusal(&report.gates) {
            Some(refusal) => Err(RunError::Refused(refusal)),
            None => Ok(()),
        }
    }

    /// A plan-logic failure: journal `rolling_back`, then run the plan's rollback (which records
    /// `rolled_back` with its last restore). A plan without rollback actions ends `failed`.
    async fn roll_back(
        &self,
        scope: &BindScope,
        error: RunError,
        reporter: &mut dyn Reporter,
        report: &mut Report,
    ) -> Result<(), RunError> {
        if self.plan.raw.rollback.is_empty() {
            return Err(error);
        }
        let cause = error.to_string();
        state::set_status(
            &self.pool,
            &self.lease,
            RunStatus::RollingBack,
            Some(&cause),
        )
        .await?;
        self.undo(scope, &cause, reporter, report).await?;
        Err(error)
    }

    /// The plan's rollback actions, in one transaction that records `rolled_back` (never forced:
    /// rows changed since the run wrote them are kept).
    async fn undo(
        &self,
        scope: &BindScope,
        cause: &str,
        reporter: &mut dyn Reporter,
        report: &mut Report,
    ) -> Result<(), RunError> {
        rollback::run_actions(
            self.plan,
            &self.pool,
            scope,
            &self.lease,
            cause,
            false,
            reporter,
            report,
        )
        .await
    }

    /// Records how the run ended. What is recorded follows from the error's class alone.
    async fn finish(
        &self,
        result: Result<(), RunError>,
        report: &mut Report,
    ) -> Result<(), RunError> {
        let stopped = state::stop_requested(&self.pool, self.lease.run_id)
            .await
            .unwrap_or(false);
        let status = match &result {
            Ok(()) => RunStatus::Succeeded,
            Err(e) => match e.class() {
                FaultClass::LeaseLost => {
                    report.status = RunStatus::Interrupted.to_string();
                    return result;
                }
                FaultClass::Interrupted if stopped && matches!(e, RunError::Interrupted) => {
                    RunStatus::Stopped
                }
                FaultClass::Interrupted if matches!(e, RunError::GuardStopped { .. }) => {
                    RunStatus::Stopped
                }
                FaultClass::Interrupted | FaultClass::Transient => RunStatus::Interrupted,
                FaultClass::PlanLogic if report.rolled_back => RunStatus::RolledBack,
                FaultClass::PlanLogic | FaultClass::Bug => RunStatus::Failed,
                // A refusal on resume leaves the run as resumable as it was.
                FaultClass::Refusal if report.resumed || report.wrote => RunStatus::Interrupted,
                FaultClass::Refusal => RunStatus::Refused,
            },
        };
        let mut message = result.as_ref().err().map(|e| e.to_string());
        // Once a rollback is under way, only its own end may replace it: whatever stopped it, the
        // next attempt finishes the rollback, never the steps.
        let mut status = status;
        if status != RunStatus::RolledBack
            && let Ok(run) = state::run(&self.pool, self.lease.run_id).await
            && run.status == RunStatus::RollingBack
            && result.is_err()
        {
            status = RunStatus::RollingBack;
            message = run.error;
        }
        report.status = status.to_string();
        // The rollback recorded its status in its own transaction.
        if status != RunStatus::RolledBack {
            // With the database gone the status cannot be recorded; the run stays `running`, its
            // lease runs out, and the next apply resumes it. The original error is the news.
            match state::set_status(&self.pool, &self.lease, status, message.as_deref()).await {
                Ok(()) => {}
                Err(e @ RunError::LeaseLost { .. }) => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the run's status");
                    return result;
                }
            }
        }
        state::log(
            &self.pool,
            self.lease.run_id,
            "finished",
            None,
            json!({"status": status, "error": message}),
        )
        .await;
        if matches!(
            status,
            RunStatus::Succeeded | RunStatus::RolledBack | RunStatus::Refused
        ) && let Err(e) = audit::write(
            &self.pool,
            self.plan,
            self.connection,
            self.lease.run_id,
            status.as_str(),
        )
        .await
        {
            // The work is done and recorded in `replay.runs`; only the target's audit row is missing.
            tracing::warn!(error = %e, "cannot write the audit row");
            report
                .warnings
                .push(format!("the audit row could not be written: {e}"));
        }
        result
    }
}

/// How long a run whose lease lapsed may take to end by itself.
const LAPSE_GRACE: Duration = Duration::from_secs(5);

/// Resolves `LAPSE_GRACE` after the heartbeat stopped the run; never before.
async fn lapsed(lease: &Lease) {
    while lease.lapse().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(LAPSE_GRACE).await;
}

/// Exponential backoff with jitter: 0.5 s, 1 s, 2 s, … up to 15 s, each ±20 %.
pub(crate) fn backoff(failures: u32) -> Duration {
    use rand::Rng;
    let base = (500u64 << failures.saturating_sub(1).min(5)).min(15_000) as f64;
    let jitter = rand::rng().random_range(0.8..1.2);
    Duration::from_millis((base * jitter) as u64)
}

fn step_of(e: &RunError) -> String {
    match e {
        RunError::Step { step, .. } => step.clone(),
        _ => String::new(),
    }
}

/// Whose verifications: the run's (over its whole selection, recorded), or its canary's (over the
/// canary's events, logged with the canary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    Run,
    Canary,
}

impl Judged {
    /// Where a verification's value before the run is kept.
    fn before_name(self, verification: &str) -> String {
        match self {
            Judged::Run => verification.to_string(),
            Judged::Canary => canary::before_name(verification),
        }
    }
}

/// Captures `equals_before` values once per run (for the scope's events).
async fn capture_before(
    plan: &Plan,
    pool: &PgPool,
    scope: &BindScope,
    run_id: uuid::Uuid,
    judged: Judged,
) -> Result<(), RunError> {
    for (i, v) in plan
        .raw
        .verify
        .iter()
        .enumerate()
        .filter(|(_, v)| v.expect.equals_before)
    {
        let name = judged.before_name(&v.name);
        if state::before_value(pool, run_id, &name).await?.is_some() {
            continue;
        }
        let value = verify::read_only_value(pool, scope, plan, i).await?;
        state::record_before_value(pool, run_id, &name, &value).await?;
    }
    Ok(())
}

/// Runs every verification; returns how many failed.
async fn verify_all(
    plan: &Plan,
    pool: &PgPool,
    scope: &BindScope,
    run_id: uuid::Uuid,
    judged: Judged,
    reporter: &mut dyn Reporter,
    out: &mut Vec<VerificationReport>,
) -> Result<usize, RunError> {
    let mut failed = 0;
    for (i, v) in plan.raw.verify.iter().enumerate() {
        let actual = verify::read_only_value(pool, scope, plan, i).await?;
        let before = state::before_value(pool, run_id, &judged.before_name(&v.name)).await?;
        let (passed, expected) = verify::judge(&v.expect, &actual, before.as_ref());
        failed += usize::from(!passed);
        if judged == Judged::Run {
            state::record_verification(pool, run_id, i, &v.name, passed, &actual, &expected)
                .await?;
        }
        let name = match judged {
            Judged::Run => v.name.clone(),
            Judged::Canary => format!("canary: {}", v.name),
        };
        reporter.event(&RunEvent::Verified {
            name,
            passed,
            actual: actual.clone(),
            expected: expected.clone(),
        });
        out.push(VerificationReport {
            name: v.name.clone(),
            passed,
            actual,
            expected,
        });
    }
    Ok(failed)
}

/// The selected events whose status is still the failed one, after the waits and verifications.
async fn failing(
    plan: &Plan,
    pool: &PgPool,
    run_id: uuid::Uuid,
) -> Result<Option<Failing>, RunError> {
    let looks_again =
        !plan.raw.verify.is_empty() || plan.raw.steps.iter().any(|s| matches!(s, Step::Wait(_)));
    if !looks_again {
        return Ok(None);
    }
    let rows = state::still_failing(
        pool,
        run_id,
        &plan.raw.target,
        FAILED_STATUS,
        FAILING_LISTED,
    )
    .await
    .map_err(RunError::db("looking for events that failed again"))?;
    let groups = match rows.is_empty() {
        true => Vec::new(),
        false => state::still_failing_groups(pool, &plan.raw.target, run_id, FAILED_STATUS).await?,
    };
    Ok(Some(Failing {
        groups,
        total: rows.first().map_or(0, |r| r.0 as u64),
        first: rows
            .into_iter()
            .map(|(_, id, message)| (id, message.unwrap_or_default()))
            .collect(),
    }))
}

/// `replay stop` sets `stop_requested`. Batch steps read it in each checkpoint's transaction; this
/// watcher covers the time between batches (a long `wait`, a throttled publish).
fn watch_stop_requests(
    pool: PgPool,
    run_id: uuid::Uuid,
    cancel: Cancel,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if matches!(state::stop_requested(&pool, run_id).await, Ok(true)) {
                tracing::warn!(run = %run_id, "stop requested by `replay stop`: finishing the batch in flight");
                cancel.cancel();
                return;
            }
        }
    })
}
