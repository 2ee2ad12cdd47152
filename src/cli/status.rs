//! `replay status`: runs and their progress, readable while a run is going.

use crate::engine::RunError;
use crate::engine::control::{self, Live};
use crate::engine::report::Encryption;
use crate::engine::state::{self, RunSummary};
use crate::engine::status::RunStatus;
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
    runs: Vec<RunView>,
}

/// A run, with what an operator set on it live (`replay pause`, `replay set`).
#[derive(Debug, serde::Serialize)]
struct RunView {
    #[serde(flatten)]
    run: RunSummary,
    live: Live,
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
    let shown = runtime.block_on(async {
        if !args.watch {
            return read(args).await.map(|status| show(args, &status, false));
        }
        let mut first = true;
        loop {
            let status = read(args).await?;
            show(args, &status, !first);
            first = false;
            let running = status
                .runs
                .iter()
                .any(|r| r.run.status == RunStatus::Running);
            if !running {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(args.every) => {}
                // Ctrl-C ends the watch, not the run.
                () = super::prompt::signalled() => return Ok(()),
            }
        }
    });
    match shown {
        Ok(()) => exit_codes::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", super::error_chain(&e));
            super::apply::exit_code(&e)
        }
    }
}

/// Prints one reading; a refresh of `--watch` clears a terminal first, or is one more JSON line.
fn show(args: &StatusArgs, status: &Status, refresh: bool) {
    use std::io::IsTerminal;
    match (args.format, args.watch) {
        (ReadFormat::Text, _) => {
            if refresh {
                match std::io::stdout().is_terminal() {
                    true => print!("\x1b[2J\x1b[H"),
                    false => println!(),
                }
            }
            print!("{}", text(status));
        }
        (ReadFormat::Json, false) => println!(
            "{}",
            serde_json::to_string_pretty(status).unwrap_or_default()
        ),
        (ReadFormat::Json, true) => {
            println!("{}", serde_json::to_string(status).unwrap_or_default())
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
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
        runs: Vec::new(),
    };
    let mut status = status;
    if store {
        for run in state::runs(&pool, run).await? {
            let live = control::live(&pool, run.id).await?;
            status.runs.push(RunView { run, live });
        }
    }
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
    for view in &status.runs {
        let r = &view.run;
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
        if view.live != Live::default() {
            let mut live = Vec::new();
            if view.live.paused {
                live.push(format!("PAUSED (`replay resume {}` goes on)", r.id));
            }
            if let Some(n) = view.live.per_second {
                live.push(format!("rate {} events/s", thousands(n.into())));
            }
            if let Some(n) = view.live.batch_size {
                live.push(format!("batches of {}", thousands(n.into())));
            }
            out.push_str(&format!(
                "    live: {} (set by an operator)\n",
                live.join(", ")
            ));
        }
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
