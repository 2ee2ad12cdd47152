//! `replay inspect` against a generated Habitat: its counts are the database's, it writes nothing,
//! and the plan it emits validates and selects what it counted.

use super::support::*;
use std::process::Command;

use habitat::{self, GeneratorConfig};
use replay::engine::events::Collect;
use replay::engine::{self, Connection, Report};
use replay::plan::{self, Source};
use sqlx::PgPool;

/// Nothing listens here: connections are refused at once.
const NOWHERE_AMQP: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

/// A reproducible world (fixed seed and clock) with failed and stuck events over 30 days.
async fn world(pool: &PgPool, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        events: 2_000,
        failed_share: 0.05,
        stuck_share: 0.01,
        days: 30,
        now,
        ..GeneratorConfig::default()
    };
    habitat::generate(pool, &config).await?;
    Ok(())
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs this build's `replay inspect` with these flags.
fn inspect(url: &str, flags: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_replay"))
        .arg("inspect")
        .args(flags)
        .env("DATABASE_URL", url)
        .env("AMQP_URL", AMQP)
        .env_remove("REPLAY_LOG")
        .output()
        .expect("the replay binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn inspect_json(url: &str, flags: &[&str]) -> anyhow::Result<serde_json::Value> {
    let run = inspect(url, &[flags, &["--format", "json"]].concat());
    anyhow::ensure!(run.code == 0, "exit {}: {}", run.code, run.stderr);
    Ok(serde_json::from_str(&run.stdout)?)
}

/// `(event_type, status, count)` as the JSON document lists them.
fn json_counts(doc: &serde_json::Value) -> Vec<(String, String, i64)> {
    doc["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["event_type"].as_str().unwrap_or_default().to_string(),
                c["status"].as_str().unwrap_or_default().to_string(),
                c["count"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// The same counts by a query written by hand.
async fn sql_counts(pool: &PgPool, condition: &str) -> anyhow::Result<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT event_type, status, count(*) FROM processed_events WHERE {condition} \
         GROUP BY 1, 2 ORDER BY 1, 2"
    )))
    .fetch_all(pool)
    .await?)
}

