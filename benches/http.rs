//! HTTP-step throughput: `replay apply` of a plan whose one step calls a local endpoint that
//! answers at once, against a bare reqwest client (this binary, re-run as a child) making the
//! same calls with the same number in flight; both whole processes timed from spawn to exit, on
//! the same events of a scratch database, against the same endpoint (served by this process).
//! Replay runs in batches of 1,000 and of 5,000. Prints calls per second and their ratio, asserts
//! nothing.
//!
//! `cargo bench --bench http` (the release `replay` binary is copied away first, so another
//! worktree's build cannot replace it mid-run).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use futures_util::TryStreamExt as _;
use habitat::GeneratorConfig;
use habitat::http::{Response, serve};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// Events generated; half are left `error`, the selection of both sides.
const EVENTS: u64 = 200_000;
/// Calls in flight on both sides.
const IN_FLIGHT: u32 = 64;
/// Alternating rounds of each side; medians are reported.
const ROUNDS: usize = 3;
const TARGET: f64 = 2_000.0;
/// Batch sizes of the replay side: each batch is claimed, paced and recorded, and its calls drain
/// before the next one starts.
const BATCHES: [u32; 2] = [1_000, 5_000];
const BARE_CLIENT: &str = "--bare-client";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(BARE_CLIENT) {
        return runtime.block_on(bare_client(&args[2..]));
    }
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let dir = tempfile::tempdir()?;
    let binary = copy_binary(dir.path())?;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .context("connect to the admin database")?;
    let database = format!("replay_bench_http_{}", Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await?;
    let database_url = format!("{}/{database}", url_without_path(&admin_url));
    println!("http bench: scratch database `{database}`, binary copied to {binary:?}");
    let outcome = async {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(PgConnectOptions::from_str(&admin_url)?.database(&database))
            .await?;
        let result = bench(&pool, &binary, dir.path(), &database_url).await;
        pool.close().await;
        result
    }
    .await;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    outcome
}

async fn bench(pool: &PgPool, binary: &Path, dir: &Path, database_url: &str) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        seed: 11,
        events: EVENTS,
        failed_share: 0.5,
        stuck_share: 0.0,
        days: 1,
        now: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    habitat::generate(pool, &config).await?;
    let selected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(pool)
            .await?;
    // The endpoint: answers 200 at once, counts the calls.
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = serve(listener, move |_request| {
        counted.fetch_add(1, Ordering::Relaxed);
        async { Response::new(200) }
    })?;
    let api = server.url();
    println!(
        "http bench: {selected} calls a side, {IN_FLIGHT} in flight, endpoint {api} (answers at once), {ROUNDS} rounds alternating"
    );
    for batch in BATCHES {
        compare(binary, dir, database_url, &api, &calls, selected, batch).await?;
    }
    drop(server);
    Ok(())
}

/// `ROUNDS` alternating runs of replay (batches of `batch`) and of the bare client; prints the
/// medians and their ratio.
async fn compare(
    binary: &Path,
    dir: &Path,
    database_url: &str,
    api: &str,
    calls: &AtomicU64,
    selected: i64,
    batch: u32,
) -> anyhow::Result<()> {
    let (mut replay_rates, mut bare_rates) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // replay: a plan of its own each round (a finished run is not run again).
        let name = format!("http-bench-{batch}-{round}");
        let plan = dir.join(format!("{name}.yaml"));
        std::fs::write(&plan, plan_text(&name, batch))?;
        let before = calls.load(Ordering::Relaxed);
        let mut command = tokio::process::Command::new(binary);
        command.args([
            "apply",
            plan.to_str().unwrap_or_default(),
            "--yes",
            "--database-url",
            database_url,
            "--param",
            &format!("api={api}"),
        ]);
        let secs = timed(command, "replay apply").await?;
        let made = calls.load(Ordering::Relaxed) - before;
        ensure!(
            made == selected as u64,
            "replay made {made} calls for {selected} events"
        );
        replay_rates.push(selected as f64 / secs);
        // The bare client, the same calls.
        let before = calls.load(Ordering::Relaxed);
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.args([
            BARE_CLIENT,
            database_url,
            &format!("{api}/replay"),
            &IN_FLIGHT.to_string(),
        ]);
        let secs = timed(command, "the bare client").await?;
        let made = calls.load(Ordering::Relaxed) - before;
        ensure!(
            made == selected as u64,
            "the bare client made {made} calls for {selected} events"
        );
        bare_rates.push(selected as f64 / secs);
        println!(
            "  batch {batch}, round {}: replay {:.0} calls/s, bare reqwest {:.0} calls/s",
            round + 1,
            replay_rates[round],
            bare_rates[round]
        );
    }
    let (replay, bare) = (median(&replay_rates), median(&bare_rates));
    println!(
        "http step, {selected} calls with {IN_FLIGHT} in flight, batches of {batch}, against a local endpoint that answers at once: \
         replay {replay:.0} vs bare reqwest {bare:.0} calls/s = {:.2}x (whole process against whole process, medians of {ROUNDS}); \
         target ≥ {TARGET:.0} calls/s: {}",
        replay / bare,
        if replay >= TARGET { "met" } else { "missed" }
    );
    Ok(())
}

fn plan_text(name: &str, batch: u32) -> String {
    format!(
        "version: 1
name: {name}
reason: http step benchmark
params:
  api: {{ type: string }}
select:
  status: [error]
safety:
  max_events: {EVENTS}
rate_limit:
  per_second: 100000
  batch_size: {batch}
steps:
  - id: call
    kind: http
    url: \"{{{{ params.api }}}}/replay\"
    headers: {{ Content-Type: application/json }}
    body: '{{\"event_id\": {{{{ json event.event_id }}}}}}'
    in_flight: {IN_FLIGHT}
"
    )
}

/// `--bare-client DATABASE_URL URL IN_FLIGHT`: reads the `error` events' ids and POSTs each to
/// URL with its id as body and `Idempotency-Key`, `IN_FLIGHT` at once.
async fn bare_client(args: &[String]) -> anyhow::Result<()> {
    let [database_url, url, in_flight] = args else {
        bail!("usage: {BARE_CLIENT} DATABASE_URL URL IN_FLIGHT");
    };
    let in_flight: usize = in_flight.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT event_id FROM processed_events WHERE status = 'error' ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(in_flight)
        .build()?;
    futures_util::stream::iter(ids.into_iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(in_flight, |id| {
            let client = client.clone();
            async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("idempotency-key", &id)
                    .body(format!("{{\"event_id\": \"{id}\"}}"))
                    .send()
                    .await?;
                ensure!(response.status().is_success(), "{}", response.status());
                Ok(())
            }
        })
        .await
}

/// Runs a child to its exit; returns its wall time.
async fn timed(mut command: tokio::process::Command, what: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("start {what}"))?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "{what} exited with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(secs)
}

/// Copies the release `replay` binary cargo built for this bench.
fn copy_binary(dir: &Path) -> anyhow::Result<PathBuf> {
    let built = Path::new(env!("CARGO_BIN_EXE_replay"));
    let copy = dir.join("replay");
    std::fs::copy(built, &copy).context("copy the release `replay` binary")?;
    let version = std::process::Command::new(&copy)
        .arg("--version")
        .output()?;
    ensure!(
        String::from_utf8_lossy(&version.stdout).starts_with("replay "),
        "{} is not the `replay` CLI",
        built.display()
    );
    Ok(copy)
}

/// `postgres://user@host:port/db?x` → `postgres://user@host:port`.
fn url_without_path(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url[..after_scheme + i].to_string(),
        None => url.split('?').next().unwrap_or(url).to_string(),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
