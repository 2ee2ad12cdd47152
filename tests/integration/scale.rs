//! Several executors share one run (`replay apply --join`, `replay join RUN`): batches are claimed
//! with leases and fencing tokens, once-steps run once, the rate is the run's, a stop reaches
//! every executor; and plans whose selections overlap exclude each other. A trigger counts every
//! committed update of every row, so work done twice shows.

use super::faults::{fault_rng, until};
use super::lanes::{counted_world, not_updated_once, one_run_succeeded};
use super::process::*;
use super::support::*;
use rand::Rng;
use sqlx::PgPool;
use std::process::Output;
use std::time::Duration;

fn reset_plan(batch: u32, lanes: u32, per_second: u32) -> String {
    format!(
        "select: {{ status: [error] }}\nrate_limit: {{ per_second: {per_second}, batch_size: {batch}, parallel_batches: {lanes} }}\n\
         steps:\n  - {{ id: reset, kind: reset }}\n"
    )
}

/// `apply PLAN --join` with a short lease, so that a stalled executor's claims run out soon.
fn join(plan: &str, url: &str) -> Running {
    start(&["apply", plan, "--join", "--lease", "2s"], url)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each executor of the run: its pid and the batches it did.
async fn executors(pool: &PgPool) -> anyhow::Result<Vec<(u32, i64)>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, batches_done FROM replay.executor_work ORDER BY joined_at")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(name, b)| {
            let pid = name.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
            (pid.unwrap_or(0), b)
        })
        .collect())
}

/// Holds the row of the selection's event at `seq`, so that the batch holding it waits inside
/// its transaction; returns the hold and the event's `seq`.
async fn hold_event(
    pool: &PgPool,
    seq: i64,
) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let id: String = sqlx::query_scalar(
        "SELECT event_id FROM processed_events WHERE status = 'error' \
         ORDER BY processed_at NULLS FIRST, event_id OFFSET $1 LIMIT 1",
    )
    .bind(seq - 1)
    .fetch_one(pool)
    .await?;
    let mut hold = pool.begin().await?;
    sqlx::query("SELECT 1 FROM processed_events WHERE event_id = $1 FOR UPDATE")
        .bind(&id)
        .execute(&mut *hold)
        .await?;
    Ok(hold)
}

/// The pid of the executor whose claim covers the selection's event at `seq`, once it has one.
async fn claimer_of(pool: &PgPool, seq: i64) -> anyhow::Result<u32> {
    let claimer = || async {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT e.name FROM replay.batches b JOIN replay.executors e ON e.id = b.claimed_by \
             WHERE b.from_seq < $1 AND b.upto_seq >= $1 AND NOT b.done",
        )
        .bind(seq)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten();
        name.and_then(|n| n.rsplit_once(':').and_then(|(_, p)| p.parse::<u32>().ok()))
    };
    until("an executor to claim the held batch", || async {
        claimer().await.is_some()
    })
    .await?;
    claimer()
        .await
        .ok_or_else(|| anyhow::anyhow!("the held batch lost its claimer"))
}

/// Waits until a backend of an executor waits on a row lock (the held event).
async fn a_batch_waits_on_the_hold(pool: &PgPool) -> anyhow::Result<()> {
    until("a batch to wait on the held row", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'replay' \
             AND datname = current_database() AND wait_event_type = 'Lock')",
        )
        .fetch_one(pool)
        .await
        .unwrap_or(false)
    })
    .await
}

