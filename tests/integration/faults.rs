//! Faults of a production night, injected for real: terminated backends, a paused executor whose
//! lease runs out, a crash inside a rollback, a poison event, missing broker objects, a failing
//! audit table, a refusal on resume. Each case asserts what the README's fault matrix promises.

use super::process::*;
use super::support::*;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use sqlx::PgPool;

/// A seed for the random fault points, printed so that a failure can be replayed with
/// `REPLAY_FAULT_SEED=<seed>`.
pub(super) fn fault_rng() -> (u64, rand::rngs::SmallRng) {
    let seed = std::env::var("REPLAY_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fault seed: REPLAY_FAULT_SEED={seed}");
    (seed, rand::rngs::SmallRng::seed_from_u64(seed))
}

/// A step that bumps a counter once per selected event and batch: applied twice, it shows.
/// (Each batch also sleeps 50 ms in the server, so that a fault usually meets a statement in
/// flight rather than an idle pooled connection.)
const BUMP_BUSY: &str = "select: { status: [error] }\nrate_limit: { per_second: 100000, batch_size: 100 }\nsteps:\n  - id: bump\n    kind: sql\n    each: batch\n    sql: \"UPDATE processed_events SET retry_count = retry_count + 1 WHERE event_id = ANY(:batch_event_ids) AND (SELECT pg_sleep(0.05)) IS NOT NULL\"\n";

const BUMP: &str = "select: { status: [error] }\nrate_limit: { per_second: 3000, batch_size: 100 }\nsteps:\n  - id: bump\n    kind: sql\n    each: batch\n    sql: \"UPDATE processed_events SET retry_count = retry_count + 1 WHERE event_id = ANY(:batch_event_ids)\"\n";

/// Remembers each failed event's counter, to check later that every one moved by exactly one.
pub(super) async fn remember_counters(pool: &PgPool) -> anyhow::Result<i64> {
    sqlx::query("CREATE TABLE counters_before AS SELECT event_id, retry_count FROM processed_events WHERE status = 'error'")
        .execute(pool)
        .await?;
    Ok(sqlx::query_scalar("SELECT count(*) FROM counters_before")
        .fetch_one(pool)
        .await?)
}

/// A world whose failed events' counters are remembered; returns their number and the URL.
pub(super) async fn counted_world(pool: &PgPool, events: u64) -> anyhow::Result<(i64, String)> {
    world(pool, events).await?;
    let total = remember_counters(pool).await?;
    Ok((total, database_url(pool).await?))
}

/// Events whose counter did not move by exactly one.
async fn not_bumped_once(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM processed_events e JOIN counters_before b USING (event_id) \
         WHERE e.retry_count <> b.retry_count + 1",
    )
    .fetch_one(pool)
    .await?)
}

pub(super) async fn checkpoint(pool: &PgPool, step: &str) -> i64 {
    sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = $1")
        .bind(step)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Polls until `condition` holds, or fails after a minute.
pub(super) async fn until<F, Fut>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Checksum of the whole events table.
async fn events_checksum(pool: &PgPool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM processed_events t",
    )
    .fetch_one(pool)
    .await?)
}

/// Waits until the run's `reset` step is done.
async fn reset_done(pool: &PgPool) -> anyhow::Result<()> {
    until("the reset to finish", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT status = 'done' FROM replay.step_runs WHERE step_id = 'reset'",
        )
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
    })
    .await
}

/// A world, the extra tables `setup` makes, and a plan whose verification fails so that its
/// rollback runs `first_action` and then restores the snapshot; returns the events table's
/// checksum before, the database URL, the plan's directory and path.
async fn rollback_world(
    pool: &PgPool,
    name: &str,
    setup: &str,
    first_action: &str,
) -> anyhow::Result<(String, String, tempfile::TempDir, String)> {
    world(pool, 1_000).await?;
    let before = events_checksum(pool).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup.to_string()))
        .execute(pool)
        .await?;
    let url = database_url(pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, name, &failing_verification_then(first_action))
        .to_str()
        .unwrap_or_default()
        .to_string();
    Ok((before, url, dir, plan))
}

/// A reset whose verification cannot pass, so that the rollback runs: first `first_action`,
/// then the restore of the snapshot.
fn failing_verification_then(first_action: &str) -> String {
    format!(
        "select: {{ status: [error] }}\nbackup: {{ tables: [{{ table: processed_events }}] }}\nsteps:\n  - {{ id: reset, kind: reset }}\n\
         verify:\n  - name: impossible\n    sql: \"SELECT count(*) FROM processed_events WHERE status = 'pending'\"\n    expect: {{ equals: 0 }}\n\
         rollback:\n  - {{ kind: sql, sql: \"{first_action}\" }}\n  - {{ kind: restore_backup, tables: [processed_events] }}\n"
    )
}

