//! `habitat worker`: processes what is published to its exchange, stops on SIGTERM printing
//! what it did, fails on demand, and names the servers it cannot reach without their passwords.

use habitat::{OutgoingEvent, Publisher};
use serde_json::json;
use sqlx::PgPool;

use super::support::{AMQP, Running, database_url, remove_topology, run, text, wait_for_count};

/// `n` new contributions, each a `contribution.submitted` the fixed worker applies.
fn submissions(n: usize) -> Vec<OutgoingEvent> {
    (0..n)
        .map(|i| OutgoingEvent {
            event_type: "contribution.submitted".into(),
            event_id: format!("evt_cli_{}_{i}", uuid::Uuid::new_v4().simple()),
            payload: json!({
                "contribution_id": uuid::Uuid::new_v4(),
                "member_id": uuid::Uuid::new_v4(),
                "period_id": uuid::Uuid::new_v4(),
                "type": "labor",
                "amount": "12.50",
            }),
        })
        .collect()
}

/// Starts `habitat worker` with its own exchange and queue and `extra` flags, publishes `n`
/// events once it says it is consuming, waits until all are recorded with `status`, sends
/// SIGTERM, and returns its exit code and output.
async fn work_and_stop(
    pool: &PgPool,
    extra: &[&str],
    n: usize,
    status: &str,
) -> anyhow::Result<(Option<i32>, String, String)> {
    let url = database_url(pool).await?;
    let name = format!("habitat-cli-{}", uuid::Uuid::new_v4().simple());
    let mut args = vec![
        "worker",
        "--amqp-url",
        AMQP,
        "--database-url",
        &url,
        "--exchange",
        &name,
        "--queue",
        &name,
    ];
    args.extend_from_slice(extra);
    let mut worker = Running::spawn(&args)?;
    // The queue is declared and bound before this line is printed.
    let ready = worker.wait_for_line("habitat worker: ")?;
    assert!(
        ready.contains(&format!("queue `{name}` bound to exchange `{name}`")),
        "{ready}"
    );
    let publisher = Publisher::connect(AMQP, &name).await?;
    publisher.publish_all(&submissions(n)).await?;
    let counted = wait_for_count(
        pool,
        &format!("SELECT count(*) FROM processed_events WHERE status = '{status}'"),
        n as i64,
    )
    .await;
    worker.terminate()?;
    let finished = worker.finish();
    publisher.close().await?;
    remove_topology(&name, &name).await?;
    counted?;
    finished
}

#[sqlx::test(migrations = false)]
async fn the_worker_processes_published_events_and_prints_its_stats_on_sigterm(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (code, stdout, stderr) = work_and_stop(&pool, &[], 25, "processed").await?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.ends_with("habitat worker stopped: 25 processed, 0 failed, 0 duplicates skipped"),
        "{stdout}"
    );
    let contributions: i64 = sqlx::query_scalar("SELECT count(*) FROM contributions")
        .fetch_one(&pool)
        .await?;
    assert_eq!(contributions, 25, "the handlers ran");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn fail_pct_100_fails_every_event_the_worker_handles(pool: PgPool) -> anyhow::Result<()> {
    let (code, stdout, stderr) = work_and_stop(&pool, &["--fail-pct", "100"], 20, "error").await?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("; failing 100% of all events"), "{stdout}");
    assert!(
        stdout.ends_with("habitat worker stopped: 0 processed, 20 failed, 0 duplicates skipped"),
        "{stdout}"
    );
    let contributions: i64 = sqlx::query_scalar("SELECT count(*) FROM contributions")
        .fetch_one(&pool)
        .await?;
    assert_eq!(contributions, 0, "no side effect of a failed event");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn fail_types_fail_only_events_of_those_types(pool: PgPool) -> anyhow::Result<()> {
    // Every published event is a `contribution.submitted`; failing only payments fails none.
    let (code, stdout, stderr) = work_and_stop(
        &pool,
        &["--fail-types", "payment.*,allocation.calculated"],
        10,
        "processed",
    )
    .await?;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.ends_with("habitat worker stopped: 10 processed, 0 failed, 0 duplicates skipped"),
        "{stdout}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn servers_the_worker_cannot_reach_are_named_without_their_passwords(
    pool: PgPool,
) -> anyhow::Result<()> {
    let url = database_url(&pool).await?;
    let database = run(&[
        "worker",
        "--amqp-url",
        AMQP,
        "--database-url",
        "postgres://postgres:hunter2-secret@127.0.0.1:1/mine",
    ])?;
    let printed = text(&database);
    assert_eq!(database.status.code(), Some(1), "{printed}");
    assert!(
        printed
            .contains("error: connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/mine"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"), "{printed}");

    let broker = run(&[
        "worker",
        "--amqp-url",
        "amqp://guest:hunter2-secret@127.0.0.1:1/%2f",
        "--database-url",
        &url,
    ])?;
    let printed = text(&broker);
    assert_eq!(broker.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("error: start the worker on RabbitMQ at amqp://guest:***@127.0.0.1:1/%2f"),
        "{printed}"
    );
    assert!(
        printed.contains("caused by: connect to RabbitMQ"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"), "{printed}");

    let wrong_password = run(&[
        "worker",
        "--amqp-url",
        "amqp://guest:hunter2-secret@127.0.0.1:5672/%2f",
        "--database-url",
        &url,
    ])?;
    let printed = text(&wrong_password);
    assert_eq!(wrong_password.status.code(), Some(1), "{printed}");
    assert!(printed.contains("ACCESS_REFUSED"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
    Ok(())
}
