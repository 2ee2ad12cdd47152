//! `habitat demo`: a scratch Habitat where a buggy handler left failures, fixed end to end by a
//! shipped plan through `replay apply --dry-run` and `replay apply`.
//!
//! The scratch database bears a mark (its comment, [`scratch::MARK`]); the demo drops an
//! existing database of that name without asking only when it bears the mark.

use std::path::PathBuf;

use replay::engine::redact::redact_url;
use replay::exit_codes;
use replay::render::numbers::thousands;

use crate::cli::{self, Answer, CliError};
use crate::{self as habitat, GeneratorConfig, Worker, WorkerConfig, scratch};

/// Where the demo runs.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// PostgreSQL URL; the scratch database is created on the same server (the database this
    /// URL names is only used to create and drop it).
    #[arg(
        long,
        alias = "server-url",
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// The scratch database. An existing one is dropped first: at once when an earlier demo
    /// created it, otherwise only after typing its name at the terminal, or with --yes.
    #[arg(long, value_name = "NAME", default_value = "replay_demo", value_parser = scratch::check_name)]
    pub database: String,
    /// Drop an existing scratch database that `habitat demo` did not create, without asking.
    #[arg(long)]
    pub yes: bool,
    /// RabbitMQ URL [default: guest on 127.0.0.1:5672].
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_default_value = true
    )]
    pub amqp_url: String,
    /// Exchange the demo's worker binds its queue to.
    #[arg(long, default_value = "habitat-events")]
    pub exchange: String,
    /// Queue the demo's worker consumes.
    #[arg(long, value_name = "NAME", default_value = "habitat-worker")]
    pub queue: String,
    /// Events to generate.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Replay through Habitat's admin API (`plans/replay-via-api.yaml`, the runbook's "Replay via
    /// API") instead of resetting the events for the worker.
    #[arg(long)]
    pub via_api: bool,
}

/// Runs the demo and returns its exit code.
pub fn run(args: &DemoArgs) -> u8 {
    // Both changes happen while this process has one thread, before the runtime starts.
    // SAFETY: no other thread exists yet to read the environment.
    unsafe {
        // The in-process `replay` must act on the scratch database alone: a target named in
        // the environment would win over its `--database-url`.
        std::env::remove_var("REPLAY_TARGET");
    }
    // Via the API, `replay` reads Habitat's admin token from `ADMIN_TOKEN`, as an operator's
    // shell would hold it: a fresh one.
    let token = args.via_api.then(|| {
        let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
        // SAFETY: as above.
        unsafe { std::env::set_var("ADMIN_TOKEN", &token) };
        token
    });
    let urls = [args.database_url.as_str(), args.amqp_url.as_str()];
    let runtime = match cli::runtime() {
        Ok(runtime) => runtime,
        Err(e) => return e.print(&urls),
    };
    let database = &args.database;
    let database_url = scratch::url_of(&args.database_url, database);
    println!(
        "== 1. a scratch Habitat in database `{database}` with {} events, 5% failed, the contribution handlers' failures to be replayed",
        thousands(args.events.into())
    );
    if let Err(e) = runtime.block_on(prepare(args)) {
        return e.print(&urls);
    }
    let worker = runtime.block_on(async {
        let pool = cli::database(&database_url).await?;
        let config = GeneratorConfig {
            events: args.events,
            failed_share: 0.05,
            stuck_share: 0.0,
            days: 1,
            now: chrono::Utc::now(),
            ..GeneratorConfig::default()
        };
        let report = habitat::generate(&pool, &config)
            .await
            .map_err(|e| CliError::failed(format!("generate events in `{database}`"), e))?;
        // The story: the bug was in the contribution handlers; other failures are out of scope here.
        sqlx::query(
            "UPDATE processed_events SET status = 'processed', error_message = NULL \
             WHERE status = 'error' AND event_type NOT LIKE 'contribution.%'",
        )
        .execute(&pool)
        .await
        .map_err(|e| CliError::failed("keep only the contribution failures", e))?;
        let statuses: Vec<String> = report
            .by_status
            .iter()
            .map(|(status, n)| format!("{} {status}", thousands((*n).into())))
            .collect();
        println!(
            "   generated {} events in {:.1}s: {}",
            thousands(report.events.into()),
            report.elapsed.as_secs_f64(),
            statuses.join(", ")
        );
        println!(
            "== 2. the handler is fixed: the reference worker starts (queue `{}`)",
            args.queue
        );
        // One poller takes pending events in their original order, as dependent handlers expect.
        let config = WorkerConfig {
            exchange: args.exchange.clone(),
            queue: args.queue.clone(),
            pollers: 1,
            ..WorkerConfig::default()
        };
        Worker::start(pool, &args.amqp_url, config)
            .await
            .map_err(|e| CliError::failed("start the worker", e))
    });
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            let code = e.print(&urls);
            eprintln!(
                "hint: PostgreSQL at {} and RabbitMQ at {} must be running",
                redact_url(&args.database_url),
                redact_url(&args.amqp_url)
            );
            return code;
        }
    };
    // Via the API: Habitat serves its admin endpoint with a fresh token, which `replay` reads
    // from `ADMIN_TOKEN` as an operator's shell would hold it.
    let api = match token {
        None => None,
        Some(token) => match runtime.block_on(start_admin(&database_url, token)) {
            Ok(api) => Some(api),
            Err(e) => {
                eprintln!("error: cannot start the admin API: {e:#}");
                let _ = runtime.block_on(worker.stop());
                return exit_codes::FAILURE;
            }
        },
    };
    let (plan, param) = match &api {
        Some(server) => (
            plan_path("replay-via-api.yaml"),
            format!("api={}", server.url()),
        ),
        None => (plan_path("replay-failed-events.yaml"), "since=24h".into()),
    };
    let plan_arg = plan.display().to_string();
    // `replay` as its user runs it, in this process.
    let apply = |dry_run: bool| {
        let mut argv = vec![
            "replay",
            "apply",
            plan_arg.as_str(),
            "--param",
            param.as_str(),
            "--yes",
            "--operator",
            "demo",
            "--database-url",
            database_url.as_str(),
            "--amqp-url",
            args.amqp_url.as_str(),
        ];
        if dry_run {
            argv.push("--dry-run");
        }
        replay::run(argv)
    };
    println!("== 3. replay apply {plan_arg} --dry-run --param {param}");
    let code = apply(true);
    if code != exit_codes::SUCCESS {
        let _ = runtime.block_on(worker.stop());
        return code;
    }
    println!("== 4. replay apply {plan_arg} --param {param}");
    let code = apply(false);
    drop(api);
    if let Ok(stats) = runtime.block_on(worker.stop()) {
        println!(
            "   worker: {} processed, {} failed, {} duplicates skipped",
            thousands(stats.processed.into()),
            thousands(stats.failed.into()),
            thousands(stats.duplicates.into())
        );
    }
    let redacted = redact_url(&database_url);
    let replay = cli::replay_command();
    println!("== look further:");
    if !replay.found {
        println!(
            "   (`replay` is neither beside this `habitat` nor on PATH: `cargo build --release -p replay` puts it beside it)"
        );
    }
    println!("   {} status --database-url {redacted}", replay.shown);
    println!("   {} audit --database-url {redacted}", replay.shown);
    println!("   psql {redacted} -c \"SELECT status, count(*) FROM processed_events GROUP BY 1\"");
    println!("   psql {redacted} -c \"SELECT * FROM audit_log ORDER BY id DESC LIMIT 5\"");
    code
}

