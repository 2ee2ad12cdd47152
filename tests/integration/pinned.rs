//! Pinned plans (Terraform-style saved plans) and the staging rehearsal they carry.

use super::support::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sqlx::PgPool;

use super::pty::Pty;

async fn world(pool: &PgPool) -> anyhow::Result<()> {
    failed_tenth(pool, 1_000).await
}

fn replay(args: &[&str], url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .output()
        .expect("run replay")
}

fn write_plan(path: &Path, reason: &str, safety: &str) -> anyhow::Result<()> {
    std::fs::write(
        path,
        format!(
            "version: 1\nname: pinned-reset\nreason: \"{reason}\"\nselect: {{ status: [error] }}\n{safety}steps:\n  - {{ id: reset, kind: reset }}\n"
        ),
    )?;
    Ok(())
}

fn text(out: &Output) -> String {
    output_text(out)
}

#[sqlx::test(migrations = false)]
async fn a_pinned_plan_refuses_when_the_plan_or_the_selection_changed(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let (plan, pin) = (
        dir.path().join("plan.yaml"),
        dir.path().join("plan.pinned.json"),
    );
    let (plan_s, pin_s) = (
        plan.to_str().unwrap_or_default(),
        pin.to_str().unwrap_or_default(),
    );
    write_plan(&plan, "reviewed in PR 17: reset the failures", "")?;
    let out = replay(&["apply", plan_s, "--dry-run", "--out", pin_s], &url);
    assert!(out.status.success(), "{}", text(&out));

    // The plan file changes after review: given beside the pin, it is refused with its lines.
    write_plan(&plan, "edited after the review was approved", "")?;
    let out = replay(&["apply", plan_s, "--pinned", pin_s, "--yes"], &url);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("is not the plan that was pinned")
            && text(&out).contains("- reason: \"reviewed in PR 17: reset the failures\"")
            && text(&out).contains("+ reason: \"edited after the review was approved\""),
        "{}",
        text(&out)
    );

    // The selection drifts: one more event fails, and the refusal names it.
    let gained: String = sqlx::query_scalar(
        "UPDATE processed_events SET status = 'error' WHERE id = (SELECT min(id) FROM processed_events WHERE status = 'processed') RETURNING event_id",
    )
    .fetch_one(&pool)
    .await?;
    let out = replay(&["apply", pin_s, "--yes"], &url);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "the selection drifted since the plan was pinned: 100 event(s) then, 101 now (+1/−0 events; gained: {gained})"
        )),
        "{}",
        text(&out)
    );

    // An explicit tolerance lets it through, and still says what differs; the pin runs the
    // text that was reviewed, not the edited file (the refused run is replaced, not resumed).
    let out = replay(&["apply", pin_s, "--yes", "--tolerance", "1"], &url);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("within `--tolerance 1`") && text(&out).contains(&gained),
        "{}",
        text(&out)
    );
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM replay.runs WHERE status = 'succeeded'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(reason, "reviewed in PR 17: reset the failures");
    Ok(())
}

