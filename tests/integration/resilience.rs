//! The `replay` binary under stress: killed, interrupted, contended, failing verification, missing exchange.

use super::process::*;
use super::support::*;
use sqlx::PgPool;
use std::process::{Command, Stdio};

async fn selected_pending(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM processed_events e JOIN replay.selection s ON s.event_id = e.event_id WHERE e.status = 'pending'",
    )
    .fetch_one(pool)
    .await?)
}

const SLOW_RESET: &str = "select: { status: [error] }\nrate_limit: { per_second: 2000, batch_size: 100 }\nsteps:\n  - { id: reset, kind: reset }\n";

/// A slow reset of a fresh world, started as a separate `replay apply` and caught midway.
struct SlowReset {
    total: i64,
    url: String,
    plan: String,
    child: Running,
    _dir: tempfile::TempDir,
}

async fn slow_reset_midway(pool: &PgPool, name: &str) -> anyhow::Result<SlowReset> {
    reset_midway(pool, name, SLOW_RESET).await
}

async fn reset_midway(pool: &PgPool, name: &str, body: &str) -> anyhow::Result<SlowReset> {
    let total = world(pool, 12_000).await?;
    let url = database_url(pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, name, body)
        .to_str()
        .unwrap_or_default()
        .to_string();
    let child = start(&["apply", &plan], &url);
    checkpoint_midway(pool, "reset", total).await?;
    Ok(SlowReset {
        total,
        url,
        plan,
        child,
        _dir: dir,
    })
}

