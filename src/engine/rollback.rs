//! Undoing a run: its plan's rollback actions (SQL, and exact-row restores of its backup), either
//! right after a failed step or verification, or later by `replay rollback RUN`.

use serde_json::json;
use sqlx::PgPool;

use crate::engine::audit;
use crate::engine::backup;
use crate::engine::binds::{BindScope, audited, bind_all};
use crate::engine::connection::Connection;
use crate::engine::error::RunError;
use crate::engine::events::{Reporter, RunEvent};
use crate::engine::report::{Report, RollbackAction, RollbackReport};
use crate::engine::state::{self, Lease};
use crate::engine::status::RunStatus;
use crate::plan::model::{RawPlan, RollbackStep};
use crate::plan::prepared::SqlSite;
use crate::plan::{self, CompileError, Plan};

/// What a plan's rollback actions did, or (rehearsed) would do: rows per action, and rows kept
/// because they changed since the run wrote them.
#[derive(Debug, Clone, Default)]
pub struct Undone {
    pub actions: Vec<(String, u64)>,
    pub kept: Vec<backup::Restored>,
}

/// The plan's rollback actions, in the caller's transaction: the one body both the rollback and
/// its preview run, so that a preview counts exactly what the rollback would do.
async fn undo(
    conn: &mut sqlx::PgConnection,
    plan: &Plan,
    scope: &BindScope,
    run_id: uuid::Uuid,
    force: bool,
) -> Result<Undone, RunError> {
    let mut undone = Undone::default();
    for (index, action) in plan.raw.rollback.iter().enumerate() {
        let (label, rows) = match action {
            RollbackStep::Sql(s) => {
                let statement = plan
                    .sql
                    .get(SqlSite::Rollback(index))
                    .map_err(|e| RunError::Refused(e.to_string()))?;
                let text = scope.text(statement);
                let binds = scope.values(statement, None).map_err(RunError::Refused)?;
                let rows = bind_all(sqlx::query(audited(&text)), &binds)
                    .execute(&mut *conn)
                    .await
                    .map_err(RunError::db("running a rollback statement"))?
                    .rows_affected();
                (s.description.clone().unwrap_or_else(|| "sql".into()), rows)
            }
            RollbackStep::RestoreBackup(r) => {
                let mut total = 0;
                for table in &r.tables {
                    let restored = backup::restore(&mut *conn, run_id, table, force).await?;
                    total += restored.restored;
                    if restored.kept > 0 {
                        undone.kept.push(restored);
                    }
                }
                (format!("restore {}", r.tables.join(", ")), total)
            }
        };
        undone.actions.push((label, rows));
    }
    Ok(undone)
}

/// Runs the plan's rollback actions in one transaction that also records the final status, so a
/// crash anywhere inside leaves the run `rolling_back` and the next attempt runs the rollback
/// again, from the start, over the same rows.
#[allow(clippy::too_many_arguments)]
pub async fn run_actions(
    plan: &Plan,
    pool: &PgPool,
    scope: &BindScope,
    lease: &Lease,
    cause: &str,
    force: bool,
    reporter: &mut dyn Reporter,
    report: &mut Report,
) -> Result<(), RunError> {
    let run_id = lease.run_id;
    let mut tx = pool.begin().await.map_err(RunError::db("rolling back"))?;
    let Undone { actions, kept } = undo(&mut tx, plan, scope, run_id, force).await?;
    state::record_status(&mut tx, lease, RunStatus::RolledBack, Some(cause)).await?;
    tx.commit().await.map_err(RunError::db("rolling back"))?;
    for (action, rows) in &actions {
        reporter.event(&RunEvent::RolledBack {
            action: action.clone(),
            rows: *rows,
        });
    }
    report.rollback = actions;
    report.kept = kept;
    report.rolled_back = true;
    state::log(
        pool,
        run_id,
        "rolled_back",
        None,
        json!({"actions": report.rollback.len(), "kept": report.kept, "forced": force}),
    )
    .await;
    Ok(())
}

