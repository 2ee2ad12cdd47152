//! A reset whose batches commit side by side (`parallel_batches`): a later batch may commit
//! before an earlier one, and a crash, a terminated backend or a retry must still update each
//! selected row exactly once. A trigger counts every committed update of every row.

use super::faults::{
    self, apply_terminating_backends, checkpoint, fault_rng, kill_at_random_points, succeeded,
    succeeded_after_retries, until,
};
use super::process::*;
use sqlx::PgPool;

/// Counts each row's updates, in the updating transaction (a batch that rolls back counts
/// nothing), and makes each take a millisecond in the server, so that faults meet batches
/// in flight.
pub(super) const COUNT_UPDATES: &str = "CREATE TABLE update_counts (event_id TEXT PRIMARY KEY, n INT NOT NULL);
CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO update_counts VALUES (NEW.event_id, 1)
    ON CONFLICT (event_id) DO UPDATE SET n = update_counts.n + 1;
  PERFORM pg_sleep(0.001);
  RETURN NEW;
END $$;
CREATE TRIGGER count_update AFTER UPDATE ON processed_events FOR EACH ROW EXECUTE FUNCTION count_update();";

fn reset_plan(batch: u32, lanes: u32) -> String {
    format!(
        "select: {{ status: [error] }}\nrate_limit: {{ per_second: 100000, batch_size: {batch}, parallel_batches: {lanes} }}\n\
         steps:\n  - {{ id: reset, kind: reset }}\n"
    )
}

/// A world whose failed events are remembered (`counters_before`) and whose updates are counted;
/// returns the number of failed events and the database URL.
pub(super) async fn counted_world(pool: &PgPool, events: u64) -> anyhow::Result<(i64, String)> {
    let world = faults::counted_world(pool, events).await?;
    sqlx::raw_sql(COUNT_UPDATES).execute(pool).await?;
    Ok(world)
}

/// Selected rows not updated exactly once, and rows updated that were not selected.
pub(super) async fn not_updated_once(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM counters_before b LEFT JOIN update_counts u USING (event_id) \
                 WHERE coalesce(u.n, 0) <> 1), \
                (SELECT count(*) FROM update_counts u \
                 WHERE NOT EXISTS (SELECT 1 FROM counters_before b WHERE b.event_id = u.event_id))",
    )
    .fetch_one(pool)
    .await?)
}

/// The reset step's checkpoint and how many events its batches done beyond it hold.
async fn checkpoint_and_ahead(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    let (cp, ahead): (i64, Vec<i64>) =
        sqlx::query_as("SELECT checkpoint, ahead FROM replay.step_runs WHERE step_id = 'reset'")
            .fetch_one(pool)
            .await?;
    Ok((cp, ahead.chunks_exact(2).map(|p| p[1] - p[0]).sum()))
}

pub(super) async fn one_run_succeeded(pool: &PgPool, total: i64) -> anyhow::Result<()> {
    let (runs, status, touched): (i64, String, i64) = sqlx::query_as(
        "SELECT count(*) OVER (), r.status, s.touched FROM replay.runs r \
         JOIN replay.step_runs s ON s.run_id = r.id",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(
        (runs, status.as_str(), touched),
        (1, "succeeded", total),
        "one run, resumed, that touched each selected event once"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_batch_done_beyond_the_checkpoint_is_skipped_when_the_run_resumes(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (total, url) = counted_world(&pool, 1_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "lanes-ahead", &reset_plan(50, 2));
    let plan = plan.to_str().unwrap_or_default();
    // The first selected event is held: the first batch waits on it while the other lane goes on.
    let first: String = sqlx::query_scalar(
        "SELECT event_id FROM processed_events WHERE status = 'error' \
         ORDER BY processed_at NULLS FIRST, event_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let mut hold = pool.begin().await?;
    sqlx::query("SELECT 1 FROM processed_events WHERE event_id = $1 FOR UPDATE")
        .bind(&first)
        .execute(&mut *hold)
        .await?;
    let mut child = start(&["apply", plan], &url);
    until("four batches done beyond the held one", || async {
        checkpoint_and_ahead(&pool)
            .await
            .is_ok_and(|(_, ahead)| ahead >= 200)
    })
    .await?;
    child.kill()?;
    let (cp, ahead) = checkpoint_and_ahead(&pool).await?;
    assert_eq!(cp, 0, "the held first batch keeps the checkpoint at 0");
    hold.rollback().await?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events e JOIN counters_before b USING (event_id) \
         WHERE e.status = 'pending'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        pending, ahead,
        "exactly the batches recorded ahead are done"
    );
    let status = run(&["status"], &url);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&format!("checkpoint 0 (and {ahead} events done beyond it)")),
        "{status}"
    );

    let out = run(&["apply", plan], &url);
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("(resumed at {ahead})")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "each selected row updated once, the {ahead} done ahead not again"
    );
    assert_eq!(checkpoint_and_ahead(&pool).await?, (total, 0));
    one_run_succeeded(&pool, total).await
}

#[sqlx::test(migrations = false)]
async fn sigkill_at_random_points_of_a_reset_in_three_lanes_updates_each_row_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (seed, mut rng) = fault_rng();
    let (total, url) = counted_world(&pool, 12_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "lanes-sigkill", &reset_plan(50, 3));
    let plan = plan.to_str().unwrap_or_default();
    let kills = kill_at_random_points(plan, &url, &mut rng).await?;
    // The whole reset takes longer than the first wait: at least that kill met it midway.
    assert!(kills >= 1, "seed {seed}: no kill met the run");
    succeeded(&run(&["apply", plan], &url), seed);
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "seed {seed}: each selected row updated once over {kills} kills"
    );
    one_run_succeeded(&pool, total).await
}

#[sqlx::test(migrations = false)]
async fn terminated_backends_during_a_reset_in_lanes_are_retried_and_update_each_row_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (seed, mut rng) = fault_rng();
    let (total, url) = counted_world(&pool, 12_000).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(&dir, "lanes-terminated", &reset_plan(50, 3));
    let plan = plan.to_str().unwrap_or_default();
    apply_terminating_backends(&pool, plan, &url, "reset", total, &mut rng, seed).await?;
    assert_eq!(
        not_updated_once(&pool).await?,
        (0, 0),
        "seed {seed}: each selected row updated once"
    );
    assert_eq!(checkpoint(&pool, "reset").await, total);
    one_run_succeeded(&pool, total).await?;
    succeeded_after_retries(&pool, seed).await
}
