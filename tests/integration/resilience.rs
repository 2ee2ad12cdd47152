//! The `replay` binary under stress: killed, interrupted, contended, failing verification, missing exchange.

// Spawned processes are held in `Running`, whose `Drop` kills and reaps them; the lint cannot see
// through that.
#![allow(clippy::zombie_processes)]

use super::support::*;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection as Amqp, ConnectionProperties, ExchangeKind};
use replay::habitat::{self, GeneratorConfig};
use sqlx::PgPool;

async fn world(pool: &PgPool, events: u64) -> anyhow::Result<i64> {
    let config = GeneratorConfig {
        events,
        failed_share: 0.5,
        stuck_share: 0.0,
        days: 1,
        now: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    habitat::generate(pool, &config).await?;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(pool)
            .await?,
    )
}

fn plan_file(dir: &tempfile::TempDir, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!("version: 1\nname: {name}\nreason: \"resilience test of the executor\"\n{body}"),
    )
    .expect("write plan");
    path
}

fn replay(args: &[&str], url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay"));
    // Nobody is at a terminal to confirm an apply.
    let yes: &[&str] = if args.first() == Some(&"apply") && !args.contains(&"--dry-run") {
        &["--yes"]
    } else {
        &[]
    };
    cmd.args(args)
        .args(yes)
        .env("DATABASE_URL", url)
        .env("AMQP_URL", AMQP)
        .stdin(Stdio::null());
    cmd
}

fn run(args: &[&str], url: &str) -> Output {
    replay(args, url).output().expect("run replay")
}

/// A running `replay`; killed and reaped if a test ends early.
struct Running(Option<Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, as a crash would, and reap.
    fn kill(&mut self) -> std::io::Result<()> {
        if let Some(mut child) = self.0.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    fn wait_with_output(mut self) -> std::io::Result<Output> {
        match self.0.take() {
            Some(child) => child.wait_with_output(),
            None => Err(std::io::Error::other("already reaped")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn start(args: &[&str], url: &str) -> Running {
    Running(Some(
        replay(args, url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn replay"),
    ))
}

/// The checkpoint of a step once it is between its first and last batch.
async fn checkpoint_midway(pool: &PgPool, step: &str, total: i64) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cp: Option<i64> =
            sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = $1")
                .bind(step)
                .fetch_optional(pool)
                .await
                .unwrap_or(None);
        if let Some(cp) = cp.filter(|cp| *cp > 0 && *cp < total) {
            return Ok(cp);
        }
        anyhow::ensure!(Instant::now() < deadline, "step `{step}` never got midway");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let SlowReset {
        total,
        url,
        plan,
        child,
        _dir,
    } = slow_reset_midway(&pool, "interrupted-reset").await?;
    let plan = plan.as_str();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let out = child.wait_with_output()?;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("resume with: replay apply {plan}")),
        "{stdout}"
    );
    let (status, cp): (String, i64) = sqlx::query_as("SELECT r.status, s.checkpoint FROM replay.runs r JOIN replay.step_runs s ON s.run_id = r.id")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "interrupted");
    assert_eq!(selected_pending(&pool).await?, cp);
    let out = run(&["apply", plan], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(selected_pending(&pool).await?, total);
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("exchange `{exchange}` does not exist")),
            "{stderr}"
        );
    }
    Ok(())
}