/// Makes way for the scratch database and creates it, marked. An existing database is dropped
/// only when it bears the mark, when `--yes` says so, or when the person at the terminal types
/// its name; otherwise nothing is dropped and the demo is refused.
async fn prepare(args: &DemoArgs) -> Result<(), CliError> {
    let name = &args.database;
    // Connected to the scratch database itself, the server could not drop it.
    let server_url = if scratch::database_of(&args.database_url).as_deref() == Some(name.as_str()) {
        scratch::url_of(&args.database_url, "postgres")
    } else {
        args.database_url.clone()
    };
    let shown = redact_url(&scratch::url_of(&args.database_url, name));
    let server = cli::database(&server_url).await?;
    let existing = scratch::existing(&server, name)
        .await
        .map_err(|e| CliError::failed(format!("look up database `{name}` ({shown})"), e))?;
    let drop_it = match existing {
        scratch::Existing::Absent => false,
        scratch::Existing::Marked => true,
        scratch::Existing::Unmarked { comment } => {
            let why = match comment {
                None => format!("it lacks the comment `{}`", scratch::MARK),
                Some(c) => format!("its comment is `{c}`"),
            };
            let refusal = |answer: &str| {
                CliError::Refused(format!(
                    "refused to drop database `{name}` ({shown}): it was not created by `habitat demo` \
                     ({why}); nothing was dropped: {answer}\n  \
                     help: pass `--yes` to drop it anyway, or name another scratch database with `--database NAME`"
                ))
            };
            if args.yes {
                println!(
                    "   dropping database `{name}`, which was not created by `habitat demo` (--yes)"
                );
            } else if !cli::interactive() {
                return Err(refusal("no terminal to ask on, and no `--yes`"));
            } else {
                let question = format!(
                    "database `{name}` ({shown}) was not created by `habitat demo` ({why}).\n\
                     Dropping it deletes everything in it. "
                );
                match cli::confirm(&question, name).await {
                    Answer::Confirmed => {}
                    Answer::Declined => return Err(refusal("the answer was not its name")),
                    Answer::Interrupted => return Err(CliError::Interrupted),
                }
            }
            true
        }
    };
    if drop_it {
        scratch::drop(&server, name)
            .await
            .map_err(|e| CliError::failed(format!("drop database `{name}` ({shown})"), e))?;
    }
    scratch::create(&server, name)
        .await
        .map_err(|e| CliError::failed(format!("create database `{name}` ({shown})"), e))?;
    server.close().await;
    Ok(())
}

/// The admin API on a free port.
async fn start_admin(database_url: &str, token: String) -> anyhow::Result<crate::http::Server> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    let config = crate::admin::AdminConfig {
        token,
        failing: crate::FailureMode::None,
    };
    Ok(crate::admin::start(pool, "127.0.0.1:0".parse()?, config).await?)
}

fn plan_path(name: &str) -> PathBuf {
    let local = PathBuf::from("plans").join(name);
    if local.exists() {
        local
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("plans")
            .join(name)
    }
}