/// A pin is the plan's text, its target's server and its instant: it runs from anywhere, known by
/// its content, selects at apply time what its dry-run selected even after a relative window
/// moved on, and refuses another server behind the same address.
#[sqlx::test(migrations = false)]
async fn a_pin_holds_its_text_its_server_and_its_instant(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    // One failed event 3 s inside a one-hour window: it ages out during this test.
    let edge: String = sqlx::query_scalar(
        "UPDATE processed_events SET status = 'error', processed_at = now() - interval '1 hour' + interval '3 seconds' \
         WHERE id = (SELECT min(id) FROM processed_events WHERE status = 'processed') RETURNING event_id",
    )
    .fetch_one(&pool)
    .await?;
    sqlx::query("UPDATE processed_events SET processed_at = now() - interval '10 minutes' WHERE status = 'error' AND event_id <> $1")
        .bind(&edge)
        .execute(&pool)
        .await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = dir.path().join("windowed.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: pinned-window\nreason: \"the last hour's failures\"\n\
         select: { status: [error], processed_within: 1h }\nsteps:\n  - { id: reset, kind: reset }\n",
    )?;
    // Known by its content: no `.json` needed.
    let pin = dir.path().join("reviewed.pin");
    let (plan_s, pin_s) = (
        plan.to_str().unwrap_or_default(),
        pin.to_str().unwrap_or_default(),
    );
    let out = replay(&["apply", plan_s, "--dry-run", "--out", pin_s], &url);
    assert!(out.status.success(), "{}", text(&out));
    let pinned: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&pin)?)?;
    assert_eq!(pinned["selected"], 101, "{pinned}");
    assert!(
        pinned["system_identifier"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{pinned}"
    );

    // Another server behind the same address (here: the pin says so) is refused.
    let mut other = pinned.clone();
    other["system_identifier"] = serde_json::json!("1");
    let elsewhere = dir.path().join("elsewhere.pin");
    std::fs::write(&elsewhere, other.to_string())?;
    let mut refused = Pty::replay(&["apply", elsewhere.to_str().unwrap_or_default()], &url)?;
    assert_eq!(refused.exit_code()?, 4, "{}", refused.screen());
    assert!(
        refused
            .screen()
            .contains("is another PostgreSQL server than the one the plan was pinned on")
            && !refused.screen().contains("to confirm"),
        "{}",
        refused.screen()
    );
    // And on a terminal, the pin applied to another database is refused before the question.
    let other_db = format!("pin_other_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{other_db}\""
    )))
    .execute(&pool)
    .await?;
    let other_url = url_of(&other_db)?;
    let mut refused = Pty::replay(&["apply", pin_s], &other_url)?;
    let code = refused.exit_code()?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{other_db}\"")))
        .execute(&pool)
        .await?;
    assert_eq!(code, 4, "{}", refused.screen());
    assert!(
        refused
            .screen()
            .contains("a pin holds a run only on its own target")
            && !refused.screen().contains("to confirm"),
        "{}",
        refused.screen()
    );

    // The edge event leaves the window (polled, not slept)...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let aged: bool = sqlx::query_scalar(
            "SELECT processed_at <= now() - interval '1 hour' FROM processed_events WHERE event_id = $1",
        )
        .bind(&edge)
        .fetch_one(&pool)
        .await?;
        if aged {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the event never aged out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let now = replay(&["apply", plan_s, "--dry-run"], &url);
    assert!(
        text(&now).contains("selected events: 100"),
        "a fresh dry-run no longer sees it: {}",
        text(&now)
    );
    // ...and the plan file goes away: the pin still runs what was reviewed, on those 101 events.
    std::fs::remove_file(&plan)?;
    let mut applied = Pty::replay(&["apply", pin_s], &url)?;
    let question = applied.wait_for("Type `pinned-window` to confirm")?;
    assert!(question.contains("events  101 selected now"), "{question}");
    applied.type_line("pinned-window")?;
    assert_eq!(applied.exit_code()?, 0, "{}", applied.screen());
    let reset: bool =
        sqlx::query_scalar("SELECT status = 'pending' FROM processed_events WHERE event_id = $1")
            .bind(&edge)
            .fetch_one(&pool)
            .await?;
    assert!(
        reset,
        "the pinned instant kept the edge event in the selection"
    );
    let selected: i64 = sqlx::query_scalar("SELECT selected_count FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    assert_eq!(selected, 101);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn production_apply_needs_the_staging_rehearsal(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let production = database_url(&pool).await?;
    // A staging database beside it, with its own world.
    let staging_db = format!("replay_staging_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {staging_db}")))
        .execute(&pool)
        .await?;
    let staging = url_of(&staging_db)?;
    let result = async {
        let staging_pool = PgPool::connect(&staging).await?;
        world(&staging_pool).await?;
        staging_pool.close().await;
        let dir = tempfile::tempdir()?;
        let (plan, proof) = (
            dir.path().join("plan.yaml"),
            dir.path().join("staging.json"),
        );
        let (plan_s, proof_s) = (
            plan.to_str().unwrap_or_default(),
            proof.to_str().unwrap_or_default(),
        );
        write_plan(
            &plan,
            "rehearsed on staging before production",
            "safety: { rehearsal: dry_run }\n",
        )?;

        let out = replay(&["apply", plan_s, "--yes"], &production);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(
            text(&out).contains("safety gate `rehearsal`: no staging rehearsal"),
            "{}",
            text(&out)
        );

        let out = replay(&["apply", plan_s, "--dry-run", "--out", proof_s], &staging);
        assert!(out.status.success(), "{}", text(&out));
        // A pin holds a run only on its own target: staging's file is no pin for production.
        let out = replay(
            &["apply", plan_s, "--yes", "--pinned", proof_s],
            &production,
        );
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        let staging_id = staging.rsplit_once('@').map_or("", |(_, t)| t).to_string();
        assert!(
            text(&out).contains(&format!("the plan was pinned on target `{staging_id}`")),
            "{}",
            text(&out)
        );
        let out = replay(
            &["apply", plan_s, "--yes", "--rehearsal", proof_s],
            &production,
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("gate rehearsal: pass (rehearsed on"),
            "{}",
            text(&out)
        );
        anyhow::Ok(())
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {staging_db} WITH (FORCE)"
    )))
    .execute(&pool)
    .await?;
    result
}