async fn batches_done(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM replay.batches WHERE done")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

#[sqlx::test(migrations = false)]
async fn three_executors_share_a_reset_and_update_each_row_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 6_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "scale-three", &reset_plan(50, 1, 100_000));
    let plan = plan.to_str().unwrap_or_default();
    // The first executor waits on a held event, so the run is surely in progress when the others come.
    let hold = hold_event(&pool, 1).await?;
    let first = start(&["apply", plan], &url);
    a_batch_waits_on_the_hold(&pool).await?;

    // Without `--join`, a second apply is refused, and told how to join.
    let refused = run(&["apply", plan], &url);
    assert_exit(&refused, 4);
    let run_id: String = sqlx::query_scalar("SELECT id::text FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "run `{run_id}` of plan `scale-three` is already running"
        )) && stderr.contains("--join")
            && stderr.contains(&format!("replay join {run_id}")),
        "{stderr}"
    );

    let second = join(plan, &url);
    let third = start(&["join", &run_id, "--lease", "2s"], &url);
    until("the two that joined to do batches", || async {
        executors(&pool)
            .await
            .is_ok_and(|e| e.len() == 3 && e.iter().skip(1).all(|(_, b)| *b > 0))
    })
    .await?;
    let status = stdout(&run(&["status", &run_id], &url));
    assert_eq!(
        status.matches("    executor ").count(),
        3,
        "three executors listed: {status}"
    );
    hold.rollback().await?;

    let outs = [
        first.wait_with_output()?,
        second.wait_with_output()?,
        third.wait_with_output()?,
    ];
    for out in &outs {
        assert_success(out);
    }
    assert!(
        stdout(&outs[0]).contains("executors: 3 took part"),
        "{}",
        stdout(&outs[0])
    );
    for joined in &outs[1..] {
        assert!(
            stdout(joined).contains("joined the run in progress")
                && stdout(joined).contains("outcome: succeeded"),
            "{}",
            stdout(joined)
        );
    }
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "each row updated once"
    );
    one_run_succeeded(&pool, total).await?;
    let audit: i64 = sqlx::query_scalar(
        "SELECT (details::jsonb ->> 'executors')::bigint FROM audit_log WHERE action = 'event_replay'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(audit, 3, "the audit row says how many executors took part");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn random_sigkills_of_some_of_four_executors_update_each_row_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (seed, mut rng) = fault_rng();
    let (total, url) = counted_world(&pool, 12_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "scale-kills", &reset_plan(50, 2, 100_000));
    let plan = plan.to_str().unwrap_or_default();
    let mut executors: Vec<Running> = (0..4).map(|_| join(plan, &url)).collect();
    let mut kills = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        let victim = rng.random_range(0..executors.len());
        if executors[victim].finished() {
            break;
        }
        executors[victim].kill()?;
        kills += 1;
        // Sometimes the killed executor comes back, as a restarted pod would.
        if rng.random_bool(0.5) {
            executors[victim] = join(plan, &url);
        }
    }
    for executor in executors.into_iter().filter(|e| e.0.is_some()) {
        let out = executor.wait_with_output()?;
        assert_success(&out);
    }
    // Whatever the kills left, one more apply finishes the run (or finds it done).
    assert_success(&run(&["apply", plan], &url));
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "seed {seed}: each selected row updated once over {kills} kill(s)"
    );
    one_run_succeeded(&pool, total).await
}

#[sqlx::test(migrations = false)]
async fn a_killed_executors_batch_is_taken_over_by_another(pool: PgPool) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 4_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "scale-takeover", &reset_plan(50, 1, 100_000));
    let plan = plan.to_str().unwrap_or_default();
    let held = 120;
    let hold = hold_event(&pool, held).await?;
    let mut a = join(plan, &url);
    let mut b = join(plan, &url);
    a_batch_waits_on_the_hold(&pool).await?;
    let stuck = claimer_of(&pool, held).await?;
    let (stuck, other) = if stuck == a.id() {
        (&mut a, b)
    } else {
        (&mut b, a)
    };
    stuck.kill()?;
    hold.rollback().await?;
    assert_success(&other.wait_with_output()?);
    let taken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM replay.run_log WHERE kind = 'batch_taken_over' \
         AND (detail ->> 'from')::bigint <= $1 AND (detail ->> 'upto')::bigint >= $1",
    )
    .bind(held)
    .fetch_one(&pool)
    .await?;
    assert_eq!(taken, 1, "the killed executor's batch was taken over");
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "each row updated once"
    );
    one_run_succeeded(&pool, total).await
}

