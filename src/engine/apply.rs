//! A real run: lock, resume or start, freeze, back up, run the steps with checkpoints, verify,
//! roll back on failure, audit.

use crate::engine::binds::audited;
use std::collections::HashMap;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::engine::binds::BindScope;
use crate::engine::broker::Amqp;
use crate::engine::error::RunError;
use crate::engine::events::{Reporter, RunEvent};
use crate::engine::pace::TokenBucket;
use crate::engine::report::{Report, StepReport, VerificationReport};
use crate::engine::steps::{self, Cancel, StepContext};
use crate::engine::writes::{Commit, Writes};
use crate::engine::{backup, freeze, gates, state, verify};
use crate::plan::Plan;
use crate::plan::model::{Step, WaitStep};
use crate::plan::selection::quote_ident;

/// How to reach the target, and who runs.
#[derive(Debug, Clone)]
pub struct Connection {
    pub database_url: String,
    pub amqp_url: String,
    pub operator: String,
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Abandon an unfinished run whose plan or parameters differ, and start anew.
    pub restart: bool,
    /// Gates the operator overrides, with the reason (recorded).
    pub overrides: gates::Overrides,
    /// Asked once the selection is frozen and the gates passed, before the first write;
    /// `None` means confirmed (`--yes`, or a caller that is not a person).
    pub confirm: Option<fn(&Report) -> bool>,
    /// A pinned plan to hold the run to, and the staging proof it carries.
    pub pin: crate::engine::pinned::Pin,
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
    let pool = state::connect(&connection.database_url).await?;
    check_tables(&pool, plan).await?;
    state::migrate(&pool).await?;
    let Some(_lock) = state::lock(&pool, &plan.raw.name).await? else {
        let holder = state::open_run(&pool, &plan.raw.name).await?;
        return Err(RunError::Locked {
            plan: plan.raw.name.clone(),
            run_id: holder.map_or_else(|| "(unknown)".into(), |r| r.id.to_string()),
        });
    };
    let run = match state::open_run(&pool, &plan.raw.name).await? {
        Some(open) if open.plan_hash == plan.hash && open.params_hash == plan.params_hash => open,
        Some(open) if options.restart => {
            state::set_status(&pool, open.id, "abandoned", Some("abandoned by --restart")).await?;
            state::log(
                &pool,
                open.id,
                "abandoned",
                None,
                json!({"by": connection.operator}),
            )
            .await;
            state::create_run(&pool, plan, &connection.operator).await?
        }
        Some(open) => {
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
                &open.plan_hash[..12],
                plan.short_hash()
            )));
        }
        None => state::create_run(&pool, plan, &connection.operator).await?,
    };
    report.run_id = Some(run.id.to_string());
    // A stop asked of an earlier attempt (even one that was killed) is spent: this one runs.
    sqlx::query(
        "UPDATE replay.runs SET status = 'running', stop_requested = false, error = NULL WHERE id = $1",
    )
    .bind(run.id)
    .execute(&pool)
    .await
    .map_err(RunError::db("resuming the run"))?;
    let resumed = run.selected.is_some();
    let stop_watch = watch_stop_requests(pool.clone(), run.id, cancel.clone());
    let result = run_body(
        plan, connection, options, &pool, &run, resumed, reporter, cancel, report,
    )
    .await;
    stop_watch.abort();
    let stopped_by_request: bool =
        sqlx::query_scalar("SELECT stop_requested FROM replay.runs WHERE id = $1")
            .bind(run.id)
            .fetch_one(&pool)
            .await
            .unwrap_or(false);
    let status = match &result {
        Ok(()) => "succeeded",
        Err(RunError::Interrupted) if stopped_by_request => "stopped",
        Err(RunError::Interrupted) => "interrupted",
        Err(RunError::VerificationFailed { .. }) => "rolled_back",
        Err(RunError::Step { .. }) if report.rolled_back => "rolled_back",
        Err(RunError::Refused(_)) => "refused",
        Err(_) => "failed",
    };
    let message = result.as_ref().err().map(|e| e.to_string());
    // With the database gone the status cannot be recorded; the run stays `running`, its lock is
    // released with the connection, and the next apply resumes it. The original error is the news.
    if let Err(e) = state::set_status(&pool, run.id, status, message.as_deref()).await {
        tracing::error!(error = %e, "cannot record the run's status");
        report.status = status.to_string();
        return result;
    }
    state::log(
        &pool,
        run.id,
        "finished",
        None,
        json!({"status": status, "error": message}),
    )
    .await;
    if let Err(e) = crate::engine::rollback::record_after_hashes(&pool, run.id).await {
        tracing::warn!(error = %e, "cannot record the rows' state after the run; a later rollback will ask for --force");
    }
    if !matches!(status, "interrupted" | "failed" | "stopped") {
        audit(&pool, plan, connection, run.id, status).await?;
    }
    report.status = status.to_string();
    reporter.event(&RunEvent::RunFinished {
        status: status.to_string(),
    });
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_body(
    plan: &Plan,
    connection: &Connection,
    options: &ApplyOptions,
    pool: &PgPool,
    run: &state::OpenRun,
    resumed: bool,
    reporter: &mut dyn Reporter,
    cancel: &Cancel,
    report: &mut Report,
) -> Result<(), RunError> {
    let mut writes = Commit { pool: pool.clone() };
    let scope = BindScope::new(plan, run.id, run.started_at, writes.selection_table());
    let selected = match run.selected {
        Some(n) => n as u64,
        None => {
            let n = freeze::freeze(&mut writes, plan, run.id).await?;
            sqlx::query("UPDATE replay.runs SET selected_count = $2 WHERE id = $1")
                .bind(run.id)
                .bind(n as i64)
                .execute(pool)
                .await
                .map_err(RunError::db("recording the selection size"))?;
            reporter.event(&RunEvent::SelectionFrozen { selected: n });
            n
        }
    };
    report.selected = selected;
    report.resumed = resumed;
    reporter.event(&RunEvent::RunStarted {
        run_id: run.id.to_string(),
        resumed,
        selected,
    });
    let (_, digest) = freeze::digest(&mut writes, run.id).await?;
    report.selection_digest = digest;
    options
        .pin
        .check_selection(&report.target, selected, &report.selection_digest)
        .map_err(RunError::Refused)?;
    report.gates = gates::check(plan, selected, chrono::Utc::now());
    report
        .gates
        .extend(options.pin.rehearsal_gate(plan, &report.target, false));
    options.overrides.apply(&mut report.gates);
    if let Some(refusal) = gates::refusal(&report.gates) {
        return Err(RunError::Refused(refusal));
    }
    for g in report.gates.iter().filter(|g| g.overridden.is_some()) {
        state::log(pool, run.id, "override", None, json!({"gate": g.gate, "because": g.overridden, "operator": connection.operator, "detail": g.detail})).await;
    }
    if let Some(confirm) = options.confirm.filter(|_| !resumed)
        && !confirm(report)
    {
        return Err(RunError::Refused(
            "not confirmed; nothing was written".into(),
        ));
    }
    capture_before(plan, pool, &scope, run.id).await?;
    if let Some(pg_dump) = plan.raw.backup.as_ref().and_then(|b| b.pg_dump.as_ref()) {
        let done: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM replay.run_log WHERE run_id = $1 AND kind = 'pg_dump')",
        )
        .bind(run.id)
        .fetch_one(pool)
        .await
        .map_err(RunError::db("reading the run log"))?;
        if !done {
            let path =
                crate::engine::dump::dump(&connection.database_url, &pg_dump.directory, run.id)
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
    }
    let already: Vec<String> =
        sqlx::query_scalar("SELECT table_name FROM replay.backups WHERE run_id = $1")
            .bind(run.id)
            .fetch_all(pool)
            .await
            .map_err(RunError::db("reading backups"))?;
    for snapshot in backup::take(&mut writes, plan, &scope, run.id, &already).await? {
        reporter.event(&RunEvent::BackupTaken {
            table: snapshot.table.clone(),
            rows: snapshot.rows,
            checksum: snapshot.checksum.clone(),
        });
        report.backups.push(snapshot);
    }
    let needs_broker = plan.raw.steps.iter().any(|s| {
        matches!(
            s,
            Step::Publish(_)
                | Step::PurgeQueue(_)
                | Step::Wait(WaitStep {
                    queue_empty: Some(_),
                    ..
                })
        )
    });
    let mut broker = match needs_broker {
        true => Some(
            Amqp::connect(
                &connection.amqp_url,
                plan.raw.rate_limit.confirms_in_flight as usize,
                run.id.to_string(),
                plan.raw.name.clone(),
            )
            .await?,
        ),
        false => None,
    };
    let mut clock = TokenBucket::new(
        plan.raw.rate_limit.per_second,
        plan.raw.rate_limit.batch_size,
    );
    let progress = state::step_progress(pool, run.id).await?;
    let mut ctx = StepContext {
        plan,
        run_id: run.id,
        started_at: run.started_at,
        binds: &scope,
        total: selected,
        cancel,
        reporter,
    };
    let outcome = run_steps(
        &mut ctx,
        &mut writes,
        broker.as_mut(),
        &mut clock,
        &progress,
        report,
    )
    .await;
    if let Some(b) = broker {
        b.close().await;
    }
    match outcome {
        Ok(()) => {}
        Err(e @ RunError::Step { .. }) => {
            ctx.emit(RunEvent::StepFailed {
                step: step_of(&e),
                error: e.to_string(),
            });
            crate::engine::rollback::run_actions(plan, pool, &scope, run.id, ctx.reporter, report)
                .await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    let failed = verify_all(plan, pool, &scope, run.id, ctx.reporter, report).await?;
    if failed > 0 {
        crate::engine::rollback::run_actions(plan, pool, &scope, run.id, ctx.reporter, report)
            .await?;
        return Err(RunError::VerificationFailed { failed });
    }
    Ok(())
}

async fn run_steps(
    ctx: &mut StepContext<'_>,
    writes: &mut Commit,
    mut broker: Option<&mut Amqp>,
    clock: &mut TokenBucket,
    progress: &HashMap<String, (String, i64, i64)>,
    report: &mut Report,
) -> Result<(), RunError> {
    for step in &ctx.plan.raw.steps {
        let (status, checkpoint, touched) =
            progress
                .get(step.id())
                .cloned()
                .unwrap_or(("pending".into(), 0, 0));
        if status == "done" {
            report.steps.push(StepReport {
                id: step.id().into(),
                kind: step.kind().into(),
                touched: touched as u64,
                resumed_from: None,
            });
            continue;
        }
        ctx.emit(RunEvent::StepStarted {
            step: step.id().into(),
            kind: step.kind().into(),
            total: ctx.total,
            done: checkpoint as u64,
        });
        state::log(
            &writes.pool,
            ctx.run_id,
            "step_started",
            Some(step.id()),
            json!({"checkpoint": checkpoint}),
        )
        .await;
        let no_broker =
            || RunError::Refused("this step needs RabbitMQ, which is not connected".into());
        let touched = match step {
            Step::Reset(s) => steps::reset(ctx, writes, clock, s, checkpoint, touched).await?,
            Step::Sql(s) => steps::sql(ctx, writes, clock, s, checkpoint, touched).await?,
            Step::Publish(s) => {
                let b = broker.as_deref_mut().ok_or_else(no_broker)?;
                steps::publish(ctx, writes, b, clock, s, checkpoint, touched).await?
            }
            Step::Wait(s) => match broker.as_deref_mut() {
                Some(b) => steps::wait(ctx, writes, b, clock, s).await?,
                None => steps::wait(ctx, writes, &mut NoBroker, clock, s).await?,
            },
            Step::PurgeQueue(s) => {
                let b = broker.as_deref_mut().ok_or_else(no_broker)?;
                steps::purge(ctx, writes, b, s).await?
            }
        };
        ctx.emit(RunEvent::StepFinished {
            step: step.id().into(),
            touched,
        });
        state::log(
            &writes.pool,
            ctx.run_id,
            "step_finished",
            Some(step.id()),
            json!({"touched": touched}),
        )
        .await;

        report.steps.push(StepReport {
            id: step.id().into(),
            kind: step.kind().into(),
            touched,
            resumed_from: (checkpoint > 0).then_some(checkpoint as u64),
        });
    }
    Ok(())
}

/// Wait steps on a query need no broker.
struct NoBroker;

impl crate::engine::broker::Broker for NoBroker {
    async fn check_exchange(&mut self, _: &str) -> Result<(), crate::engine::error::BrokerError> {
        Ok(())
    }
    async fn publish(
        &mut self,
        _: crate::engine::broker::OutgoingMessage,
    ) -> Result<Vec<i64>, crate::engine::error::BrokerError> {
        Ok(Vec::new())
    }
    async fn flush(&mut self) -> Result<Vec<i64>, crate::engine::error::BrokerError> {
        Ok(Vec::new())
    }
    async fn queue_depth(
        &mut self,
        _: &str,
    ) -> Result<Option<u64>, crate::engine::error::BrokerError> {
        Ok(None)
    }
    async fn purge(&mut self, _: &str) -> Result<u64, crate::engine::error::BrokerError> {
        Ok(0)
    }
}

fn step_of(e: &RunError) -> String {
    match e {
        RunError::Step { step, .. } => step.clone(),
        _ => String::new(),
    }
}

/// Captures `equals_before` values once per run.
async fn capture_before(
    plan: &Plan,
    pool: &PgPool,
    scope: &BindScope,
    run_id: uuid::Uuid,
) -> Result<(), RunError> {
    for v in plan.raw.verify.iter().filter(|v| v.expect.equals_before) {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM replay.before_values WHERE run_id = $1 AND name = $2)",
        )
        .bind(run_id)
        .bind(&v.name)
        .fetch_one(pool)
        .await
        .map_err(RunError::db("reading captured values"))?;
        if exists {
            continue;
        }
        let mut conn = pool
            .acquire()
            .await
            .map_err(RunError::db("capturing values"))?;
        let value = verify::value(&mut conn, scope, &v.sql, &v.name).await?;
        sqlx::query("INSERT INTO replay.before_values (run_id, name, value) VALUES ($1, $2, $3)")
            .bind(run_id)
            .bind(&v.name)
            .bind(value)
            .execute(pool)
            .await
            .map_err(RunError::db("capturing values"))?;
    }
    Ok(())
}