#[sqlx::test(migrations = false)]
async fn killed_reset_resumes_without_applying_a_batch_twice_or_skipping_one(
    pool: PgPool,
) -> anyhow::Result<()> {
    let SlowReset {
        total,
        url,
        plan,
        mut child,
        _dir,
    } = slow_reset_midway(&pool, "killed-reset").await?;
    let plan = plan.as_str();
    child.kill()?;
    // Each batch committed with its checkpoint: exactly the checkpointed events are reset.
    let cp: i64 =
        sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = 'reset'")
            .fetch_one(&pool)
            .await?;
    assert!(cp > 0 && cp < total, "{cp}");
    assert_eq!(selected_pending(&pool).await?, cp);

    let out = run(&["apply", plan], &url);
    assert_success(&out);
    assert_eq!(selected_pending(&pool).await?, total);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(runs, 1, "the killed run was resumed, not restarted");
    let touched: i64 =
        sqlx::query_scalar("SELECT touched FROM replay.step_runs WHERE step_id = 'reset'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(touched, total);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn sigint_stops_at_a_batch_boundary_and_prints_the_resume_command(
    pool: PgPool,
) -> anyhow::Result<()> {
    signalled_reset_stops_at_a_batch_boundary(&pool, "-INT").await
}

#[sqlx::test(migrations = false)]
async fn sigterm_stops_at_a_batch_boundary_and_prints_the_resume_command(
    pool: PgPool,
) -> anyhow::Result<()> {
    signalled_reset_stops_at_a_batch_boundary(&pool, "-TERM").await
}

/// A reset sent `signal` midway stops at a batch boundary, exit 130, `interrupted`, printing the
/// resume command; the resume finishes it.
async fn signalled_reset_stops_at_a_batch_boundary(
    pool: &PgPool,
    signal: &str,
) -> anyhow::Result<()> {
    let SlowReset {
        total,
        url,
        plan,
        child,
        _dir,
    } = slow_reset_midway(pool, "interrupted-reset").await?;
    let plan = plan.as_str();
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()?;
    let out = child.wait_with_output()?;
    assert_exit(&out, 130);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("resume with: replay apply {plan}")),
        "{stdout}"
    );
    let (status, cp): (String, i64) = sqlx::query_as("SELECT r.status, s.checkpoint FROM replay.runs r JOIN replay.step_runs s ON s.run_id = r.id")
        .fetch_one(pool)
        .await?;
    assert_eq!(status, "interrupted");
    assert_eq!(selected_pending(pool).await?, cp);
    let out = run(&["apply", plan], &url);
    assert_success(&out);
    assert_eq!(selected_pending(pool).await?, total);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_second_apply_is_refused_naming_the_running_one(pool: PgPool) -> anyhow::Result<()> {
    let SlowReset {
        total: _,
        url,
        plan,
        child: mut first,
        _dir,
    } = slow_reset_midway(&pool, "contended").await?;
    let plan = plan.as_str();
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let second = run(&["apply", plan], &url);
    first.kill()?;
    assert_eq!(second.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "run `{run_id}` of plan `contended` is already running"
        )),
        "{stderr}"
    );
    // The holder died: its lock is gone and the run resumes.
    let out = run(&["apply", plan], &url);
    assert_success(&out);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn failed_verification_rolls_back_to_the_snapshot(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, 2_000).await?;
    let url = database_url(&pool).await?;
    let checksum = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM processed_events t";
    let before: String = sqlx::query_scalar(checksum).fetch_one(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "rolled-back",
        "select: { status: [error] }\nbackup: { tables: [{ table: processed_events }] }\nsteps:\n  - { id: reset, kind: reset }\n\
         verify:\n  - name: impossible\n    sql: \"SELECT count(*) FROM processed_events WHERE status = 'pending'\"\n    expect: { equals: 0 }\n\
         rollback:\n  - { kind: restore_backup, tables: [processed_events] }\n",
    );
    let out = run(&["apply", plan.to_str().unwrap_or_default()], &url);
    assert_exit(&out, 3);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verify `impossible`: FAIL"), "{stdout}");
    let after: String = sqlx::query_scalar(checksum).fetch_one(&pool).await?;
    assert_eq!(after, before, "the snapshotted rows are back exactly");
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "rolled_back");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn unknown_exchange_is_a_clear_error_in_dry_run_and_apply(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 500).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let exchange = format!("no-such-exchange-{}", uuid::Uuid::new_v4().simple());
    let plan = plan_file(
        &dir,
        "unknown-exchange",
        &format!(
            "target: {{ exchange: {exchange} }}\nselect: {{ status: [error] }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    );
    let plan = plan.to_str().unwrap_or_default();
    for args in [vec!["apply", plan, "--dry-run"], vec!["apply", plan]] {
        let out = run(&args, &url);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{args:?}: refused before writing"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("exchange `{exchange}` does not exist")),
            "{stderr}"
        );
    }
    Ok(())
}

/// A publish of every failed event of a fresh world to an exchange and queue of the test's own,
/// batch 100 and 50 confirms in flight, paced to take a few seconds.
struct SlowPublish {
    total: i64,
    url: String,
    name: String,
    plan: String,
    _topology: lapin::Connection,
    _dir: tempfile::TempDir,
}

async fn slow_publish(pool: &PgPool, label: &str) -> anyhow::Result<SlowPublish> {
    let total = world(pool, 12_000).await?;
    let url = database_url(pool).await?;
    let name = format!("test-{label}-{}", uuid::Uuid::new_v4().simple());
    let topology = bound_queue(&name).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        label,
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\nrate_limit: {{ per_second: 2000, batch_size: 100, confirms_in_flight: 50 }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    )
    .to_str()
    .unwrap_or_default()
    .to_string();
    Ok(SlowPublish {
        total,
        url,
        name,
        plan,
        _topology: topology,
        _dir: dir,
    })
}