#[sqlx::test(migrations = false)]
async fn a_stalled_executor_cannot_write_its_batch_when_it_wakes(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 4_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "scale-stall", &reset_plan(50, 1, 100_000));
    let plan = plan.to_str().unwrap_or_default();
    let held = 120;
    let hold = hold_event(&pool, held).await?;
    let a = join(plan, &url);
    let b = join(plan, &url);
    a_batch_waits_on_the_hold(&pool).await?;
    let stuck_pid = claimer_of(&pool, held).await?;
    let (stuck, other) = if stuck_pid == a.id() { (a, b) } else { (b, a) };
    // Paused inside its batch, its statement waiting on the held row: its claim runs out, and
    // the other executor claims the batch anew (a higher fence) and waits on the same row.
    signal(stuck_pid, "STOP");
    until("the other executor to claim the stalled batch", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT fence > 1 FROM replay.batches WHERE from_seq < $1 AND upto_seq >= $1",
        )
        .bind(held)
        .fetch_one(&pool)
        .await
        .unwrap_or(false)
    })
    .await?;
    // It wakes, its statement gets the row first, and its batch's record finds the fence moved.
    signal(stuck_pid, "CONT");
    hold.rollback().await?;
    let woken = stuck.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&woken.stderr);
    assert!(
        stderr.contains("was taken over by another executor"),
        "the woken executor's batch found its fence moved and wrote nothing: {stderr}"
    );
    // It goes on from the checkpoints (a joiner), or finds the run's lease taken over too.
    assert!(
        matches!(woken.status.code(), Some(0 | 1)),
        "exit {:?}: {stderr}",
        woken.status.code()
    );
    assert_success(&other.wait_with_output()?);
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "the stalled batch was written once, by the executor that took it over"
    );
    one_run_succeeded(&pool, total).await
}

fn signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
}

