//! Live control of a running apply from another terminal: `replay pause`, `replay resume`,
//! `replay set RUN rate=N batch=M`, `replay status RUN --watch`; each recorded in the run log.

use std::process::Stdio;
use std::time::{Duration, Instant};

use habitat::GeneratorConfig;
use sqlx::PgPool;

use super::process::{assert_exit, plan_file, replay, run};
use super::pty::Pty;
use super::support::database_url;

/// Events of the run's reset step done so far, by every executor.
async fn done(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(upto_seq - from_seq), 0)::bigint FROM replay.batches WHERE done",
    )
    .fetch_one(pool)
    .await?)
}

/// Polls until `done` reaches `at_least` (the apply is that far), within a minute.
async fn until_done(pool: &PgPool, at_least: i64) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = done(pool).await.unwrap_or_default();
        if now >= at_least {
            return Ok(now);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the run never reached {at_least} events ({now})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The run's rate as measured from outside: events done over `window` of wall time.
async fn measured(pool: &PgPool, window: Duration) -> anyhow::Result<f64> {
    let (from, started) = (done(pool).await?, Instant::now());
    tokio::time::sleep(window).await;
    let (upto, took) = (done(pool).await?, started.elapsed());
    Ok((upto - from) as f64 / took.as_secs_f64())
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[sqlx::test(migrations = false)]
async fn a_running_apply_is_paused_resumed_and_repaced_from_another_terminal(
    pool: PgPool,
) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        events: 6_000,
        failed_share: 1.0,
        stuck_share: 0.0,
        days: 1,
        now: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    habitat::generate(&pool, &config).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "live-control",
        "select: { status: [error] }\nsafety: { max_events: 10000 }\n\
         rate_limit: { per_second: 100, batch_size: 20 }\nsteps:\n  - { id: reset, kind: reset }\n",
    );
    // A person runs it on a terminal and confirms; the rest comes from other terminals.
    let mut apply = Pty::replay(&["apply", plan.to_str().unwrap_or_default()], &url)?;
    apply.wait_for("Type `live-control` to confirm")?;
    apply.type_line("live-control")?;
    until_done(&pool, 100).await?;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let prefix = &id.to_string()[..8];

    // The plan's pace, measured from outside.
    let before = measured(&pool, Duration::from_secs(6)).await?;
    assert!(
        (before - 100.0).abs() <= 5.0,
        "at the plan's 100/s: {before:.1}/s"
    );

    // A new rate from another terminal, taken up within a batch.
    let out = run(&["set", prefix, "rate=400", "--operator", "ana"], &url);
    assert_exit(&out, 0);
    assert!(
        text(&out).contains(
            "now runs at 400 events/s in batches of 20 (was 100 events/s in batches of 20)"
        ),
        "{}",
        text(&out)
    );
    let from = done(&pool).await?;
    until_done(&pool, from + 40).await?;
    let after = measured(&pool, Duration::from_secs(6)).await?;
    assert!(
        (after - 400.0).abs() <= 20.0,
        "at the set 400/s: {after:.1}/s"
    );

    // A pause holds every lane before its next batch; `status` says so.
    assert_exit(&run(&["pause", prefix, "--operator", "ana"], &url), 0);
    let held = done(&pool).await?;
    let status = run(&["status", prefix], &url);
    assert!(
        text(&status).contains(&format!("PAUSED (`replay resume {id}` goes on)")),
        "{}",
        text(&status)
    );
    // At 400/s a second and a half is 600 events: a paused run does at most the two batches
    // its lanes had started.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let still = done(&pool).await?;
    assert!(
        still - held <= 40,
        "paused, yet {} events were done",
        still - held
    );

    // The batch size changes while paused: the batches no one claimed are cut anew.
    let out = run(&["set", prefix, "rate=5000", "batch=200"], &url);
    assert_exit(&out, 0);
    assert!(text(&out).contains("it is paused"), "{}", text(&out));
    let recut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM replay.batches WHERE NOT done AND upto_seq - from_seq > 20",
    )
    .fetch_one(&pool)
    .await?;
    assert!(recut > 0, "no batch was cut at the new size");

    // A live view, one JSON document per line, that ends with the run.
    let mut watch = replay(
        &[
            "status", prefix, "--watch", "--every", "200ms", "--format", "json",
        ],
        &url,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let mut lines = Vec::new();
    let mut watched = std::io::BufReader::new(
        watch
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    );
    // Its first view, while the run is paused.
    let mut first = String::new();
    std::io::BufRead::read_line(&mut watched, &mut first)?;
    lines.push(first);
    assert_exit(&run(&["resume", prefix, "--operator", "ana"], &url), 0);
    let code = apply.exit_code()?;
    assert_eq!(code, 0, "{}", apply.screen());
    assert!(
        apply.screen().contains("paused by an operator"),
        "{}",
        apply.screen()
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut watched, &mut rest)?;
    lines.extend(rest.lines().map(str::to_string));
    let watched = watch.wait_with_output()?;
    assert_exit(&watched, 0);
    let lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    let first = lines.first().cloned().unwrap_or_default();
    let last = lines.last().cloned().unwrap_or_default();
    assert_eq!(first["runs"][0]["live"]["paused"], true, "{first}");
    assert_eq!(last["runs"][0]["status"], "succeeded", "{last}");

    // Every event reset once, over every batch size.
    let (pending, touched): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM processed_events WHERE status = 'pending'), \
                (SELECT touched FROM replay.step_runs WHERE step_id = 'reset')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((pending, touched), (6_000, 6_000));
    let log: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT kind, detail ->> 'operator' FROM replay.run_log \
         WHERE kind IN ('paused', 'unpaused', 'pace_set') ORDER BY id",
    )
    .fetch_all(&pool)
    .await?;
    let kinds: Vec<&str> = log.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["pace_set", "paused", "pace_set", "unpaused"]);
    assert_eq!(log[0].1.as_deref(), Some("ana"));
    let audit = run(&["audit"], &url);
    assert!(
        text(&audit).contains("paused by ana") && text(&audit).contains("pace_set by ana"),
        "{}",
        text(&audit)
    );

    // Only a running run is controlled; a setting is checked before anything is asked.
    let out = run(&["pause", prefix], &url);
    assert_exit(&out, 4);
    assert!(
        text(&out).contains("is not running (it is succeeded)"),
        "{}",
        text(&out)
    );
    let out = run(&["set", prefix, "speed=3"], &url);
    assert_exit(&out, 2);
    assert!(
        text(&out).contains("unknown setting `speed`"),
        "{}",
        text(&out)
    );
    let out = run(&["set", prefix, "rate=0"], &url);
    assert_exit(&out, 2);
    assert!(text(&out).contains("from 1 to 100000"), "{}", text(&out));
    Ok(())
}
