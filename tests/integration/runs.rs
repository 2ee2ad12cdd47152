//! Runs named on the command line: a prefix of the id is enough, an unknown or ambiguous one is
//! refused the same way by every command, and `stop` takes the plans' durations.

use super::process::{assert_exit, plan_file, run};
use super::support::{database_url, failed_tenth};

use sqlx::PgPool;

/// A run row made by hand with the given id (the commands only read it).
async fn fake_run(pool: &PgPool, id: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO replay.runs (id, plan_name, plan_hash, params_hash, params, plan_document, operator, reason, status) \
         VALUES ($1::uuid, 'fake', 'h', 'p', '{}', '{}', 'test', 'a run made by hand', 'succeeded')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[sqlx::test(migrations = false)]
async fn a_run_is_named_by_a_prefix_and_an_unknown_or_ambiguous_one_is_refused(
    pool: PgPool,
) -> anyhow::Result<()> {
    failed_tenth(&pool, 100).await?;
    let url = database_url(&pool).await?;
    // Before anything ran, there is no run to name.
    let out = run(&["status", "abcdef"], &url);
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("no run `abcdef`"), "{}", stderr(&out));
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "named-runs",
        "select: { status: [error] }\nsteps:\n  - { id: reset, kind: reset }\n",
    );
    assert_exit(&run(&["apply", plan.to_str().unwrap_or_default()], &url), 0);
    let real: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    fake_run(&pool, "abcdef01-0000-4000-8000-000000000001").await?;
    fake_run(&pool, "abcdef02-0000-4000-8000-000000000002").await?;

    // A prefix of 8 characters names the real run.
    let prefix = &real.to_string()[..8];
    let out = run(&["status", prefix], &url);
    assert_exit(&out, 0);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&real.to_string()) && !shown.contains("abcdef01"),
        "{shown}"
    );
    // A prefix two runs share lists both and names neither.
    for command in [
        vec!["status", "abcdef"],
        vec!["stop", "abcdef"],
        vec!["rollback", "abcdef"],
        vec!["join", "abcdef"],
    ] {
        let out = run(&command, &url);
        assert_exit(&out, 4);
        let text = stderr(&out);
        assert!(
            text.contains("`abcdef` names 2 runs; give more of the id:")
                && text.contains("abcdef01-0000-4000-8000-000000000001")
                && text.contains("abcdef02-0000-4000-8000-000000000002"),
            "{command:?}: {text}"
        );
    }
    // An unknown run: the same refusal from every command.
    for command in [
        vec!["status", "fedcba98"],
        vec!["stop", "fedcba98"],
        vec!["rollback", "fedcba98"],
        vec!["join", "fedcba98"],
        vec!["inspect", "--run", "fedcba98"],
    ] {
        let out = run(&command, &url);
        assert_exit(&out, 4);
        assert!(
            stderr(&out).contains("no run `fedcba98`"),
            "{command:?}: {}",
            stderr(&out)
        );
    }
    // Too short to be a prefix, and a timeout without its unit: bad arguments.
    assert_exit(&run(&["status", "abcde"], &url), 2);
    let out = run(&["stop", prefix, "--timeout", "30"], &url);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("needs a unit"), "{}", stderr(&out));
    Ok(())
}
