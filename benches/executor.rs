//! Executor throughput, memory and pacing: `replay apply` run as a child process (release build,
//! copied away first) against baselines run side by side in the same run, each also a whole
//! process timed from spawn to exit, on a scratch database and a scratch exchange and queue of its
//! own. Prints ratios, asserts nothing.
//!
//! 1. `reset`: 100,000 `error` events out of 1,000,000, in batches of 1,000 and 5,000 with two
//!    side by side (the default `parallel_batches`) and of 1,000 one by one, vs one set-based
//!    `UPDATE` of the same rows run by `psql`;
//! 2. `publish`: the same 100,000 events with confirms vs a bare lapin publisher (this binary,
//!    re-run as a child) streaming them out of PostgreSQL with the same sliding confirm window
//!    (500 and 1,000), and vs a script confirming message by message; and what two headers on
//!    every message cost the bare publisher;
//! 3. `memory`: peak RSS of `replay apply` for 10,000 and 1,000,000 selected events;
//! 4. `paced`: achieved events/s of a plan paced at 500/s for about 30 s;
//! 5. `dry-run`: whole-process time and peak RSS of a dry-run of a reset over all 1,000,000 events.
//!
//! `cargo bench --bench executor` runs them all; `cargo bench --bench executor -- reset publish`
//! only the parts named (`-- generate` only the data; with `REPLAY_BENCH_KEEP=1` the scratch
//! database, exchange and queue are kept, for profiling by hand). With a target dir shared by several worktrees, cargo may take
//! another worktree's newer build of the crate for fresh (its fingerprints compare mtimes of
//! workspace-relative paths): `touch` this worktree's `src/**/*.rs` first to be sure the timed
//! binary is built from them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures_util::TryStreamExt as _;
use habitat::{self, GeneratorConfig};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

const EVENTS: u64 = 1_000_000;
/// Events left in `error` by the generator: the selection of the reset and publish plans.
const SUBSET: u64 = 100_000;
/// Alternating rounds of each side of a comparison; medians are reported.
const ROUNDS: usize = 3;
/// Unthrottled runs: the schema's maximum rate, far above what the runs reach.
const UNLIMITED: u32 = 100_000;
const PACED_RATE: u32 = 500;
/// About 30 s at `PACED_RATE`.
const PACED_EVENTS: u64 = 15_000;
/// The confirm-per-message script is slow: it publishes this many, or for `SCRIPT_BUDGET`.
const SCRIPT_EVENTS: usize = 5_000;
const SCRIPT_BUDGET: Duration = Duration::from_secs(15);
const MEMORY_LIMIT_MIB: f64 = 64.0;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The bare publisher baseline is this same binary, run as a child process: both sides of the
    // publish ratio are timed whole process, from spawn to exit.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(BARE_PUBLISHER) {
        return runtime.block_on(bare_publisher(&args[2..]));
    }
    runtime.block_on(run())
}

/// Which parts to run: `cargo bench --bench executor -- reset publish` runs those two; no name
/// runs them all.
fn wanted(part: &str) -> bool {
    const PARTS: [&str; 6] = ["reset", "paced", "publish", "memory", "dry-run", "generate"];
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| PARTS.contains(&a.as_str()))
        .collect();
    named.is_empty() || named.iter().any(|a| a == part)
}

