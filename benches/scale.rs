//! Scale-out: one run shared by 1, 2 and 4 `replay apply --join` processes (release build,
//! copied away first), each round a whole set of processes timed from the first spawn to the
//! last exit, on the same rows of a scratch database. Prints ratios, asserts nothing.
//!
//! 1. `outside`: a `sql` step with `each: batch` whose cost is outside the process (every batch
//!    sleeps 0.1 s in the server): 1, 2 and 4 executors; targets 2 ≤ 0.6x and 4 ≤ 0.35x of one;
//! 2. `claims`: batches of one event with a trivial statement, so that claiming is the work:
//!    claims (batches) a second on PostgreSQL with 1, 2 and 4 executors;
//! 3. `paced`: three executors sharing a run paced at 2,000 events/s: the achieved rate;
//! 4. `overlap`: the `overlap` gate's check of a frozen selection of 1,000,000 events against an
//!    unfinished run's 1,000,000 (all shared), in PostgreSQL;
//! 5. `publish`: 50,000 persistent messages with confirms to one broker (a scratch exchange and
//!    queue), published by 1 and by 2 executors.
//!
//! `cargo bench --bench scale` runs them all; `cargo bench --bench scale -- outside` only those
//! named.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use habitat::GeneratorConfig;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// Events in the world; half of them failed.
const EVENTS: u64 = 120_000;
/// Messages of the publish part.
const MESSAGES: u64 = 50_000;
const ROUNDS: usize = 2;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn wanted(part: &str) -> bool {
    const PARTS: [&str; 5] = ["outside", "claims", "paced", "overlap", "publish"];
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| PARTS.contains(&a.as_str()))
        .collect();
    named.is_empty() || named.iter().any(|a| a == part)
}

