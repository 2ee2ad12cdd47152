//! Named targets (`replay.toml`): URLs by environment variable, per-target defaults, and the
//! stricter gates of a production target.

use super::support::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sqlx::PgPool;

async fn world(pool: &PgPool) -> anyhow::Result<()> {
    failed_tenth(pool, 1_000).await
}

/// `replay` run in `dir` (where `replay.toml` is found), with the targets' URLs in the
/// environment and a `DATABASE_URL` that reaches nothing: a named target must win over it.
fn replay(dir: &Path, args: &[&str], staging: &str, production: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing")
        .env("REPLAY_TEST_STAGING_DB", staging)
        .env("REPLAY_TEST_PRODUCTION_DB", production)
        .env_remove("REPLAY_TARGET")
        .env_remove("REPLAY_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run replay")
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// A window that is open now and for the next two hours.
fn open_window() -> String {
    use chrono::Timelike;
    let h = chrono::Utc::now().hour();
    format!(
        "safety: {{ window: {{ between: \"{h:02}:00-{:02}:00\", timezone: UTC }} }}\n",
        (h + 2) % 24
    )
}

fn write_plan(path: &Path, safety: &str) -> anyhow::Result<()> {
    std::fs::write(
        path,
        format!(
            "version: 1\nname: targeted-reset\nreason: \"reset the failed events on a named target\"\nselect: {{ status: [error] }}\n{safety}steps:\n  - {{ id: reset, kind: reset }}\n"
        ),
    )?;
    Ok(())
}

async fn errors(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(pool)
            .await?,
    )
}

