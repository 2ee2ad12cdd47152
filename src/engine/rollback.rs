//! Undoing a run: its plan's rollback actions (SQL, and exact-row restores of its backup), either
//! right after a failed step or verification, or later by `replay rollback RUN`.

use serde_json::json;
use sqlx::{PgPool, Row};

use crate::engine::apply::Connection;
use crate::engine::binds::{BindScope, audited, bind_all};
use crate::engine::error::RunError;
use crate::engine::events::{Reporter, RunEvent};
use crate::engine::report::Report;
use crate::engine::{backup, state};
use crate::plan::model::{RawPlan, RollbackStep};
use crate::plan::selection::quote_ident;
use crate::plan::{self, Plan};

/// Runs the plan's rollback actions in one transaction.
pub async fn run_actions(
    plan: &Plan,
    pool: &PgPool,
    scope: &BindScope,
    run_id: uuid::Uuid,
    reporter: &mut dyn Reporter,
    report: &mut Report,
) -> Result<(), RunError> {
    let mut tx = pool.begin().await.map_err(RunError::db("rolling back"))?;
    for action in &plan.raw.rollback {
        let (label, rows) = match action {
            RollbackStep::Sql(s) => {
                let (text, binds) = scope.prepare(&s.sql).map_err(RunError::Refused)?;
                let rows = bind_all(sqlx::query(audited(&text)), &binds)
                    .execute(&mut *tx)
                    .await
                    .map_err(RunError::db("running a rollback statement"))?
                    .rows_affected();
                (s.description.clone().unwrap_or_else(|| "sql".into()), rows)
            }
            RollbackStep::RestoreBackup(r) => {
                let mut total = 0;
                for table in &r.tables {
                    total += backup::restore(&mut tx, run_id, table).await?;
                }
                (format!("restore {}", r.tables.join(", ")), total)
            }
        };
        reporter.event(&RunEvent::RolledBack {
            action: label.clone(),
            rows,
        });
        report.rollback.push((label, rows));
    }
    tx.commit().await.map_err(RunError::db("rolling back"))?;
    report.rolled_back = true;
    state::log(
        pool,
        run_id,
        "rolled_back",
        None,
        json!({"actions": report.rollback.len()}),
    )
    .await;
    Ok(())
}

/// Records each snapshotted row's hash as the run leaves it, for a later `replay rollback`.
pub async fn record_after_hashes(pool: &PgPool, run_id: uuid::Uuid) -> Result<(), RunError> {
    let tables = sqlx::query("SELECT table_name, key_column FROM replay.backups WHERE run_id = $1")
        .bind(run_id)
        .fetch_all(pool)
        .await
        .map_err(RunError::db("reading backups"))?;
    for row in tables {
        let (table, key): (String, String) = (row.get(0), row.get(1));
        sqlx::query(audited(&format!(
            "UPDATE replay.backup_rows b SET after_hash = md5(to_jsonb(t)::text) FROM {} t \
             WHERE b.run_id = $1 AND b.table_name = $2 AND t.{}::text = b.key",
            quote_ident(&table),
            quote_ident(&key)
        )))
        .bind(run_id)
        .bind(&table)
        .execute(pool)
        .await
        .map_err(RunError::db(format!("hashing `{table}` after the run")))?;
    }
    Ok(())
}

/// Snapshotted rows that changed after the run ended (or vanished), per table: `(table, keys)`.
async fn changed_since(
    pool: &PgPool,
    run_id: uuid::Uuid,
    tables: &[String],
) -> Result<Vec<(String, Vec<String>)>, RunError> {
    let mut out = Vec::new();
    for table in tables {
        let key: Option<String> = sqlx::query_scalar(
            "SELECT key_column FROM replay.backups WHERE run_id = $1 AND table_name = $2",
        )
        .bind(run_id)
        .bind(table)
        .fetch_optional(pool)
        .await
        .map_err(RunError::db("reading backups"))?;
        let Some(key) = key else { continue };
        let keys: Vec<String> = sqlx::query_scalar(audited(&format!(
            "SELECT b.key FROM replay.backup_rows b LEFT JOIN {} t ON t.{}::text = b.key \
             WHERE b.run_id = $1 AND b.table_name = $2 \
             AND (b.after_hash IS NULL OR t IS NULL OR md5(to_jsonb(t)::text) <> b.after_hash) \
             ORDER BY b.key LIMIT 1000",
            quote_ident(table),
            quote_ident(&key)
        )))
        .bind(run_id)
        .bind(table)
        .fetch_all(pool)
        .await
        .map_err(RunError::db(format!(
            "comparing `{table}` with its snapshot"
        )))?;
        if !keys.is_empty() {
            out.push((table.clone(), keys));
        }
    }
    Ok(out)
}

