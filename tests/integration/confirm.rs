//! The question before an apply writes anything, on a real terminal: what it shows, Ctrl-C and a
//! wrong answer there (nothing written), and a resume that asks again showing what is left.

use super::process::{plan_file, start};
use super::pty::Pty;
use super::support::{database_url, failed_tenth, fingerprint};

use std::time::{Duration, Instant};

use sqlx::PgPool;

/// The replay store's rows that an answer could have written.
async fn store_rows(pool: &PgPool) -> anyhow::Result<(i64, i64, Option<String>)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM replay.runs), (SELECT count(*) FROM replay.run_log), \
         (SELECT string_agg(coalesce(lease_owner, '-') || status, ',') FROM replay.runs)",
    )
    .fetch_one(pool)
    .await?)
}

#[sqlx::test(migrations = false)]
async fn ctrl_c_or_a_wrong_answer_at_the_question_writes_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    failed_tenth(&pool, 200).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "confirm-me",
        "select: { status: [error] }\nsteps:\n  - { id: reset, kind: reset }\n",
    );
    let plan = plan.to_str().unwrap_or_default();
    let before = fingerprint(&pool).await?;
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await?;

    let mut pty = Pty::replay(&["apply", plan], &url)?;
    let screen = pty.wait_for("Type `confirm-me` to confirm: ")?;
    for shown in [
        "About to apply plan `confirm-me`:",
        "(new)",
        &format!("/{db}"),
        "events  20 selected now",
        "steps   1. reset (reset)",
        "rate    500 events/s",
    ] {
        assert!(screen.contains(shown), "`{shown}` not shown:\n{screen}");
    }
    let asked = Instant::now();
    pty.ctrl_c()?;
    assert_eq!(pty.exit_code()?, 130, "{}", pty.screen());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "Ctrl-C took {:?} to end the apply",
        asked.elapsed()
    );
    assert!(
        pty.screen().contains("nothing was written"),
        "{}",
        pty.screen()
    );
    assert_eq!(fingerprint(&pool).await?, before, "Ctrl-C wrote something");

    let mut pty = Pty::replay(&["apply", plan], &url)?;
    pty.wait_for("Type `confirm-me` to confirm: ")?;
    pty.type_line("confirm")?;
    assert_eq!(pty.exit_code()?, 4, "{}", pty.screen());
    assert!(
        pty.screen().contains("not confirmed; nothing was written"),
        "{}",
        pty.screen()
    );
    assert_eq!(
        fingerprint(&pool).await?,
        before,
        "a wrong answer wrote something"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_resume_asks_again_showing_what_is_left(pool: PgPool) -> anyhow::Result<()> {
    failed_tenth(&pool, 300).await?;
    sqlx::query("CREATE TABLE go_on (ready boolean)")
        .execute(&pool)
        .await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "ask-again",
        "select: { status: [error] }\nsteps:\n  - { id: reset, kind: reset }\n  \
         - { id: hold, kind: wait, until: \"SELECT EXISTS (SELECT 1 FROM go_on)\", timeout: 10m }\n",
    );
    let plan = plan.to_str().unwrap_or_default();
    // The first attempt, confirmed with `--yes`, is killed while it waits.
    let mut first = start(&["apply", plan], &url);
    let started = Instant::now();
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM replay.run_log WHERE kind = 'step_started' AND step_id = 'hold')",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(false);
        if waiting {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60) && !first.finished(),
            "the first attempt never reached its wait"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill()?;
    let run: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let rows = store_rows(&pool).await?;
    let events = fingerprint(&pool).await?;

    let mut pty = Pty::replay(&["apply", plan], &url)?;
    let screen = pty.wait_for("Type `ask-again` to confirm: ")?;
    for shown in [
        format!("run     {run} (resumed: "),
        "events  30 frozen, 0 left".into(),
        "steps   1. reset (reset): done".into(),
        "2. hold (wait): not started".into(),
    ] {
        assert!(screen.contains(&shown), "`{shown}` not shown:\n{screen}");
    }
    pty.ctrl_c()?;
    assert_eq!(pty.exit_code()?, 130, "{}", pty.screen());
    assert_eq!(
        store_rows(&pool).await?,
        rows,
        "Ctrl-C at a resume wrote to the store"
    );
    assert_eq!(fingerprint(&pool).await?, events);

    sqlx::query("INSERT INTO go_on VALUES (true)")
        .execute(&pool)
        .await?;
    let mut pty = Pty::replay(&["apply", plan], &url)?;
    pty.wait_for("Type `ask-again` to confirm: ")?;
    pty.type_line("ask-again")?;
    assert_eq!(pty.exit_code()?, 0, "{}", pty.screen());
    let (status, typed): (String, i64) = sqlx::query_as(
        "SELECT status, (SELECT count(*) FROM replay.run_log WHERE run_id = $1 AND kind = 'confirmed' \
         AND detail ->> 'typed' = 'true') FROM replay.runs WHERE id = $1",
    )
    .bind(run)
    .fetch_one(&pool)
    .await?;
    assert_eq!(status, "succeeded");
    assert_eq!(typed, 1, "the resume was confirmed at the terminal");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_gate_that_refuses_at_the_count_refuses_before_the_question(
    pool: PgPool,
) -> anyhow::Result<()> {
    failed_tenth(&pool, 100).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // An id with a typo: nothing is selected.
    let plan = plan_file(
        &dir,
        "typo",
        &format!(
            "select: {{ event_ids: [\"{}\"] }}\nsteps:\n  - {{ id: reset, kind: reset }}\n",
            uuid::Uuid::new_v4()
        ),
    );
    let before = fingerprint(&pool).await?;
    let mut pty = Pty::replay(&["apply", plan.to_str().unwrap_or_default()], &url)?;
    assert_eq!(pty.exit_code()?, 4, "{}", pty.screen());
    let screen = pty.screen();
    assert!(!screen.contains("to confirm"), "asked anyway:\n{screen}");
    assert!(
        screen.contains("safety gate `empty`: no event selected")
            && screen.contains("nothing was written"),
        "{screen}"
    );
    assert_eq!(fingerprint(&pool).await?, before);
    let store: bool = sqlx::query_scalar("SELECT to_regclass('replay.runs') IS NOT NULL")
        .fetch_one(&pool)
        .await?;
    assert!(!store, "the refusal set up the replay store");
    Ok(())
}