#[sqlx::test(migrations = false)]
async fn a_production_target_needs_its_name_a_window_and_a_rehearsal_from_staging(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool).await?;
    let production = database_url(&pool).await?;
    let staging_db = format!("replay_staging_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {staging_db}")))
        .execute(&pool)
        .await?;
    let staging = url_of(&staging_db)?;
    let result = async {
        let staging_pool = PgPool::connect(&staging).await?;
        world(&staging_pool).await?;
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("replay.toml"),
            "[targets.staging]\ndatabase_url_env = \"REPLAY_TEST_STAGING_DB\"\n\n\
             [targets.production]\ndatabase_url_env = \"REPLAY_TEST_PRODUCTION_DB\"\nproduction = true\n",
        )?;
        let (bare, windowed, proof) = (
            dir.path().join("bare.yaml"),
            dir.path().join("windowed.yaml"),
            dir.path().join("staging.json"),
        );
        write_plan(&bare, "")?;
        write_plan(&windowed, &open_window())?;
        let run = |args: &[&str]| replay(dir.path(), args, &staging, &production);
        let (staging_errors, production_errors) = (errors(&staging_pool).await?, errors(&pool).await?);
        assert!(staging_errors > 0 && production_errors > 0);

        // `--yes` alone does not reach production.
        let out = run(&["apply", "bare.yaml", "--target", "production", "--yes"]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(
            text(&out).contains("target `production` is production: `--yes` needs `--confirm-target production` as well"),
            "{}",
            text(&out)
        );
        // A bare URL that reaches production is production: a leftover `DATABASE_URL` gets no
        // shortcut around its gates.
        let out = run(&["apply", "bare.yaml", "--yes", "--database-url", &production]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(text(&out).contains("is target `production` of"), "{}", text(&out));
        assert!(text(&out).contains("needs `--confirm-target production`"), "{}", text(&out));
        // Nor does `replay join`, which asks nobody.
        let some_run = uuid::Uuid::new_v4().to_string();
        let out = run(&["join", &some_run, "--target", "production"]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(
            text(&out).contains("`replay join` needs `--confirm-target production`"),
            "{}",
            text(&out)
        );
        // Its window and rehearsal gates cannot be overridden.
        let out = run(&[
            "apply", "bare.yaml", "--target", "production", "--yes", "--confirm-target",
            "production", "--override", "window", "--because", "the window is too narrow today",
        ]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(text(&out).contains("its `window` gate cannot be overridden"), "{}", text(&out));
        // A plan without a window, and without a rehearsal, is refused there, naming both gates.
        let production_yes = ["--target", "production", "--yes", "--confirm-target", "production"];
        let out = run(&[&["apply", "bare.yaml"][..], &production_yes].concat());
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(text(&out).contains("production target: no staging rehearsal"), "{}", text(&out));
        assert!(
            text(&out).contains("production target: the plan names no `safety.window`"),
            "{}",
            text(&out)
        );
        let out = run(&[&["apply", "windowed.yaml"][..], &production_yes].concat());
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(text(&out).contains("safety gate `rehearsal`"), "{}", text(&out));

        // The rehearsal on staging: its proof carries the target's name.
        let out = run(&[
            "apply", "windowed.yaml", "--target", "staging", "--dry-run", "--out", "staging.json",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let pinned: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&proof)?)?;
        assert_eq!(pinned["target_name"], "staging");
        // It pins nothing on production: a pin of another target is refused, naming both.
        let out = run(&[&["apply", "windowed.yaml", "--pinned", "staging.json"][..], &production_yes].concat());
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(
            text(&out).contains("the plan was pinned on target `staging` (")
                && text(&out).contains("and this is target `production` ("),
            "{}",
            text(&out)
        );
        // A proof speaks of exactly the plan that was rehearsed.
        let changed = dir.path().join("changed.yaml");
        std::fs::write(
            &changed,
            std::fs::read_to_string(&windowed)?.replace("on a named target", "on a named target, changed after review"),
        )?;
        let out = run(&[&["apply", "changed.yaml", "--rehearsal", "staging.json"][..], &production_yes].concat());
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(
            text(&out).contains("this is not the plan that was rehearsed in `staging.json`"),
            "{}",
            text(&out)
        );
        // As a rehearsal proof it lets the run through, on production only.
        let out = run(&[&["apply", "windowed.yaml", "--rehearsal", "staging.json"][..], &production_yes].concat());
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("  target: production"), "{}", text(&out));
        assert!(text(&out).contains("gate rehearsal: pass (rehearsed on `staging`"), "{}", text(&out));
        assert_eq!(errors(&pool).await?, 0);
        assert_eq!(errors(&staging_pool).await?, staging_errors);
        let audited: serde_json::Value = sqlx::query_scalar(
            "SELECT details::jsonb FROM audit_log WHERE action = 'event_replay' ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await?;
        assert_eq!(audited["target"], "production");
        staging_pool.close().await;
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

#[sqlx::test(migrations = false)]
async fn a_target_gives_its_defaults_and_refuses_what_it_cannot_resolve(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    sqlx::query("ALTER TABLE processed_events RENAME TO events_of_this_target")
        .execute(&pool)
        .await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("replay.toml"),
        "[targets.renamed]\ndatabase_url_env = \"REPLAY_TEST_PRODUCTION_DB\"\nevents_table = \"events_of_this_target\"\n\n\
         [targets.unset]\ndatabase_url_env = \"REPLAY_TEST_NOT_SET_ANYWHERE\"\n",
    )?;
    write_plan(&dir.path().join("plan.yaml"), "")?;
    let run = |args: &[&str]| replay(dir.path(), args, "", &url);

    // The plan names no events table: the target's default is used.
    let out = run(&["apply", "plan.yaml", "--target", "renamed", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events_of_this_target WHERE status = 'error'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(left, 0);
    // `replay status --target` reaches the same database.
    let out = run(&["status", "--target", "renamed"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("(target `renamed`)"), "{}", text(&out));
    assert!(
        text(&out).contains("targeted-reset  succeeded"),
        "{}",
        text(&out)
    );

    // `replay doctor --target` checks the target's own events table.
    let out = run(&["doctor", "plan.yaml", "--target", "renamed"]);
    assert!(
        text(&out).contains("events_of_this_target"),
        "{}",
        text(&out)
    );
    // Without plans too; and a target that names no broker has none to check.
    let out = run(&["doctor", "--target", "renamed"]);
    assert!(
        text(&out).contains("events_of_this_target"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("this target names no broker"),
        "{}",
        text(&out)
    );
    for (args, says) in [
        (&["status", "--target", "unset"][..], "target `unset` in `"),
        (
            &["status", "--target", "unset"][..],
            "`REPLAY_TEST_NOT_SET_ANYWHERE` is not set",
        ),
        (
            &["audit", "--target", "nosuch"][..],
            "has no target `nosuch`; its targets: `renamed`, `unset`",
        ),
        (
            &["apply", "plan.yaml", "--target", "nosuch", "--yes"][..],
            "has no target `nosuch`",
        ),
    ] {
        let out = run(args);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    // Without a `replay.toml` anywhere up the tree, `--target` says where it looked.
    let empty = tempfile::tempdir()?;
    let out = replay(empty.path(), &["status", "--target", "renamed"], "", &url);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("needs a `replay.toml`"),
        "{}",
        text(&out)
    );
    Ok(())
}
