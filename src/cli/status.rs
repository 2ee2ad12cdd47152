//! `replay status`: runs and their progress, readable while a run is going.

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
            super::apply::exit_code(&e)
        }
    }
}

async fn show(args: &StatusArgs) -> Result<String, crate::engine::RunError> {
    let target = args
        .target
        .resolve()
        .map_err(crate::engine::RunError::Refused)?;
    // An unknown run is a refusal, as for every command that names one.
    let run = match &args.run {
        Some(run) => Some(super::runs::resolve(&target.database_url, run).await?),
        None => None,
    };
    let pool = state::connect(&target.database_url).await?;
    let mut out = format!(
        "database {}{} {}\n",
        super::apply::target_identity(&target.database_url),
        target
            .name
            .as_deref()
            .map(|n| format!(" (target `{n}`)"))
            .unwrap_or_default(),
        state::encryption(&pool).await?
    );
    if !state::schema_exists(&pool).await? {
        out.push_str("no runs yet (the `replay` schema does not exist)\n");
        return Ok(out);
    }
    let runs = state::runs(&pool, run).await?;
    for r in &runs {
        out.push_str(&format!(
            "{}  {}  {}  selected {}  started {}  by {}  plan {}\n",
            r.id,
            r.plan,
            r.status,
            r.selected,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.operator,
            r.plan_hash,
        ));
        if let Some(executor) = &r.executor {
            out.push_str(&format!("    executor: {executor} (live lease)\n"));
        }
        for e in &r.executors {
            let state = match (e.left, e.silent_secs) {
                (true, _) => "left".to_string(),
                (false, s) => format!("last heartbeat {s:.0}s ago"),
            };
            out.push_str(&format!(
                "    executor {}  batches {}  events {}  {:.0}/s  {state}\n",
                e.name, e.batches_done, e.events_done, e.rate
            ));
        }
        if let Some(error) = r.error.as_deref().filter(|e| !e.is_empty()) {
            out.push_str(&format!("    error: {error}\n"));
        }
        for s in &r.steps {
            let ahead = match s.ahead {
                0 => String::new(),
                n => format!(" (and {n} events done beyond it)"),
            };
            out.push_str(&format!(
                "    step {} [{}] {}  checkpoint {}{ahead}  touched {}\n",
                s.id, s.kind, s.status, s.checkpoint, s.touched
            ));
        }
    }
    if runs.is_empty() {
        out.push_str("no runs found\n");
    }
    Ok(out)
}