/// Runs every verification; returns how many failed.
async fn verify_all(
    plan: &Plan,
    pool: &PgPool,
    scope: &BindScope,
    run_id: uuid::Uuid,
    reporter: &mut dyn Reporter,
    report: &mut Report,
) -> Result<usize, RunError> {
    let mut failed = 0;
    for (i, v) in plan.raw.verify.iter().enumerate() {
        let mut conn = pool.acquire().await.map_err(RunError::db("verifying"))?;
        let actual = verify::value(&mut conn, scope, &v.sql, &v.name).await?;
        let before: Option<Value> = sqlx::query_scalar(
            "SELECT value FROM replay.before_values WHERE run_id = $1 AND name = $2",
        )
        .bind(run_id)
        .bind(&v.name)
        .fetch_optional(pool)
        .await
        .map_err(RunError::db("reading captured values"))?;
        let (passed, expected) = verify::judge(&v.expect, &actual, before.as_ref());
        failed += usize::from(!passed);
        sqlx::query(
            "INSERT INTO replay.verifications (run_id, ordinal, name, passed, actual, expected) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (run_id, ordinal) DO UPDATE SET passed = $4, actual = $5, expected = $6",
        )
        .bind(run_id)
        .bind(i as i32)
        .bind(&v.name)
        .bind(passed)
        .bind(&actual)
        .bind(&expected)
        .execute(pool)
        .await
        .map_err(RunError::db("recording verifications"))?;
        reporter.event(&RunEvent::Verified {
            name: v.name.clone(),
            passed,
            actual: actual.clone(),
            expected: expected.clone(),
        });
        report.verifications.push(VerificationReport {
            name: v.name.clone(),
            passed,
            actual,
            expected,
        });
    }
    Ok(failed)
}