/// Declares an exchange with a queue bound to `#`; returns a function that drains the queue's message ids.
async fn bound_queue(name: &str) -> anyhow::Result<Amqp> {
    let conn = Amqp::connect(AMQP, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.exchange_declare(
        name.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        name.into(),
        name.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(conn)
}

async fn drain_ids(queue: &str, expect_at_least: usize) -> anyhow::Result<Vec<String>> {
    // A fresh connection: the run may have taken long enough for an idle one to be dropped.
    let conn = Amqp::connect(AMQP, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut ids = Vec::new();
    loop {
        let wait = if ids.len() >= expect_at_least {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(20)
        };
        match tokio::time::timeout(wait, consumer.next()).await {
            Ok(Some(delivery)) => {
                let delivery = delivery?;
                ids.push(
                    delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                );
                delivery.ack(BasicAckOptions::default()).await?;
            }
            _ => break,
        }
    }
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    ch.exchange_delete(queue.into(), ExchangeDeleteOptions::default())
        .await?;
    Ok(ids)
}

#[sqlx::test(migrations = false)]
async fn killed_publish_resumes_losing_nothing_with_bounded_duplicates(
    pool: PgPool,
) -> anyhow::Result<()> {
    let total = world(&pool, 12_000).await?;
    let url = database_url(&pool).await?;
    let name = format!("test-publish-{}", uuid::Uuid::new_v4().simple());
    let _topology = bound_queue(&name).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "killed-publish",
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\nrate_limit: {{ per_second: 2000, batch_size: 100, confirms_in_flight: 50 }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    );
    let plan = plan.to_str().unwrap_or_default();
    let mut child = start(&["apply", plan], &url);
    checkpoint_midway(&pool, "republish", total).await?;
    child.kill()?;
    let out = run(&["apply", plan], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = drain_ids(&name, total as usize).await?;
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len() as i64,
        total,
        "every selected event was published"
    );
    let duplicates = ids.len() - distinct.len();
    assert!(
        duplicates <= 100,
        "at most one batch republished, got {duplicates} duplicates"
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

/// A TCP proxy to a local service that can be cut, as if the service went away.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn to(upstream: u16) -> anyhow::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let mut stop = watch.clone();
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.wait_for(|c| *c) => return,
                };
                let Ok((mut client, _)) = accepted else {
                    return;
                };
                let mut stop = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stop.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Ok(Proxy { port, cut })
    }

    fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

#[sqlx::test(migrations = false)]
async fn broker_going_away_stops_the_step_and_the_next_apply_resumes(
    pool: PgPool,
) -> anyhow::Result<()> {
    let total = world(&pool, 12_000).await?;
    let url = database_url(&pool).await?;
    let name = format!("test-broker-gone-{}", uuid::Uuid::new_v4().simple());
    let _topology = bound_queue(&name).await?;
    let proxy = Proxy::to(5672).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "broker-gone",
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\nrate_limit: {{ per_second: 2000, batch_size: 100, confirms_in_flight: 50 }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    );
    let plan = plan.to_str().unwrap_or_default();
    let mut cmd = replay(&["apply", plan], &url);
    cmd.env(
        "AMQP_URL",
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
    );
    let child = Running(Some(
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?,
    ));
    checkpoint_midway(&pool, "republish", total).await?;
    proxy.cut();
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lost the broker") || stderr.contains("the broker is unreachable"),
        "{stderr}"
    );
    assert!(!stderr.contains("guest:guest"), "no password in output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resume with: replay apply"), "{stdout}");
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "failed");

    let out = run(&["apply", plan], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = drain_ids(&name, total as usize).await?;
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len() as i64,
        total,
        "nothing selected is left unpublished"
    );
    assert!(
        ids.len() - distinct.len() <= 100,
        "duplicates bounded by the window"
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
    let child = start(&["apply", plan], &proxied);
    checkpoint_midway(&pool, "reset", total).await?;
    proxy.cut();
    let out = child.wait_with_output()?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Whatever was committed carries its checkpoint, and nothing else was written.
    let cp: i64 =
        sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = 'reset'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(selected_pending(&pool).await?, cp);
    let out = run(&["apply", plan], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

#[sqlx::test(migrations = false)]
async fn replay_rollback_restores_the_rows_and_refuses_when_they_changed_since(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 2_000).await?;
    let url = database_url(&pool).await?;
    let checksum = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM processed_events t";
    let before: String = sqlx::query_scalar(checksum).fetch_one(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "reversible", REVERSIBLE);
    let plan = plan.to_str().unwrap_or_default();
    let out = run(&["apply", plan], &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let changed: String = sqlx::query_scalar(checksum).fetch_one(&pool).await?;
    assert_ne!(changed, before);

    // Someone touches one of the reset rows after the run.
    let touched: String = sqlx::query_scalar("UPDATE processed_events SET error_message = 'later' WHERE id = (SELECT min(e.id) FROM processed_events e JOIN replay.selection s ON s.event_id = e.event_id) RETURNING event_id")
        .fetch_one(&pool)
        .await?;
    let refused = run(&["rollback", &run_id.to_string()], &url);
    assert_eq!(refused.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("rows changed since run") && stderr.contains(&touched),
        "{stderr}"
    );

    let forced = run(&["rollback", &run_id.to_string(), "--force"], &url);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let after: String = sqlx::query_scalar(checksum).fetch_one(&pool).await?;
    assert_eq!(after, before, "every snapshotted row is back as it was");
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
