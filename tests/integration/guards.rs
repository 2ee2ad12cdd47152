//! `guards:` conditions read while the run runs: a rising error rate stops it within one
//! interval, a pausing guard holds it until the condition clears, and a pause past its
//! `max_pause` stops it resumably (and tells the webhooks).

use super::faults::until;
use super::notify::Receiver;
use super::process::{plan_file, world};
use super::support::{database_url, logged, output_text, record_status_changes};
use std::process::{Output, Stdio};

use sqlx::PgPool;

/// Runs `replay` without blocking the test's runtime (a receiver may answer on it).
fn spawn(args: &[&str], url: &str) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay"));
    command
        .args(args)
        .args(["--database-url", url])
        .env("AMQP_URL", super::support::AMQP)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command.spawn().expect("spawn replay")
}

async fn apply(plan: &std::path::Path, url: &str) -> Output {
    let path = plan.to_str().unwrap_or_default();
    spawn(&["apply", path, "--yes", "--format", "json"], url)
        .wait_with_output()
        .await
        .expect("run replay")
}

/// A control table the test turns a condition on and off with.
async fn control(pool: &PgPool, value: i32) -> anyhow::Result<()> {
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS control (hold INT NOT NULL); DELETE FROM control;")
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO control VALUES ($1)")
        .bind(value)
        .execute(pool)
        .await?;
    Ok(())
}