/// The one run is rolled back, the events table is as `before`, and the steps ran only once.
async fn rolled_back_once(pool: &PgPool, before: &str) -> anyhow::Result<()> {
    assert_eq!(events_checksum(pool).await?, before, "the snapshot is back");
    let (runs, status, steps_started): (i64, String, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM replay.runs), (SELECT status FROM replay.runs), \
         (SELECT count(*) FROM replay.run_log WHERE kind = 'step_started')",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(
        (runs, status.as_str(), steps_started),
        (1, "rolled_back", 1),
        "the same run finished its rollback without running its steps again"
    );
    Ok(())
}

fn signal(sig: &str, pid: u32) -> anyhow::Result<()> {
    anyhow::ensure!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success(),
        "kill {sig} {pid}"
    );
    Ok(())
}

/// Terminates every backend the executor holds, three times, each once the step's checkpoint has
/// moved again, at a random point after it.
pub(super) async fn terminate_backends_midway(
    pool: &PgPool,
    step: &str,
    total: i64,
    rng: &mut rand::rngs::SmallRng,
) -> anyhow::Result<()> {
    let mut last = 0;
    for _ in 0..3 {
        until("the step to move on", || async {
            let cp = checkpoint(pool, step).await;
            cp > last && cp < total
        })
        .await?;
        last = checkpoint(pool, step).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        terminate_executor_backends(pool).await?;
    }
    Ok(())
}

/// Applies the plan while terminating every backend the executor holds three times midway;
/// asserts that the run got through by itself.
pub(super) async fn apply_terminating_backends(
    pool: &PgPool,
    plan: &str,
    url: &str,
    step: &str,
    total: i64,
    rng: &mut rand::rngs::SmallRng,
    seed: u64,
) -> anyhow::Result<()> {
    let child = start(&["apply", plan], url);
    terminate_backends_midway(pool, step, total, rng).await?;
    succeeded(&child.wait_with_output()?, seed);
    Ok(())
}

/// Starts `apply` up to five times, each killed (SIGKILL) at a random point unless it finished
/// first; returns how many kills met the run.
pub(super) async fn kill_at_random_points(
    plan: &str,
    url: &str,
    rng: &mut rand::rngs::SmallRng,
) -> anyhow::Result<usize> {
    let mut kills = 0;
    for _ in 0..5 {
        let mut child = start(&["apply", plan], url);
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
        if child.finished() {
            break;
        }
        child.kill()?;
        kills += 1;
    }
    Ok(kills)
}

pub(super) fn succeeded(out: &std::process::Output, seed: u64) {
    assert!(
        out.status.success(),
        "seed {seed}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Holds the step's row so that the executor's next checkpoint waits on it inside its
/// transaction, then terminates every backend the executor holds.
async fn terminate_backends_while_a_checkpoint_waits(
    pool: &PgPool,
    step: &str,
    total: i64,
) -> anyhow::Result<()> {
    let from = checkpoint(pool, step).await;
    until("the step to move on", || async {
        let cp = checkpoint(pool, step).await;
        cp > from && cp < total
    })
    .await?;
    let mut hold = pool.begin().await?;
    sqlx::query("SELECT 1 FROM replay.step_runs WHERE step_id = $1 FOR UPDATE")
        .bind(step)
        .execute(&mut *hold)
        .await?;
    until("a checkpoint to wait on the held row", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'replay' \
             AND datname = current_database() AND wait_event_type = 'Lock')",
        )
        .fetch_one(pool)
        .await
        .unwrap_or(false)
    })
    .await?;
    terminate_executor_backends(pool).await?;
    hold.rollback().await?;
    Ok(())
}

/// One run, `succeeded`, that retried in process at least once.
pub(super) async fn succeeded_after_retries(pool: &PgPool, seed: u64) -> anyhow::Result<()> {
    assert_one_run(
        pool,
        "succeeded",
        &format!("seed {seed}: one run, never rolled back"),
    )
    .await?;
    let retries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM replay.run_log WHERE kind = 'retry'")
            .fetch_one(pool)
            .await?;
    assert!(
        retries >= 1,
        "seed {seed}: the terminations were retried in the same process"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn terminated_backends_are_retried_in_process_and_each_batch_applies_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (seed, mut rng) = fault_rng();
    let (total, url) = counted_world(&pool, 12_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "terminated", BUMP_BUSY);
    let plan = plan.to_str().unwrap_or_default();
    apply_terminating_backends(&pool, plan, &url, "bump", total, &mut rng, seed).await?;
    assert_eq!(
        not_bumped_once(&pool).await?,
        0,
        "seed {seed}: every batch applied exactly once"
    );
    succeeded_after_retries(&pool, seed).await
}

/// A child's output, line by line, as it comes.
pub(super) fn lines_of(
    output: Option<impl std::io::Read + Send + 'static>,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::BufRead;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(output) = output {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(output)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
    }
    rx
}

