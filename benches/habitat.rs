//! Throughput of the Habitat reference world: generator rows/s and worker events/s, on a
//! scratch database of its own. Prints ratios, asserts nothing.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use habitat::{self, FailureMode, GeneratorConfig, OutgoingEvent, Publisher, Worker, WorkerConfig};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

const EVENTS: u64 = 1_000_000;
const REPLAYED: i64 = 20_000;
const PUBLISHED: usize = 20_000;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let amqp_url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .context("connect to the admin database")?;
    let database = format!("habitat_bench_{}", Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await?;
    println!("habitat bench: scratch database `{database}`");

    let outcome = async {
        let options = PgConnectOptions::from_str(&admin_url)?.database(&database);
        let pool = PgPoolOptions::new()
            .max_connections(12)
            .connect_with(options)
            .await?;
        let result = bench(&pool, &amqp_url).await;
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

async fn bench(pool: &PgPool, amqp_url: &str) -> anyhow::Result<()> {
    // Generator.
    let config = GeneratorConfig {
        seed: 2024,
        members: 2_000,
        periods: 12,
        events: EVENTS,
        failed_share: 0.03,
        stuck_share: 0.005,
        days: 365,
        now: chrono::Utc::now(),
    };
    let report = habitat::generate(pool, &config).await?;
    let secs = report.elapsed.as_secs_f64();
    println!(
        "generator: {} events ({} rows in all tables) in {:.2} s = {:.0} events/s, {:.0} rows/s",
        report.events,
        report.total_rows(),
        secs,
        report.events as f64 / secs,
        report.total_rows() as f64 / secs,
    );
    println!("generator: by status {:?}", report.by_status);

    let suffix = Uuid::new_v4().simple().to_string();
    let worker_config = WorkerConfig {
        exchange: format!("habitat-bench-{suffix}"),
        queue: format!("habitat-bench-worker-{suffix}"),
        failing: FailureMode::None,
        poll_interval: Duration::from_millis(10),
        pollers: 4,
        ..WorkerConfig::default()
    };
    let worker = Worker::start(pool.clone(), amqp_url, worker_config.clone()).await?;
    let publisher = Publisher::connect(amqp_url, &worker_config.exchange).await?;
    let measured = measure_worker(pool, &worker, &publisher).await;
    worker.stop().await?;
    publisher.delete_topology(&worker_config.queue).await?;
    publisher.close().await?;
    measured
}

async fn measure_worker(
    pool: &PgPool,
    worker: &habitat::WorkerHandle,
    publisher: &Publisher,
) -> anyhow::Result<()> {
    // Replay from the database: the runbook's reset of failed events, drained by the pollers.
    let started = Instant::now();
    let reset = sqlx::query(
        "UPDATE processed_events \
         SET status = 'pending', retry_count = 0, error_message = NULL, processed_at = NULL \
         WHERE id IN (SELECT id FROM processed_events WHERE status = 'error' ORDER BY id LIMIT $1)",
    )
    .bind(REPLAYED)
    .execute(pool)
    .await?
    .rows_affected();
    let before = worker.stats();
    wait_until(Duration::from_secs(300), || {
        let s = worker.stats();
        s.processed + s.failed - before.processed - before.failed >= reset
    })
    .await
    .context("draining the reset events")?;
    let secs = started.elapsed().as_secs_f64();
    let after = worker.stats();
    println!(
        "worker (poll, 4 pollers): {reset} reset events drained in {secs:.2} s = {:.0} events/s \
         ({} processed, {} failed)",
        reset as f64 / secs,
        after.processed - before.processed,
        after.failed - before.failed,
    );

    // Replay through the broker: publish fresh events, time the consumer.
    let events: Vec<OutgoingEvent> = (0..PUBLISHED)
        .map(|_| OutgoingEvent {
            event_type: "payment.initiated".into(),
            event_id: format!("evt_{}", Uuid::new_v4().simple()),
            payload: json!({
                "payment_id": Uuid::new_v4(),
                "allocation_id": Uuid::new_v4(),
                "amount": 25.5,
            }),
        })
        .collect();
    let before = worker.stats();
    let started = Instant::now();
    publisher.publish_all(&events).await?;
    let published = started.elapsed().as_secs_f64();
    wait_until(Duration::from_secs(300), || {
        worker.stats().processed - before.processed >= PUBLISHED as u64
    })
    .await
    .context("consuming the published events")?;
    let consumed = started.elapsed().as_secs_f64();
    println!(
        "publisher: {PUBLISHED} confirmed events in {published:.2} s = {:.0} events/s",
        PUBLISHED as f64 / published
    );
    println!(
        "worker (consume, 1 consumer): {PUBLISHED} events consumed {consumed:.2} s after the \
         first publish = {:.0} events/s",
        PUBLISHED as f64 / consumed
    );
    println!(
        "ratio: poll drain / consume = {:.2}",
        (reset as f64 / secs) / (PUBLISHED as f64 / consumed)
    );
    Ok(())
}

/// Polls `done` every 10 ms until it holds or `limit` passes.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out after {limit:?}");
        tick.tick().await;
    }
    Ok(())
}