async fn run() -> anyhow::Result<()> {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let dir = tempfile::tempdir()?;
    let binary = dir.path().join("replay");
    std::fs::copy(env!("CARGO_BIN_EXE_replay"), &binary).context("copy the `replay` binary")?;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await?;
    let database = format!("replay_scale_{}", Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await?;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let database_url = format!("{base}/{database}");
    println!("scale bench: scratch database `{database}`");
    let outcome = async {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(PgConnectOptions::from_str(&admin_url)?.database(&database))
            .await?;
        let bench = Bench {
            binary,
            plans: dir.path().to_path_buf(),
            database_url,
            pool: pool.clone(),
        };
        let result = bench.all().await;
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

struct Bench {
    binary: PathBuf,
    plans: PathBuf,
    database_url: String,
    pool: PgPool,
}

/// One shared run: wall time of its executors, and what the run recorded.
struct Shared {
    secs: f64,
    /// From the step's start to its end, as the run log has them.
    step_secs: f64,
    batches: i64,
    events: i64,
    /// Batches done by each executor.
    per_executor: Vec<i64>,
}

impl Bench {
    async fn all(&self) -> anyhow::Result<()> {
        let config = GeneratorConfig {
            events: EVENTS,
            failed_share: 0.5,
            stuck_share: 0.0,
            days: 1,
            now: chrono::Utc::now(),
            ..GeneratorConfig::default()
        };
        habitat::generate(&self.pool, &config).await?;
        if wanted("outside") {
            self.outside().await?;
        }
        if wanted("claims") {
            self.claims().await?;
        }
        if wanted("paced") {
            self.paced().await?;
        }
        if wanted("publish") {
            self.publish().await?;
        }
        if wanted("overlap") {
            self.overlap().await?;
        }
        Ok(())
    }

    async fn publish(&self) -> anyhow::Result<()> {
        use lapin::options::{
            ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
            QueueDeleteOptions, QueuePurgeOptions,
        };
        use lapin::types::FieldTable;
        let amqp_url = std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let name = format!("replay-scale-{}", Uuid::new_v4().simple());
        let conn =
            lapin::Connection::connect(&amqp_url, lapin::ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            name.as_str().into(),
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        let queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(name.as_str().into(), queue, FieldTable::default())
            .await?;
        ch.queue_bind(
            name.as_str().into(),
            name.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        println!(
            "\n5. publish of {MESSAGES} persistent messages with confirms (500 in flight), one broker:"
        );
        let mut one = 0.0;
        for executors in [1, 2] {
            let mut secs = Vec::new();
            let mut last = None;
            for round in 0..ROUNDS {
                ch.queue_purge(name.as_str().into(), QueuePurgeOptions::default())
                    .await?;
                let plan_name = format!("publish-{executors}-{round}");
                let path = self.plans.join(format!("{plan_name}.yaml"));
                std::fs::write(
                    &path,
                    format!(
                        "version: 1\nname: {plan_name}\nreason: scale benchmark\n\
                         target: {{ exchange: {name} }}\nsafety: {{ max_events: {MESSAGES} }}\n\
                         select: {{ status: [error], limit: {MESSAGES} }}\n\
                         rate_limit: {{ per_second: 100000, batch_size: 1000, confirms_in_flight: 500 }}\n\
                         steps:\n  - {{ id: republish, kind: publish }}\n"
                    ),
                )?;
                let shared = self.shared_run(&path, &plan_name, executors).await?;
                secs.push(shared.secs);
                last = Some(shared);
            }
            let secs = median(&secs);
            if executors == 1 {
                one = secs;
            }
            let detail = last.map_or(String::new(), |s| {
                format!(
                    "; batches per executor {:?}, step {:.2} s = {:.0} msg/s",
                    s.per_executor,
                    s.step_secs,
                    s.events as f64 / s.step_secs
                )
            });
            println!(
                "   {executors} executor(s): {secs:.2} s wall = {:.0} msg/s, {:.2}x the time of one{detail}",
                MESSAGES as f64 / secs,
                secs / one
            );
        }
        ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await?;
        ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
        Ok(())
    }

    async fn outside(&self) -> anyhow::Result<()> {
        // 4,000 events in batches of 50: 80 batches of 0.1 s in the server, 8 s for one executor.
        let statement = "UPDATE processed_events SET retry_count = retry_count \
                         WHERE event_id = ANY(:batch_event_ids) AND (SELECT pg_sleep(0.1)) IS NOT NULL";
        let mut one = 0.0;
        println!(
            "\n1. a batch-wise step whose cost is outside the process (0.1 s a batch, 80 batches):"
        );
        for executors in [1, 2, 4] {
            let mut secs = Vec::new();
            let mut last = None;
            for round in 0..ROUNDS {
                let name = format!("outside-{executors}-{round}");
                let plan = self.sql_plan(&name, 4_000, 50, 100_000, statement)?;
                let shared = self.shared_run(&plan, &name, executors).await?;
                secs.push(shared.secs);
                last = Some(shared);
            }
            let secs = median(&secs);
            if executors == 1 {
                one = secs;
            }
            let target = match executors {
                2 => " (target <= 0.6x)",
                4 => " (target <= 0.35x)",
                _ => "",
            };
            let detail = last.map_or(String::new(), |s| {
                format!(
                    "; batches per executor {:?}, step {:.2} s",
                    s.per_executor, s.step_secs
                )
            });
            println!(
                "   {executors} executor(s): {secs:.2} s wall, {:.2}x of one{target}{detail}",
                secs / one
            );
        }
        Ok(())
    }

    async fn claims(&self) -> anyhow::Result<()> {
        println!("\n2. claims a second (batches of one event, a trivial statement):");
        let statement = "UPDATE processed_events SET retry_count = retry_count WHERE event_id = ANY(:batch_event_ids)";
        for executors in [1, 2, 4] {
            let name = format!("claims-{executors}");
            let plan = self.sql_plan(&name, 3_000, 1, 100_000, statement)?;
            let shared = self.shared_run(&plan, &name, executors).await?;
            println!(
                "   {executors} executor(s): {} batches in {:.2} s of step = {:.0} claims/s ({:.2} s wall)",
                shared.batches,
                shared.step_secs,
                shared.batches as f64 / shared.step_secs,
                shared.secs
            );
        }
        Ok(())
    }

    async fn paced(&self) -> anyhow::Result<()> {
        let rate = 2_000.0;
        println!("\n3. one rate for the run: three executors, paced at {rate}/s:");
        let statement = "UPDATE processed_events SET retry_count = retry_count WHERE event_id = ANY(:batch_event_ids)";
        let plan = self.sql_plan("paced", 10_000, 100, rate as u32, statement)?;
        let shared = self.shared_run(&plan, "paced", 3).await?;
        let achieved = shared.events as f64 / shared.step_secs;
        println!(
            "   {} events in {:.2} s of step: {achieved:.1}/s ({:+.2} % of the plan's rate); batches per executor {:?}",
            shared.events,
            shared.step_secs,
            (achieved / rate - 1.0) * 100.0,
            shared.per_executor
        );
        Ok(())
    }

    async fn overlap(&self) -> anyhow::Result<()> {
        println!("\n4. the overlap gate, 1,000,000 events in each selection, all shared:");
        let out = tokio::process::Command::new(&self.binary)
            .args(["init", "--database-url", &self.database_url])
            .output()
            .await?;
        ensure!(out.status.success(), "replay init failed");
        let runs = [Uuid::new_v4(), Uuid::new_v4()];
        for (i, id) in runs.iter().enumerate() {
            sqlx::query(
                "INSERT INTO replay.runs (id, plan_name, plan_hash, params_hash, params, plan_document, \
                 operator, reason, status, selected_count) \
                 VALUES ($1, $2, '', '', '{}', '{\"target\": {\"events_table\": \"processed_events\"}}', \
                 'bench', 'bench', 'running', 1000000)",
            )
            .bind(id)
            .bind(format!("overlap-{i}"))
            .execute(&self.pool)
            .await?;
            sqlx::query(
                "INSERT INTO replay.selection (run_id, seq, event_id, event_type) \
                 SELECT $1, g, 'event-' || g, 'bench' FROM generate_series(1, 1000000) g",
            )
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        sqlx::query("ANALYZE replay.selection")
            .execute(&self.pool)
            .await?;
        let mut secs = Vec::new();
        let mut shared = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let found = replay::engine::state::check_overlap(
                &self.pool,
                runs[1],
                "processed_events",
                |_| false,
            )
            .await?;
            secs.push(started.elapsed().as_secs_f64());
            shared = found.first().map_or(0, |o| o.shared);
        }
        println!(
            "   {shared} shared events found in {:.2} s (median of 3; {:?})",
            median(&secs),
            secs.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>()
        );
        Ok(())
    }

    fn sql_plan(
        &self,
        name: &str,
        events: u64,
        batch: u32,
        per_second: u32,
        statement: &str,
    ) -> anyhow::Result<PathBuf> {
        let path = self.plans.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: {name}\nreason: scale benchmark\n\
                 select: {{ status: [error], limit: {events} }}\n\
                 rate_limit: {{ per_second: {per_second}, batch_size: {batch} }}\n\
                 steps:\n  - id: work\n    kind: sql\n    each: batch\n    sql: \"{statement}\"\n"
            ),
        )?;
        Ok(path)
    }

    /// Starts `executors` processes of `apply PLAN --join` at once and waits for them all.
    async fn shared_run(
        &self,
        plan: &Path,
        name: &str,
        executors: usize,
    ) -> anyhow::Result<Shared> {
        let started = Instant::now();
        let children: Vec<_> = (0..executors)
            .map(|_| {
                tokio::process::Command::new(&self.binary)
                    .args(["apply"])
                    .arg(plan)
                    .args(["--join", "--yes", "--database-url", &self.database_url])
                    .env(
                        "AMQP_URL",
                        std::env::var("AMQP_URL")
                            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
                    )
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for child in children {
            let out = child.wait_with_output().await?;
            ensure!(
                out.status.success(),
                "an executor failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let secs = started.elapsed().as_secs_f64();
        let (step_secs, batches, events): (f64, i64, i64) = sqlx::query_as(
            "SELECT extract(epoch FROM max(l.at) FILTER (WHERE l.kind = 'step_finished') \
                                   - min(l.at) FILTER (WHERE l.kind = 'step_started'))::float8, \
                    (SELECT count(*) FROM replay.batches b WHERE b.run_id = r.id), r.selected_count \
             FROM replay.runs r JOIN replay.run_log l ON l.run_id = r.id \
             WHERE r.plan_name = $1 GROUP BY r.id",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        let per_executor: Vec<i64> = sqlx::query_scalar(
            "SELECT e.batches_done FROM replay.executor_work e JOIN replay.runs r ON r.id = e.run_id \
             WHERE r.plan_name = $1 ORDER BY e.joined_at",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(Shared {
            secs,
            step_secs,
            batches,
            events,
            per_executor,
        })
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
