//! `replay audit`: every apply, stop, rollback and override, with operator, reason, hash and outcome.

use crate::engine::RunError;
use crate::engine::state::{self, HistoryEntry};
use crate::exit_codes;

use super::args::{AuditArgs, ReadFormat};
use super::runtime::block_on;

/// What `replay audit` reads: the runs, newest first, with what operators did to them.
#[derive(Debug, serde::Serialize)]
struct Audit {
    /// Whether the `replay` schema exists (there are no runs without it).
    store: bool,
    runs: Vec<HistoryEntry>,
}

pub fn run(args: &AuditArgs) -> u8 {
    match block_on(history(args)) {
        Ok(Ok(audit)) => {
            match args.format {
                ReadFormat::Text => print!("{}", text(&audit)),
                ReadFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&audit).unwrap_or_default()
                ),
            }
            exit_codes::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {}", super::error_chain(&e));
            super::apply::exit_code(&e)
        }
        Err(code) => code,
    }
}

async fn history(args: &AuditArgs) -> Result<Audit, RunError> {
    let target = args.target.resolve().map_err(RunError::Refused)?;
    let pool = state::connect(&target.database_url).await?;
    let store = state::schema_exists(&pool).await?;
    let runs = match store {
        true => state::history(&pool, args.limit).await?,
        false => Vec::new(),
    };
    pool.close().await;
    Ok(Audit { store, runs })
}

fn text(audit: &Audit) -> String {
    if !audit.store {
        return "no runs yet (the `replay` schema does not exist)\n".into();
    }
    let mut out = String::new();
    for r in &audit.runs {
        out.push_str(&format!(
            "{}  {}  {}  plan {}  by {}  {}\n    reason: {}\n",
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.id,
            r.plan,
            r.plan_hash,
            r.operator,
            r.status,
            r.reason,
        ));
        if !r.actions.is_empty() {
            let actions: Vec<String> = r.actions.iter().map(ToString::to_string).collect();
            out.push_str(&format!("    actions: {}\n", actions.join("; ")));
        }
    }
    if out.is_empty() {
        out.push_str("no runs yet\n");
    }
    out
}