async fn run() -> anyhow::Result<()> {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let amqp_url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());

    // Other worktrees may rebuild the shared target dir while this runs: time a private copy.
    let dir = tempfile::tempdir()?;
    let binary = copy_binary(dir.path())?;

    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .context("connect to the admin database")?;
    let suffix = Uuid::new_v4().simple().to_string();
    let database = format!("replay_bench_{suffix}");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await?;
    let options = PgConnectOptions::from_str(&admin_url)?.database(&database);
    let database_url = {
        let mut url = url_without_path(&admin_url);
        url.push('/');
        url.push_str(&database);
        url
    };
    println!("executor bench: scratch database `{database}`, binary copied to {binary:?}");

    let outcome = async {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let broker = Topology::declare(&amqp_url, &suffix).await?;
        let bench = Bench {
            binary,
            plans: dir.path().to_path_buf(),
            database_url,
            amqp_url: amqp_url.clone(),
            pool: pool.clone(),
            broker,
        };
        let result = bench.all().await;
        let cleanup = match std::env::var_os("REPLAY_BENCH_KEEP") {
            Some(_) => {
                println!(
                    "kept exchange `{}` and queue `{}`",
                    bench.broker.exchange, bench.broker.queue
                );
                Ok(())
            }
            None => bench.broker.delete().await,
        };
        pool.close().await;
        result.and(cleanup)
    }
    .await;

    if std::env::var_os("REPLAY_BENCH_KEEP").is_some() {
        println!("kept the scratch database `{database}`");
        return outcome;
    }
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    outcome
}

