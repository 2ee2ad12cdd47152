//! `replay status`: runs and their progress, readable while a run is going.

use crate::engine::report::Encryption;
use crate::engine::state::{self, RunSummary};
use crate::engine::RunError;
use crate::exit_codes;
use crate::render::numbers::{rate, thousands};

use super::args::{ReadFormat, StatusArgs};

/// What `replay status` reads: the database it asked, and its runs.
#[derive(Debug, serde::Serialize)]
struct Status {
    /// `host:port/database`, without the password.
    database: String,
    target: Option<String>,
    encryption: Encryption,
    /// Whether the `replay` schema exists (there are no runs without it).
    store: bool,
    runs: Vec<RunSummary>,
}

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
    match runtime.block_on(read(args)) {
        Ok(status) => {
            match args.format {
                ReadFormat::Text => print!("{}", text(&status)),
                ReadFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                ),
            }
            exit_codes::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", super::error_chain(&e));
            super::apply::exit_code(&e)
        }
    }
}

async fn read(args: &StatusArgs) -> Result<Status, RunError> {
    let target = args.target.resolve().map_err(RunError::Refused)?;
    // An unknown run is a refusal, as for every command that names one.
    let run = match &args.run {
        Some(run) => Some(super::runs::resolve(&target.database_url, run).await?),
        None => None,
    };
    let pool = state::connect(&target.database_url).await?;
    let store = state::schema_exists(&pool).await?;
    let status = Status {
        database: super::apply::target_identity(&target.database_url),
        target: target.name.clone(),
        encryption: state::encryption(&pool).await?,
        store,
        runs: match store {
            true => state::runs(&pool, run).await?,
            false => Vec::new(),
        },
    };
    pool.close().await;
    Ok(status)
}

fn text(status: &Status) -> String {
    let mut out = format!(
        "database {}{} {}\n",
        status.database,
        status
            .target
            .as_deref()
            .map(|n| format!(" (target `{n}`)"))
            .unwrap_or_default(),
        status.encryption
    );
    if !status.store {
        out.push_str("no runs yet (the `replay` schema does not exist)\n");
        return out;
    }
    for r in &status.runs {
        out.push_str(&format!(
            "{}  {}  {}  selected {}  started {}  by {}  plan {}\n",
            r.id,
            r.plan,
            r.status,
            thousands(r.selected.into()),
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
                "    executor {}  batches {}  events {}  {}/s  {state}\n",
                e.name,
                thousands(e.batches_done.into()),
                thousands(e.events_done.into()),
                rate(e.rate)
            ));
        }
        if let Some(error) = r.error.as_deref().filter(|e| !e.is_empty()) {
            out.push_str(&format!("    error: {error}\n"));
        }
        for s in &r.steps {
            let ahead = match s.ahead {
                0 => String::new(),
                n => format!(" (and {} events done beyond it)", thousands(n.into())),
            };
            out.push_str(&format!(
                "    step {} [{}] {}  checkpoint {}{ahead}  touched {}\n",
                s.id,
                s.kind,
                s.status,
                thousands(s.checkpoint.into()),
                thousands(s.touched.into())
            ));
        }
    }
    if status.runs.is_empty() {
        out.push_str("no runs found\n");
    }
    out
}