#[sqlx::test(migrations = false)]
async fn once_steps_run_once_whichever_executor_runs_them(pool: PgPool) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 6_000).await?;
    sqlx::query("CREATE TABLE once_log (what TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let dir = tempfile::tempdir()?;
    let body = "select: { status: [error] }\nrate_limit: { per_second: 100000, batch_size: 50 }\n\
         steps:\n  - { id: before, kind: sql, sql: \"INSERT INTO once_log VALUES ('before')\" }\n\
         \x20 - { id: reset, kind: reset }\n\
         \x20 - { id: after, kind: sql, sql: \"INSERT INTO once_log VALUES ('after')\" }\n\
         verify:\n  - { name: once, sql: \"SELECT count(*) FROM once_log\", expect: { equals: 2 } }\n";
    let plan = plan_file(&dir, "scale-once", body);
    let plan = plan.to_str().unwrap_or_default();
    let mut leader = join(plan, &url);
    until("the reset to start", || async {
        batches_done(&pool).await > 0
    })
    .await?;
    let others = [join(plan, &url), join(plan, &url)];
    until("the others to join", || async {
        executors(&pool).await.is_ok_and(|e| e.len() == 3)
    })
    .await?;
    // The executor driving the run dies midway: another takes the run over and runs `after`.
    leader.kill()?;
    for executor in others {
        assert_success(&executor.wait_with_output()?);
    }
    let log: Vec<String> = sqlx::query_scalar("SELECT what FROM once_log ORDER BY what")
        .fetch_all(&pool)
        .await?;
    assert_eq!(log, ["after", "before"], "each once-step ran once");
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "each row updated once"
    );
    let (status, touched): (String, i64) = sqlx::query_as(
        "SELECT r.status, s.touched FROM replay.runs r JOIN replay.step_runs s ON s.run_id = r.id \
         WHERE s.step_id = 'reset'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((status.as_str(), touched), ("succeeded", total));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn the_plans_rate_is_the_runs_whatever_the_number_of_executors(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 6_000).await?;
    let dir = tempfile::tempdir()?;
    // 3,000 events at 1,000/s take at least 2.9 s however many executors share them (the first
    // batch goes at once); three executors each at the plan's rate would take about 1 s.
    let plan = plan_file(&dir, "scale-rate", &reset_plan(100, 1, 1_000));
    let plan = plan.to_str().unwrap_or_default();
    let runs: Vec<Running> = (0..3).map(|_| join(plan, &url)).collect();
    for executor in runs {
        assert_success(&executor.wait_with_output()?);
    }
    let (secs, took_part): (f64, i64) = sqlx::query_as(
        "SELECT extract(epoch FROM max(at) FILTER (WHERE kind = 'step_finished') \
                              - min(at) FILTER (WHERE kind = 'step_started'))::float8, \
                (SELECT count(*) FROM replay.executor_work WHERE batches_done > 0) \
         FROM replay.run_log WHERE step_id = 'reset'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(took_part, 3, "all three executors did batches");
    let floor = (total - 100) as f64 / 1_000.0;
    assert!(
        secs >= floor,
        "{total} events at 1,000/s took {secs:.2} s with three executors (at least {floor:.2} s)"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_stop_reaches_every_executor_and_the_run_resumes_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 12_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "scale-stop", &reset_plan(50, 1, 100_000));
    let plan = plan.to_str().unwrap_or_default();
    let runs: Vec<Running> = (0..3).map(|_| join(plan, &url)).collect();
    until("three executors to do batches", || async {
        executors(&pool)
            .await
            .is_ok_and(|e| e.len() == 3 && e.iter().all(|(_, b)| *b > 0))
    })
    .await?;
    let run_id: String = sqlx::query_scalar("SELECT id::text FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_success(&run(&["stop", &run_id], &url));
    for executor in runs {
        let out = executor.wait_with_output()?;
        assert_exit(&out, 130);
    }
    let (status, open): (String, i64) = sqlx::query_as(
        "SELECT status, (SELECT count(*) FROM replay.batches WHERE NOT done) FROM replay.runs",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(status, "stopped");
    assert!(open > 0, "stopped before the end");
    // A stopped run is resumed only by an operator: an executor that joins (a pod restarted by
    // its Job) is refused and writes nothing.
    let joined = run(&["apply", plan, "--join"], &url);
    assert_exit(&joined, 4);
    assert!(
        String::from_utf8_lossy(&joined.stderr).contains("without `--join`"),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    let joined = run(&["join", &run_id], &url);
    assert_exit(&joined, 4);
    assert!(
        String::from_utf8_lossy(&joined.stderr).contains("is stopped; there is nothing to join"),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    assert_eq!(
        sqlx::query_scalar::<_, String>("SELECT status FROM replay.runs")
            .fetch_one(&pool)
            .await?,
        "stopped"
    );
    assert_success(&run(&["apply", plan], &url));
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "each row updated once"
    );
    one_run_succeeded(&pool, total).await
}

/// A plan resetting the failed events of the given types.
fn typed_plan(types: &str) -> String {
    format!(
        "select: {{ status: [error], event_types: [{types}] }}\nrate_limit: {{ per_second: 100000, batch_size: 500 }}\n\
         steps:\n  - {{ id: reset, kind: reset }}\n"
    )
}

#[sqlx::test(migrations = false)]
async fn an_overlapping_run_is_refused_a_disjoint_one_runs_and_an_override_is_audited(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 4_000).await?;
    let url = database_url(&pool).await?;
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM processed_events WHERE status = 'error' GROUP BY 1 ORDER BY count(*) DESC LIMIT 2",
    )
    .fetch_all(&pool)
    .await?;
    let (one, other) = (&types[0], &types[1]);
    let shared: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE status = 'error' AND event_type = $1",
    )
    .bind(one)
    .fetch_one(&pool)
    .await?;
    let dir = tempfile::tempdir()?;
    // An unfinished run of every failed event: killed once its selection is frozen.
    let all = plan_file(
        &dir,
        "all-failed",
        "select: { status: [error] }\nrate_limit: { per_second: 100000, batch_size: 500, parallel_batches: 1 }\nsteps:\n  - { id: reset, kind: reset }\n",
    );
    let hold = hold_event(&pool, 1).await?;
    let mut unfinished = start(&["apply", all.to_str().unwrap_or_default()], &url);
    a_batch_waits_on_the_hold(&pool).await?;
    unfinished.kill()?;
    hold.rollback().await?;
    let first: String = sqlx::query_scalar("SELECT id::text FROM replay.runs")
        .fetch_one(&pool)
        .await?;

    let overlapping = plan_file(&dir, "one-type", &typed_plan(one));
    let overlapping = overlapping.to_str().unwrap_or_default();
    let refused = run(&["apply", overlapping], &url);
    assert_exit(&refused, 4);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "safety gate `overlap`: {shared} selected event(s) are also in run `{first}` of plan `all-failed`"
        )) && stderr.contains("--override overlap"),
        "{stderr}"
    );
    let untouched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE status = 'error' AND event_type = $1",
    )
    .bind(one)
    .fetch_one(&pool)
    .await?;
    assert_eq!(untouched, shared, "the refused run wrote nothing");

    // A plan on other events runs alongside the unfinished one: first finish `all-failed`,
    // which leaves nothing to overlap, is not what this shows, so the disjoint plan selects a
    // status the unfinished run did not (it selected failed events; this selects processed ones).
    let disjoint = plan_file(
        &dir,
        "pending-other",
        &format!(
            "select: {{ status: [processed], event_types: [{other}] }}\nrate_limit: {{ per_second: 100000, batch_size: 500 }}\n\
             steps:\n  - {{ id: reset, kind: reset }}\n"
        ),
    );
    let out = run(&["apply", disjoint.to_str().unwrap_or_default()], &url);
    assert_success(&out);
    assert!(
        stdout(&out).contains("gate overlap: pass"),
        "{}",
        stdout(&out)
    );

    let because = "the unfinished run is dead and will be abandoned";
    let out = run(
        &[
            "apply",
            overlapping,
            "--override",
            "overlap",
            "--because",
            because,
        ],
        &url,
    );
    assert_success(&out);
    let audit: String = sqlx::query_scalar(
        "SELECT details::jsonb::text FROM audit_log WHERE action = 'event_replay' AND details::jsonb ->> 'plan' = 'one-type' AND details::jsonb ->> 'outcome' = 'succeeded'",
    )
    .fetch_one(&pool)
    .await?;
    assert!(
        audit.contains("\"gate\": \"overlap\"") && audit.contains(because),
        "{audit}"
    );
    Ok(())
}

