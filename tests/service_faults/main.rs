//! Faults that restart or disturb a whole service (RabbitMQ's application, every broker
//! connection). They cannot run beside other tests, so they live in their own binary, run after
//! the integration tests, one at a time, and always leave the service running.

// Shared with the integration tests; this binary uses only part of them.
#[allow(dead_code)]
#[path = "../integration/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../integration/support.rs"]
mod support;

use process::*;
use support::*;

use std::collections::BTreeSet;
use std::process::Command;
use tokio::sync::Mutex;

use sqlx::PgPool;

/// One service fault at a time in this binary.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Starts RabbitMQ's application again when dropped, whatever happened in between.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["start_app"]);
        let _ = rabbitmqctl(&["await_startup"]);
    }
}

/// A publish of every failed event that takes a few seconds, started as its own process.
async fn slow_publish(
    pool: &PgPool,
    name: &str,
    dir: &tempfile::TempDir,
) -> anyhow::Result<(i64, String, Running, lapin::Connection)> {
    let total = world(pool, 12_000).await?;
    let url = database_url(pool).await?;
    let topology = bound_queue(name).await?;
    let plan = plan_file(
        dir,
        "service-fault",
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\nrate_limit: {{ per_second: 1000, batch_size: 100, confirms_in_flight: 50 }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    );
    let child = start(&["apply", plan.to_str().unwrap_or_default()], &url);
    checkpoint_midway(pool, "republish", total).await?;
    Ok((total, url, child, topology))
}

/// Every selected event arrived, with at most `bound` duplicates.
async fn delivered(pool: &PgPool, name: &str, total: i64, bound: usize) -> anyhow::Result<()> {
    let ids = drain_ids(name, total as usize).await?;
    let distinct: BTreeSet<&String> = ids.iter().collect();
    let selected: BTreeSet<String> = sqlx::query_scalar("SELECT event_id FROM replay.selection")
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    assert_eq!(
        distinct.into_iter().cloned().collect::<BTreeSet<_>>(),
        selected,
        "every selected message arrived"
    );
    let duplicates = ids.len() - selected.len();
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than the documented {bound}"
    );
    Ok(())
}

async fn succeeded_in_one_run(pool: &PgPool) -> anyhow::Result<i64> {
    let (runs, status): (i64, String) =
        sqlx::query_as("SELECT count(*) OVER (), status FROM replay.runs")
            .fetch_one(pool)
            .await?;
    assert_eq!((runs, status.as_str()), (1, "succeeded"));
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM replay.run_log WHERE kind = 'retry'")
            .fetch_one(pool)
            .await?,
    )
}

/// Publishes until midway, disturbs the broker with `fault` (given the test's own broker
/// connection), and checks that the run rode it out in process: one run, `succeeded`, at least
/// one retry, every selected message delivered, at most the unconfirmed window (50) twice.
async fn rides_out(
    pool: &PgPool,
    name: &str,
    fault: impl FnOnce(lapin::Connection) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (total, _url, child, topology) = slow_publish(pool, name, &dir).await?;
    fault(topology)?;
    let out = child.wait_with_output()?;
    assert_success(&out);
    assert!(
        succeeded_in_one_run(pool).await? >= 1,
        "the broker fault was retried in process"
    );
    delivered(pool, name, total, 50).await
}

#[sqlx::test(migrations = false)]
async fn a_broker_restart_during_a_publish_is_ridden_out(pool: PgPool) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let name = format!("test-restart-{}", uuid::Uuid::new_v4().simple());
    rides_out(&pool, &name, |_topology| {
        let _back = BrokerBack;
        rabbitmqctl(&["stop_app"])
    })
    .await
}

#[sqlx::test(migrations = false)]
async fn closing_every_broker_connection_during_a_publish_is_ridden_out(
    pool: PgPool,
) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let name = format!("test-closed-{}", uuid::Uuid::new_v4().simple());
    rides_out(&pool, &name, |topology| {
        drop(topology);
        rabbitmqctl(&["close_all_connections", "closed by a service-fault test"])
    })
    .await
}

#[sqlx::test(migrations = false)]
async fn a_broker_connection_lost_before_a_purge_is_retried_not_rolled_back(
    pool: PgPool,
) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let name = format!("test-purge-{}", uuid::Uuid::new_v4().simple());
    let total = world(&pool, 12_000).await?;
    let url = database_url(&pool).await?;
    let topology = bound_queue(&name).await?;
    let dir = tempfile::tempdir()?;
    // A database step of a few seconds, then the purge, on the connection made at the start.
    let plan = plan_file(
        &dir,
        "purge-after-a-blip",
        &format!(
            "select: {{ status: [error] }}\nrate_limit: {{ per_second: 100000, batch_size: 100 }}\nsteps:\n  \
             - {{ id: bump, kind: sql, each: batch, sql: \"UPDATE processed_events SET retry_count = retry_count + 1 WHERE event_id = ANY(:batch_event_ids) AND (SELECT pg_sleep(0.05)) IS NOT NULL\" }}\n  \
             - {{ id: purge, kind: purge_queue, queue: {name} }}\n"
        ),
    );
    let child = start(&["apply", plan.to_str().unwrap_or_default()], &url);
    checkpoint_midway(&pool, "bump", total).await?;
    drop(topology);
    rabbitmqctl(&["close_all_connections", "closed by a service-fault test"])?;
    let out = child.wait_with_output()?;
    assert_success(&out);
    assert!(
        succeeded_in_one_run(&pool).await? >= 1,
        "the lost broker connection was retried in process, not rolled back"
    );
    let purged: String =
        sqlx::query_scalar("SELECT status FROM replay.step_runs WHERE step_id = 'purge'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(purged, "done");
    // The scratch exchange and queue.
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.queue_delete(name.as_str().into(), Default::default())
        .await?;
    ch.exchange_delete(name.as_str().into(), Default::default())
        .await?;
    Ok(())
}
