//! End-to-end runs of shipped plans against the reference world on the real services.

use super::support::*;
use habitat::{self, GeneratorConfig, Worker, WorkerConfig};
use replay::engine::events::Collect;
use replay::engine::steps::Cancel;
use replay::engine::{self, ApplyOptions, Connection, Report, RunError};
use replay::plan::{self, Plan, Source};
use sqlx::PgPool;

/// A world whose contribution handlers failed within the last day.
async fn broken_world(pool: &PgPool) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        events: 3_000,
        failed_share: 0.05,
        stuck_share: 0.0,
        days: 1,
        now: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    habitat::generate(pool, &config).await?;
    sqlx::query("UPDATE processed_events SET status = 'processed', error_message = NULL WHERE status = 'error' AND event_type NOT LIKE 'contribution.%'")
        .execute(pool)
        .await?;
    Ok(())
}

async fn connection(pool: &PgPool) -> anyhow::Result<Connection> {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await?;
    let server = std::env::var("DATABASE_URL")?;
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(b, _)| b)
        .to_string();
    Ok(Connection {
        database_url: format!("{base}/{db}"),
        amqp_url: AMQP.into(),
        operator: "test".into(),
        target: None,
    })
}

fn load(path: &str, edit: impl Fn(String) -> String, params: &[&str]) -> anyhow::Result<Plan> {
    let text = edit(std::fs::read_to_string(path)?);
    let validated = plan::validate(Source::from_text(path.into(), text)?);
    let raw = validated
        .valid_plan()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("invalid: {:?}", validated.diagnostics))?;
    Ok(plan::compile(
        raw,
        &params.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )?)
}

fn unique_worker() -> WorkerConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    WorkerConfig {
        exchange: format!("test-ex-{id}"),
        queue: format!("test-q-{id}"),
        pollers: 1,
        ..WorkerConfig::default()
    }
}

async fn failing(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(pool)
            .await?,
    )
}