async fn checkpoint(pool: &PgPool, step: &str) -> i64 {
    sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = $1")
        .bind(step)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Every event of the selection changed status exactly once.
async fn each_changed_once(pool: &PgPool, selected: i64) -> anyhow::Result<()> {
    let (events, changes): (i64, i64) =
        sqlx::query_as("SELECT count(DISTINCT event_id), count(*) FROM status_changes")
            .fetch_one(pool)
            .await?;
    assert_eq!((events, changes), (selected, selected));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_guard_trips_on_a_rising_error_rate_within_one_interval(
    pool: PgPool,
) -> anyhow::Result<()> {
    let failed = world(&pool, 400).await?;
    control(&pool, 0).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // The "fix" holds while `control.hold` is 0; then every event it processes fails again.
    let plan = plan_file(
        &dir,
        "guarded-error-rate",
        "select: { status: [error] }\n\
         rate_limit: { per_second: 40, batch_size: 10, parallel_batches: 1 }\n\
         guards:\n  - name: error-rate\n    \
         sql: \"SELECT count(*) FILTER (WHERE error_message = 'failed again')::float / greatest(count(*), 1) FROM processed_events WHERE event_id = ANY(:done_event_ids)\"\n    \
         max: 0.02\n    every: 1s\n\
         steps:\n  - id: process\n    kind: sql\n    each: batch\n    \
         sql: \"UPDATE processed_events SET status = CASE WHEN (SELECT hold FROM control) = 0 THEN 'processed' ELSE 'error' END, \
         error_message = CASE WHEN (SELECT hold FROM control) = 0 THEN NULL ELSE 'failed again' END WHERE event_id = ANY(:batch_event_ids)\"\n",
    );
    let path = plan.to_str().unwrap_or_default();
    // The dry-run shows the guard with its value now.
    let out = spawn(&["apply", path, "--dry-run", "--format", "json"], &url)
        .wait_with_output()
        .await?;
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(dry["guards"][0]["name"], "error-rate");
    assert_eq!(dry["guards"][0]["value"], 0.0);
    assert_eq!(dry["guards"][0]["beyond"], false);
    let out = spawn(&["apply", path, "--dry-run", "--format", "markdown"], &url)
        .wait_with_output()
        .await?;
    let markdown = String::from_utf8_lossy(&out.stdout);
    assert!(
        markdown.contains("### Guards")
            && markdown.contains("| `error-rate` | sql | max 0.02 | stop | 1s | `0` |"),
        "{markdown}"
    );

    let run = tokio::spawn({
        let (plan, url) = (plan.clone(), url.clone());
        async move { apply(&plan, &url).await }
    });
    until("a few batches done", || async {
        checkpoint(&pool, "process").await >= 40
    })
    .await?;
    // The fix stops holding: from here on, every event fails again.
    control(&pool, 1).await?;
    let out = run.await?;
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "stopped");
    assert_eq!(report["guard_trips"][0]["guard"], "error-rate");
    assert_eq!(report["guard_trips"][0]["action"], "stop");
    let failed_again: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE error_message = 'failed again'",
    )
    .fetch_one(&pool)
    .await?;
    // Within one interval: at 40 events a second, at most a second's worth (and the batch in
    // flight) failed again before the guard stopped the run, twice that for scheduling; without
    // the guard, every event left would have.
    assert!(
        failed_again > 0 && failed_again <= 2 * 40 + 10,
        "{failed_again} of {failed} events failed again before the guard stopped the run"
    );
    assert!(failed_again + 40 < failed);
    assert!(logged(&pool, "guard_tripped", None).await);
    assert!(
        output_text(&out).contains("guard `error-rate` tripped: the value is"),
        "{}",
        output_text(&out)
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_pausing_guard_holds_the_run_until_the_condition_clears(
    pool: PgPool,
) -> anyhow::Result<()> {
    let failed = world(&pool, 400).await?;
    control(&pool, 0).await?;
    record_status_changes(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "guarded-pause",
        "select: { status: [error] }\n\
         rate_limit: { per_second: 40, batch_size: 10, parallel_batches: 1 }\n\
         guards:\n  - { name: held, sql: \"SELECT hold FROM control\", max: 0, action: pause, every: 200ms, max_pause: 1m }\n\
         steps:\n  - { id: reset, kind: reset }\n",
    );
    let run = tokio::spawn({
        let (plan, url) = (plan.clone(), url.clone());
        async move { apply(&plan, &url).await }
    });
    until("a few batches done", || async {
        checkpoint(&pool, "reset").await >= 30
    })
    .await?;
    control(&pool, 1).await?;
    until("the guard to trip", || async {
        logged(&pool, "guard_tripped", None).await
    })
    .await?;
    let held_at = checkpoint(&pool, "reset").await;
    assert!(
        held_at < failed,
        "the run was still going when the guard tripped"
    );
    control(&pool, 0).await?;
    let out = run.await?;
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["guard_trips"][0]["action"], "pause");
    assert!(report["guard_trips"][0]["held_secs"].as_f64() > Some(0.0));
    assert!(logged(&pool, "guard_cleared", None).await);
    // Nothing changed while the run held.
    let during: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM status_changes WHERE at > (SELECT at FROM replay.run_log WHERE kind = 'guard_tripped') \
         AND at < (SELECT at FROM replay.run_log WHERE kind = 'guard_cleared')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(during, 0, "events changed while the guard held the run");
    each_changed_once(&pool, failed).await
}

#[sqlx::test(migrations = false)]
async fn a_pause_past_its_max_pause_stops_the_run_resumably(pool: PgPool) -> anyhow::Result<()> {
    let failed = world(&pool, 200).await?;
    control(&pool, 1).await?;
    record_status_changes(&pool).await?;
    let url = database_url(&pool).await?;
    let receiver = Receiver::start(vec![Some(200)]).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "guarded-max-pause",
        &format!(
            "select: {{ status: [error] }}\n\
             guards:\n  - {{ name: held, sql: \"SELECT hold FROM control\", max: 0, action: pause, every: 200ms, max_pause: 1s }}\n\
             steps:\n  - {{ id: reset, kind: reset }}\n\
             notify:\n  - {{ url: \"http://127.0.0.1:{}/hook\", on: [start, guard, stop, finish] }}\n",
            receiver.port
        ),
    );
    let out = apply(&plan, &url).await;
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "stopped");
    assert!(
        output_text(&out).contains("guard `held` did not clear within its max_pause of 1s"),
        "{}",
        output_text(&out)
    );
    let changed: i64 = sqlx::query_scalar("SELECT count(*) FROM status_changes")
        .fetch_one(&pool)
        .await?;
    assert_eq!(changed, 0, "nothing was written while the guard held");
    let mut moments: Vec<String> = receiver
        .bodies
        .lock()
        .expect("receiver lock")
        .iter()
        .map(|b| {
            b["replay"]["moment"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    moments.sort();
    assert_eq!(moments, ["guard", "guard", "start", "stop"]);

    // The condition cleared: the same run resumes and finishes, each event once.
    control(&pool, 0).await?;
    let out = apply(&plan, &url).await;
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["resumed"], true);
    assert_eq!(report["status"], "succeeded");
    each_changed_once(&pool, failed).await
}

#[sqlx::test(migrations = false)]
async fn a_guard_that_cannot_be_read_stops_the_run_naming_why(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, 100).await?;
    record_status_changes(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "guard-unreadable",
        "select: { status: [error] }\n\
         guards:\n  - { name: backlog, sql: \"SELECT count(*) FROM no_such_table\", max: 10 }\n\
         steps:\n  - { id: reset, kind: reset }\n",
    );
    let out = apply(&plan, &url).await;
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "stopped");
    let text = output_text(&out);
    assert!(
        text.contains("guard `backlog` could not be read (") && text.contains("no_such_table"),
        "{text}"
    );
    let changed: i64 = sqlx::query_scalar("SELECT count(*) FROM status_changes")
        .fetch_one(&pool)
        .await?;
    assert_eq!(changed, 0, "nothing was written");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_guard_that_stops_the_run_during_a_wait_leaves_the_wait_undone(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 100).await?;
    control(&pool, 0).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // The wait never holds by itself; the verification would fail if it were ever judged.
    let plan = plan_file(
        &dir,
        "guard-during-wait",
        "select: { status: [error] }\n\
         guards:\n  - { name: held, sql: \"SELECT hold FROM control\", max: 0, every: 100ms }\n\
         steps:\n  - { id: reset, kind: reset }\n  \
         - { id: drained, kind: wait, until: \"SELECT false\", timeout: 10m, poll_interval: 100ms }\n\
         verify:\n  - { name: never, sql: \"SELECT 1\", expect: { equals: 0 } }\n",
    );
    let run = tokio::spawn({
        let (plan, url) = (plan.clone(), url.clone());
        async move { apply(&plan, &url).await }
    });
    until("the wait to start", || async {
        logged(&pool, "step_started", Some("drained")).await
    })
    .await?;
    control(&pool, 1).await?;
    let out = run.await?;
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "stopped");
    assert!(
        report["verifications"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let wait_done: bool = sqlx::query_scalar(
        "SELECT status = 'done' FROM replay.step_runs WHERE step_id = 'drained'",
    )
    .fetch_one(&pool)
    .await?;
    assert!(
        !wait_done,
        "the wait was recorded done though it never held"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_queue_guard_whose_broker_stays_away_stops_the_run(pool: PgPool) -> anyhow::Result<()> {
    let failed = world(&pool, 400).await?;
    record_status_changes(&pool).await?;
    let url = database_url(&pool).await?;
    let queue = format!("test-guard-{}", uuid::Uuid::new_v4().simple());
    let _topology = super::process::bound_queue(&queue).await?;
    let proxy = super::process::Proxy::to(5672).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "guard-broker-gone",
        &format!(
            "select: {{ status: [error] }}\n\
             rate_limit: {{ per_second: 40, batch_size: 10, parallel_batches: 1 }}\n\
             guards:\n  - {{ name: backlog, queue_depth: {queue}, max: 100000, every: 100ms }}\n\
             steps:\n  - {{ id: reset, kind: reset }}\n"
        ),
    );
    let path = plan.to_str().unwrap_or_default().to_string();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay"));
    command
        .args([
            "apply",
            &path,
            "--yes",
            "--format",
            "json",
            "--database-url",
            &url,
        ])
        .env(
            "AMQP_URL",
            format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn()?;
    until("a few batches done", || async {
        checkpoint(&pool, "reset").await >= 30
    })
    .await?;
    // The broker goes away for good (from this run's side): the guard cannot see the queue.
    proxy.cut();
    let out = child.wait_with_output().await?;
    assert_eq!(out.status.code(), Some(5), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "stopped");
    assert!(
        output_text(&out).contains("guard `backlog` could not be read (3 readings in a row failed"),
        "{}",
        output_text(&out)
    );
    assert!(
        checkpoint(&pool, "reset").await < failed,
        "the run did not go on unguarded"
    );
    // With the broker back, the same run resumes and finishes, each event once.
    let out = apply(&plan, &url).await;
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    each_changed_once(&pool, failed).await?;
    super::process::drain_ids(&queue, 0).await?;
    Ok(())
}
