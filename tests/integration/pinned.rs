//! Pinned plans (Terraform-style saved plans) and the staging rehearsal they carry.

use super::support::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sqlx::PgPool;

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

    // The plan file changes after review.
    write_plan(&plan, "edited after the review was approved", "")?;
    let out = replay(&["apply", pin_s, "--yes"], &url);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("the plan changed since it was pinned"),
        "{}",
        text(&out)
    );
    write_plan(&plan, "reviewed in PR 17: reset the failures", "")?;

    // The selection drifts: one more event fails.
    sqlx::query("UPDATE processed_events SET status = 'error' WHERE id = (SELECT min(id) FROM processed_events WHERE status = 'processed')")
        .execute(&pool)
        .await?;
    let out = replay(&["apply", pin_s, "--yes"], &url);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains(
            "the selection drifted since the plan was pinned: 100 event(s) then, 101 now"
        ),
        "{}",
        text(&out)
    );

    // An explicit tolerance lets it through; the refused run is not resumed but replaced.
    let out = replay(&["apply", pin_s, "--yes", "--tolerance", "1"], &url);
    assert!(out.status.success(), "{}", text(&out));
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
