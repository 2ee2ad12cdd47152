//! `canary:` the first events go through every step and verification before the rest; a trigger
//! records every status change of the events table, so "untouched" is proven row by row.

use super::faults::until;
use super::process::*;
use super::support::{database_url, logged, record_status_changes};
use std::collections::BTreeMap;

use sqlx::PgPool;

/// How many times each event's status changed.
async fn changes_per_event(pool: &PgPool) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, count(*) FROM status_changes GROUP BY event_id")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The failed events in the order a run's selection freezes them (oldest first).
async fn failed_in_selection_order(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT event_id FROM processed_events WHERE status = 'error' \
         ORDER BY processed_at NULLS FIRST, event_id",
    )
    .fetch_all(pool)
    .await?)
}

async fn rows(pool: &PgPool) -> anyhow::Result<Vec<(String, String, i32, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT event_id, status, retry_count, error_message FROM processed_events ORDER BY event_id",
    )
    .fetch_all(pool)
    .await?)
}

/// A plan whose second step decides what the "fix" does to each event: `then` is SQL run on
/// the events it resets.
fn plan(dir: &tempfile::TempDir, name: &str, then: &str, extra: &str) -> std::path::PathBuf {
    plan_file(
        dir,
        name,
        &format!(
            "select: {{ status: [error] }}\n\
             canary: {{ events: 10 }}\n\
             backup:\n  tables:\n    - table: processed_events\n\
             {extra}\
             steps:\n  - {{ id: reset, kind: reset }}\n  \
             - id: process\n    kind: sql\n    each: batch\n    sql: \"{then}\"\n\
             verify:\n  - name: none failing\n    \
             sql: \"SELECT count(*) FROM processed_events WHERE event_id = ANY(:selected_event_ids) AND status = 'error'\"\n    \
             expect: {{ equals: 0 }}\n\
             rollback:\n  - kind: restore_backup\n    tables: [processed_events]\n"
        ),
    )
}

/// The fix holds: the worker processes what was reset.
const PROCESSED: &str = "UPDATE processed_events SET status = 'processed', error_message = NULL \
     WHERE event_id = ANY(:batch_event_ids) AND status = 'pending'";

