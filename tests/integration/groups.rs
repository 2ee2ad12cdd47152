//! Failure groups: `inspect --group-by error`, a plan for exactly one group, and the groups of a
//! run's events that failed again.

use super::support::*;
use std::process::{Command, Output, Stdio};

use sqlx::PgPool;

fn replay(args: &[&str], url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .args(["--database-url", url])
        .stdin(Stdio::null())
        .output()
        .expect("run replay")
}

fn text(out: &Output) -> String {
    output_text(out)
}

async fn world(pool: &PgPool) -> anyhow::Result<i64> {
    failed_tenth(pool, 600).await?;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(pool)
            .await?,
    )
}

/// Three families of messages, each with its own numbers, UUIDs and quoted names.
async fn three_families(pool: &PgPool) -> anyhow::Result<[i64; 3]> {
    sqlx::query(
        "UPDATE processed_events p SET error_message = CASE s.n % 3 \
           WHEN 0 THEN 'user ' || s.n || ' not found' \
           WHEN 1 THEN 'contribution ' || gen_random_uuid() || ' rejected: amount ' || (s.n * 1.5) || ' over limit' \
           ELSE 'duplicate key value violates unique constraint \"allocations_' || s.n || '_pkey\"' END \
         FROM (SELECT event_id, row_number() OVER (ORDER BY event_id) AS n FROM processed_events WHERE status = 'error') s \
         WHERE p.event_id = s.event_id",
    )
    .execute(pool)
    .await?;
    let mut counts = [0; 3];
    for (i, pattern) in ["user %", "contribution %", "duplicate key %"]
        .iter()
        .enumerate()
    {
        counts[i] = sqlx::query_scalar(
            "SELECT count(*) FROM processed_events WHERE status = 'error' AND error_message LIKE $1",
        )
        .bind(pattern)
        .fetch_one(pool)
        .await?;
    }
    Ok(counts)
}

#[sqlx::test(migrations = false)]
async fn three_error_families_give_three_groups_and_a_plan_for_one(
    pool: PgPool,
) -> anyhow::Result<()> {
    let failed = world(&pool).await?;
    let counts = three_families(&pool).await?;
    assert_eq!(counts.iter().sum::<i64>(), failed);
    let url = database_url(&pool).await?;

    let out = replay(
        &[
            "inspect",
            "--status",
            "error",
            "--group-by",
            "error",
            "--format",
            "json",
        ],
        &url,
    );
    assert!(out.status.success(), "{}", text(&out));
    let found: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let groups = found["groups"].as_array().cloned().unwrap_or_default();
    let mut prints: Vec<(String, i64)> = groups
        .iter()
        .map(|g| {
            (
                g["fingerprint"].as_str().unwrap_or_default().to_string(),
                g["count"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    prints.sort();
    assert_eq!(
        prints,
        [
            (
                "contribution <uuid> rejected: amount <n> over limit".to_string(),
                counts[1]
            ),
            (
                "duplicate key value violates unique constraint \"…\"".to_string(),
                counts[2]
            ),
            ("user <n> not found".to_string(), counts[0]),
        ]
    );
    assert!(
        groups
            .iter()
            .all(|g| g["event_types"].as_array().is_some_and(|t| !t.is_empty()))
    );
    let keys: Vec<i64> = groups
        .iter()
        .map(|g| g["key"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(keys, [1, 2, 3]);

    // A plan for exactly group 2: it selects that group's events, and only them.
    let dir = tempfile::tempdir()?;
    let plan = dir.path().join("group.yaml");
    let plan_s = plan.to_str().unwrap_or_default();
    let out = replay(
        &[
            "inspect",
            "--status",
            "error",
            "--group-by",
            "error",
            "--group",
            "2",
            "--emit-plan",
            plan_s,
        ],
        &url,
    );
    assert!(out.status.success(), "{}", text(&out));
    let second = &groups[1];
    let text_plan = std::fs::read_to_string(&plan)?.replace(
        "TODO: describe the incident and the fix before applying this plan",
        "replay exactly one failure group",
    );
    std::fs::write(&plan, &text_plan)?;
    let out = replay(&["apply", plan_s, "--dry-run", "--format", "json"], &url);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["selected"], second["count"]);
    // There is no group 4: nothing is written.
    let none = dir.path().join("none.yaml");
    let out = replay(
        &[
            "inspect",
            "--status",
            "error",
            "--group-by",
            "error",
            "--group",
            "4",
            "--emit-plan",
            none.to_str().unwrap_or_default(),
        ],
        &url,
    );
    assert!(!none.exists());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("there is no group 4; the matching events form 3 group(s)"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_run_names_the_groups_of_its_events_that_failed_again(
    pool: PgPool,
) -> anyhow::Result<()> {
    let failed = world(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = dir.path().join("plan.yaml");
    // The "fix" does not hold: every event fails again, in two families of messages.
    std::fs::write(
        &plan,
        "version: 1\nname: fails-again\nreason: \"a fix that does not hold\"\nselect: { status: [error] }\nsteps:\n  \
         - { id: reset, kind: reset }\n  \
         - id: fail-again\n    kind: sql\n    sql: \"UPDATE processed_events SET status = 'error', error_message = CASE WHEN md5(event_id) < '8' THEN 'user ' || length(event_id) || ' not found' ELSE 'timeout after ' || length(payload::text) || 's' END WHERE event_id = ANY(:selected_event_ids)\"\n\
         verify:\n  - name: none failing\n    sql: \"SELECT count(*) FROM processed_events WHERE event_id = ANY(:selected_event_ids) AND status = 'error'\"\n    expect: { equals: 0 }\n",
    )?;
    let out = replay(
        &[
            "apply",
            plan.to_str().unwrap_or_default(),
            "--yes",
            "--format",
            "json",
        ],
        &url,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["failing"]["total"], failed);
    let groups = report["failing"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut prints: Vec<&str> = groups
        .iter()
        .map(|g| g["fingerprint"].as_str().unwrap_or_default())
        .collect();
    prints.sort();
    assert_eq!(prints, ["timeout after <n>s", "user <n> not found"]);
    let total: i64 = groups
        .iter()
        .map(|g| g["count"].as_i64().unwrap_or_default())
        .sum();
    assert_eq!(total, failed);
    // Resumed, the failed run looks again and says the same in text.
    let out = replay(&["apply", plan.to_str().unwrap_or_default(), "--yes"], &url);
    assert!(
        text(&out).contains("failed again in 2 group(s) of error message"),
        "{}",
        text(&out)
    );
    Ok(())
}