#[sqlx::test(migrations = false)]
async fn failed_events_are_reset_and_fixed_by_the_worker(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let before = failing(&pool).await?;
    assert!(before > 0);
    let worker = Worker::start(pool.clone(), AMQP, unique_worker()).await?;
    let plan = load("plans/replay-failed-events.yaml", |t| t, &["since=24h"])?;
    let conn = connection(&pool).await?;
    let mut report = Report::default();
    let result = engine::apply(
        &plan,
        &conn,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut report,
    )
    .await;
    worker.stop().await?;
    result?;
    assert_eq!(report.status, "succeeded");
    assert_eq!(report.selected as i64, before);
    assert_eq!(failing(&pool).await?, 0);
    assert!(report.verifications.iter().all(|v| v.passed));
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'event_replay' AND details LIKE '%succeeded%'")
        .fetch_one(&pool)
        .await?;
    assert_eq!(audit, 1);
    let checkpoint: i64 = sqlx::query_scalar(
        "SELECT checkpoint FROM replay.step_runs WHERE step_id = 'reset-status'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(checkpoint, before);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn dry_run_changes_nothing_and_needs_no_executor_schema(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let before = fingerprint(&pool).await?;
    let plan = load("plans/replay-failed-events.yaml", |t| t, &["since=24h"])?;
    let mut report = Report {
        mode: replay::engine::status::Mode::DryRun,
        ..Report::default()
    };
    engine::dry_run(
        &plan,
        &connection(&pool).await?,
        &Default::default(),
        &mut Collect::default(),
        &mut report,
    )
    .await?;
    assert_eq!(fingerprint(&pool).await?, before);
    assert_eq!(report.status, "would_run");
    assert_eq!(report.steps[0].touched, report.selected);
    assert!(report.selected > 0);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn dry_run_renders_messages_without_publishing(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let event_id: String =
        sqlx::query_scalar("SELECT event_id FROM processed_events WHERE status = 'error' LIMIT 1")
            .fetch_one(&pool)
            .await?;
    let worker_config = unique_worker();
    let worker = Worker::start(pool.clone(), AMQP, worker_config.clone()).await?;
    let exchange = worker_config.exchange.clone();
    let plan = load(
        "plans/replay-single-event.yaml",
        |t| {
            t.replace(
                "select:",
                &format!("target: {{ exchange: {exchange} }}\nselect:"),
            )
        },
        &[&format!("event_id={event_id}")],
    )?;
    let mut report = Report::default();
    engine::dry_run(
        &plan,
        &connection(&pool).await?,
        &Default::default(),
        &mut Collect::default(),
        &mut report,
    )
    .await?;
    assert_eq!(report.messages.len(), 1);
    assert_eq!(report.messages[0].message_id, event_id);
    // Nothing was sent: the event is still failing.
    let status: String =
        sqlx::query_scalar("SELECT status FROM processed_events WHERE event_id = $1")
            .bind(&event_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(status, "error");
    // The real run publishes it and the worker fixes it.
    let mut report = Report::default();
    engine::apply(
        &plan,
        &connection(&pool).await?,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut report,
    )
    .await?;
    worker.stop().await?;
    let status: String =
        sqlx::query_scalar("SELECT status FROM processed_events WHERE event_id = $1")
            .bind(&event_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(status, "processed");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn interrupted_run_resumes_and_a_changed_plan_is_refused(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let conn = connection(&pool).await?;
    let plan = load(
        "plans/reset-stuck-events.yaml",
        |t| t.replace("status: [processing]", "status: [error]"),
        &["older_than=1s"],
    )?;
    let cancel = Cancel::default();
    cancel.cancel();
    let mut report = Report::default();
    let first = engine::apply(
        &plan,
        &conn,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &cancel,
        &mut report,
    )
    .await;
    assert!(matches!(first, Err(RunError::Interrupted)), "{first:?}");
    let run_id = report.run_id.clone();

    let changed = load(
        "plans/reset-stuck-events.yaml",
        |t| {
            t.replace("status: [processing]", "status: [error]")
                .replace("max_events: 100000", "max_events: 90000")
        },
        &["older_than=1s"],
    )?;
    let refused = engine::apply(
        &changed,
        &conn,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut Report::default(),
    )
    .await;
    match refused {
        Err(RunError::Refused(message)) => {
            assert!(message.contains("the plan changed"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let worker = Worker::start(pool.clone(), AMQP, unique_worker()).await?;
    let mut resumed = Report::default();
    let result = engine::apply(
        &plan,
        &conn,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut resumed,
    )
    .await;
    worker.stop().await?;
    result?;
    assert_eq!(resumed.run_id, run_id, "the same run resumes");
    assert_eq!(resumed.status, "succeeded");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn missing_table_and_wrong_password_are_clear_errors(pool: PgPool) -> anyhow::Result<()> {
    let conn = connection(&pool).await?;
    let plan = load("plans/replay-failed-events.yaml", |t| t, &[])?;
    let err = engine::apply(
        &plan,
        &conn,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut Report::default(),
    )
    .await
    .expect_err("no tables");
    assert_eq!(
        err.to_string(),
        "refused: table `processed_events` does not exist in the target database (see `target` in the plan)"
    );

    let bad = Connection {
        database_url: "postgres://nobody:s3cret@127.0.0.1:5432/nowhere".into(),
        ..conn
    };
    let err = engine::apply(
        &plan,
        &bad,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut Report::default(),
    )
    .await
    .expect_err("no such role");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "cannot connect to PostgreSQL at postgres://nobody:***@127.0.0.1:5432/nowhere"
        ),
        "{text}"
    );
    assert!(!text.contains("s3cret"));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn pg_dump_backup_is_written_before_the_first_write(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let dir = tempfile::tempdir()?;
    let directory = dir.path().display().to_string();
    let text = format!(
        "version: 1\nname: dumped\nreason: \"reset with a pg_dump first\"\nselect: {{ status: [error] }}\n\
         backup:\n  tables: [{{ table: processed_events }}]\n  pg_dump: {{ directory: \"{directory}\" }}\n\
         steps:\n  - {{ id: reset, kind: reset }}\n"
    );
    let validated = plan::validate(Source::from_text("dumped.yaml".into(), text)?);
    let raw = validated
        .valid_plan()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{:?}", validated.diagnostics))?;
    let plan = plan::compile(raw, &[])?;
    let mut report = Report::default();
    let result = engine::apply(
        &plan,
        &connection(&pool).await?,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut report,
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
    let file = report
        .dump_file
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no dump in {report:?}"))?;
    let listing = std::process::Command::new("pg_restore")
        .arg("--list")
        .arg(&file)
        .output()?;
    assert!(listing.status.success());
    let toc = String::from_utf8_lossy(&listing.stdout);
    assert!(toc.contains("TABLE DATA public processed_events"), "{toc}");
    // The dump was taken before the reset: restored elsewhere, the selected events are still failing.
    let restored = std::process::Command::new("pg_restore")
        .args(["--data-only", "--table=processed_events", "-f", "-"])
        .arg(&file)
        .output()?;
    let data = String::from_utf8_lossy(&restored.stdout);
    assert!(data.lines().filter(|l| l.contains("\terror\t")).count() as u64 >= report.selected);
    Ok(())
}

/// Runs a plan written inline; returns the result and the report.
async fn apply_text(
    pool: &PgPool,
    body: &str,
    options: &ApplyOptions,
    reporter: &mut Collect,
) -> anyhow::Result<(Result<(), RunError>, Report)> {
    let text = format!("version: 1\nname: inline\nreason: \"an inline plan for a test\"\n{body}");
    let validated = plan::validate(Source::from_text("inline.yaml".into(), text)?);
    let raw = validated
        .valid_plan()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{:?}", validated.diagnostics))?;
    let plan = plan::compile(raw, &[])?;
    let mut report = Report::default();
    let result = engine::apply(
        &plan,
        &connection(pool).await?,
        options,
        reporter,
        &Cancel::default(),
        &mut report,
    )
    .await;
    Ok((result, report))
}

async fn declare(exchange: &str, queue: Option<&str>) -> anyhow::Result<lapin::Channel> {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.exchange_declare(
        exchange.into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        lapin::types::FieldTable::default(),
    )
    .await?;
    if let Some(q) = queue {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            q.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    }
    Ok(ch)
}

#[sqlx::test(migrations = false)]
async fn unroutable_message_fails_the_step_naming_the_event(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let exchange = format!("test-unroutable-{}", uuid::Uuid::new_v4().simple());
    let ch = declare(&exchange, None).await?;
    let (result, report) = apply_text(
        &pool,
        &format!("target: {{ exchange: {exchange} }}\nselect: {{ status: [error] }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"),
        &ApplyOptions::default(),
        &mut Collect::default(),
    )
    .await?;
    ch.exchange_delete(
        exchange.as_str().into(),
        lapin::options::ExchangeDeleteOptions::default(),
    )
    .await?;
    let message = result.expect_err("no queue is bound").to_string();
    assert!(
        message.starts_with("step `republish` failed after 0 of"),
        "{message}"
    );
    assert!(
        message.contains("was returned unroutable by exchange"),
        "{message}"
    );
    assert!(message.contains("message `evt_"), "{message}");
    assert_eq!(
        report.status, "failed",
        "the plan has no rollback actions, so nothing was rolled back"
    );
    assert!(!report.rolled_back);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn publishing_pauses_while_the_queue_is_too_deep(pool: PgPool) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    broken_world(&pool).await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (exchange, queue) = (format!("test-throttle-{id}"), format!("test-throttle-{id}"));
    let ch = declare(&exchange, Some(&queue)).await?;
    // The run fills the queue past its bound; a consumer that starts a second later drains it.
    let (result, events) = {
        let drain_ch = ch.clone();
        let q = queue.clone();
        let drainer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let mut consumer = drain_ch
                .basic_consume(
                    q.as_str().into(),
                    "drain".into(),
                    lapin::options::BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            while let Some(d) = consumer.next().await {
                d?;
            }
            Ok::<_, anyhow::Error>(())
        });
        let mut collect = Collect::default();
        let (result, _) = apply_text(
            &pool,
            &format!(
                "target: {{ exchange: {exchange} }}\nselect: {{ status: [error] }}\n\
                 rate_limit: {{ per_second: 5000, batch_size: 20, pause_when_queue_depth_above: 10, queue: {queue} }}\n\
                 steps:\n  - {{ id: republish, kind: publish }}\n"
            ),
            &ApplyOptions::default(),
            &mut collect,
        )
        .await?;
        drainer.abort();
        (result, collect.events)
    };
    ch.queue_delete(
        queue.as_str().into(),
        lapin::options::QueueDeleteOptions::default(),
    )
    .await?;
    ch.exchange_delete(
        exchange.as_str().into(),
        lapin::options::ExchangeDeleteOptions::default(),
    )
    .await?;
    result?;
    let throttled = events
        .iter()
        .filter(|e| matches!(e, replay::engine::events::RunEvent::Throttled { .. }))
        .count();
    assert!(throttled > 0, "publishing never paused");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn restart_abandons_a_changed_run_and_starts_anew(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let conn = connection(&pool).await?;
    let body = "select: { status: [error] }\nsteps:\n  - { id: reset, kind: reset }\n";
    let plan = |text: &str| -> anyhow::Result<Plan> {
        let validated = plan::validate(Source::from_text(
            "p.yaml".into(),
            format!("version: 1\nname: restartable\nreason: \"{text}\"\n{body}"),
        )?);
        Ok(plan::compile(
            validated
                .valid_plan()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("invalid"))?,
            &[],
        )?)
    };
    let cancel = Cancel::default();
    cancel.cancel();
    let first = engine::apply(
        &plan("the first reason")?,
        &conn,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &cancel,
        &mut Report::default(),
    )
    .await;
    assert!(matches!(first, Err(RunError::Interrupted)));
    let mut report = Report::default();
    engine::apply(
        &plan("a changed reason")?,
        &conn,
        &ApplyOptions {
            restart: true,
            ..ApplyOptions::default()
        },
        &mut Collect::default(),
        &Cancel::default(),
        &mut report,
    )
    .await?;
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM replay.runs ORDER BY started_at")
            .fetch_all(&pool)
            .await?;
    assert_eq!(statuses, ["abandoned", "succeeded"]);
    assert!(!report.resumed);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn dry_run_of_a_publish_leaves_tables_and_queues_as_they_were(
    pool: PgPool,
) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (exchange, queue) = (format!("test-dry-{id}"), format!("test-dry-{id}"));
    let ch = declare(&exchange, Some(&queue)).await?;
    let depth = |ch: lapin::Channel, q: String| async move {
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        anyhow::Ok(
            ch.queue_declare(
                q.as_str().into(),
                passive,
                lapin::types::FieldTable::default(),
            )
            .await?
            .message_count(),
        )
    };
    let before = (
        fingerprint(&pool).await?,
        depth(ch.clone(), queue.clone()).await?,
    );
    let text = format!(
        "version: 1\nname: dry-publish\nreason: \"dry-run of a publish\"\ntarget: {{ exchange: {exchange} }}\n\
         select: {{ status: [error] }}\nsteps:\n  - {{ id: reset, kind: reset }}\n  - {{ id: republish, kind: publish }}\n"
    );
    let validated = plan::validate(Source::from_text("dry.yaml".into(), text)?);
    let plan = plan::compile(
        validated
            .valid_plan()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("invalid"))?,
        &[],
    )?;
    let mut report = Report::default();
    engine::dry_run(
        &plan,
        &connection(&pool).await?,
        &Default::default(),
        &mut Collect::default(),
        &mut report,
    )
    .await?;
    let after = (
        fingerprint(&pool).await?,
        depth(ch.clone(), queue.clone()).await?,
    );
    ch.queue_delete(
        queue.as_str().into(),
        lapin::options::QueueDeleteOptions::default(),
    )
    .await?;
    ch.exchange_delete(
        exchange.as_str().into(),
        lapin::options::ExchangeDeleteOptions::default(),
    )
    .await?;
    assert_eq!(after, before);
    assert_eq!(
        report.steps[1].touched, report.selected,
        "every message rendered"
    );
    assert_eq!(report.messages.len(), 3, "a sample of the messages");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn purge_queue_step_empties_the_queue(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (exchange, queue) = (format!("test-purge-{id}"), format!("test-purge-{id}"));
    let ch = declare(&exchange, Some(&queue)).await?;
    for i in 0..5 {
        ch.basic_publish(
            exchange.as_str().into(),
            "any".into(),
            Default::default(),
            format!("{i}").as_bytes(),
            Default::default(),
        )
        .await?
        .await?;
    }
    let (result, report) = apply_text(
        &pool,
        &format!("select: {{ status: [error] }}\nsteps:\n  - {{ id: emergency, kind: purge_queue, queue: {queue} }}\n"),
        &ApplyOptions::default(),
        &mut Collect::default(),
    )
    .await?;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let depth = ch
        .queue_declare(
            queue.as_str().into(),
            passive,
            lapin::types::FieldTable::default(),
        )
        .await?
        .message_count();
    ch.queue_delete(
        queue.as_str().into(),
        lapin::options::QueueDeleteOptions::default(),
    )
    .await?;
    ch.exchange_delete(
        exchange.as_str().into(),
        lapin::options::ExchangeDeleteOptions::default(),
    )
    .await?;
    result?;
    assert_eq!(depth, 0);
    assert_eq!(
        report.steps[0].touched, 5,
        "the report says how many messages were purged"
    );
    Ok(())
}

/// A broken Habitat and a reset of its failed events, with a run started (and its lease held)
/// the way `apply` starts one.
async fn a_run_of_a_reset(
    pool: &PgPool,
) -> anyhow::Result<(
    replay::plan::Plan,
    replay::engine::state::OpenRun,
    replay::engine::state::Lease,
)> {
    use replay::engine::state;
    broken_world(pool).await?;
    let plan = load(
        "plans/reset-stuck-events.yaml",
        |t| t.replace("status: [processing]", "status: [error]"),
        &["older_than=1s"],
    )?;
    state::migrate(pool).await?;
    let taking = state::Taking {
        ttl: std::time::Duration::from_secs(30),
        restart: false,
        again: false,
        because: None,
        join: false,
        new_id: None,
    };
    let state::Acquired::Run { run, lease } = state::acquire(pool, &plan, "test", taking).await?
    else {
        anyhow::bail!("a fresh database has no other run of the plan");
    };
    Ok((plan, run, lease))
}

#[sqlx::test(migrations = false)]
async fn a_run_killed_right_after_the_freeze_resumes_the_same_selection(
    pool: PgPool,
) -> anyhow::Result<()> {
    use replay::engine::{freeze, writes::Commit};
    // What a process killed right after the freeze committed leaves behind.
    let (plan, run, lease) = a_run_of_a_reset(&pool).await?;
    let frozen = freeze::freeze(
        &mut Commit { pool: pool.clone() },
        &plan,
        run.id,
        lease.token,
    )
    .await?;
    assert!(frozen.selected > 0);
    // The process that froze is gone: its lease with it.
    lease.release(&pool).await;
    let worker = Worker::start(pool.clone(), AMQP, unique_worker()).await?;
    let mut report = Report::default();
    let result = engine::apply(
        &plan,
        &connection(&pool).await?,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut report,
    )
    .await;
    worker.stop().await?;
    result?;
    assert_eq!(
        report.run_id,
        Some(run.id.to_string()),
        "the same run resumed"
    );
    assert_eq!(
        report.selected, frozen.selected,
        "the selection was frozen once, not twice"
    );
    assert_eq!(
        report.selection_digest, frozen.digest,
        "the digest recorded with the freeze is the one reported"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM replay.selection")
        .fetch_one(&pool)
        .await?;
    assert_eq!(rows as u64, frozen.selected);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_recorded_status_only_moves_forward(pool: PgPool) -> anyhow::Result<()> {
    use replay::engine::state;
    use replay::engine::status::RunStatus;
    let (_, run, lease) = a_run_of_a_reset(&pool).await?;
    let recorded = |pool: PgPool| async move {
        anyhow::Ok(
            state::status_of(&pool, run.id)
                .await?
                .map(|s| s.to_string())
                .unwrap_or_default(),
        )
    };
    // A rollback under way ends only as rolled back.
    state::set_status(
        &pool,
        &lease,
        RunStatus::RollingBack,
        Some("a verification failed"),
    )
    .await?;
    for attempt in [
        RunStatus::Failed,
        RunStatus::Interrupted,
        RunStatus::Succeeded,
    ] {
        state::set_status(&pool, &lease, attempt, Some("later")).await?;
        assert_eq!(recorded(pool.clone()).await?, "rolling_back", "{attempt}");
    }
    state::set_status(&pool, &lease, RunStatus::RolledBack, None).await?;
    assert_eq!(recorded(pool.clone()).await?, "rolled_back");
    // A finished run stays finished.
    state::set_status(&pool, &lease, RunStatus::Running, None).await?;
    assert_eq!(recorded(pool.clone()).await?, "rolled_back");
    // An executor that lost its lease records nothing at all.
    lease.release(&pool).await;
    let _newer = state::acquire_run(&pool, run.id, std::time::Duration::from_secs(30)).await?;
    let lost = state::set_status(&pool, &lease, RunStatus::Failed, None).await;
    assert!(matches!(
        lost,
        Err(replay::engine::RunError::LeaseLost { .. })
    ));
    Ok(())
}

/// Stops the run once its first batch is done.
struct StopAfterFirstBatch(Cancel);

impl replay::engine::events::Reporter for StopAfterFirstBatch {
    fn event(&mut self, event: &replay::engine::events::RunEvent) {
        if let replay::engine::events::RunEvent::Progress { done, .. } = event
            && *done > 0
        {
            self.0.cancel();
        }
    }
}

/// `rate_limit` is not part of the plan's identity: an operator throttles a half-done run by
/// editing the plan's pace and resuming, never with `--restart`; the change is logged.
#[sqlx::test(migrations = false)]
async fn a_run_resumes_at_a_changed_pace_without_restarting(pool: PgPool) -> anyhow::Result<()> {
    broken_world(&pool).await?;
    let conn = connection(&pool).await?;
    let paced = |per_second: &str, batch: &str| {
        let (per_second, batch) = (per_second.to_string(), batch.to_string());
        load(
            "plans/reset-stuck-events.yaml",
            move |t| {
                // Without a worker here, the plan's wait for the drain and its verification
                // would only time out: the run ends with its reset.
                let t = t.split("  - id: wait-drained").next().unwrap_or_default();
                t.replace("status: [processing]", "status: [error]")
                    .replace("per_second: 500", &format!("per_second: {per_second}"))
                    .replace("batch_size: 500", &format!("batch_size: {batch}"))
            },
            &["older_than=1s"],
        )
    };
    let first_plan = paced("500", "10")?;
    let cancel = Cancel::default();
    let mut first = Report::default();
    let stopped = engine::apply(
        &first_plan,
        &conn,
        &ApplyOptions::default(),
        &mut StopAfterFirstBatch(cancel.clone()),
        &cancel,
        &mut first,
    )
    .await;
    assert!(matches!(stopped, Err(RunError::Interrupted)), "{stopped:?}");
    let selected = first.selected;
    assert!(selected > 20, "{selected} events selected");
    let run_id: uuid::Uuid = first.run_id.clone().unwrap_or_default().parse()?;

    let faster = paced("5000", "50")?;
    assert_eq!(
        faster.hash, first_plan.hash,
        "the pace is not the plan's identity"
    );
    let mut resumed = Report::default();
    engine::apply(
        &faster,
        &conn,
        &ApplyOptions::default(),
        &mut Collect::default(),
        &Cancel::default(),
        &mut resumed,
    )
    .await?;
    assert_eq!(resumed.run_id, first.run_id, "the same run resumes");
    assert!(resumed.resumed);
    assert_eq!(resumed.status, "succeeded");
    let reset = resumed
        .steps
        .iter()
        .find(|s| s.id == "reset-status")
        .ok_or_else(|| anyhow::anyhow!("no reset step in {:?}", resumed.steps))?;
    let from = reset.resumed_from.unwrap_or_default();
    assert!(
        from > 0 && from < selected,
        "resumed from {from} of {selected}"
    );
    assert_eq!(
        reset.touched, selected,
        "every event reset once over both attempts"
    );
    let (was, now): (serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT detail -> 'was', detail -> 'now' FROM replay.run_log WHERE run_id = $1 AND kind = 'pace'",
    )
    .bind(run_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(was["per_second"], 500);
    assert_eq!(now["per_second"], 5000);
    assert_eq!(now["batch_size"], 50);
    let recorded: serde_json::Value = sqlx::query_scalar(
        "SELECT plan_document -> 'rate_limit' -> 'per_second' FROM replay.runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(recorded, 5000, "the run records the pace it now runs at");
    Ok(())
}