/// The same actions as [`run_actions`], rehearsed in a transaction that is always rolled back,
/// with a lock timeout so that a preview never queues behind a live worker's row locks: what the
/// rollback would restore and keep now. Records no status and takes no lease.
pub async fn rehearse_actions(
    plan: &Plan,
    pool: &PgPool,
    scope: &BindScope,
    run_id: uuid::Uuid,
    force: bool,
) -> Result<Undone, RunError> {
    let doing = "previewing the rollback";
    let mut tx = pool.begin().await.map_err(RunError::db(doing))?;
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *tx)
        .await
        .map_err(RunError::db(doing))?;
    let undone = undo(&mut tx, plan, scope, run_id, force).await;
    // Whatever the actions did, nothing of it stays.
    let rolled_back = tx.rollback().await;
    let undone = undone?;
    rolled_back.map_err(RunError::db(doing))?;
    Ok(undone)
}

/// A run that `replay rollback RUN` may undo: its recorded plan, compiled again, and when it
/// started.
struct Undoable {
    plan: Plan,
    started_at: chrono::DateTime<chrono::Utc>,
}

/// Refuses what cannot be rolled back (the same for the rollback and its preview), before
/// anything is written: an unknown run, a run already rolled back, abandoned or refused, a plan
/// without rollback actions, a missing backup.
async fn undoable(
    pool: &PgPool,
    run_id: uuid::Uuid,
    report: &mut RollbackReport,
) -> Result<Undoable, RunError> {
    let recorded = state::recorded_run(pool, run_id)
        .await?
        .ok_or_else(|| RunError::Refused(format!("no run `{run_id}`")))?;
    let (name, status) = (recorded.plan_name.clone(), recorded.status);
    report.plan = Some(name.clone());
    if matches!(status, RunStatus::RolledBack | RunStatus::Refused) {
        return Err(RunError::Refused(format!(
            "run `{run_id}` is {status}; there is nothing to roll back"
        )));
    }
    let plan = compile_recorded(recorded.plan_document, &recorded.params)?;
    if plan.raw.rollback.is_empty() {
        return Err(RunError::Refused(format!(
            "plan `{name}` has no rollback actions"
        )));
    }
    // A run that stopped before its backups were taken cannot be restored: say so before
    // anything is recorded, rather than leave it rolling back for good.
    let taken = state::backed_up_tables(pool, run_id).await?;
    if let Some(missing) = restored_tables(&plan).find(|t| !taken.contains(t)) {
        return Err(RunError::Refused(format!(
            "run `{run_id}` has no backup of `{missing}` (it stopped before taking it), so its rollback cannot restore it"
        )));
    }
    Ok(Undoable {
        plan,
        started_at: recorded.started_at,
    })
}

/// The binds of the run's rollback actions: `:selected_event_ids` are the canary's events only
/// when the run stopped during its canary.
async fn undo_table(pool: &PgPool, run_id: uuid::Uuid, plan: &Plan) -> Result<String, RunError> {
    let selected = state::run(pool, run_id).await?.selected;
    crate::engine::canary::undo_table(plan, pool, run_id, selected, state::SELECTION_TABLE).await
}

/// `replay rollback RUN --dry-run` (and the preview before its question): what the rollback
/// would restore and keep, refused exactly as the rollback would be, writing nothing.
pub async fn preview_rollback(
    connection: &Connection,
    run_id: uuid::Uuid,
    force: bool,
    report: &mut RollbackReport,
) -> Result<(), RunError> {
    let pool = state::connect(&connection.database_url).await?;
    let Undoable { plan, started_at } = undoable(&pool, run_id, report).await?;
    state::lease_free(&pool, run_id).await?;
    let table = undo_table(&pool, run_id, &plan).await?;
    let scope = BindScope::new(&plan, run_id, started_at, &table);
    let undone = rehearse_actions(&plan, &pool, &scope, run_id, force).await?;
    pool.close().await;
    report.fill(undone);
    Ok(())
}