#[sqlx::test(migrations = false)]
async fn a_failing_canary_leaves_the_rest_untouched(pool: PgPool) -> anyhow::Result<()> {
    let failed = world(&pool, 400).await?;
    assert!(failed > 10);
    record_status_changes(&pool).await?;
    let order = failed_in_selection_order(&pool).await?;
    let before = rows(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // The fix does not hold: every event it resets fails again.
    let plan = plan(
        &dir,
        "canary-fails",
        "UPDATE processed_events SET status = 'error', error_message = 'still broken' \
         WHERE event_id = ANY(:batch_event_ids)",
        "",
    );
    let out = run(
        &[
            "apply",
            plan.to_str().unwrap_or_default(),
            "--format",
            "json",
        ],
        &url,
    );
    assert_exit(&out, 3);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "rolled_back");
    assert_eq!(report["canary"]["events"], 10);
    assert_eq!(report["canary"]["passed"], false);
    assert_eq!(report["canary"]["verifications"][0]["actual"], 10);
    assert_eq!(report["canary"]["steps"][0]["touched"], 10);
    // Only the canary's ten events ever changed status (and changed back).
    let changed = changes_per_event(&pool).await?;
    let canary: Vec<&String> = order.iter().take(10).collect();
    assert_eq!(changed.keys().collect::<Vec<_>>(), {
        let mut c = canary.clone();
        c.sort();
        c
    });
    // The rollback put the canary's rows back; nothing else was written.
    assert_eq!(rows(&pool).await?, before);
    // The rest of the selection was never reached: no batch of the plan's own steps exists.
    let main_batches: i64 =
        sqlx::query_scalar("SELECT count(*) FROM replay.batches WHERE step_id NOT LIKE 'canary/%'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(main_batches, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the canary failed: 1 verification(s) failed on its 10 event(s); the rollback undid the canary's changes, and the other {} selected event(s) were not touched",
            failed - 10
        )),
        "{stderr}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_passing_canary_goes_on_to_the_rest(pool: PgPool) -> anyhow::Result<()> {
    let failed = world(&pool, 400).await?;
    record_status_changes(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(&dir, "canary-passes", PROCESSED, "");
    // The dry-run names the canary's events: the first ten of the selection.
    let order = failed_in_selection_order(&pool).await?;
    let out = run(
        &[
            "apply",
            plan.to_str().unwrap_or_default(),
            "--dry-run",
            "--format",
            "json",
        ],
        &url,
    );
    assert_exit(&out, 0);
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(dry["canary"]["events"], 10);
    assert_eq!(dry["canary"]["event_ids"], serde_json::json!(order[..10]));
    let out = run(
        &[
            "apply",
            plan.to_str().unwrap_or_default(),
            "--dry-run",
            "--format",
            "markdown",
        ],
        &url,
    );
    let markdown = String::from_utf8_lossy(&out.stdout);
    assert!(
        markdown.contains(&format!("### Canary\n\nThe first 10 events: every step and verification runs on these events first; the rest runs only if they pass.\n\nEvents: `{}`", order[0])),
        "{markdown}"
    );
    let out = run(
        &[
            "apply",
            plan.to_str().unwrap_or_default(),
            "--format",
            "json",
        ],
        &url,
    );
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["canary"]["passed"], true);
    assert_eq!(report["canary"]["verifications"][0]["actual"], 0);
    // The canary's steps took its ten events; the plan's steps, the rest.
    assert_eq!(report["canary"]["steps"][0]["touched"], 10);
    assert_eq!(report["steps"][0]["touched"], failed - 10);
    assert_eq!(report["verifications"][0]["actual"], 0);
    // Each event went through each step once: error -> pending -> processed.
    let changed = changes_per_event(&pool).await?;
    assert_eq!(changed.len() as i64, failed);
    assert!(changed.values().all(|&n| n == 2), "{changed:?}");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_resume_after_the_canary_does_not_run_it_again(pool: PgPool) -> anyhow::Result<()> {
    let failed = world(&pool, 400).await?;
    record_status_changes(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // Slow enough after the canary to be killed in the middle of the rest.
    let plan = plan(
        &dir,
        "canary-resumes",
        PROCESSED,
        "rate_limit: { per_second: 40, batch_size: 10 }\n",
    );
    let path = plan.to_str().unwrap_or_default();
    let mut child = start(&["apply", path], &url);
    until("the canary to pass", || async {
        logged(&pool, "canary_passed", None).await
    })
    .await?;
    child.kill()?;
    let done_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM status_changes WHERE new = 'processed'")
            .fetch_one(&pool)
            .await?;
    assert!(
        done_before < failed,
        "killed before the rest was done ({done_before} of {failed})"
    );
    let out = run(&["apply", path, "--format", "json"], &url);
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["resumed"], true);
    assert_eq!(report["canary"]["passed"], true);
    // The canary is reported from the run's log, not run again.
    assert!(
        report["canary"]["steps"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let changed = changes_per_event(&pool).await?;
    assert_eq!(changed.len() as i64, failed);
    assert!(
        changed.values().all(|&n| n == 2),
        "an event was reset twice: {changed:?}"
    );
    let canary_steps_started: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM replay.run_log WHERE kind = 'step_started' AND step_id LIKE 'canary/%'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(canary_steps_started, 2, "each canary step started once");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_run_stopped_during_its_canary_rolls_back_only_the_canarys_events(
    pool: PgPool,
) -> anyhow::Result<()> {
    let failed = world(&pool, 400).await?;
    let order = failed_in_selection_order(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // The canary waits a long while before it is judged: stopped there, its steps are done and
    // the rest untouched.
    let plan = plan_file(
        &dir,
        "canary-stopped",
        &format!(
            "select: {{ status: [error] }}\n\
             canary: {{ events: 10, pause: 1h }}\n\
             steps:\n  - id: process\n    kind: sql\n    each: batch\n    sql: \"{PROCESSED_ALL}\"\n\
             verify:\n  - name: none failing\n    \
             sql: \"SELECT count(*) FROM processed_events WHERE event_id = ANY(:selected_event_ids) AND status = 'error'\"\n    \
             expect: {{ equals: 0 }}\n\
             rollback:\n  - kind: sql\n    \
             sql: \"UPDATE processed_events SET status = 'error', error_message = 'undone' WHERE event_id = ANY(:selected_event_ids)\"\n"
        ),
    );
    let path = plan.to_str().unwrap_or_default();
    let child = start(&["apply", path], &url);
    until("the canary's steps to finish", || async {
        logged(&pool, "step_finished", Some("canary/process")).await
    })
    .await?;
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_exit(&run(&["stop", &run_id.to_string()], &url), 0);
    assert_exit(&child.wait_with_output()?, 130);
    let out = run(&["rollback", &run_id.to_string()], &url);
    assert_exit(&out, 0);
    // Only the canary's events were processed, and only they are undone.
    let undone: Vec<String> = sqlx::query_scalar(
        "SELECT event_id FROM processed_events WHERE error_message = 'undone' ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await?;
    let mut canary: Vec<String> = order[..10].to_vec();
    canary.sort();
    assert_eq!(undone, canary);
    let still_failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(still_failed, failed);
    Ok(())
}

/// The fix holds for every selected event (no reset step before it).
const PROCESSED_ALL: &str = "UPDATE processed_events SET status = 'processed', error_message = NULL \
     WHERE event_id = ANY(:batch_event_ids)";

#[sqlx::test(migrations = false)]
async fn a_canary_publishes_its_events_and_runs_once_steps_for_it_then_for_the_rest(
    pool: PgPool,
) -> anyhow::Result<()> {
    let failed = world(&pool, 300).await?;
    let order = failed_in_selection_order(&pool).await?;
    let exchange = format!("test-canary-{}", uuid::Uuid::new_v4().simple());
    let _conn = bound_queue(&exchange).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "canary-publishes",
        &format!(
            "select: {{ status: [error] }}\n\
             canary: {{ events: 10 }}\n\
             target: {{ exchange: {exchange} }}\n\
             steps:\n  - {{ id: reset, kind: reset }}\n  \
             - {{ id: republish, kind: publish }}\n  \
             - {{ id: announce, kind: publish, each: once, routing_key: replay.announced, payload: \"{{{{ run.id }}}}\" }}\n  \
             - id: mark\n    kind: sql\n    \
             sql: \"UPDATE processed_events SET retry_count = retry_count + 1 WHERE event_id = ANY(:selected_event_ids)\"\n  \
             - id: process\n    kind: sql\n    each: batch\n    sql: \"{PROCESSED}\"\n  \
             - id: settled\n    kind: wait\n    timeout: 1m\n    poll_interval: 100ms\n    \
             until: \"SELECT count(*) = 0 FROM processed_events WHERE event_id = ANY(:selected_event_ids) AND status <> 'processed'\"\n\
             verify:\n  - name: none failing\n    \
             sql: \"SELECT count(*) FROM processed_events WHERE event_id = ANY(:selected_event_ids) AND status = 'error'\"\n    \
             expect: {{ equals: 0 }}\n"
        ),
    );
    let path = plan.to_str().unwrap_or_default();
    // The dry-run rehearses the canary's steps as the run records them.
    let out = run(&["apply", path, "--dry-run", "--format", "json"], &url);
    assert_exit(&out, 0);
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rehearsed: Vec<&str> = dry["canary"]["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        rehearsed,
        [
            "canary/reset",
            "canary/republish",
            "canary/announce",
            "canary/mark",
            "canary/process",
            "canary/settled"
        ]
    );
    let out = run(&["apply", path, "--format", "json"], &url);
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["canary"]["passed"], true);
    let touched = |steps: &serde_json::Value, i: usize| steps[i]["touched"].as_i64();
    let (canary, rest) = (&report["canary"]["steps"], &report["steps"]);
    // Each step of the canary took its ten events; each of the plan's, the rest; the
    // once-steps ran once for each.
    for i in [0, 1, 3, 4] {
        assert_eq!(touched(canary, i), Some(10), "canary step {i}");
        assert_eq!(touched(rest, i), Some(failed - 10), "step {i}");
    }
    assert_eq!(touched(canary, 2), Some(1));
    assert_eq!(touched(rest, 2), Some(1));
    // The once-step `mark` counted each selected event once (after its reset): the canary's
    // in the canary, the rest after it.
    let marked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE event_id = ANY($1) AND retry_count = 1 AND status = 'processed'",
    )
    .bind(&order)
    .fetch_one(&pool)
    .await?;
    assert_eq!(marked, failed);
    // Every event published once, the canary's first; the announcement once for each part.
    let ids = drain_ids(&exchange, failed as usize + 2).await?;
    let events: Vec<&String> = ids.iter().filter(|id| !id.contains(':')).collect();
    assert_eq!(events.len() as i64, failed);
    let distinct: std::collections::BTreeSet<&&String> = events.iter().collect();
    assert_eq!(distinct.len() as i64, failed);
    let first: std::collections::BTreeSet<&String> = events.iter().take(10).copied().collect();
    assert_eq!(first, order[..10].iter().collect());
    let announced: Vec<&String> = ids.iter().filter(|id| id.contains(':')).collect();
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert!(announced[0].ends_with(":canary/announce"), "{announced:?}");
    assert!(announced[1].ends_with(":announce"), "{announced:?}");
    Ok(())
}
