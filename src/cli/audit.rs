//! `replay audit`: every apply, stop, rollback and override, with operator, reason, hash and outcome.

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
    let target = args.target.resolve().map_err(RunError::Refused)?;
    let pool = state::connect(&target.database_url).await?;
    if !state::schema_exists(&pool).await? {
        return Ok("no runs yet (the `replay` schema does not exist)\n".into());
    }
    let mut out = String::new();
    for r in state::history(&pool, args.limit).await? {
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
        if !r.events.is_empty() {
            out.push_str(&format!("    events: {}\n", r.events));
        }
    }
    if out.is_empty() {
        out.push_str("no runs yet\n");
    }
    Ok(out)
}