/// `replay rollback RUN`: undoes a finished or stopped run as far as its plan allows. Rows changed
/// since the run wrote them are kept and listed, unless `force`.
pub async fn rollback_run(
    connection: &Connection,
    run_id: uuid::Uuid,
    force: bool,
    reporter: &mut dyn Reporter,
    report: &mut RollbackReport,
) -> Result<(), RunError> {
    let pool = state::connect(&connection.database_url).await?;
    let Undoable { plan, started_at } = undoable(&pool, run_id, report).await?;
    let lease = state::acquire_run(&pool, run_id, state::DEFAULT_LEASE).await?;
    // Held while the rollback runs, so that no `apply` takes the run over meanwhile.
    let heartbeat = lease.heartbeat(pool.clone(), crate::engine::steps::Cancel::default());
    let cause = format!("rolled back by {}", connection.operator);
    let mut done = Report::default();
    let result = async {
        let table = undo_table(&pool, run_id, &plan).await?;
        let scope = BindScope::new(&plan, run_id, started_at, &table);
        state::set_status(&pool, &lease, RunStatus::RollingBack, Some(&cause)).await?;
        run_actions(
            &plan, &pool, &scope, &lease, &cause, force, reporter, &mut done,
        )
        .await
    }
    .await;
    heartbeat.abort();
    lease.release(&pool).await;
    result?;
    report.fill(Undone {
        actions: done.rollback,
        kept: done.kept,
    });
    state::log(
        &pool,
        run_id,
        "operator_rollback",
        None,
        json!({"operator": connection.operator, "forced": force}),
    )
    .await;
    // The rollback is committed and recorded in `replay.runs`; only the target's audit row is
    // missing.
    if let Err(e) = audit::write(&pool, &plan, connection, run_id, "rolled_back_by_operator").await
    {
        tracing::warn!(error = %e, "cannot write the audit row");
        report
            .warnings
            .push(format!("the audit row could not be written: {e}"));
    }
    Ok(())
}

impl RollbackReport {
    /// What the actions did (or would do).
    fn fill(&mut self, undone: Undone) {
        self.actions = undone
            .actions
            .into_iter()
            .map(|(action, rows)| RollbackAction { action, rows })
            .collect();
        self.kept = undone.kept;
    }
}

/// The tables the plan's rollback restores.
fn restored_tables(plan: &Plan) -> impl Iterator<Item = &String> {
    plan.raw
        .rollback
        .iter()
        .filter_map(|r| match r {
            RollbackStep::RestoreBackup(r) => Some(&r.tables),
            RollbackStep::Sql(_) => None,
        })
        .flatten()
}

/// `replay stop RUN`: asks the run to stop at its next batch boundary.
pub async fn request_stop(connection: &Connection, run_id: uuid::Uuid) -> Result<String, RunError> {
    let pool = state::connect(&connection.database_url).await?;
    state::request_stop(&pool, run_id, &connection.operator).await
}

/// A run's plan as it was recorded, compiled again with the run's parameters.
pub fn compile_recorded(
    document: serde_json::Value,
    params: &serde_json::Value,
) -> Result<crate::plan::Plan, RunError> {
    let raw: RawPlan = serde_json::from_value(document)
        .map_err(|e| RunError::Refused(format!("the run's plan cannot be read back: {e}")))?;
    let args: Vec<String> = params
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", plan::params::json_to_arg(v)))
                .collect()
        })
        .unwrap_or_default();
    plan::compile(raw, &args).map_err(|e| {
        RunError::Refused(match e {
            CompileError::Params(e) => format!("the run's parameters: {e}"),
            e => format!("the run's plan: {e}"),
        })
    })
}

/// The plan of a recorded run, to join it (`replay join RUN`).
pub async fn plan_of_run(
    database_url: &str,
    run_id: uuid::Uuid,
) -> Result<crate::plan::Plan, RunError> {
    let pool = state::connect(database_url).await?;
    if !state::schema_exists(&pool).await? {
        return Err(RunError::Refused(format!("no run `{run_id}`")));
    }
    let recorded = state::recorded_run(&pool, run_id)
        .await?
        .ok_or_else(|| RunError::Refused(format!("no run `{run_id}`")))?;
    compile_recorded(recorded.plan_document, &recorded.params)
}