#[sqlx::test(migrations = false)]
async fn an_interrupted_publish_flushes_its_confirms_so_the_resume_publishes_nothing_twice(
    pool: PgPool,
) -> anyhow::Result<()> {
    let SlowPublish {
        total,
        url,
        name,
        plan,
        _topology,
        _dir,
    } = slow_publish(&pool, "interrupted-publish").await?;
    let plan = plan.as_str();
    let child = start(&["apply", plan], &url);
    checkpoint_midway(&pool, "republish", total).await?;
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let out = child.wait_with_output()?;
    assert_exit(&out, 130);
    let resumed = run(&["apply", plan], &url);
    assert_success(&resumed);
    let duplicates = drain_each_once_at_least(&name, total).await?;
    assert_eq!(duplicates, 0, "nothing published twice");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn killed_publish_resumes_losing_nothing_with_bounded_duplicates(
    pool: PgPool,
) -> anyhow::Result<()> {
    let SlowPublish {
        total,
        url,
        name,
        plan,
        _topology,
        _dir,
    } = slow_publish(&pool, "killed-publish").await?;
    let plan = plan.as_str();
    let mut child = start(&["apply", plan], &url);
    checkpoint_midway(&pool, "republish", total).await?;
    child.kill()?;
    let out = run(&["apply", plan], &url);
    assert_success(&out);
    let ids = drain_ids(&name, total as usize).await?;
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len() as i64,
        total,
        "every selected event was published"
    );
    let duplicates = ids.len() - distinct.len();
    // The plan's `confirms_in_flight` is 50: a crash republishes at most that many.
    assert!(
        duplicates <= 50,
        "at most `confirms_in_flight` (50) republished, got {duplicates} duplicates"
    );
    let selected: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT event_id FROM replay.selection")
            .fetch_all(&pool)
            .await?
            .into_iter()
            .collect();
    assert_eq!(
        distinct
            .into_iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        selected
    );
    Ok(())
}

/// A publish of every failed event whose broker connection goes through a proxy the test can
/// cut or stall, started with `--retries retries`.
struct BrokerBehindProxy {
    total: i64,
    url: String,
    name: String,
    plan: String,
    proxy: Proxy,
    child: Running,
    _topology: lapin::Connection,
    _dir: tempfile::TempDir,
}

async fn publish_through_a_proxy(
    pool: &PgPool,
    plan_name: &str,
    retries: &str,
) -> anyhow::Result<BrokerBehindProxy> {
    let total = world(pool, 12_000).await?;
    let url = database_url(pool).await?;
    let name = format!("test-{plan_name}-{}", uuid::Uuid::new_v4().simple());
    let _topology = bound_queue(&name).await?;
    let proxy = Proxy::to(5672).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        plan_name,
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\nrate_limit: {{ per_second: 2000, batch_size: 100, confirms_in_flight: 50 }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    )
    .to_str()
    .unwrap_or_default()
    .to_string();
    let mut cmd = replay(&["apply", &plan, "--retries", retries], &url);
    cmd.env(
        "AMQP_URL",
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
    );
    let child = Running(Some(
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?,
    ));
    Ok(BrokerBehindProxy {
        total,
        url,
        name,
        plan,
        proxy,
        child,
        _topology,
        _dir: dir,
    })
}

