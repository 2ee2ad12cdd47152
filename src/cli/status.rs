//! `replay status`: runs and their progress, readable while a run is going.

use sqlx::Row;

use crate::engine::state;
use crate::exit_codes;

use super::args::StatusArgs;

pub fn run(args: &StatusArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::FAILURE;
        }
    };
    match runtime.block_on(show(args)) {
        Ok(text) => {
            print!("{text}");
            exit_codes::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit_codes::FAILURE
        }
    }
}

async fn show(args: &StatusArgs) -> Result<String, crate::engine::RunError> {
    use crate::engine::RunError;
    let pool = state::connect(&args.database_url).await?;
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('replay.runs')::text")
        .fetch_one(&pool)
        .await
        .map_err(RunError::db("looking for runs"))?;
    if exists.is_none() {
        return Ok("no runs yet (the `replay` schema does not exist)\n".into());
    }
    let runs = sqlx::query(
        "SELECT id, plan_name, status, coalesce(selected_count, 0), started_at, operator, left(plan_hash, 12), coalesce(error, '') \
         FROM replay.runs WHERE ($1::uuid IS NULL OR id = $1) ORDER BY started_at DESC LIMIT 20",
    )
    .bind(args.run)
    .fetch_all(&pool)
    .await
    .map_err(RunError::db("reading runs"))?;
    let mut out = String::new();
    for r in &runs {
        let id: uuid::Uuid = r.get(0);
        out.push_str(&format!(
            "{id}  {}  {}  selected {}  started {}  by {}  plan {}\n",
            r.get::<String, _>(1),
            r.get::<String, _>(2),
            r.get::<i64, _>(3),
            r.get::<chrono::DateTime<chrono::Utc>, _>(4)
                .format("%Y-%m-%d %H:%M:%S"),
            r.get::<String, _>(5),
            r.get::<String, _>(6),
        ));
        let error: String = r.get(7);
        if !error.is_empty() {
            out.push_str(&format!("    error: {error}\n"));
        }
        let steps = sqlx::query(
            "SELECT step_id, kind, status, checkpoint, touched FROM replay.step_runs WHERE run_id = $1 ORDER BY ordinal",
        )
        .bind(id)
        .fetch_all(&pool)
        .await
        .map_err(RunError::db("reading steps"))?;
        for s in steps {
            out.push_str(&format!(
                "    step {} [{}] {}  checkpoint {}  touched {}\n",
                s.get::<String, _>(0),
                s.get::<String, _>(1),
                s.get::<String, _>(2),
                s.get::<i64, _>(3),
                s.get::<i64, _>(4)
            ));
        }
    }
    if runs.is_empty() {
        out.push_str("no runs found\n");
    }
    Ok(out)
}
