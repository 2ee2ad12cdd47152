//! `replay audit`: every apply, stop, rollback and override, with operator, reason, hash and outcome.

use sqlx::Row;

use crate::engine::{RunError, state};
use crate::exit_codes;

use super::args::AuditArgs;
use super::runtime::block_on;

pub fn run(args: &AuditArgs) -> u8 {
    match block_on(history(args)) {
        Ok(Ok(text)) => {
            print!("{text}");
            exit_codes::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            exit_codes::FAILURE
        }
        Err(code) => code,
    }
}

async fn history(args: &AuditArgs) -> Result<String, RunError> {
    let pool = state::connect(&args.database_url).await?;
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('replay.runs')::text")
        .fetch_one(&pool)
        .await
        .map_err(RunError::db("looking for runs"))?;
    if exists.is_none() {
        return Ok("no runs yet (the `replay` schema does not exist)\n".into());
    }
    let rows = sqlx::query(
        "SELECT r.started_at, r.id, r.plan_name, left(r.plan_hash, 12), r.operator, r.status, r.reason, \
                coalesce(string_agg(l.kind || coalesce(' ' || (l.detail ->> 'operator'), '') \
                         || coalesce(' ' || (l.detail ->> 'gate') || ': ' || (l.detail ->> 'because'), ''), '; ' ORDER BY l.id) \
                         FILTER (WHERE l.kind IN ('stop_requested', 'operator_rollback', 'abandoned', 'override', 'rolled_back')), '') \
         FROM replay.runs r LEFT JOIN replay.run_log l ON l.run_id = r.id \
         GROUP BY r.id ORDER BY r.started_at DESC LIMIT $1",
    )
    .bind(args.limit)
    .fetch_all(&pool)
    .await
    .map_err(RunError::db("reading the history"))?;
    let mut out = String::new();
    for r in rows {
        out.push_str(&format!(
            "{}  {}  {}  plan {}  by {}  {}\n    reason: {}\n",
            r.get::<chrono::DateTime<chrono::Utc>, _>(0)
                .format("%Y-%m-%d %H:%M:%S"),
            r.get::<uuid::Uuid, _>(1),
            r.get::<String, _>(2),
            r.get::<String, _>(3),
            r.get::<String, _>(4),
            r.get::<String, _>(5),
            r.get::<String, _>(6),
        ));
        let events: String = r.get(7);
        if !events.is_empty() {
            out.push_str(&format!("    events: {events}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("no runs yet\n");
    }
    Ok(out)
}
