//! Backups: snapshot the rows the run will touch before the first write, and put them back on rollback.

use crate::engine::binds::BindScope;
use crate::engine::binds::audited;
use crate::engine::error::RunError;
use crate::engine::writes::{Writes, backup_rows_query};
use crate::plan::Plan;
use crate::plan::model::BackupTable;
use crate::plan::selection::quote_ident;

/// One table's snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

/// The `(key, row_data)` query of a backup table, with its binds.
pub fn rows_query(
    plan: &Plan,
    table: &BackupTable,
    scope: &BindScope,
    selection_table: &str,
) -> Result<(String, Vec<crate::plan::selection::Bind>), String> {
    let target = &plan.raw.target;
    if table.table == target.events_table && table.filter.is_none() {
        let key = &target.columns.event_id;
        let condition = format!(
            "t.{} IN (SELECT event_id FROM {selection_table} WHERE run_id = :run_id)",
            quote_ident(key)
        );
        return scope.prepare(&backup_rows_query(&table.table, key, &condition));
    }
    let condition = table.filter.clone().unwrap_or_else(|| "TRUE".into());
    scope.prepare(&backup_rows_query(
        &table.table,
        &table.key,
        &format!("({condition})"),
    ))
}

/// Snapshots every backup table (those not taken yet).
pub async fn take<W: Writes>(
    writes: &mut W,
    plan: &Plan,
    scope: &BindScope,
    run_id: uuid::Uuid,
    already: &[String],
) -> Result<Vec<Snapshot>, RunError> {
    let mut out = Vec::new();
    let Some(backup) = &plan.raw.backup else {
        return Ok(out);
    };
    for table in &backup.tables {
        if already.contains(&table.table) {
            continue;
        }
        let (sql, binds) = rows_query(plan, table, scope, writes.selection_table())
            .map_err(|m| RunError::Refused(format!("backup of `{}`: {m}", table.table)))?;
        let doing = format!("snapshotting `{}`", table.table);
        let mut tx = writes.begin().await.map_err(RunError::db(doing.clone()))?;
        let key = if table.table == plan.raw.target.events_table && table.filter.is_none() {
            plan.raw.target.columns.event_id.clone()
        } else {
            table.key.clone()
        };
        let (rows, checksum) = W::snapshot(&mut tx, run_id, &table.table, &key, &sql, &binds)
            .await
            .map_err(RunError::db(doing.clone()))?;
        tx.commit().await.map_err(RunError::db(doing))?;
        out.push(Snapshot {
            table: table.table.clone(),
            rows,
            checksum,
        });
    }
    Ok(out)
}

/// Restores exactly the snapshotted rows of one table; returns how many rows were put back.
pub async fn restore(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    table: &str,
) -> Result<u64, RunError> {
    let doing = format!("restoring `{table}` from the backup");
    let key: Option<String> = sqlx::query_scalar(
        "SELECT key_column FROM replay.backups WHERE run_id = $1 AND table_name = $2",
    )
    .bind(run_id)
    .bind(table)
    .fetch_optional(&mut *conn)
    .await
    .map_err(RunError::db(doing.clone()))?;
    let Some(key) = key else {
        return Err(RunError::Refused(format!("run has no backup of `{table}`")));
    };
    let t = quote_ident(table);
    sqlx::query(audited(&format!(
        "DELETE FROM {t} t USING replay.backup_rows b \
         WHERE b.run_id = $1 AND b.table_name = $2 AND t.{}::text = b.key",
        quote_ident(&key)
    )))
    .bind(run_id)
    .bind(table)
    .execute(&mut *conn)
    .await
    .map_err(RunError::db(doing.clone()))?;
    let restored = sqlx::query(audited(&format!(
        "INSERT INTO {t} SELECT (jsonb_populate_record(NULL::{t}, b.row_data)).* \
         FROM replay.backup_rows b WHERE b.run_id = $1 AND b.table_name = $2"
    )))
    .bind(run_id)
    .bind(table)
    .execute(&mut *conn)
    .await
    .map_err(RunError::db(doing))?
    .rows_affected();
    Ok(restored)
}