/// Copies the `replay` binary cargo built for this bench, refusing one that another worktree's
/// build has replaced since (the target dir is shared, and cargo links every worktree's binary to
/// the same path).
fn copy_binary(dir: &Path) -> anyhow::Result<PathBuf> {
    let built = Path::new(env!("CARGO_BIN_EXE_replay"));
    let copy = dir.join("replay");
    let bench_built = std::fs::metadata(std::env::current_exe()?)?.modified()?;
    let before = std::fs::metadata(built)?.modified()?;
    std::fs::copy(built, &copy).context("copy the release `replay` binary")?;
    let after = std::fs::metadata(built)?.modified()?;
    if before > bench_built || after != before {
        bail!(
            "{} was rebuilt (by another worktree's build?) after this bench was compiled; \
             run the bench again",
            built.display()
        );
    }
    let version = std::process::Command::new(&copy)
        .arg("--version")
        .output()?;
    let version = String::from_utf8_lossy(&version.stdout);
    ensure!(
        version.starts_with("replay "),
        "{} is not the `replay` CLI (`--version` printed {version:?}); another worktree's build \
         may have replaced it: run the bench again",
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

struct Bench {
    binary: PathBuf,
    plans: PathBuf,
    database_url: String,
    amqp_url: String,
    pool: PgPool,
    broker: Topology,
}

/// One finished `replay apply`.
struct Applied {
    /// Wall time of the child process, start to exit.
    secs: f64,
    /// Time between the run's row being created and finished (excludes start-up and migration).
    in_run_secs: f64,
    /// From the run's row being created to its first batch: freeze, gates, broker connection.
    setup_secs: f64,
    selected: u64,
    /// Sum of the steps' `touched`.
    touched: u64,
    peak_rss_kib: Option<u64>,
}

impl Applied {
    /// Where a run's time went, for the bracketed details.
    fn split(&self) -> String {
        format!(
            "{:.2} s wall = {:.2} s start-up + {:.2} s setup and freeze + {:.2} s steps",
            self.secs,
            self.secs - self.in_run_secs,
            self.setup_secs,
            self.in_run_secs - self.setup_secs
        )
    }
}

impl Bench {
    async fn all(&self) -> anyhow::Result<()> {
        self.generate().await?;
        if wanted("reset") {
            self.reset().await?;
        }
        if wanted("paced") {
            self.paced().await?;
        }
        let publish_peak = match wanted("publish") {
            true => self.publish().await?,
            false => None,
        };
        if wanted("memory") {
            self.memory(publish_peak).await?;
        }
        if wanted("dry-run") {
            self.dry_run().await?;
        }
        Ok(())
    }

    // 5. Dry-run.

    /// A dry-run of a reset over every event, timed whole-process, with its peak RSS.
    async fn dry_run(&self) -> anyhow::Result<()> {
        let plan = self.plan(
            "dry-run-1m.yaml",
            &reset_plan("bench-dry-run-1m", UNLIMITED, 1_000, ALL_SELECTION),
        )?;
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args([
                "apply",
                "--dry-run",
                "--format",
                "json",
                "--param",
                "since=3650d",
            ])
            .arg(&plan)
            .arg("--database-url")
            .arg(&self.database_url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let child = command.spawn().context("start `replay apply --dry-run`")?;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = child.id().map(|pid| watch_peak_rss(pid, stop.clone()));
        let output = child.wait_with_output().await?;
        let secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let peak = watcher.and_then(|w| w.join().ok().flatten());
        let report: Value = serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "parse the dry-run's report: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        ensure!(
            report["status"] == "would_run" && report["selected"].as_u64() == Some(EVENTS),
            "dry-run status {} with {} selected",
            report["status"],
            report["selected"]
        );
        let mib_peak = peak.map_or(f64::NAN, |k| k as f64 / 1024.0);
        println!(
            "5. dry-run of a reset over {EVENTS} events (batch 1000): {secs:.2} s whole process, \
             peak RSS {mib_peak:.1} MiB (target <= 5 s and <= {MEMORY_LIMIT_MIB} MiB: {})",
            verdict(secs <= 5.0 && mib_peak <= MEMORY_LIMIT_MIB)
        );
        Ok(())
    }

    async fn generate(&self) -> anyhow::Result<()> {
        let config = GeneratorConfig {
            seed: 7,
            members: 2_000,
            periods: 12,
            events: EVENTS,
            failed_share: SUBSET as f64 / EVENTS as f64,
            stuck_share: 0.0,
            days: 365,
            now: chrono::Utc::now(),
        };
        let report = habitat::generate(&self.pool, &config).await?;
        println!(
            "setup: generated {} events in {:.1} s, by status {:?}",
            report.events,
            report.elapsed.as_secs_f64(),
            report.by_status
        );
        // The subset's original state, to put it back between runs.
        sqlx::raw_sql(
            "CREATE TABLE bench_subset AS SELECT event_id, retry_count, error_message \
             FROM processed_events WHERE status = 'error'; \
             ALTER TABLE bench_subset ADD PRIMARY KEY (event_id)",
        )
        .execute(&self.pool)
        .await?;
        self.settle().await
    }

    /// Puts the subset back in `error` and leaves the table as a fresh run would find it.
    async fn restore_subset(&self) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE processed_events e SET status = 'error', retry_count = s.retry_count, \
             error_message = s.error_message FROM bench_subset s WHERE e.event_id = s.event_id",
        )
        .execute(&self.pool)
        .await?;
        self.settle().await
    }

    /// No dead rows or pending checkpoint left over from the previous measurement.
    async fn settle(&self) -> anyhow::Result<()> {
        // Separate statements: VACUUM refuses to run in the implicit transaction of a batch.
        for statement in ["VACUUM (ANALYZE) processed_events", "CHECKPOINT"] {
            sqlx::raw_sql(statement).execute(&self.pool).await?;
        }
        Ok(())
    }

    // 1. Reset.

    async fn reset(&self) -> anyhow::Result<()> {
        // (batch size, batches side by side): the default of two, and one for comparison.
        let batches = [(1_000u32, 2u32), (5_000, 2), (1_000, 1)];
        let plans = batches
            .iter()
            .map(|&(b, lanes)| {
                let plan = reset_plan(
                    &format!("bench-reset-{b}-{lanes}"),
                    UNLIMITED,
                    b,
                    SUBSET_SELECTION,
                )
                .replace(
                    &format!("  batch_size: {b}\n"),
                    &format!("  batch_size: {b}\n  parallel_batches: {lanes}\n"),
                );
                ensure!(
                    plan.contains("parallel_batches"),
                    "the reset plan's batch_size line moved: parallel_batches not set"
                );
                self.plan(&format!("reset-{b}-{lanes}.yaml"), &plan)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut replay = vec![Vec::new(); batches.len()];
        let mut detail = vec![Vec::new(); batches.len()];
        let mut update = Vec::new();
        for _ in 0..ROUNDS {
            for (i, plan) in plans.iter().enumerate() {
                let a = self.apply(plan, &["since=3650d"]).await?;
                ensure!(
                    a.selected == SUBSET && a.touched == SUBSET,
                    "reset run selected {} and touched {} events, expected {SUBSET}",
                    a.selected,
                    a.touched
                );
                replay[i].push(SUBSET as f64 / a.secs);
                detail[i].push(a.split());
                self.restore_subset().await?;
            }

            let (rows, secs) = self.psql_update().await?;
            ensure!(rows == SUBSET, "set-based UPDATE touched {rows} rows");
            update.push(SUBSET as f64 / secs);
            self.restore_subset().await?;
        }
        let u = median(&update);
        for (i, (b, lanes)) in batches.iter().enumerate() {
            let r = median(&replay[i]);
            println!(
                "1. reset {SUBSET} of {EVENTS} (batch {b}, {lanes} side by side, checkpoints): replay apply {r:.0} rows/s \
                 vs set-based UPDATE {u:.0} rows/s = {:.2}x (target >= 0.8x: {}) [replay runs: {}]",
                r / u,
                verdict(r / u >= 0.8),
                detail[i].join("; ")
            );
        }
        Ok(())
    }

    /// The baseline of the reset: one set-based `UPDATE` of the same rows by `psql`, a whole
    /// process timed from spawn to exit like `replay apply`. Returns (rows, seconds).
    async fn psql_update(&self) -> anyhow::Result<(u64, f64)> {
        let mut command = tokio::process::Command::new("psql");
        command
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.database_url,
                "-c",
            ])
            .arg(
                "UPDATE processed_events SET status = 'pending', retry_count = 0, \
                 error_message = NULL WHERE status = 'error'",
            );
        let (stdout, secs) = timed_child(command, "psql").await?;
        let rows = stdout
            .trim()
            .strip_prefix("UPDATE ")
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("psql printed {stdout:?}, not `UPDATE n`"))?;
        Ok((rows, secs))
    }

    /// The bare lapin publisher (this binary run as a child process), timed from spawn to exit.
    /// Returns (messages, seconds).
    async fn bare_publish(
        &self,
        window: usize,
        limit: Option<(usize, Duration)>,
        headers: bool,
    ) -> anyhow::Result<(u64, f64)> {
        let (count, budget) = limit.map_or((0, 0.0), |(n, b)| (n, b.as_secs_f64()));
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command
            .arg(BARE_PUBLISHER)
            .arg(&self.database_url)
            .arg(&self.amqp_url)
            .arg(&self.broker.exchange)
            .arg(window.to_string())
            .arg(count.to_string())
            .arg(budget.to_string())
            .arg(if headers { "headers" } else { "bare" });
        let (stdout, secs) = timed_child(command, "the bare publisher").await?;
        let sent = stdout
            .trim()
            .parse()
            .with_context(|| format!("the bare publisher printed {stdout:?}"))?;
        Ok((sent, secs))
    }

    // 4. Pacing.

    async fn paced(&self) -> anyhow::Result<()> {
        let selection = format!("{SUBSET_SELECTION}\n  limit: {PACED_EVENTS}");
        let plan = self.plan(
            "paced.yaml",
            &reset_plan("bench-paced", PACED_RATE, 500, &selection),
        )?;
        let a = self.apply(&plan, &["since=3650d"]).await?;
        ensure!(a.touched == PACED_EVENTS, "paced run touched {}", a.touched);
        self.restore_subset().await?;
        let achieved = PACED_EVENTS as f64 / a.secs;
        let in_run = PACED_EVENTS as f64 / a.in_run_secs;
        let error = achieved / f64::from(PACED_RATE) - 1.0;
        println!(
            "4. rate limit {PACED_RATE}/s (reset, batch 500): {PACED_EVENTS} events in {:.2} s = \
             {achieved:.1} events/s = {:.3}x of {PACED_RATE}, {:+.2}% (target within ±3%: {}) \
             [in run: {in_run:.1} events/s]",
            a.secs,
            achieved / f64::from(PACED_RATE),
            error * 100.0,
            verdict(error.abs() <= 0.03)
        );
        Ok(())
    }

    // 2. Publish.

    /// Returns the peak RSS of the publish runs with 1,000 in flight.
    async fn publish(&self) -> anyhow::Result<Option<u64>> {
        let windows = [500u32, 1_000];
        let plans = windows
            .iter()
            .map(|&w| {
                self.plan(
                    &format!("publish-{w}.yaml"),
                    &publish_plan(
                        &format!("bench-publish-{w}"),
                        &self.broker.exchange,
                        w,
                        SUBSET_SELECTION,
                    ),
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut replay = vec![Vec::new(); windows.len()];
        let mut bare = vec![Vec::new(); windows.len()];
        let mut peak = vec![None; windows.len()];
        let mut detail = vec![Vec::new(); windows.len()];
        let mut with_headers = Vec::new();
        for _ in 0..ROUNDS {
            for (i, &w) in windows.iter().enumerate() {
                self.broker.purge().await?;
                let a = self.apply(&plans[i], &["since=3650d"]).await?;
                ensure!(a.touched == SUBSET, "publish run touched {}", a.touched);
                self.broker.expect_depth(SUBSET).await?;
                replay[i].push(SUBSET as f64 / a.secs);
                peak[i] = peak[i].max(a.peak_rss_kib);
                detail[i].push(a.split());

                self.broker.purge().await?;
                let (n, secs) = self.bare_publish(w as usize, None, false).await?;
                ensure!(n == SUBSET, "bare publisher sent {n}");
                self.broker.expect_depth(SUBSET).await?;
                bare[i].push(n as f64 / secs);
            }
            // What a header table on every message costs the broker (why replay sends none
            // unless the plan names them).
            self.broker.purge().await?;
            let (n, secs) = self.bare_publish(500, None, true).await?;
            ensure!(n == SUBSET, "bare publisher with headers sent {n}");
            self.broker.expect_depth(SUBSET).await?;
            with_headers.push(n as f64 / secs);
        }
        self.broker.purge().await?;
        let (n, secs) = self
            .bare_publish(1, Some((SCRIPT_EVENTS, SCRIPT_BUDGET)), false)
            .await?;
        self.broker.expect_depth(n).await?;
        self.broker.purge().await?;
        let script = n as f64 / secs;

        for (i, w) in windows.iter().enumerate() {
            let (r, b) = (median(&replay[i]), median(&bare[i]));
            println!(
                "2a. publish {SUBSET} persistent with confirms, {w} in flight (batch 1000): \
                 replay apply {r:.0} msg/s vs bare lapin publisher {b:.0} msg/s = {:.2}x \
                 (target >= 0.9x: {}) [replay peak RSS {}; runs: {}]",
                r / b,
                verdict(r / b >= 0.9),
                mib(peak[i]),
                detail[i].join("; ")
            );
        }
        for (i, w) in windows.iter().enumerate() {
            let r = median(&replay[i]);
            println!(
                "2b. publish, {w} in flight: replay apply {r:.0} msg/s vs confirm-per-message \
                 script {script:.0} msg/s ({n} messages in {secs:.2} s) = {:.1}x \
                 (target >= 20x: {})",
                r / script,
                verdict(r / script >= 20.0)
            );
        }
        let (b, h) = (median(&bare[0]), median(&with_headers));
        println!(
            "2c. bare lapin publisher, 500 in flight: {h:.0} msg/s with two headers on every \
             message vs {b:.0} msg/s without = {:.2}x",
            h / b
        );
        Ok(peak[1])
    }

    // 3. Memory.

    async fn memory(&self, publish_peak: Option<u64>) -> anyhow::Result<()> {
        let publish_peak = match publish_peak {
            Some(peak) => Some(peak),
            None => {
                let plan = self.plan(
                    "memory-publish-100k.yaml",
                    &publish_plan(
                        "bench-memory-publish-100k",
                        &self.broker.exchange,
                        1_000,
                        SUBSET_SELECTION,
                    ),
                )?;
                self.broker.purge().await?;
                let a = self.apply(&plan, &["since=3650d"]).await?;
                self.broker.purge().await?;
                a.peak_rss_kib
            }
        };
        let publish = self.plan(
            "memory-publish-10k.yaml",
            &publish_plan(
                "bench-memory-publish-10k",
                &self.broker.exchange,
                1_000,
                &format!("{SUBSET_SELECTION}\n  limit: 10000"),
            ),
        )?;
        self.broker.purge().await?;
        let p = self.apply(&publish, &["since=3650d"]).await?;
        ensure!(p.touched == 10_000, "publish run touched {}", p.touched);
        self.broker.expect_depth(10_000).await?;
        self.broker.purge().await?;
        let (Some(pk), Some(pl)) = (p.peak_rss_kib, publish_peak) else {
            bail!("no peak RSS read from /proc (is this Linux?)");
        };
        let (pk, pl) = (pk as f64 / 1024.0, pl as f64 / 1024.0);
        println!(
            "3. peak RSS of replay apply (publish, 1000 in flight): {pk:.1} MiB for 10000 selected \
             vs {pl:.1} MiB for {SUBSET} selected = {:.2}x (target flat and < {MEMORY_LIMIT_MIB} \
             MiB: {})",
            pl / pk,
            verdict(pl < MEMORY_LIMIT_MIB && pl / pk <= 1.25)
        );

        let small = self.plan(
            "memory-10k.yaml",
            &reset_plan(
                "bench-memory-10k",
                UNLIMITED,
                1_000,
                &format!("{ALL_SELECTION}\n  limit: 10000"),
            ),
        )?;
        let large = self.plan(
            "memory-1m.yaml",
            &reset_plan("bench-memory-1m", UNLIMITED, 1_000, ALL_SELECTION),
        )?;
        let s = self.apply(&small, &["since=3650d"]).await?;
        let l = self.apply(&large, &["since=3650d"]).await?;
        ensure!(
            s.selected == 10_000 && l.selected == EVENTS,
            "memory runs selected {} and {} events",
            s.selected,
            l.selected
        );
        let (Some(sk), Some(lk)) = (s.peak_rss_kib, l.peak_rss_kib) else {
            bail!("no peak RSS read from /proc (is this Linux?)");
        };
        let (sm, lm) = (sk as f64 / 1024.0, lk as f64 / 1024.0);
        println!(
            "3. peak RSS of replay apply (reset, batch 1000): {sm:.1} MiB for {} selected \
             ({:.1} s) vs {lm:.1} MiB for {} selected ({:.1} s, {:.0} rows/s) = {:.2}x \
             (target flat and < {MEMORY_LIMIT_MIB} MiB: {})",
            s.selected,
            s.secs,
            l.selected,
            l.secs,
            l.touched as f64 / l.secs,
            lm / sm,
            verdict(lm < MEMORY_LIMIT_MIB && lm / sm <= 1.25)
        );
        Ok(())
    }

    fn plan(&self, file: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.plans.join(file);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Runs `replay apply PLAN` to the end, timed from outside, with its peak RSS polled.
    async fn apply(&self, plan: &Path, params: &[&str]) -> anyhow::Result<Applied> {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("apply")
            .arg("--yes")
            .arg(plan)
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--amqp-url")
            .arg(&self.amqp_url)
            .arg("--operator")
            .arg("executor-bench")
            // Every round runs the same plan anew.
            .arg("--again")
            .arg("--because")
            .arg("another round of the executor benchmark")
            .arg("--format")
            .arg("json");
        for p in params {
            command.arg("--param").arg(p);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let child = command.spawn().context("start `replay apply`")?;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = child.id().map(|pid| watch_peak_rss(pid, stop.clone()));
        let output = child.wait_with_output().await?;
        let secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let peak_rss_kib = watcher.and_then(|w| w.join().ok().flatten());
        if !output.status.success() {
            bail!(
                "`replay apply {}` exited with {}:\n{}{}",
                plan.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let report: Value = serde_json::from_slice(&output.stdout)
            .context("parse the JSON report of `replay apply`")?;
        ensure!(
            report["status"] == "succeeded",
            "run status {}",
            report["status"]
        );
        let run_id: Uuid = report["run_id"]
            .as_str()
            .context("report without run_id")?
            .parse()?;
        // A step's `started_at` is the start of its first batch's transaction.
        let (in_run_secs, setup_secs): (f64, f64) = sqlx::query_as(
            "SELECT extract(epoch FROM r.finished_at - r.started_at)::float8, \
             extract(epoch FROM min(s.started_at) - r.started_at)::float8 \
             FROM replay.runs r JOIN replay.step_runs s ON s.run_id = r.id WHERE r.id = $1 \
             GROUP BY r.id",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Applied {
            secs,
            in_run_secs,
            setup_secs,
            selected: report["selected"].as_u64().unwrap_or(0),
            touched: report["steps"]
                .as_array()
                .map_or(0, |s| s.iter().filter_map(|s| s["touched"].as_u64()).sum()),
            peak_rss_kib,
        })
    }
}

/// Polls the child's `VmHWM` (peak resident set) until `stop`; the last reading is the peak up to
/// a few milliseconds before exit.
fn watch_peak_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Option<u64>> {
    std::thread::spawn(move || {
        let path = format!("/proc/{pid}/status");
        let mut peak: Option<u64> = None;
        while !stop.load(Ordering::SeqCst) {
            let hwm = std::fs::read_to_string(&path).ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            });
            if let Some(kib) = hwm {
                peak = Some(peak.map_or(kib, |p| p.max(kib)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    })
}

/// Runs a baseline as a whole process, timed from spawn to exit; returns its stdout and seconds.
async fn timed_child(
    mut command: tokio::process::Command,
    what: &str,
) -> anyhow::Result<(String, f64)> {
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("start {what} (is it installed?)"))?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "{what} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((String::from_utf8_lossy(&output.stdout).into_owned(), secs))
}

const SUBSET_SELECTION: &str = "  status: [error]\n  processed_within: \"{{ params.since }}\"";
const ALL_SELECTION: &str = "  processed_within: \"{{ params.since }}\"";

fn reset_plan(name: &str, per_second: u32, batch: u32, selection: &str) -> String {
    format!(
        "version: 1
name: {name}
reason: executor benchmark
params:
  since: {{ type: duration, default: 24h }}
select:
{selection}
safety:
  max_events: {EVENTS}
rate_limit:
  per_second: {per_second}
  batch_size: {batch}
steps:
  - id: reset-status
    kind: reset
"
    )
}

fn publish_plan(name: &str, exchange: &str, window: u32, selection: &str) -> String {
    format!(
        "version: 1
name: {name}
reason: executor benchmark
params:
  since: {{ type: duration, default: 24h }}
target:
  exchange: {exchange}
select:
{selection}
rate_limit:
  per_second: {UNLIMITED}
  batch_size: 1000
  confirms_in_flight: {window}
steps:
  - id: republish
    kind: publish
    routing_key: \"{{{{ event.event_type }}}}\"
    payload: \"{{{{ json event.payload }}}}\"
"
    )
}

/// The bench's own exchange and durable queue (bound to every key), and a confirming channel.
struct Topology {
    connection: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
}

impl Topology {
    async fn declare(url: &str, suffix: &str) -> anyhow::Result<Topology> {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .context("connect to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        let exchange = format!("replay-bench-{suffix}");
        let queue = format!("replay-bench-{suffix}");
        channel
            .exchange_declare(
                exchange.clone().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                queue.clone().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.clone().into(),
                exchange.clone().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Topology {
            connection,
            channel,
            exchange,
            queue,
        })
    }

    async fn purge(&self) -> anyhow::Result<()> {
        self.channel
            .queue_purge(self.queue.clone().into(), QueuePurgeOptions::default())
            .await?;
        Ok(())
    }

    async fn expect_depth(&self, expected: u64) -> anyhow::Result<()> {
        let q = self
            .channel
            .queue_declare(
                self.queue.clone().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        ensure!(
            u64::from(q.message_count()) == expected,
            "queue holds {} messages, expected {expected}",
            q.message_count()
        );
        Ok(())
    }

    async fn delete(&self) -> anyhow::Result<()> {
        self.channel
            .queue_delete(self.queue.clone().into(), QueueDeleteOptions::default())
            .await?;
        self.channel
            .exchange_delete(
                self.exchange.clone().into(),
                ExchangeDeleteOptions::default(),
            )
            .await?;
        let _ = self.channel.close(200, "bench done".into()).await;
        let _ = self.connection.close(200, "bench done".into()).await;
        Ok(())
    }
}

const BARE_PUBLISHER: &str = "bare-publisher";

/// The child process of the publish baseline: `executor bare-publisher DATABASE_URL AMQP_URL
/// EXCHANGE WINDOW LIMIT BUDGET_SECS bare|headers` connects to both, streams the `error` events out of
/// PostgreSQL and publishes them persistent and mandatory, at most `WINDOW` unconfirmed (1: wait
/// for each confirm, like a simple script); stops after `LIMIT` messages or `BUDGET_SECS` when
/// `LIMIT` is not 0; with `headers`, every message also carries two headers of the size of
/// replay's former run and plan tags. Prints how many it sent.
async fn bare_publisher(args: &[String]) -> anyhow::Result<()> {
    let [
        database_url,
        amqp_url,
        exchange,
        window,
        limit,
        budget,
        headers,
    ] = args
    else {
        bail!(
            "usage: {BARE_PUBLISHER} DATABASE_URL AMQP_URL EXCHANGE WINDOW LIMIT BUDGET_SECS bare|headers"
        );
    };
    let headers = (headers == "headers").then(|| {
        let mut table = FieldTable::default();
        table.insert(
            "x-replay-run".into(),
            lapin::types::AMQPValue::LongString(Uuid::new_v4().to_string().into()),
        );
        table.insert(
            "x-replay-plan".into(),
            lapin::types::AMQPValue::LongString("bench-publish-500".into()),
        );
        table
    });
    let window: usize = window.parse()?;
    let limit = match limit.parse::<usize>()? {
        0 => None,
        n => Some((n, Duration::from_secs_f64(budget.parse()?))),
    };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let started = Instant::now();
    let mut rows = sqlx::query_as::<_, (String, String, String)>(
        "SELECT event_id, event_type, payload::text FROM processed_events \
         WHERE status = 'error' ORDER BY processed_at NULLS FIRST, event_id",
    )
    .fetch(&pool);
    let exchange = ShortString::from(exchange.clone());
    let mut in_flight: VecDeque<PublisherConfirm> = VecDeque::with_capacity(window);
    let mut sent = 0u64;
    while let Some((event_id, event_type, payload)) = rows.try_next().await? {
        if let Some((n, budget)) = limit
            && (sent as usize >= n || started.elapsed() >= budget)
        {
            break;
        }
        while in_flight.len() >= window {
            settle(in_flight.pop_front()).await?;
        }
        let mut properties = BasicProperties::default()
            .with_message_id(event_id.into())
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        if let Some(table) = &headers {
            properties = properties.with_headers(table.clone());
        }
        let confirm = channel
            .basic_publish(
                exchange.clone(),
                event_type.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload.as_bytes(),
                properties,
            )
            .await?;
        in_flight.push_back(confirm);
        sent += 1;
    }
    drop(rows);
    while !in_flight.is_empty() {
        settle(in_flight.pop_front()).await?;
    }
    let _ = connection.close(200, "bare publisher done".into()).await;
    pool.close().await;
    println!("{sent}");
    Ok(())
}

async fn settle(confirm: Option<PublisherConfirm>) -> anyhow::Result<()> {
    let Some(confirm) = confirm else {
        return Ok(());
    };
    match confirm.await? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => bail!("a message was returned as unroutable"),
        Confirmation::Nack(_) => bail!("a message was nacked"),
        Confirmation::NotRequested => bail!("publisher confirms are off"),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}