/// Terminates every backend the executor holds.
pub(super) async fn terminate_executor_backends(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'replay' AND datname = current_database()",
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_failover_that_leaves_sessions_read_only_for_a_while_is_retried_and_applies_each_batch_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 12_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "failover", BUMP_BUSY);
    let plan = plan.to_str().unwrap_or_default();
    // A session of our own, opened while the database is writable, stays so.
    let mut admin = pool.acquire().await?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut *admin)
        .await?;
    let read_only = |on: bool| {
        sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{database}\" SET default_transaction_read_only = {on}"
        ))
    };
    let mut child = start(&["apply", plan], &url);
    let mut said = lines_of(child.0.as_mut().and_then(|c| c.stderr.take()));
    until("the step to move on", || async {
        let cp = checkpoint(&pool, "bump").await;
        cp > 0 && cp < total
    })
    .await?;
    // As a failover would: the executor's new sessions land on a server that refuses writes.
    sqlx::query(read_only(true)).execute(&mut *admin).await?;
    terminate_executor_backends(&pool).await?;
    let refused = "in a read-only transaction (SQLSTATE 25006)";
    let met = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = said.recv().await {
            if line.contains(refused) && line.contains("retrying") {
                return true;
            }
        }
        false
    })
    .await;
    // The primary is back: sessions are writable again.
    sqlx::query(read_only(false)).execute(&mut *admin).await?;
    assert!(
        matches!(met, Ok(true)),
        "the executor met the read-only server and said it retries"
    );
    terminate_executor_backends(&pool).await?;
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "exit {:?}", out.status.code());
    assert_eq!(
        not_bumped_once(&pool).await?,
        0,
        "every batch applied exactly once"
    );
    // The retries are in the output; their run-log rows could not be written while the
    // server refused writes.
    assert_one_run(&pool, "succeeded", "one run, never rolled back").await?;
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn terminated_backends_during_a_publish_lose_nothing_and_republish_at_most_the_window(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (seed, mut rng) = fault_rng();
    let total = world(&pool, 12_000).await?;
    let url = database_url(&pool).await?;
    let name = format!("test-terminated-publish-{}", uuid::Uuid::new_v4().simple());
    let _topology = bound_queue(&name).await?;
    let dir = tempfile::tempdir()?;
    let window = 50;
    let plan = plan_file(
        &dir,
        "terminated-publish",
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\n\
             rate_limit: {{ per_second: 2000, batch_size: 100, confirms_in_flight: {window} }}\n\
             steps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    );
    let plan = plan.to_str().unwrap_or_default();
    let child = start(&["apply", plan], &url);
    // At random points: these mostly meet idle connections, which the pool replaces.
    terminate_backends_midway(&pool, "republish", total, &mut rng).await?;
    // And twice while the concurrent checkpoint writer is inside its transaction (held up by a
    // lock on the step's row), so that the fault meets it for certain.
    for _ in 0..2 {
        terminate_backends_while_a_checkpoint_waits(&pool, "republish", total).await?;
    }
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "seed {seed}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duplicates = drain_each_once_at_least(&name, total).await?;
    assert!(
        duplicates <= 5 * window,
        "seed {seed}: {duplicates} duplicates over 5 terminations, more than {window} each"
    );
    succeeded_after_retries(&pool, seed).await
}

