//! `habitat demo`: a scratch Habitat where a buggy handler left failures, fixed end to end by a
//! shipped plan through `replay apply --dry-run` and `replay apply`.

use std::path::PathBuf;

use replay::exit_codes;

use crate::{self as habitat, GeneratorConfig, Worker, WorkerConfig};

/// Where the demo runs.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// PostgreSQL server URL (a scratch database `replay_demo` is created on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub server_url: String,
    /// RabbitMQ URL.
    #[arg(
        long,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_default_value = true
    )]
    pub amqp_url: String,
    /// Events to generate.
    #[arg(long, default_value_t = 20_000)]
    pub events: u64,
    /// Replay through Habitat's admin API (`plans/replay-via-api.yaml`, the runbook's "Replay via
    /// API") instead of resetting the events for the worker.
    #[arg(long)]
    pub via_api: bool,
}

/// Where the admin API serves.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Habitat's database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The bearer token calls must carry.
    #[arg(long = "token-env", default_value = "ADMIN_TOKEN")]
    pub token_env: String,
}

/// `habitat admin`: serves the admin API until SIGINT/SIGTERM.
pub fn admin(args: &AdminArgs) -> u8 {
    let Ok(token) = std::env::var(&args.token_env) else {
        eprintln!(
            "error: set `{}` to the bearer token the admin API accepts",
            args.token_env
        );
        return exit_codes::INVALID_PLAN;
    };
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("error: cannot start the async runtime");
        return exit_codes::FAILURE;
    };
    let served = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&args.database_url).await?;
        crate::schema::apply(&pool).await?;
        let config = crate::admin::AdminConfig {
            token,
            failing: crate::FailureMode::None,
        };
        let server = crate::admin::start(pool, args.listen, config).await?;
        println!(
            "habitat admin API on {}/api/admin/replay-event",
            server.url()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<_, anyhow::Error>(())
    });
    match served {
        Ok(()) => exit_codes::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_codes::FAILURE
        }
    }
}

const DATABASE: &str = "replay_demo";

pub fn run(args: &DemoArgs) -> u8 {
    // Via the API, `replay` reads Habitat's admin token from `ADMIN_TOKEN`, as an operator's
    // shell would hold it: a fresh one, set while this process has one thread.
    let token = args.via_api.then(|| {
        let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
        // SAFETY: no other thread exists yet to read the environment.
        unsafe { std::env::set_var("ADMIN_TOKEN", &token) };
        token
    });
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        eprintln!("error: cannot start the async runtime");
        return exit_codes::FAILURE;
    };
    let database_url = with_database(&args.server_url, DATABASE);
    println!(
        "== 1. a scratch Habitat in database `{DATABASE}` with {} events, 5% failed, the contribution handlers' failures to be replayed",
        args.events
    );
    let worker = runtime.block_on(async {
        let server = sqlx::PgPool::connect(&args.server_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"
        )))
        .execute(&server)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
            .execute(&server)
            .await?;
        server.close().await;
        let pool = sqlx::PgPool::connect(&database_url).await?;
        let config = GeneratorConfig {
            events: args.events,
            failed_share: 0.05,
            stuck_share: 0.0,
            days: 1,
            now: chrono::Utc::now(),
            ..GeneratorConfig::default()
        };
        let report = habitat::generate(&pool, &config).await?;
        // The story: the bug was in the contribution handlers; other failures are out of scope here.
        sqlx::query(
            "UPDATE processed_events SET status = 'processed', error_message = NULL \
             WHERE status = 'error' AND event_type NOT LIKE 'contribution.%'",
        )
        .execute(&pool)
        .await?;
        println!(
            "   generated {} events in {:.1}s: {:?}",
            report.events,
            report.elapsed.as_secs_f64(),
            report.by_status
        );
        println!(
            "== 2. the handler is fixed: the reference worker starts (queue `habitat-worker`)"
        );
        // One poller takes pending events in their original order, as dependent handlers expect.
        let config = WorkerConfig {
            pollers: 1,
            ..WorkerConfig::default()
        };
        let worker = Worker::start(pool, &args.amqp_url, config).await?;
        Ok::<_, anyhow::Error>(worker)
    });
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: cannot set up the demo: {e:#}");
            eprintln!(
                "hint: PostgreSQL on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672 must be running"
            );
            return exit_codes::FAILURE;
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
    let stats = runtime.block_on(worker.stop());
    if let Ok(stats) = stats {
        println!("   worker: {stats:?}");
    }
    let redacted = replay::engine::redact::redact_url(&database_url);
    println!("== look further:");
    println!("   cargo run --release -- status --database-url {redacted}");
    println!("   psql {redacted} -c \"SELECT status, count(*) FROM processed_events GROUP BY 1\"");
    println!("   psql {redacted} -c \"SELECT * FROM audit_log ORDER BY id DESC LIMIT 5\"");
    code
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

/// The same server URL with another database name.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}