/// `replay rollback RUN`: undoes a finished or stopped run as far as its plan allows.
pub async fn rollback_run(
    connection: &Connection,
    run_id: uuid::Uuid,
    force: bool,
    reporter: &mut dyn Reporter,
    report: &mut Report,
) -> Result<(), RunError> {
    let pool = state::connect(&connection.database_url).await?;
    let row = sqlx::query("SELECT plan_name, status, plan_document, params, started_at FROM replay.runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&pool)
        .await
        .map_err(RunError::db("reading the run"))?
        .ok_or_else(|| RunError::Refused(format!("no run `{run_id}`")))?;
    let (name, status): (String, String) = (row.get(0), row.get(1));
    if matches!(status.as_str(), "rolled_back" | "abandoned" | "refused") {
        return Err(RunError::Refused(format!(
            "run `{run_id}` is {status}; there is nothing to roll back"
        )));
    }
    let Some(_lock) = state::lock(&pool, &name).await? else {
        return Err(RunError::Locked {
            plan: name,
            run_id: run_id.to_string(),
        });
    };
    let raw: RawPlan = serde_json::from_value(row.get(2))
        .map_err(|e| RunError::Refused(format!("the run's plan cannot be read back: {e}")))?;
    let params: serde_json::Value = row.get(3);
    let args: Vec<String> = params
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", plan::params::json_to_arg(v)))
                .collect()
        })
        .unwrap_or_default();
    let plan = plan::compile(raw, &args)
        .map_err(|e| RunError::Refused(format!("the run's parameters: {e}")))?;
    report.plan = plan.raw.name.clone();
    report.plan_hash = plan.hash.clone();
    report.run_id = Some(run_id.to_string());
    if plan.raw.rollback.is_empty() {
        return Err(RunError::Refused(format!(
            "plan `{name}` has no rollback actions"
        )));
    }
    let restored: Vec<String> = plan
        .raw
        .rollback
        .iter()
        .filter_map(|r| match r {
            RollbackStep::RestoreBackup(r) => Some(r.tables.clone()),
            RollbackStep::Sql(_) => None,
        })
        .flatten()
        .collect();
    let changed = changed_since(&pool, run_id, &restored).await?;
    if !changed.is_empty() && !force {
        let list: Vec<String> = changed
            .iter()
            .map(|(t, keys)| {
                format!(
                    "`{t}`: {} row(s) ({}{})",
                    keys.len(),
                    keys.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
                    if keys.len() > 10 { ", …" } else { "" }
                )
            })
            .collect();
        return Err(RunError::Refused(format!(
            "rows changed since run `{run_id}` ended; restoring them would overwrite later writes: {}; pass `--force` to restore anyway",
            list.join("; ")
        )));
    }
    let started_at: chrono::DateTime<chrono::Utc> = row.get(4);
    let scope = BindScope::new(&plan, run_id, started_at, "replay.selection");
    run_actions(&plan, &pool, &scope, run_id, reporter, report).await?;
    state::set_status(
        &pool,
        run_id,
        "rolled_back",
        Some(&format!("rolled back by {}", connection.operator)),
    )
    .await?;
    state::log(
        &pool,
        run_id,
        "operator_rollback",
        None,
        json!({"operator": connection.operator, "forced": force && !changed.is_empty()}),
    )
    .await;
    crate::engine::apply::audit(&pool, &plan, connection, run_id, "rolled_back_by_operator")
        .await?;
    report.status = "rolled_back".into();
    Ok(())
}

/// `replay stop RUN`: asks the run to stop at its next batch boundary.
pub async fn request_stop(connection: &Connection, run_id: uuid::Uuid) -> Result<String, RunError> {
    let pool = state::connect(&connection.database_url).await?;
    let updated: Option<String> = sqlx::query_scalar(
        "UPDATE replay.runs SET stop_requested = true WHERE id = $1 AND status = 'running' RETURNING plan_name",
    )
    .bind(run_id)
    .fetch_optional(&pool)
    .await
    .map_err(RunError::db("requesting the stop"))?;
    match updated {
        Some(plan) => {
            state::log(
                &pool,
                run_id,
                "stop_requested",
                None,
                json!({"operator": connection.operator}),
            )
            .await;
            Ok(plan)
        }
        None => {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM replay.runs WHERE id = $1")
                    .bind(run_id)
                    .fetch_optional(&pool)
                    .await
                    .map_err(RunError::db("reading the run"))?;
            Err(RunError::Refused(match status {
                Some(s) => format!("run `{run_id}` is not running (it is {s})"),
                None => format!("no run `{run_id}`"),
            }))
        }
    }
}