#[sqlx::test(migrations = false)]
async fn sigkill_at_random_points_loses_nothing_and_applies_each_batch_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (seed, mut rng) = fault_rng();
    let (total, url) = counted_world(&pool, 12_000).await?;
    let name = format!("test-sigkill-{}", uuid::Uuid::new_v4().simple());
    let _topology = bound_queue(&name).await?;
    let dir = tempfile::tempdir()?;
    let (batch, window) = (100, 50);
    let plan = plan_file(
        &dir,
        "sigkilled",
        &format!(
            "target: {{ exchange: {name} }}\n{}  - {{ id: republish, kind: publish }}\n",
            BUMP.replace(
                "batch_size: 100 }",
                &format!("batch_size: {batch}, confirms_in_flight: {window} }}")
            )
        ),
    );
    let plan = plan.to_str().unwrap_or_default();
    let kills = kill_at_random_points(plan, &url, &mut rng).await?;
    // The whole run takes longer than the first wait: at least that kill met it midway.
    assert!(kills >= 1, "seed {seed}: no kill met the run");
    succeeded(&run(&["apply", plan], &url), seed);
    assert_eq!(
        not_bumped_once(&pool).await?,
        0,
        "seed {seed}: every batch applied exactly once over {kills} kills"
    );
    let duplicates = drain_each_once_at_least(&name, total).await?;
    // The documented bound: a crash republishes at most `confirms_in_flight` messages.
    assert!(
        duplicates <= kills * window,
        "seed {seed}: {duplicates} duplicates over {kills} kills, more than {window} per kill"
    );
    assert_one_run(
        &pool,
        "succeeded",
        &format!("seed {seed}: one run, resumed after each kill"),
    )
    .await?;
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_paused_executor_that_lost_its_lease_writes_nothing_when_it_wakes(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 12_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "paused", BUMP);
    let plan = plan.to_str().unwrap_or_default();
    let first = start(&["apply", plan, "--lease", "2s"], &url);
    checkpoint_midway(&pool, "bump", total).await?;
    signal("-STOP", first.id())?;
    let resume_first = scopeguard(first.id());
    until("the paused executor's lease to run out", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT lease_expires_at < clock_timestamp() FROM replay.runs",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(false)
    })
    .await?;
    // A second executor takes the run over and finishes it.
    let second = run(&["apply", plan, "--lease", "2s"], &url);
    assert_success(&second);
    drop(resume_first);
    let out = first.wait_with_output()?;
    assert_exit(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lost the lease"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        not_bumped_once(&pool).await?,
        0,
        "the woken executor applied nothing"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        status, "succeeded",
        "the woken executor did not overwrite the outcome"
    );
    Ok(())
}

/// Sends SIGCONT when dropped, so a paused process never outlives a failing test.
struct Continue(u32);

fn scopeguard(pid: u32) -> Continue {
    Continue(pid)
}

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = signal("-CONT", self.0);
    }
}

/// Resets failed events, waits for a "worker" (the test) to process them, verifies that none is
/// still failing, and restores the backup otherwise.
const REPLAY_AND_VERIFY: &str = "select: { status: [error] }\nbackup: { tables: [{ table: processed_events }] }\n\
    steps:\n  - { id: reset, kind: reset }\n  - id: processed\n    kind: wait\n    until: \"SELECT EXISTS (SELECT 1 FROM processed_events WHERE error_message = 'poison')\"\n    timeout: 2m\n    poll_interval: 100ms\n\
    verify:\n  - name: nothing selected is still failing\n    sql: \"SELECT count(*) FROM processed_events WHERE event_id = ANY(:selected_event_ids) AND status = 'error'\"\n    expect: { equals: 0 }\n";

#[sqlx::test(migrations = false)]
async fn a_poison_event_rolls_back_only_the_rows_the_worker_did_not_process(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 2_000).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "poison",
        &format!(
            "{REPLAY_AND_VERIFY}rollback:\n  - {{ kind: restore_backup, tables: [processed_events] }}\n"
        ),
    );
    let child = start(&["apply", plan.to_str().unwrap_or_default()], &url);
    reset_done(&pool).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM replay.selection")
        .fetch_one(&pool)
        .await?;
    let half = total / 2;
    // The worker processes the first half; the next event fails again; the rest stay pending.
    sqlx::query(
        "UPDATE processed_events e SET status = 'processed', error_message = NULL FROM replay.selection s \
         WHERE s.event_id = e.event_id AND s.seq <= $1",
    )
    .bind(half)
    .execute(&pool)
    .await?;
    let poison: String = sqlx::query_scalar(
        "UPDATE processed_events e SET status = 'error', error_message = 'poison' FROM replay.selection s \
         WHERE s.event_id = e.event_id AND s.seq = $1 RETURNING e.event_id",
    )
    .bind(half + 1)
    .fetch_one(&pool)
    .await?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("still failing: 1 selected event(s)")
            && stdout.contains(&format!("{poison}: poison")),
        "the report names the poison event: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "kept {} row(s) of `processed_events` changed since the run wrote them",
            half + 1
        )),
        "{stdout}"
    );
    let by_status: Vec<(String, i64)> = sqlx::query_as(
        "SELECT e.status, count(*) FROM processed_events e JOIN replay.selection s ON s.event_id = e.event_id \
         GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        by_status,
        vec![
            ("error".to_string(), total - half),
            ("processed".to_string(), half)
        ],
        "the processed rows are kept; the rows the run left pending are restored"
    );
    let restored_exactly: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events e JOIN replay.selection s ON s.event_id = e.event_id \
         JOIN replay.backup_rows b ON b.key = e.event_id WHERE s.seq > $1 AND to_jsonb(e) = b.row_data",
    )
    .bind(half + 1)
    .fetch_one(&pool)
    .await?;
    assert_eq!(restored_exactly, total - half - 1);
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "rolled_back");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_crash_inside_the_rollback_resumes_the_rollback_not_the_steps(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (before, url, _dir, plan) = rollback_world(
        &pool,
        "crash-in-rollback",
        "CREATE TABLE blocker (id INT PRIMARY KEY, n INT NOT NULL); INSERT INTO blocker VALUES (1, 0);",
        "UPDATE blocker SET n = n + 1 WHERE id = 1",
    )
    .await?;
    let plan = plan.as_str();
    // Hold the row the rollback's first action needs, so the rollback is caught inside.
    let mut holder = pool.begin().await?;
    sqlx::query("SELECT n FROM blocker WHERE id = 1 FOR UPDATE")
        .execute(&mut *holder)
        .await?;
    let mut child = start(&["apply", plan], &url);
    until("the rollback to wait on the held row", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM replay.runs WHERE status = 'rolling_back') \
             AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'replay' \
                         AND datname = current_database() AND wait_event_type = 'Lock')",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(false)
    })
    .await?;
    child.kill()?;
    holder.rollback().await?;
    let out = run(&["apply", plan], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the rollback of an earlier failure finished"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: i32 = sqlx::query_scalar("SELECT n FROM blocker")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n, 1, "the rollback ran once in full");
    rolled_back_once(&pool, &before).await
}