/// A publish of every failed event to an exchange and queue of the test's own, shared by
/// executors that join; returns the events, the URL, the queue and the plan.
async fn shared_publish(
    pool: &PgPool,
    dir: &tempfile::TempDir,
    label: &str,
    per_second: u32,
) -> anyhow::Result<(i64, String, String, String, lapin::Connection)> {
    let total = world(pool, 12_000).await?;
    let url = database_url(pool).await?;
    let name = format!("test-{label}-{}", uuid::Uuid::new_v4().simple());
    let topology = bound_queue(&name).await?;
    let plan = plan_file(
        dir,
        label,
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\n\
             rate_limit: {{ per_second: {per_second}, batch_size: 100, confirms_in_flight: 50 }}\n\
             steps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    );
    Ok((
        total,
        url,
        name,
        plan.to_str().unwrap_or_default().to_string(),
        topology,
    ))
}

#[sqlx::test(migrations = false)]
async fn two_executors_share_a_publish_and_publish_each_event_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (total, url, queue, plan, _topology) =
        shared_publish(&pool, &dir, "shared-publish", 4_000).await?;
    let executors_ = [join(&plan, &url), join(&plan, &url)];
    for executor in executors_ {
        assert_success(&executor.wait_with_output()?);
    }
    let duplicates = drain_each_once_at_least(&queue, total).await?;
    assert_eq!(duplicates, 0, "no fault: each event published once");
    let did: Vec<i64> = executors(&pool)
        .await?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert!(
        did.len() == 2 && did.iter().all(|b| *b > 0),
        "both executors published batches: {did:?}"
    );
    let (status, touched): (String, i64) = sqlx::query_as(
        "SELECT r.status, s.touched FROM replay.runs r JOIN replay.step_runs s ON s.run_id = r.id",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((status.as_str(), touched), ("succeeded", total));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_killed_publishing_executor_loses_nothing_and_its_batch_republishes_at_most_the_window(
    pool: PgPool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (total, url, queue, plan, _topology) =
        shared_publish(&pool, &dir, "shared-publish-kill", 2_000).await?;
    let mut first = join(&plan, &url);
    let second = join(&plan, &url);
    checkpoint_midway(&pool, "republish", total).await?;
    until("both executors to publish", || async {
        executors(&pool)
            .await
            .is_ok_and(|e| e.len() == 2 && e.iter().all(|(_, b)| *b > 0))
    })
    .await?;
    first.kill()?;
    assert_success(&second.wait_with_output()?);
    let duplicates = drain_each_once_at_least(&queue, total).await?;
    // The plan's `confirms_in_flight` is 50: the killed executor's batch is taken over from where
    // its recorded confirms reached, so at most that many are published again.
    assert!(
        duplicates <= 50,
        "at most `confirms_in_flight` (50) republished, got {duplicates}"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "succeeded");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_deep_queue_holds_every_executor_of_a_shared_publish(pool: PgPool) -> anyhow::Result<()> {
    let total = world(&pool, 4_000).await?;
    let url = database_url(&pool).await?;
    let name = format!("test-throttle-{}", uuid::Uuid::new_v4().simple());
    let topology = bound_queue(&name).await?;
    let dir = tempfile::tempdir()?;
    // Nobody consumes: the queue fills up to the limit, and then each executor must hold.
    let plan = plan_file(
        &dir,
        "shared-throttle",
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\n\
             rate_limit: {{ per_second: 100000, batch_size: 50, confirms_in_flight: 50, \
             pause_when_queue_depth_above: 100, queue: {name} }}\n\
             steps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    );
    let plan = plan.to_str().unwrap_or_default();
    let mut executors_ = [join(plan, &url), join(plan, &url)];
    let mut paused = Vec::new();
    for executor in &mut executors_ {
        let mut said = super::faults::lines_of(executor.0.as_mut().and_then(|c| c.stderr.take()));
        paused.push(tokio::spawn(async move {
            while let Some(line) = said.recv().await {
                if line.contains("paused: queue too deep") {
                    return true;
                }
            }
            false
        }));
    }
    for (i, said) in paused.into_iter().enumerate() {
        let held = tokio::time::timeout(Duration::from_secs(60), said).await;
        assert!(
            matches!(held, Ok(Ok(true))),
            "executor {i} held for the queue's depth"
        );
    }
    let ch = topology.create_channel().await?;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let depth = ch
        .queue_declare(
            name.as_str().into(),
            passive,
            lapin::types::FieldTable::default(),
        )
        .await?
        .message_count();
    // Each executor checks the depth before each batch: at most one batch each past the limit.
    assert!(
        depth <= 100 + 2 * 50,
        "{depth} messages queued past a limit of 100 with two executors of batches of 50"
    );
    // A consumer comes: both go on, and every event arrives once.
    let duplicates = drain_each_once_at_least(&name, total).await?;
    for executor in executors_ {
        assert_success(&executor.wait_with_output()?);
    }
    assert_eq!(duplicates, 0, "each event published once");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_stop_during_a_shared_publish_publishes_nothing_twice_when_the_run_resumes(
    pool: PgPool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (total, url, queue, plan, _topology) =
        shared_publish(&pool, &dir, "shared-publish-stop", 2_000).await?;
    let runs = [join(&plan, &url), join(&plan, &url)];
    until("both executors to publish", || async {
        executors(&pool)
            .await
            .is_ok_and(|e| e.len() == 2 && e.iter().all(|(_, b)| *b > 0))
    })
    .await?;
    let run_id: String = sqlx::query_scalar("SELECT id::text FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_success(&run(&["stop", &run_id], &url));
    for executor in runs {
        assert_exit(&executor.wait_with_output()?, 130);
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM replay.batches WHERE NOT done")
        .fetch_one(&pool)
        .await?;
    assert!(left > 0, "stopped before the end");
    // Every executor recorded the confirms it had before it stopped, also after the run was
    // recorded `stopped`: the resume publishes each remaining event once, and nothing again.
    assert_success(&run(&["apply", &plan], &url));
    let duplicates = drain_each_once_at_least(&queue, total).await?;
    assert_eq!(duplicates, 0, "a stop publishes nothing twice");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn terminated_backends_of_three_executors_are_retried_and_each_row_is_updated_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 12_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "scale-terminated", &reset_plan(50, 2, 100_000));
    let plan = plan.to_str().unwrap_or_default();
    let runs: Vec<Running> = (0..3).map(|_| join(plan, &url)).collect();
    for done in [1, 40] {
        until("the executors to do batches", || async {
            executors(&pool)
                .await
                .is_ok_and(|e| e.len() == 3 && e.iter().map(|(_, b)| *b).sum::<i64>() >= done)
        })
        .await?;
        // Every connection of every executor, the lease holder's and the joined ones', mid-batch.
        super::faults::terminate_executor_backends(&pool).await?;
    }
    for executor in runs {
        assert_success(&executor.wait_with_output()?);
    }
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "each row updated once"
    );
    one_run_succeeded(&pool, total).await
}
