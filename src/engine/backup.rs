//! Backups: snapshot the rows the run will touch before the first write, and put them back on rollback.

use crate::engine::binds::BindScope;
use crate::engine::binds::audited;
use crate::engine::error::RunError;
use crate::engine::writes::{Writes, backup_rows_query};
use crate::plan::Plan;
use crate::plan::model::BackupTable;
use crate::plan::prepared::SqlSite;
use crate::plan::selection::{Bind, quote_ident};

/// One table's snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

/// The `(key, row_data)` query of backup table `index`, with its binds. A filter was prepared at
/// compile time; here it is only put inside the query.
pub fn rows_query(
    plan: &Plan,
    index: usize,
    table: &BackupTable,
    scope: &BindScope,
    selection_table: &str,
) -> Result<(String, Vec<Bind>), String> {
    let target = &plan.raw.target;
    if table.filter.is_none() {
        if table.table == target.events_table {
            let key = &target.columns.event_id;
            let condition = format!(
                "t.{} IN (SELECT event_id FROM {selection_table} WHERE run_id = $1)",
                quote_ident(key)
            );
            return Ok((
                backup_rows_query(&table.table, key, &condition),
                vec![Bind::Uuid(scope.run_id())],
            ));
        }
        return Ok((
            backup_rows_query(&table.table, &table.key, "(TRUE)"),
            vec![],
        ));
    }
    let filter = plan
        .sql
        .get(SqlSite::BackupFilter(index))
        .map_err(|e| e.to_string())?;
    let condition = format!("({})", scope.text(filter));
    Ok((
        backup_rows_query(&table.table, &table.key, &condition),
        scope.values(filter, None)?,
    ))
}

/// Snapshots every backup table (those not taken yet).
pub async fn take<W: Writes>(
    writes: &mut W,
    plan: &Plan,
    scope: &BindScope,
    run_id: uuid::Uuid,
    lease: i64,
    already: &[String],
) -> Result<Vec<Snapshot>, RunError> {
    let mut out = Vec::new();
    let Some(backup) = &plan.raw.backup else {
        return Ok(out);
    };
    for (index, table) in backup.tables.iter().enumerate() {
        if already.contains(&table.table) {
            continue;
        }
        let (sql, binds) = rows_query(plan, index, table, scope, writes.selection_table())
            .map_err(|m| RunError::Refused(format!("backup of `{}`: {m}", table.table)))?;
        let doing = format!("snapshotting `{}`", table.table);
        let mut tx = writes.begin().await.map_err(RunError::db(doing.clone()))?;
        W::prove(&mut tx, run_id, lease).await?;
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

/// What a compare-and-restore did to one table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Restored {
    pub table: String,
    /// Rows put back as the backup holds them.
    pub restored: u64,
    /// Rows changed since this run wrote them (by the worker, by anyone), kept as they are.
    pub kept: u64,
    /// The first keys of the kept rows.
    pub kept_keys: Vec<String>,
}

impl std::fmt::Display for Restored {
    /// `kept 2 row(s) of `t` changed since the run wrote them: 17, 42`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kept {} row(s) of `{}` changed since the run wrote them: {}",
            self.kept,
            self.table,
            self.kept_keys.join(", ")
        )?;
        if self.kept > self.kept_keys.len() as u64 {
            f.write_str(", …")?;
        }
        Ok(())
    }
}

/// How many kept keys a report lists.
const KEPT_LISTED: i64 = 20;