#[sqlx::test(migrations = false)]
async fn broker_going_away_stops_the_step_and_the_next_apply_resumes(
    pool: PgPool,
) -> anyhow::Result<()> {
    // A broker that stays away outlasts a small retry budget.
    let BrokerBehindProxy {
        total,
        url,
        name,
        plan,
        proxy,
        child,
        _topology,
        _dir,
    } = publish_through_a_proxy(&pool, "broker-gone", "2").await?;
    let plan = plan.as_str();
    checkpoint_midway(&pool, "republish", total).await?;
    proxy.cut();
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(75), "the retry budget is spent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gave up after 3 attempt(s)")
            && (stderr.contains("cannot connect to RabbitMQ")
                || stderr.contains("the broker did not answer")),
        "{stderr}"
    );
    assert!(!stderr.contains("guest:guest"), "no password in output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resume with: replay apply"), "{stdout}");
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "interrupted", "a passing fault never ends a run");

    let out = run(&["apply", plan], &url);
    assert_success(&out);
    let duplicates = drain_each_once_at_least(&name, total).await?;
    assert!(
        duplicates <= 50,
        "{duplicates} duplicates, more than `confirms_in_flight` (50)"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_stalled_broker_times_out_and_the_next_apply_resumes(pool: PgPool) -> anyhow::Result<()> {
    // A broker that hangs: the connection stays open and nothing comes back.
    let BrokerBehindProxy {
        total,
        url,
        name,
        plan,
        proxy,
        child,
        _topology,
        _dir,
    } = publish_through_a_proxy(&pool, "broker-stalled", "0").await?;
    let plan = plan.as_str();
    checkpoint_midway(&pool, "republish", total).await?;
    proxy.stall();
    let out = child.wait_with_output()?;
    assert_exit(&out, 75);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The publisher notices first (no confirm), or any other broker call (no answer): 10 s.
    assert!(
        stderr.contains("gave up after 1 attempt(s)") && stderr.contains("within 10s"),
        "{stderr}"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "interrupted", "a hung broker never ends a run");
    proxy.cut();
    assert_success(&run(&["apply", plan], &url));
    let duplicates = drain_each_once_at_least(&name, total).await?;
    assert!(
        duplicates <= 50,
        "{duplicates} duplicates, more than `confirms_in_flight` (50)"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn database_going_away_leaves_a_consistent_checkpoint(pool: PgPool) -> anyhow::Result<()> {
    let total = world(&pool, 12_000).await?;
    let url = database_url(&pool).await?;
    let proxy = Proxy::to(5432).await?;
    let proxied = url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    anyhow::ensure!(
        proxied != url,
        "DATABASE_URL must name 127.0.0.1:5432 for this test"
    );
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "database-gone", SLOW_RESET);
    let plan = plan.to_str().unwrap_or_default();
    let child = start(&["apply", plan, "--retries", "2"], &proxied);
    checkpoint_midway(&pool, "reset", total).await?;
    proxy.cut();
    let out = child.wait_with_output()?;
    assert_exit(&out, 75);
    // Whatever was committed carries its checkpoint, and nothing else was written.
    let cp: i64 =
        sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = 'reset'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(selected_pending(&pool).await?, cp);
    let out = run(&["apply", plan], &url);
    assert_success(&out);
    assert_eq!(selected_pending(&pool).await?, total);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn replay_stop_from_another_process_stops_the_run_at_a_batch_boundary(
    pool: PgPool,
) -> anyhow::Result<()> {
    let SlowReset {
        total,
        url,
        plan,
        child,
        _dir,
    } = reset_midway(
        &pool,
        "stoppable",
        // A quarter of a second a batch, so that "within one batch" can be seen.
        "select: { status: [error] }\nrate_limit: { per_second: 400, batch_size: 100 }\nsteps:\n  - { id: reset, kind: reset }\n",
    )
    .await?;
    let plan = plan.as_str();
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let requested_at: i64 =
        sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = 'reset'")
            .fetch_one(&pool)
            .await?;
    let stop = run(&["stop", &run_id.to_string()], &url);
    assert_success(&stop);
    assert!(String::from_utf8_lossy(&stop.stdout).contains("is stopped"));
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(130));
    let (status, cp): (String, i64) = sqlx::query_as("SELECT r.status, s.checkpoint FROM replay.runs r JOIN replay.step_runs s ON s.run_id = r.id")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "stopped");
    assert!(cp < total, "stopped before the end");
    // The batch in flight when the stop was asked for, and at most the one that noticed it.
    assert!(
        cp - requested_at <= 200,
        "stopped {} events after the request",
        cp - requested_at
    );
    assert_eq!(
        selected_pending(&pool).await?,
        cp,
        "stopped at a batch boundary"
    );
    let out = run(&["apply", plan], &url);
    assert_success(&out);
    assert_eq!(selected_pending(&pool).await?, total);
    let audit = run(&["audit"], &url);
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("stop_requested"),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    Ok(())
}

const REVERSIBLE: &str = "select: { status: [error] }\nbackup: { tables: [{ table: processed_events }] }\n\
    steps:\n  - { id: reset, kind: reset }\nrollback:\n  - { kind: restore_backup, tables: [processed_events] }\n";

/// Applies `REVERSIBLE`, then someone else changes one of the reset rows; returns the run, the
/// changed row's event id and the table's checksum before the run.
async fn reversed_world(
    pool: &PgPool,
    dir: &tempfile::TempDir,
) -> anyhow::Result<(uuid::Uuid, String, String, String)> {
    world(pool, 2_000).await?;
    let url = database_url(pool).await?;
    let before: String = sqlx::query_scalar(CHECKSUM).fetch_one(pool).await?;
    let plan = plan_file(dir, "reversible", REVERSIBLE);
    let out = run(&["apply", plan.to_str().unwrap_or_default()], &url);
    assert_success(&out);
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(pool)
        .await?;
    let changed: String = sqlx::query_scalar(CHECKSUM).fetch_one(pool).await?;
    assert_ne!(changed, before);
    // Someone (the worker, an operator) touches one of the reset rows after the run.
    let touched: String = sqlx::query_scalar("UPDATE processed_events SET status = 'processed', error_message = 'later' WHERE id = (SELECT min(e.id) FROM processed_events e JOIN replay.selection s ON s.event_id = e.event_id) RETURNING event_id")
        .fetch_one(pool)
        .await?;
    Ok((run_id, touched, before, url))
}

const CHECKSUM: &str = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM processed_events t";

#[sqlx::test(migrations = false)]
async fn replay_rollback_restores_the_runs_rows_and_keeps_rows_changed_since(
    pool: PgPool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (run_id, touched, _before, url) = reversed_world(&pool, &dir).await?;
    let rolled = run(&["rollback", &run_id.to_string()], &url);
    assert_success(&rolled);
    let stdout = String::from_utf8_lossy(&rolled.stdout);
    assert!(
        stdout.contains(&format!(
            "kept 1 row(s) of `processed_events` changed since the run wrote them: {touched}"
        )),
        "{stdout}"
    );
    // Every other row is back exactly; the changed one is as its writer left it.
    let others = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM processed_events t WHERE event_id <> $1";
    let now: String = sqlx::query_scalar(others)
        .bind(&touched)
        .fetch_one(&pool)
        .await?;
    let (status, message): (String, Option<String>) =
        sqlx::query_as("SELECT status, error_message FROM processed_events WHERE event_id = $1")
            .bind(&touched)
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        (status.as_str(), message.as_deref()),
        ("processed", Some("later"))
    );
    // The state before the run, without the kept row, is what the other rows hold now.
    let expected: String = sqlx::query_scalar(
        "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM \
         (SELECT (jsonb_populate_record(NULL::processed_events, coalesce(b.row_data, to_jsonb(p)))).* \
          FROM processed_events p LEFT JOIN replay.backup_rows b ON b.key = p.event_id) t WHERE event_id <> $1",
    )
    .bind(&touched)
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        now, expected,
        "the run's own rows are restored from the backup"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "rolled_back");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE details LIKE '%rolled_back_by_operator%'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(audited, 1);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn replay_rollback_force_restores_rows_changed_since_too(pool: PgPool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (run_id, _touched, before, url) = reversed_world(&pool, &dir).await?;
    let forced = run(&["rollback", &run_id.to_string(), "--force"], &url);
    assert_success(&forced);
    let after: String = sqlx::query_scalar(CHECKSUM).fetch_one(&pool).await?;
    assert_eq!(after, before, "every snapshotted row is back as it was");
    let again = run(&["rollback", &run_id.to_string()], &url);
    assert_eq!(
        again.status.code(),
        Some(4),
        "a rolled-back run is not rolled back twice"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn messages_carry_only_the_headers_the_plan_names(pool: PgPool) -> anyhow::Result<()> {
    let total = world(&pool, 40).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    for tagged in [false, true] {
        let name = format!("test-headers-{}", uuid::Uuid::new_v4().simple());
        let _topology = bound_queue(&name).await?;
        let headers = match tagged {
            true => ", headers: { x-replay-run: \"{{ run.id }}\" }",
            false => "",
        };
        let plan = plan_file(
            &dir,
            &name,
            &format!(
                "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\n\
                 steps:\n  - {{ id: republish, kind: publish{headers} }}\n"
            ),
        );
        let out = run(&["apply", plan.to_str().unwrap_or_default()], &url);
        assert_success(&out);
        let run_id: uuid::Uuid =
            sqlx::query_scalar("SELECT id FROM replay.runs WHERE plan_name = $1")
                .bind(&name)
                .fetch_one(&pool)
                .await?;
        let seen = drain_with(&name, total as usize, |d| {
            d.properties.headers().as_ref().map(|h| {
                h.inner()
                    .iter()
                    .map(|(k, v)| {
                        let value = match v {
                            lapin::types::AMQPValue::LongString(s) => s.to_string(),
                            other => format!("{other:?}"),
                        };
                        (k.to_string(), value)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await?;
        assert_eq!(seen.len() as i64, total, "every selected event published");
        for headers in seen {
            match tagged {
                true => {
                    let headers = headers.unwrap_or_default();
                    assert_eq!(
                        headers.len(),
                        1,
                        "only the header the plan names: {headers:?}"
                    );
                    assert_eq!(headers[0].0, "x-replay-run");
                    assert_eq!(headers[0].1, run_id.to_string(), "tagged with its run");
                }
                false => assert_eq!(headers, None, "no header unless the plan names one"),
            }
        }
    }
    Ok(())
}

/// `--restart` on a half-done run says what that run already did, and leaves it rollback-able:
/// its rows stay as it left them until `replay rollback` restores them.
#[sqlx::test(migrations = false)]
async fn restart_names_what_the_abandoned_run_did_and_leaves_it_rollback_able(
    pool: PgPool,
) -> anyhow::Result<()> {
    let failed = world(&pool, 600).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let paced = "rate_limit: { per_second: 200, batch_size: 10 }\n";
    let first = plan_file(&dir, "restartable", &format!("{REVERSIBLE}{paced}"));
    let mut killed = start(&["apply", first.to_str().unwrap_or_default()], &url);
    let done = checkpoint_midway(&pool, "reset", failed).await?;
    killed.kill()?;
    let abandoned: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let reset_by_first: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'pending'")
            .fetch_one(&pool)
            .await?;
    assert!(
        reset_by_first >= done,
        "{reset_by_first} reset, checkpoint {done}"
    );

    // The plan changed (its pace is not part of it; its reason is): a resume is refused, and
    // `--restart` says what it abandons before it starts anew.
    let changed = plan_file(
        &dir,
        "restartable",
        &format!("{REVERSIBLE}{paced}")
            .replace("select:", "safety: { max_events: 90000 }\nselect:"),
    );
    let out = run(
        &["apply", changed.to_str().unwrap_or_default(), "--restart"],
        &url,
    );
    assert_exit(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("warning: --restart abandons run `{abandoned}` (")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("`replay rollback {abandoned}` can undo them")),
        "{stderr}"
    );
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM replay.runs ORDER BY started_at")
            .fetch_all(&pool)
            .await?;
    assert_eq!(statuses, ["abandoned", "succeeded"]);

    // The abandoned run's own resets are undone; the new run's rows are kept.
    let rolled = run(&["rollback", &abandoned.to_string()], &url);
    assert_success(&rolled);
    let stdout = String::from_utf8_lossy(&rolled.stdout);
    assert!(
        stdout.contains(&format!(
            "rollback restore processed_events: {reset_by_first} row(s)"
        )),
        "{stdout}"
    );
    let (errors, pending): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE status = 'pending') \
         FROM processed_events",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((errors, pending), (reset_by_first, failed - reset_by_first));
    Ok(())
}