#[sqlx::test(migrations = false)]
async fn a_missing_queue_is_refused_before_the_first_write(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, 500).await?;
    let url = database_url(&pool).await?;
    let before = events_checksum(&pool).await?;
    let dir = tempfile::tempdir()?;
    let queue = format!("no-such-queue-{}", uuid::Uuid::new_v4().simple());
    for (name, step) in [
        (
            "wait-on-missing-queue",
            format!("  - {{ id: drained, kind: wait, queue_empty: {queue}, timeout: 10m }}\n"),
        ),
        (
            "purge-missing-queue",
            format!("  - {{ id: purge, kind: purge_queue, queue: {queue} }}\n"),
        ),
    ] {
        let plan = plan_file(
            &dir,
            name,
            &format!(
                "select: {{ status: [error] }}\nsteps:\n  - {{ id: reset, kind: reset }}\n{step}"
            ),
        );
        let plan = plan.to_str().unwrap_or_default();
        for args in [vec!["apply", plan, "--dry-run"], vec!["apply", plan]] {
            let out = run(&args, &url);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("queue `{queue}` does not exist")),
                "{args:?}: {stderr}"
            );
        }
        let status: String =
            sqlx::query_scalar("SELECT status FROM replay.runs WHERE plan_name = $1")
                .bind(name)
                .fetch_one(&pool)
                .await?;
        assert_eq!(status, "refused");
    }
    assert_eq!(events_checksum(&pool).await?, before, "nothing was reset");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn an_audit_row_that_cannot_be_written_after_success_is_a_warning(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 500).await?;
    sqlx::query(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit_log is read-only today'; END $$",
    )
    .execute(&pool)
    .await?;
    sqlx::query("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()")
        .execute(&pool)
        .await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "unaudited",
        "select: { status: [error] }\nbackup: { tables: [{ table: processed_events }] }\n\
         steps:\n  - { id: reset, kind: reset }\n\
         rollback:\n  - { kind: restore_backup, tables: [processed_events] }\n",
    );
    let out = run(&["apply", plan.to_str().unwrap_or_default()], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("warning: the audit row could not be written")
            && stdout.contains("audit_log is read-only today"),
        "{stdout}"
    );
    assert!(!stdout.contains("resume with"), "{stdout}");
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "succeeded");
    // So is the audit row of an operator's rollback: the rollback is done and says so.
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let undone = run(&["rollback", &run_id.to_string()], &url);
    let stdout = String::from_utf8_lossy(&undone.stdout);
    assert_success(&undone);
    assert!(
        stdout.contains("warning: the audit row could not be written"),
        "{stdout}"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "rolled_back");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_refusal_on_resume_leaves_the_run_resumable_and_the_hint_repeats_every_flag(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 12_000).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "needs-override",
        "select: { status: [error] }\nsafety: { max_events: 10 }\nrate_limit: { per_second: 2000, batch_size: 100 }\nsteps:\n  - { id: reset, kind: reset }\n",
    );
    let plan = plan.to_str().unwrap_or_default();
    let because = "incident 42: all of them, on purpose";
    let child = start(
        &[
            "apply",
            plan,
            "--override",
            "max_events",
            "--because",
            because,
        ],
        &url,
    );
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(&pool)
            .await?;
    checkpoint_midway(&pool, "reset", total).await?;
    signal("-INT", child.id())?;
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(130));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hint =
        format!("resume with: replay apply {plan} --override max_events --because '{because}'");
    assert!(stdout.contains(&hint), "{stdout}");
    // Without the override the resume is refused, and the run stays resumable.
    let refused = run(&["apply", plan], &url);
    assert_exit(&refused, 4);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        said.contains("--override max_events --because"),
        "the refusal names the flag it needs: {said}"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(status, "interrupted");
    let resumed = run(
        &[
            "apply",
            plan,
            "--override",
            "max_events",
            "--because",
            because,
        ],
        &url,
    );
    assert_success(&resumed);
    let (runs, status): (i64, String) =
        sqlx::query_as("SELECT count(*) OVER (), status FROM replay.runs")
            .fetch_one(&pool)
            .await?;
    assert_eq!((runs, status.as_str()), (1, "succeeded"));
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn re_running_a_plan_that_succeeded_does_nothing_unless_asked_again(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 500).await?;
    remember_counters(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "once", BUMP);
    let plan = plan.to_str().unwrap_or_default();
    let first = run(&["apply", plan], &url);
    assert_success(&first);
    let again = run(&["apply", plan], &url);
    assert!(again.status.success());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("already succeeded") && stdout.contains("nothing was done"),
        "{stdout}"
    );
    assert_eq!(not_bumped_once(&pool).await?, 0, "nothing ran twice");
    let unexplained = run(&["apply", plan, "--again"], &url);
    assert_eq!(unexplained.status.code(), Some(2));
    let anew = run(
        &[
            "apply",
            plan,
            "--again",
            "--because",
            "the handler was fixed once more",
        ],
        &url,
    );
    assert_success(&anew);
    let bumped_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events e JOIN counters_before b USING (event_id) \
         WHERE e.retry_count = b.retry_count + 2",
    )
    .fetch_one(&pool)
    .await?;
    let selected: i64 = sqlx::query_scalar("SELECT count(*) FROM counters_before")
        .fetch_one(&pool)
        .await?;
    assert_eq!(bumped_twice, selected, "--again ran it anew");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE details LIKE '%the handler was fixed once more%'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(audited, 1, "the reason for --again is audited");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_dry_run_rehearses_the_first_batch_and_never_queues_behind_the_worker(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 4_000).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "gentle",
        // A once-step over the whole selection is rehearsed on the first batch too.
        "select: { status: [error] }\nrate_limit: { per_second: 500, batch_size: 100 }\nsteps:\n  - { id: reset, kind: reset }\n\
         \x20 - { id: bump, kind: sql, sql: \"UPDATE processed_events SET retry_count = retry_count + 1 WHERE event_id = ANY(:selected_event_ids)\" }\n",
    );
    let plan = plan.to_str().unwrap_or_default();
    let selected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(&pool)
            .await?;
    // The worker holds the last selected event (outside the first batch).
    let mut worker = pool.begin().await?;
    sqlx::query(
        "SELECT 1 FROM processed_events WHERE event_id = (SELECT event_id FROM processed_events \
         WHERE status = 'error' ORDER BY processed_at DESC, event_id DESC LIMIT 1) FOR UPDATE",
    )
    .execute(&mut *worker)
    .await?;
    let bounded = run(&["apply", plan, "--dry-run"], &url);
    let stdout = String::from_utf8_lossy(&bounded.stdout);
    assert!(
        bounded.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&bounded.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "step reset [reset]: {selected} row(s) would be touched"
        )),
        "the rest is counted: {stdout}"
    );
    // Rehearsing every batch reaches the held row and gives up instead of waiting for it.
    let full = run(&["apply", plan, "--dry-run", "--rehearse-all"], &url);
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lock timeout"), "{stderr}");
    worker.rollback().await?;
    let changed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'pending'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(changed, 0, "a dry-run changes nothing");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn events_that_failed_again_are_named_and_inspect_plans_exactly_them(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 2_000).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // No rollback: what the worker did stays, and the verification's failure is the news.
    let plan = plan_file(&dir, "failed-again", REPLAY_AND_VERIFY);
    let child = start(&["apply", plan.to_str().unwrap_or_default()], &url);
    reset_done(&pool).await?;
    // Twenty-five poison events fail again (more than the report lists); the rest are processed.
    sqlx::query(
        "UPDATE processed_events e SET status = 'processed', error_message = NULL FROM replay.selection s \
         WHERE s.event_id = e.event_id AND s.seq > 25",
    )
    .execute(&pool)
    .await?;
    let mut poison: Vec<String> = sqlx::query_scalar(
        "UPDATE processed_events e SET status = 'error', error_message = 'poison' FROM replay.selection s \
         WHERE s.event_id = e.event_id AND s.seq <= 25 RETURNING e.event_id",
    )
    .fetch_all(&pool)
    .await?;
    poison.sort();
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("still failing: 25 selected event(s) (the first 20 below)"),
        "{stdout}"
    );
    let named = poison
        .iter()
        .filter(|id| stdout.contains(&format!("    {id}: poison")))
        .count();
    assert_eq!(
        named, 20,
        "the first 20 are named with their message: {stdout}"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        status, "failed",
        "no rollback to run: failed, not rolled back"
    );
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert!(
        stdout.contains(&format!(
            "replay inspect --run {run_id} --status error --emit-plan"
        )),
        "{stdout}"
    );
    // A failed event outside the run must not be picked up.
    let outsider: String = sqlx::query_scalar(
        "UPDATE processed_events SET status = 'error' WHERE id = (SELECT min(id) FROM processed_events \
         WHERE event_id NOT IN (SELECT event_id FROM replay.selection)) RETURNING event_id",
    )
    .fetch_one(&pool)
    .await?;
    let next = dir.path().join("next.yaml");
    let next = next.to_str().unwrap_or_default();
    let inspected = run(
        &[
            "inspect",
            "--run",
            &run_id.to_string(),
            "--status",
            "error",
            "--emit-plan",
            next,
        ],
        &url,
    );
    assert_success(&inspected);
    let text = std::fs::read_to_string(next)?.replace(
        "TODO: describe the incident and the fix before applying this plan",
        "test: replay the events that failed again",
    );
    std::fs::write(next, &text)?;
    assert!(
        poison
            .iter()
            .all(|id| text.contains(&format!("    - \"{id}\"\n")))
            && !text.contains(&outsider),
        "{text}"
    );
    let dry = run(&["apply", next, "--dry-run", "--format", "json"], &url);
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout)?;
    assert_eq!(
        report["selected"], 25,
        "exactly the events that failed again: {report}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_rollback_that_fails_stays_rolling_back_until_it_can_finish(
    pool: PgPool,
) -> anyhow::Result<()> {
    // The rollback's first action inserts a row that is already there: it fails until it is gone.
    let (before, url, _dir, plan) = rollback_world(
        &pool,
        "failing-rollback",
        "CREATE TABLE undo_marks (id INT PRIMARY KEY); INSERT INTO undo_marks VALUES (1);",
        "INSERT INTO undo_marks VALUES (1)",
    )
    .await?;
    let plan = plan.as_str();
    let failed = run(&["apply", plan], &url);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("resume with: replay apply"), "{stdout}");
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM replay.runs")
            .fetch_one(&pool)
            .await?;
    assert_eq!(status, "rolling_back", "the rollback is not forgotten");
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("verification"),
        "the cause is kept: {error:?}"
    );
    // Still failing: the resume tries the rollback again, not the steps.
    let again = run(&["apply", plan], &url);
    assert_eq!(again.status.code(), Some(1));
    sqlx::query("DELETE FROM undo_marks").execute(&pool).await?;
    let finished = run(&["apply", plan], &url);
    assert_exit(&finished, 3);
    rolled_back_once(&pool, &before).await
}