/// Restores the snapshotted rows of one table that are still as this run left them (their
/// `xmin` is one of the run's batch transactions, or this rollback's) or that are gone; rows
/// changed since by anyone else are kept and counted, unless `force`. Rows equal to their
/// snapshot are left alone.
pub async fn restore(
    conn: &mut sqlx::PgConnection,
    run_id: uuid::Uuid,
    table: &str,
    force: bool,
) -> Result<Restored, RunError> {
    let doing = format!("restoring `{table}` from the backup");
    let key = crate::engine::state::backup_key_column(&mut *conn, run_id, table)
        .await
        .map_err(RunError::db(doing.clone()))?;
    let Some(key) = key else {
        return Err(RunError::Refused(format!("run has no backup of `{table}`")));
    };
    let t = quote_ident(table);
    let k = quote_ident(&key);
    // The run's rows: written by one of its batch transactions, or by this rollback's own
    // statements (the current transaction).
    let mine = crate::engine::state::WRITTEN_BY_THE_RUN;
    for statement in [
        "DROP TABLE IF EXISTS pg_temp.replay_restore".to_string(),
        "DROP TABLE IF EXISTS pg_temp.replay_restored".to_string(),
        "CREATE TEMP TABLE replay_restore (key TEXT PRIMARY KEY, row_data JSONB NOT NULL, \
         missing BOOLEAN NOT NULL) ON COMMIT DROP"
            .into(),
        "CREATE TEMP TABLE replay_restored (key TEXT PRIMARY KEY) ON COMMIT DROP".into(),
    ] {
        sqlx::query(audited(&statement))
            .execute(&mut *conn)
            .await
            .map_err(RunError::db(doing.clone()))?;
    }
    // Every snapshotted row that differs from its snapshot (or is gone).
    sqlx::query(audited(&crate::engine::state::backup_differences(&t, &k)))
        .bind(run_id)
        .bind(table)
        .execute(&mut *conn)
        .await
        .map_err(RunError::db(doing.clone()))?;
    // Rows still there are updated in place, so that a worker's update waiting on the same row
    // follows the new version (a delete would make it miss the row) and no `ON DELETE` cascade
    // fires. Only while still the run's: the condition is checked again on the row version the
    // UPDATE finally meets, so a row the worker commits meanwhile is kept.
    let columns: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
           AND attgenerated = '' AND attidentity <> 'a'",
    )
    .bind(&t)
    .fetch_one(&mut *conn)
    .await
    .map_err(RunError::db(doing.clone()))?;
    let Some(columns) = columns else {
        return Err(RunError::Refused(format!(
            "table `{table}` has no columns to restore"
        )));
    };
    let from_backup: String = columns
        .split(',')
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let updated = sqlx::query(audited(&format!(
        "WITH done AS (UPDATE {t} t SET ({columns}) = ROW({from_backup}) \
                       FROM pg_temp.replay_restore r \
                       CROSS JOIN LATERAL jsonb_populate_record(NULL::{t}, r.row_data) p \
                       WHERE NOT r.missing AND t.{k}::text = r.key AND ($2 OR {mine}) \
                       RETURNING r.key) \
         INSERT INTO pg_temp.replay_restored SELECT key FROM done"
    )))
    .bind(run_id)
    .bind(force)
    .execute(&mut *conn)
    .await
    .map_err(RunError::db(doing.clone()))?
    .rows_affected();
    // Rows that are gone come back; one re-inserted meanwhile is left as it is.
    let inserted = sqlx::query(audited(&format!(
        "INSERT INTO {t} SELECT (jsonb_populate_record(NULL::{t}, r.row_data)).* \
         FROM pg_temp.replay_restore r WHERE r.missing ON CONFLICT DO NOTHING"
    )))
    .execute(&mut *conn)
    .await
    .map_err(RunError::db(doing.clone()))?
    .rows_affected();
    let restored = updated + inserted;
    let (kept, kept_keys): (i64, Vec<String>) = sqlx::query_as(
        "SELECT count(*), (array_agg(key ORDER BY key))[1:$1]::text[] \
         FROM pg_temp.replay_restore r \
         WHERE NOT r.missing AND r.key NOT IN (SELECT key FROM pg_temp.replay_restored)",
    )
    .bind(KEPT_LISTED)
    .fetch_one(&mut *conn)
    .await
    .map(|(n, keys): (i64, Option<Vec<String>>)| (n, keys.unwrap_or_default()))
    .map_err(RunError::db(doing.clone()))?;
    sqlx::query("DROP TABLE pg_temp.replay_restore, pg_temp.replay_restored")
        .execute(&mut *conn)
        .await
        .map_err(RunError::db(doing))?;
    Ok(Restored {
        table: table.to_string(),
        restored,
        kept: kept as u64,
        kept_keys,
    })
}
