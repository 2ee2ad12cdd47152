//! Every shipped plan runs as shipped: a dry-run of each against a generated Habitat would run, and
//! the single-event database plans apply for real with the worker fixing the event.

use habitat::{self, GeneratorConfig, Worker, WorkerConfig};
use replay::engine::events::Collect;
use replay::engine::steps::Cancel;
use replay::engine::{self, ApplyOptions, Connection, Report};
use replay::plan::{self, Plan};
use sqlx::PgPool;

use super::support::*;

async fn world(pool: &PgPool) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        events: 3_000,
        failed_share: 0.05,
        stuck_share: 0.01,
        days: 2,
        now: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    habitat::generate(pool, &config).await?;
    Ok(())
}

/// A shipped plan, pointed at the test's own exchange (the plans name Habitat's shared one, and
/// a test's worker must not see another test's messages).
fn shipped(name: &str, params: &[String], exchange: &str) -> anyhow::Result<Plan> {
    let validated = plan::validate_file(std::path::Path::new(&format!("plans/{name}.yaml")))?;
    let mut raw = validated
        .valid_plan()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{name}: {:?}", validated.diagnostics))?;
    raw.target.exchange = exchange.to_string();
    Ok(plan::compile(raw, params)?)
}

/// The test's exchange and its queue (both named `name`), deleted.
async fn remove_topology(name: &str) {
    if let Ok(conn) = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await
        && let Ok(channel) = conn.create_channel().await
    {
        let _ = channel.queue_delete(name.into(), Default::default()).await;
        let _ = channel
            .exchange_delete(name.into(), Default::default())
            .await;
        let _ = conn.close(200, "done".into()).await;
    }
}

async fn connection(pool: &PgPool) -> anyhow::Result<Connection> {
    Ok(Connection {
        database_url: database_url(pool).await?,
        amqp_url: AMQP.into(),
        operator: "test".into(),
        target: None,
    })
}

async fn one(pool: &PgPool, sql: &str) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await?)
}

#[sqlx::test(migrations = false)]
async fn every_shipped_plan_dry_runs_against_a_habitat(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let failed = one(
        &pool,
        "SELECT event_id FROM processed_events WHERE status = 'error' ORDER BY id LIMIT 1",
    )
    .await?;
    let period = one(&pool, "SELECT payload->>'period_id' FROM processed_events WHERE event_type = 'period.closed' LIMIT 1").await?;
    let (member, alloc_period): (String, String) = sqlx::query_as(
        "SELECT payload->>'member_id', payload->>'period_id' FROM processed_events WHERE event_type = 'allocation.calculated' LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let today = chrono::Utc::now().date_naive();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("replay-single-event", vec![format!("event_id={failed}")]),
        ("replay-event-from-db", vec![format!("event_id={failed}")]),
        ("replay-failed-events", vec!["since=3d".into()]),
        (
            "replay-date-range",
            vec![
                "event_type=contribution.*".into(),
                format!("start={}", today - chrono::Days::new(3)),
                format!("end={}", today + chrono::Days::new(1)),
            ],
        ),
        ("replay-period-close", vec![format!("period_id={period}")]),
        (
            "replay-member-allocations",
            vec![
                format!("member_id={member}"),
                format!("period_id={alloc_period}"),
            ],
        ),
        ("force-replay-event", vec![format!("event_id={failed}")]),
        ("reset-stuck-events", vec!["older_than=1s".into()]),
        ("rollback-replay-side-effects", vec!["since=3d".into()]),
        // Rehearsed through the binary below: its secret comes from the environment.
        ("replay-via-api", vec!["since=3d".into()]),
    ];
    assert_eq!(
        cases.len(),
        std::fs::read_dir("plans")?.count(),
        "every shipped plan is covered"
    );
    // The publishing plans need the exchange.
    let exchange = format!("test-shipped-{}", uuid::Uuid::new_v4().simple());
    let worker = Worker::start(
        pool.clone(),
        AMQP,
        WorkerConfig {
            exchange: exchange.clone(),
            queue: exchange.clone(),
            ..WorkerConfig::default()
        },
    )
    .await?;
    let conn = connection(&pool).await?;
    let before = fingerprint(&pool).await?;
    for (name, params) in cases {
        if name == "replay-via-api" {
            let url = database_url(&pool).await?;
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay"))
                .args([
                    "apply",
                    "plans/replay-via-api.yaml",
                    "--dry-run",
                    "--database-url",
                    &url,
                ])
                .args(["--param", "api=http://127.0.0.1:9", "--param", &params[0]])
                .env("ADMIN_TOKEN", "shipped-test-token")
                .stdin(std::process::Stdio::null())
                .output()
                .await?;
            assert!(out.status.success(), "{name}: {}", output_text(&out));
            assert!(!output_text(&out).contains("shipped-test-token"));
            continue;
        }
        let plan = shipped(name, &params, &exchange)?;
        let mut report = Report {
            mode: replay::engine::status::Mode::DryRun,
            ..Report::default()
        };
        let result = engine::dry_run(
            &plan,
            &conn,
            &Default::default(),
            &mut Collect::default(),
            &mut report,
        )
        .await;
        assert!(
            result.is_ok(),
            "{name}: {result:?}\n{}",
            replay::render::text(&report)
        );
        assert_eq!(report.status, "would_run", "{name}");
        assert!(
            report.selected > 0,
            "{name}: selected nothing\n{}",
            replay::render::text(&report)
        );
    }
    worker.stop().await?;
    remove_topology(&exchange).await;
    assert_eq!(
        fingerprint(&pool).await?,
        before,
        "the dry-runs changed nothing"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn single_event_plans_apply_and_the_worker_fixes_the_event(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool).await?;
    let exchange = format!("test-shipped-{}", uuid::Uuid::new_v4().simple());
    let worker = Worker::start(
        pool.clone(),
        AMQP,
        WorkerConfig {
            exchange: exchange.clone(),
            queue: exchange.clone(),
            pollers: 1,
            ..WorkerConfig::default()
        },
    )
    .await?;
    let conn = connection(&pool).await?;
    let mut results = Vec::new();
    for name in ["replay-event-from-db", "force-replay-event"] {
        let event = one(&pool, "SELECT event_id FROM processed_events WHERE status = 'error' AND event_type LIKE 'contribution.%' ORDER BY id LIMIT 1").await?;
        let plan = shipped(name, &[format!("event_id={event}")], &exchange)?;
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
        let status: String =
            sqlx::query_scalar("SELECT status FROM processed_events WHERE event_id = $1")
                .bind(&event)
                .fetch_one(&pool)
                .await?;
        results.push((
            name,
            result.map_err(|e| e.to_string()),
            report.status.clone(),
            status,
        ));
    }
    worker.stop().await?;
    remove_topology(&exchange).await;
    for (name, result, outcome, status) in results {
        assert!(result.is_ok(), "{name}: {result:?}");
        assert_eq!(outcome, "succeeded", "{name}");
        assert_eq!(status, "processed", "{name}");
    }
    Ok(())
}