#[sqlx::test(migrations = false)]
async fn a_slowly_paced_batch_step_never_idles_inside_a_transaction(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool, 300).await?;
    let total = remember_counters(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // Each batch of 50 waits 1.25 s for its tokens; the lease (and so the longest a session may
    // idle inside a transaction) is 1 s.
    let plan = plan_file(
        &dir,
        "slow-batches",
        &BUMP.replace(
            "rate_limit: { per_second: 3000, batch_size: 100 }",
            "rate_limit: { per_second: 40, batch_size: 50 }",
        ),
    );
    let out = run(
        &["apply", plan.to_str().unwrap_or_default(), "--lease", "1s"],
        &url,
    );
    assert_success(&out);
    assert!(total > 50, "several batches");
    assert_eq!(not_bumped_once(&pool).await?, 0);
    let retries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM replay.run_log WHERE kind = 'retry'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        retries, 0,
        "no session was ended for idling in a transaction"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn wait_and_verification_queries_cannot_write(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, 300).await?;
    // `nextval` passes the offline read-only check; the read-only transaction stops it.
    sqlx::query("CREATE SEQUENCE probe").execute(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    for (name, body) in [
        (
            "writing-wait",
            "select: { status: [error] }\nsteps:\n  - { id: reset, kind: reset }\n  - { id: probe, kind: wait, until: \"SELECT nextval('probe') > 0\", timeout: 1m }\n",
        ),
        (
            "writing-verification",
            // Other events than the case before, whose failed run holds the failed ones.
            "select: { status: [processed] }\nsteps:\n  - { id: reset, kind: reset }\nverify:\n  - name: probe\n    sql: \"SELECT nextval('probe')\"\n    expect: { at_least: 1 }\n",
        ),
    ] {
        let plan = plan_file(&dir, name, body);
        let out = run(&["apply", plan.to_str().unwrap_or_default()], &url);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("read-only transaction"), "{name}: {stderr}");
    }
    let called: bool = sqlx::query_scalar("SELECT is_called FROM probe")
        .fetch_one(&pool)
        .await?;
    assert!(!called, "the sequence never moved");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_restore_updates_rows_in_place_so_no_cascade_fires(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, 300).await?;
    sqlx::raw_sql(
        "CREATE TABLE periods (id INT PRIMARY KEY, note TEXT NOT NULL); \
         CREATE TABLE period_children (id INT PRIMARY KEY, \
             period_id INT NOT NULL REFERENCES periods (id) ON DELETE CASCADE); \
         INSERT INTO periods VALUES (1, 'original'); INSERT INTO period_children VALUES (10, 1);",
    )
    .execute(&pool)
    .await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "in-place",
        "select: { status: [error] }\nbackup: { tables: [{ table: periods, where: \"id = 1\" }] }\n\
         steps:\n  - { id: touch, kind: sql, sql: \"UPDATE periods SET note = 'changed' WHERE id = 1\" }\n\
         verify:\n  - name: impossible\n    sql: \"SELECT count(*) FROM periods\"\n    expect: { equals: 0 }\n\
         rollback:\n  - { kind: restore_backup, tables: [periods] }\n",
    );
    let out = run(&["apply", plan.to_str().unwrap_or_default()], &url);
    assert_exit(&out, 3);
    let (note, children): (String, i64) = sqlx::query_as(
        "SELECT (SELECT note FROM periods WHERE id = 1), (SELECT count(*) FROM period_children)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        (note.as_str(), children),
        ("original", 1),
        "restored in place; the child row survives"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_batch_step_over_an_empty_selection_is_recorded_done(pool: PgPool) -> anyhow::Result<()> {
    world(&pool, 200).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "empty-batches",
        "select: { status: [processing] }\nsafety: { allow_empty: true }\nsteps:\n  - { id: bump, kind: sql, each: batch, sql: \"UPDATE processed_events SET retry_count = retry_count + 1 WHERE event_id = ANY(:batch_event_ids)\" }\n  - { id: reset, kind: reset }\n",
    );
    assert_success(&run(&["apply", plan.to_str().unwrap_or_default()], &url));
    let steps: Vec<(String, String)> =
        sqlx::query_as("SELECT step_id, status FROM replay.step_runs ORDER BY ordinal")
            .fetch_all(&pool)
            .await?;
    assert_eq!(
        steps,
        [
            ("bump".into(), "done".into()),
            ("reset".into(), "done".into())
        ],
        "nothing to do, and done"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_step_that_fails_without_a_rollback_is_failed_and_resumes_once_fixed(
    pool: PgPool,
) -> anyhow::Result<()> {
    let total = world(&pool, 400).await?;
    let url = database_url(&pool).await?;
    let name = format!("test-unbound-{}", uuid::Uuid::new_v4().simple());
    // An exchange with no queue bound: every message comes back unroutable.
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    conn.create_channel()
        .await?
        .exchange_declare(
            name.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "unbound",
        &format!(
            "target: {{ exchange: {name} }}\nselect: {{ status: [error] }}\nsteps:\n  - {{ id: republish, kind: publish }}\n"
        ),
    );
    let plan = plan.to_str().unwrap_or_default();
    let out = run(&["apply", plan], &url);
    assert_exit(&out, 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("returned unroutable"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resume with: replay apply"), "{stdout}");
    let status: String = sqlx::query_scalar("SELECT status FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        status, "failed",
        "nothing to roll back: failed, not rolled_back"
    );
    // Fixed (a queue is bound now): the same run resumes and finishes.
    let _topology = bound_queue(&name).await?;
    assert_success(&run(&["apply", plan], &url));
    assert_one_run(&pool, "succeeded", "the failed run resumed").await?;
    drain_each_once_at_least(&name, total).await?;
    Ok(())
}