/// Refuses early, with the table's name, when the events or audit table is missing.
pub async fn check_tables(pool: &PgPool, plan: &Plan) -> Result<(), RunError> {
    let target = &plan.raw.target;
    let mut tables = vec![target.events_table.clone()];
    if !target.audit_table.is_empty() {
        tables.push(target.audit_table.clone());
    }
    for table in tables {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(quote_ident(&table))
            .fetch_one(pool)
            .await
            .map_err(RunError::db("looking up tables"))?;
        if exists.is_none() {
            return Err(RunError::Refused(format!(
                "table `{table}` does not exist in the target database (see `target` in the plan)"
            )));
        }
    }
    Ok(())
}

/// One row in the target's audit table per finished run.
pub(crate) async fn audit(
    pool: &PgPool,
    plan: &Plan,
    connection: &Connection,
    run_id: uuid::Uuid,
    outcome: &str,
) -> Result<(), RunError> {
    if plan.raw.target.audit_table.is_empty() {
        return Ok(());
    }
    // Overrides given for this run are part of its record.
    let overrides: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT detail FROM replay.run_log WHERE run_id = $1 AND kind = 'override' ORDER BY id",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(RunError::db("reading overrides"))?;
    let details = json!({
        "plan": plan.raw.name,
        "plan_hash": plan.hash,
        "reason": plan.raw.reason,
        "params": plan.params_json(),
        "run_id": run_id.to_string(),
        "outcome": outcome,
        "overrides": overrides,
    });
    sqlx::query(audited(&format!(
        "INSERT INTO {} (action, details, performed_by) VALUES ('event_replay', $1, $2)",
        quote_ident(&plan.raw.target.audit_table)
    )))
    .bind(details.to_string())
    .bind(&connection.operator)
    .execute(pool)
    .await
    .map_err(RunError::db("writing the audit log"))?;
    Ok(())
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
            let requested: Result<bool, _> =
                sqlx::query_scalar("SELECT stop_requested FROM replay.runs WHERE id = $1")
                    .bind(run_id)
                    .fetch_one(&pool)
                    .await;
            if matches!(requested, Ok(true)) {
                tracing::warn!(run = %run_id, "stop requested by `replay stop`: finishing the batch in flight");
                cancel.cancel();
                return;
            }
        }
    })
}
