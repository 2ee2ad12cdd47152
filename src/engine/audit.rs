//! The target's audit table: one row per finished run, with its overrides and reasons.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::engine::binds::audited;
use crate::engine::connection::Connection;
use crate::engine::error::RunError;
use crate::engine::state;
use crate::plan::Plan;
use crate::plan::selection::quote_ident;

/// One row in the target's audit table per finished run.
pub async fn write(
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
    let overrides: Vec<Value> = state::logged_details(pool, run_id, "override").await?;
    let again: Vec<Value> = state::logged_details(pool, run_id, "again").await?;
    let executors = crate::engine::claims::count(pool, run_id).await?;
    let details = json!({
        "plan": plan.raw.name,
        "plan_hash": plan.hash,
        "reason": plan.raw.reason,
        "params": plan.params_json(),
        "run_id": run_id.to_string(),
        "outcome": outcome,
        "overrides": overrides,
        "again": again.first(),
        "executors": executors,
        "target": connection.target,
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