#[sqlx::test(migrations = false)]
async fn counts_equal_direct_sql_for_each_filter(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, chrono::Utc::now()).await?;
    let url = database_url(&pool).await?;
    let (contribution_id, id_a, id_b): (String, String, String) = sqlx::query_as(
        "SELECT (SELECT payload->>'contribution_id' FROM processed_events \
                 WHERE payload ? 'contribution_id' ORDER BY id LIMIT 1), \
                (SELECT event_id FROM processed_events ORDER BY id LIMIT 1), \
                (SELECT event_id FROM processed_events ORDER BY id DESC LIMIT 1)",
    )
    .fetch_one(&pool)
    .await?;
    let payload = format!("contribution_id={contribution_id}");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec![], "TRUE".into()),
        (vec!["--status", "error"], "status = 'error'".into()),
        (
            vec!["--status", "error", "--within", "24h"],
            "status = 'error' AND processed_at > now() - interval '24 hours'".into(),
        ),
        (
            vec!["--status", "processing", "--older-than", "3d"],
            "status = 'processing' AND processed_at < now() - interval '3 days'".into(),
        ),
        (
            vec![
                "--type",
                "contribution.*",
                "--status",
                "error",
                "--status",
                "processed",
            ],
            "event_type LIKE 'contribution.%' AND status IN ('error', 'processed')".into(),
        ),
        (
            vec!["--payload", &payload],
            format!("payload->>'contribution_id' = '{contribution_id}'"),
        ),
        (
            vec![
                "--event-id",
                &id_a,
                "--event-id",
                &id_b,
                "--event-id",
                "no-such-event",
            ],
            format!("event_id IN ('{id_a}', '{id_b}')"),
        ),
    ];
    for (flags, condition) in cases {
        let doc = inspect_json(&url, &flags)?;
        let expected = sql_counts(&pool, &condition).await?;
        assert_eq!(json_counts(&doc), expected, "{flags:?}");
        let total: i64 = expected.iter().map(|(_, _, n)| n).sum();
        assert_eq!(doc["total"].as_i64(), Some(total), "{flags:?}");
        let sample = doc["sample"].as_array().map_or(0, Vec::len);
        assert_eq!(sample as i64, total.min(10), "{flags:?}");
        if flags.is_empty() {
            assert_eq!(doc["filters"], "all events");
        }
    }
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn json_is_a_versioned_document(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, chrono::Utc::now()).await?;
    let url = database_url(&pool).await?;
    let doc = inspect_json(&url, &["--status", "error", "--sample", "3"])?;
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["events_table"], "processed_events");
    assert_eq!(doc["filters"], "status error");
    assert_eq!(doc["selection"], serde_json::json!({ "status": ["error"] }));
    let sample = doc["sample"].as_array().cloned().unwrap_or_default();
    assert_eq!(sample.len(), 3);
    for event in &sample {
        assert_eq!(event["status"], "error");
        assert!(event["error_message"].is_string(), "{event}");
    }
    // Newest first, and the newest of all is the document's newest.
    assert_eq!(sample[0]["processed_at"], doc["newest_processed_at"]);
    let times: Vec<&str> = sample
        .iter()
        .filter_map(|e| e["processed_at"].as_str())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(doc["queues"], serde_json::json!([]));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn emitted_plan_validates_and_selects_what_inspect_counted(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, chrono::Utc::now()).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let cases: [&[&str]; 3] = [
        &[
            "--status",
            "error",
            "--type",
            "contribution.*",
            "--within",
            "10d",
        ],
        &["--status", "processing", "--older-than", "1h"],
        &[],
    ];
    for (i, flags) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("plan-{i}.yaml"));
        let file_flag = file.display().to_string();
        let doc = inspect_json(&url, &[flags, &["--emit-plan", &file_flag]].concat())?;
        assert_eq!(doc["plan_file"].as_str(), Some(file_flag.as_str()));
        let counted = doc["total"].as_u64().unwrap_or_default();
        let skeleton = std::fs::read_to_string(&file)?;
        // The skeleton is refused until someone writes its reason.
        let unwritten = plan::validate(Source::from_text(file_flag.clone(), skeleton.clone())?);
        let codes: Vec<&str> = unwritten.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["placeholder-reason"], "{flags:?}\n{skeleton}");
        let text = skeleton.replace(
            "TODO: describe the incident and the fix before applying this plan",
            "test: replay what inspect counted",
        );
        let validated = plan::validate(Source::from_text(file_flag.clone(), text.clone())?);
        assert!(
            validated.diagnostics.is_empty(),
            "{flags:?}: {:?}\n{text}",
            validated.diagnostics
        );
        let raw = validated
            .valid_plan()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("invalid plan"))?;
        assert_eq!(serde_json::to_value(&raw.select)?, doc["selection"]);
        assert!(raw.safety.max_events >= counted);
        let compiled = plan::compile(raw, &[])?;
        let mut report = Report {
            mode: replay::engine::status::Mode::DryRun,
            ..Report::default()
        };
        let connection = Connection {
            database_url: url.clone(),
            amqp_url: AMQP.into(),
            operator: "test".into(),
            target: None,
        };
        // A plan of everything passes only with its gate overridden, as an operator would.
        let overrides = replay::engine::gates::Overrides {
            gates: vec![replay::engine::gates::Gate::Unfiltered],
            because: Some("test: inspect emitted a selection of all events".into()),
        };
        engine::dry_run(
            &compiled,
            &connection,
            &engine::DryRunOptions {
                overrides,
                ..Default::default()
            },
            &mut Collect::default(),
            &mut report,
        )
        .await?;
        assert_eq!(report.status, "would_run", "{flags:?}");
        assert_eq!(report.selected, counted, "{flags:?}");
        assert!(counted > 0, "{flags:?}: the world should have such events");
    }
    // An existing file is never overwritten.
    let again = inspect(
        &url,
        &[
            "--emit-plan",
            &dir.path().join("plan-0.yaml").display().to_string(),
        ],
    );
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn inspect_changes_nothing(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, chrono::Utc::now()).await?;
    let url = database_url(&pool).await?;
    let before = fingerprint(&pool).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("plan.yaml").display().to_string();
    for flags in [
        vec![],
        vec!["--status", "error", "--within", "7d", "--emit-plan", &file],
        vec![
            "--type",
            "allocation.*",
            "--format",
            "json",
            "--sample",
            "0",
        ],
    ] {
        let run = inspect(&url, &flags);
        assert_eq!(run.code, 0, "{flags:?}: {}", run.stderr);
    }
    assert_eq!(fingerprint(&pool).await?, before);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn text_output_shows_counts_sample_and_plan(pool: PgPool) -> anyhow::Result<()> {
    // The generator's default clock is fixed, so everything but the database name is stable.
    world(&pool, GeneratorConfig::default().now).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("failed.yaml");
    let file_flag = file.display().to_string();
    let run = inspect(
        &url,
        &[
            "--status",
            "error",
            "--type",
            "contribution.*",
            "--sample",
            "5",
            "--emit-plan",
            &file_flag,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let db = url.rsplit_once('/').map_or("", |(_, db)| db);
    let normalise = |text: &str| text.replace(db, "[DB]").replace(&file_flag, "[PLAN]");
    insta::with_settings!({ omit_expression => true }, {
        insta::assert_snapshot!("inspect_text", normalise(&run.stdout));
    });
    let plan = std::fs::read_to_string(&file)?;
    let plan: Vec<&str> = plan
        .lines()
        .map(|l| {
            if l.starts_with("# Plan skeleton written") {
                "# Plan skeleton written [AT] from:"
            } else {
                l
            }
        })
        .collect();
    insta::with_settings!({ omit_expression => true }, {
        insta::assert_snapshot!("inspect_emitted_plan", plan.join("\n"));
    });
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn queue_depths_by_passive_declare(pool: PgPool) -> anyhow::Result<()> {
    use lapin::options::{
        BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    world(&pool, chrono::Utc::now()).await?;
    let url = database_url(&pool).await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (queue, missing) = (
        format!("test-inspect-q-{id}"),
        format!("test-inspect-missing-{id}"),
    );
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    for _ in 0..3 {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"{}",
                lapin::BasicProperties::default(),
            )
            .await?
            .await?;
    }
    let doc = inspect_json(
        &url,
        &["--status", "error", "--queue", &queue, "--queue", &missing],
    );
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "done".into()).await;
    let doc = doc?;
    assert_eq!(
        doc["queues"],
        serde_json::json!([
            { "queue": queue, "state": "exists", "messages": 3 },
            { "queue": missing, "state": "missing", "messages": null },
        ])
    );
    // Looking did not create the missing queue.
    let again = inspect_json(&url, &["--queue", &missing])?;
    assert_eq!(again["queues"][0]["state"], "missing");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn broker_is_only_needed_when_a_queue_is_asked_for(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, chrono::Utc::now()).await?;
    let url = database_url(&pool).await?;
    let run = |flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_replay"))
            .arg("inspect")
            .args(flags)
            .env("DATABASE_URL", &url)
            .env("AMQP_URL", NOWHERE_AMQP)
            .output()
            .expect("the replay binary runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run(&["--status", "error"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "");
    let (code, stdout, stderr) = run(&["--status", "error", "--queue", "habitat-worker"]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: cannot read queue depths: cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/%2f"), "{stderr}");
    assert!(
        stdout.contains("habitat-worker  unknown (the broker is unreachable)"),
        "{stdout}"
    );
    assert!(stdout.contains("total: "), "{stdout}");
    Ok(())
}

#[test]
fn exit_codes_tell_bad_flags_from_database_errors() {
    // Refused at once: nothing listens on port 1.
    let nowhere = "postgres://postgres@127.0.0.1:1/postgres";
    let run = inspect(nowhere, &["--within", "5x"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        "error: invalid value for `--within`: unknown unit `x` in `5x`; use ms, s, m, h or d\n"
    );
    assert_eq!(run.stdout, "");
    let run = inspect(nowhere, &["--payload", "contribution_id"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`--payload`"), "{}", run.stderr);
    let run = inspect(nowhere, &["--status", "error"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(
            "error: cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:1/postgres"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[sqlx::test(migrations = false)]
async fn a_missing_events_table_is_a_database_error(pool: PgPool) -> anyhow::Result<()> {
    let run = inspect(&database_url(&pool).await?, &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("error: database error while counting events in `processed_events`: relation \"processed_events\" does not exist"),
        "{}",
        run.stderr
    );
    Ok(())
}

/// A misspelt status is said, with the nearest one, rather than answered with "no event matches".
#[sqlx::test(migrations = false)]
async fn a_misspelt_status_is_said_with_the_nearest_one(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, chrono::Utc::now()).await?;
    let url = database_url(&pool).await?;
    let run = inspect(&url, &["--status", "eror"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "warning: `eror` is not one of Habitat's statuses (pending, processing, processed, error); did you mean `error`?"
        ),
        "{}",
        run.stderr
    );
    let run = inspect(&url, &["--status", "error"]);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    Ok(())
}
