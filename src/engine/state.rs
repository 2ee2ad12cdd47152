//! The executor's own records in the `replay` schema: migrations, the per-plan lock, runs and steps.

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row};

use crate::engine::error::RunError;
use crate::engine::redact::{redact_url, scrub};
use crate::plan::Plan;

/// Connects to the target database; the error never shows the password.
pub async fn connect(url: &str) -> Result<PgPool, RunError> {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| RunError::Connect {
            url: redact_url(url),
            message: scrub(&crate::engine::error::describe_sqlx(&e), url),
        })
}

/// Creates or upgrades the `replay` schema.
pub async fn migrate(pool: &PgPool) -> Result<(), RunError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("replay._sqlx_migrations");
    migrator.create_schema("replay");
    migrator.run(pool).await.map_err(|e| RunError::Database {
        doing: "creating the `replay` schema".into(),
        message: e.to_string(),
    })
}

/// Takes the per-plan advisory lock on a connection of its own; held until that connection closes,
/// so a holder that dies releases it.
pub async fn lock(pool: &PgPool, plan: &str) -> Result<Option<PgConnection>, RunError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(RunError::db("taking the plan lock"))?
        .detach();
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended('replay:' || $1, 0))")
            .bind(plan)
            .fetch_one(&mut conn)
            .await
            .map_err(RunError::db("taking the plan lock"))?;
    Ok(locked.then_some(conn))
}

/// An unfinished run of a plan.
#[derive(Debug, Clone)]
pub struct OpenRun {
    pub id: uuid::Uuid,
    pub plan_hash: String,
    pub params_hash: String,
    pub status: String,
    pub selected: Option<i64>,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

pub async fn open_run(pool: &PgPool, plan: &str) -> Result<Option<OpenRun>, RunError> {
    let row = sqlx::query(
        "SELECT id, plan_hash, params_hash, status, selected_count, started_at FROM replay.runs \
         WHERE plan_name = $1 AND status IN ('running', 'interrupted', 'failed', 'stopped') \
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(plan)
    .fetch_optional(pool)
    .await
    .map_err(RunError::db("looking for an unfinished run"))?;
    Ok(row.map(|r| OpenRun {
        id: r.get(0),
        plan_hash: r.get(1),
        params_hash: r.get(2),
        status: r.get(3),
        selected: r.get(4),
        started_at: r.get(5),
    }))
}

pub async fn create_run(pool: &PgPool, plan: &Plan, operator: &str) -> Result<OpenRun, RunError> {
    let id = uuid::Uuid::new_v4();
    let mut tx = pool
        .begin()
        .await
        .map_err(RunError::db("creating the run"))?;
    let started_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "INSERT INTO replay.runs (id, plan_name, plan_hash, params_hash, params, plan_document, operator, reason, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running') RETURNING started_at",
    )
    .bind(id)
    .bind(&plan.raw.name)
    .bind(&plan.hash)
    .bind(&plan.params_hash)
    .bind(plan.params_json())
    .bind(serde_json::to_value(&plan.raw).unwrap_or_default())
    .bind(operator)
    .bind(&plan.raw.reason)
    .fetch_one(&mut *tx)
    .await
    .map_err(RunError::db("creating the run"))?;
    for (i, step) in plan.raw.steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO replay.step_runs (run_id, step_id, ordinal, kind) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(step.id())
        .bind(i as i32)
        .bind(step.kind())
        .execute(&mut *tx)
        .await
        .map_err(RunError::db("creating the run"))?;
    }
    tx.commit()
        .await
        .map_err(RunError::db("creating the run"))?;
    Ok(OpenRun {
        id,
        plan_hash: plan.hash.clone(),
        params_hash: plan.params_hash.clone(),
        status: "running".into(),
        selected: None,
        started_at,
    })
}

pub async fn set_status(
    pool: &PgPool,
    run_id: uuid::Uuid,
    status: &str,
    error: Option<&str>,
) -> Result<(), RunError> {
    let finished = !matches!(status, "running" | "interrupted" | "failed" | "stopped");
    sqlx::query(
        "UPDATE replay.runs SET status = $2, error = $3, updated_at = now(), \
         finished_at = CASE WHEN $4 THEN now() END WHERE id = $1",
    )
    .bind(run_id)
    .bind(status)
    .bind(error)
    .bind(finished)
    .execute(pool)
    .await
    .map_err(RunError::db("recording the run's status"))?;
    Ok(())
}

pub async fn log(
    pool: &PgPool,
    run_id: uuid::Uuid,
    kind: &str,
    step: Option<&str>,
    detail: serde_json::Value,
) {
    // The log is for people; a failure to write it must not fail the run.
    let _ = sqlx::query(
        "INSERT INTO replay.run_log (run_id, kind, step_id, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(run_id)
    .bind(kind)
    .bind(step)
    .bind(detail)
    .execute(pool)
    .await;
}

/// Per step: status, checkpoint and rows touched so far.
pub async fn step_progress(
    pool: &PgPool,
    run_id: uuid::Uuid,
) -> Result<std::collections::HashMap<String, (String, i64, i64)>, RunError> {
    let rows = sqlx::query(
        "SELECT step_id, status, checkpoint, touched FROM replay.step_runs WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(RunError::db("reading the checkpoints"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), (r.get(1), r.get(2), r.get(3))))
        .collect())
}
