//! `replay rollback RUN` shows what it would restore and keep before it writes: `--dry-run`
//! previews and writes nothing, refused exactly as the rollback is; without `--yes` the person at
//! the terminal confirms after the preview (Ctrl-C or a wrong answer: nothing written); without a
//! terminal `--yes` is required.

use super::process::{assert_exit, assert_success, plan_file, replay, run, world};
use super::pty::Pty;
use super::support::database_url;

use std::process::{Command, Output, Stdio};

use sqlx::PgPool;

/// A plan whose rollback restores the backup of the rows its reset changed.
const REVERSIBLE: &str = "select: { status: [error] }\nbackup: { tables: [{ table: processed_events }] }\n\
    steps:\n  - { id: reset, kind: reset }\nrollback:\n  - { kind: restore_backup, tables: [processed_events] }\n";

/// A run of `REVERSIBLE` named `name` over 2,400 events (about half of them reset), after which
/// someone else changed one of its rows; the run, that row's event id, the rows the run reset.
struct Undoable {
    run: String,
    touched: String,
    selected: i64,
    url: String,
}

async fn undoable(pool: &PgPool, dir: &tempfile::TempDir, name: &str) -> anyhow::Result<Undoable> {
    world(pool, 2_400).await?;
    let url = database_url(pool).await?;
    let plan = plan_file(dir, name, REVERSIBLE);
    assert_success(&run(&["apply", plan.to_str().unwrap_or_default()], &url));
    let (run_id, selected): (uuid::Uuid, i64) = sqlx::query_as(
        "SELECT r.id, (SELECT count(*) FROM replay.selection s WHERE s.run_id = r.id) \
         FROM replay.runs r WHERE r.plan_name = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await?;
    // The worker (or an operator) touches one of the reset rows after the run.
    let touched: String = sqlx::query_scalar(
        "UPDATE processed_events SET status = 'processed', error_message = 'later' \
         WHERE id = (SELECT min(e.id) FROM processed_events e JOIN replay.selection s \
                     ON s.event_id = e.event_id AND s.run_id = $1) RETURNING event_id",
    )
    .bind(run_id)
    .fetch_one(pool)
    .await?;
    Ok(Undoable {
        run: run_id.to_string(),
        touched,
        selected,
        url,
    })
}

/// A checksum of every table of the target and of the `replay` store (runs with their status and
/// lease, run log, backups, selections): anything a rollback writes changes one of them.
async fn everything(pool: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
         WHERE schemaname IN ('public', 'replay') ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for t in tables {
        let sum: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT md5(count(*) || ':' || coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {t} t"
        )))
        .fetch_one(pool)
        .await?;
        out.push((t, sum.unwrap_or_default()));
    }
    Ok(out)
}

async fn run_status(pool: &PgPool, run: &str) -> anyhow::Result<String> {
    Ok(
        sqlx::query_scalar("SELECT status FROM replay.runs WHERE id = $1::uuid")
            .bind(run)
            .fetch_one(pool)
            .await?,
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> anyhow::Result<serde_json::Value> {
    serde_json::from_slice(&out.stdout).map_err(|e| anyhow::anyhow!("{e}: {}", stdout(out)))
}

/// The `error:` lines a command printed.
fn errors(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("error:") || l.starts_with("  caused by:"))
        .map(str::to_string)
        .collect()
}

fn thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[sqlx::test(migrations = false)]
async fn a_dry_run_shows_what_the_rollback_would_restore_and_keep_and_writes_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let case = undoable(&pool, &dir, "preview-dry").await?;
    let (id, url) = (case.run.as_str(), case.url.as_str());
    assert!(case.selected > 1_000, "{} rows reset", case.selected);
    // Every row the run reset comes back but the one changed since, which is kept.
    let restored = case.selected - 1;
    let before = everything(&pool).await?;

    let out = run(&["rollback", id, "--dry-run"], url);
    assert_success(&out);
    let text = stdout(&out);
    for shown in [
        format!("dry-run of the rollback of run `{id}` (plan `preview-dry`); nothing was written:"),
        format!(
            "  restore processed_events: {} row(s)\n",
            thousands(restored)
        ),
        format!(
            "  keeps 1 row(s) of `processed_events` changed since the run wrote them: {} (`--force` restores them too)",
            case.touched
        ),
        format!("roll back with: replay rollback {id}\n"),
        format!("restore the kept rows too with: replay rollback {id} --force"),
    ] {
        assert!(text.contains(&shown), "`{shown}` not shown:\n{text}");
    }
    assert_eq!(
        everything(&pool).await?,
        before,
        "the dry-run wrote something"
    );

    let previewed = json(&run(
        &["rollback", id, "--dry-run", "--format", "json"],
        url,
    ))?;
    assert_eq!(previewed["mode"], "rollback");
    assert_eq!(previewed["outcome"], "would_roll_back");
    assert_eq!(previewed["run"], id);
    assert_eq!(
        previewed["actions"],
        serde_json::json!([{ "action": "restore processed_events", "rows": restored }])
    );
    assert_eq!(previewed["kept"][0]["table"], "processed_events");
    assert_eq!(previewed["kept"][0]["kept"], 1);
    assert_eq!(
        previewed["kept"][0]["kept_keys"],
        serde_json::json!([case.touched])
    );
    assert!(previewed["error"].is_null(), "{previewed}");
    // With `--force` the changed row would be restored too.
    let forced = json(&run(
        &["rollback", id, "--dry-run", "--force", "--format", "json"],
        url,
    ))?;
    assert_eq!(forced["actions"][0]["rows"], case.selected);
    assert_eq!(forced["kept"], serde_json::json!([]));
    assert_eq!(
        everything(&pool).await?,
        before,
        "the dry-runs wrote something"
    );
    assert_eq!(run_status(&pool, id).await?, "succeeded");

    // The rollback then does what its dry-run showed.
    let out = run(&["rollback", id, "--format", "json"], url);
    assert_success(&out);
    let done = json(&out)?;
    assert_eq!(done["outcome"], "rolled_back");
    assert_eq!(done["actions"], previewed["actions"]);
    assert_eq!(done["kept"], previewed["kept"]);
    assert_eq!(run_status(&pool, id).await?, "rolled_back");
    let back: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events e JOIN replay.selection s \
         ON s.event_id = e.event_id AND s.run_id = $1::uuid WHERE e.status = 'error'",
    )
    .bind(id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(back, restored, "the rows the dry-run counted are restored");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_dry_run_is_refused_as_the_rollback_is(pool: PgPool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let case = undoable(&pool, &dir, "preview-refused").await?;
    let (id, url) = (case.run.as_str(), case.url.as_str());
    // Both refuse the same way, with the same exit code and message, writing nothing.
    let both_refused = |why: String| {
        let pool = pool.clone();
        async move {
            let before = everything(&pool).await?;
            let dry = run(&["rollback", id, "--dry-run"], url);
            let real = run(&["rollback", id], url);
            assert_exit(&dry, 4);
            assert_exit(&real, 4);
            assert_eq!(errors(&dry), errors(&real), "the same refusal");
            assert!(
                errors(&dry).concat().contains(&why),
                "`{why}` not said:\n{}",
                stderr(&dry)
            );
            let refused = json(&run(
                &["rollback", id, "--dry-run", "--format", "json"],
                url,
            ))?;
            assert_eq!(refused["outcome"], "refused");
            assert!(
                refused["error"].as_str().is_some_and(|e| e.contains(&why)),
                "{refused}"
            );
            assert_eq!(
                everything(&pool).await?,
                before,
                "a refusal wrote something"
            );
            anyhow::Ok(())
        }
    };
    // Another executor holds the run's lease.
    sqlx::query(
        "UPDATE replay.runs SET lease_owner = 'elsewhere:1', \
         lease_expires_at = clock_timestamp() + interval '1 hour' WHERE id = $1::uuid",
    )
    .bind(id)
    .execute(&pool)
    .await?;
    both_refused("executor elsewhere:1 holds its lease".into()).await?;
    sqlx::query("UPDATE replay.runs SET lease_expires_at = NULL WHERE id = $1::uuid")
        .bind(id)
        .execute(&pool)
        .await?;
    assert_success(&run(&["rollback", id], url));
    both_refused(format!(
        "refused: run `{id}` is rolled_back; there is nothing to roll back"
    ))
    .await?;

    // A plan without rollback actions.
    let plan = plan_file(
        &dir,
        "preview-no-undo",
        "select: { status: [error] }\nsteps:\n  - { id: reset, kind: reset }\n",
    );
    assert_success(&run(&["apply", plan.to_str().unwrap_or_default()], url));
    let other: String =
        sqlx::query_scalar("SELECT id::text FROM replay.runs WHERE plan_name = 'preview-no-undo'")
            .fetch_one(&pool)
            .await?;
    let before = everything(&pool).await?;
    let dry = run(&["rollback", &other, "--dry-run"], url);
    let real = run(&["rollback", &other], url);
    assert_exit(&dry, 4);
    assert_exit(&real, 4);
    assert_eq!(errors(&dry), errors(&real));
    assert!(
        stderr(&dry).contains("plan `preview-no-undo` has no rollback actions"),
        "{}",
        stderr(&dry)
    );
    assert_eq!(everything(&pool).await?, before);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn without_a_terminal_or_yes_a_rollback_is_refused_and_writes_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let case = undoable(&pool, &dir, "preview-no-terminal").await?;
    let (id, url) = (case.run.as_str(), case.url.as_str());
    let before = everything(&pool).await?;
    // As a script runs it: standard input is not a terminal, and no `--yes`.
    let unasked = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_replay"))
            .args(["rollback", id, "--format", format])
            .env("DATABASE_URL", url)
            .stdin(Stdio::null())
            .output()
    };
    let out = unasked("text")?;
    assert_exit(&out, 4);
    assert!(
        stderr(&out).contains("pass `--yes` to roll back without asking; nothing was written"),
        "{}",
        stderr(&out)
    );
    let out = unasked("json")?;
    assert_exit(&out, 4);
    let refused = json(&out)?;
    assert_eq!(refused["outcome"], "refused");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("`--yes`")),
        "{refused}"
    );
    assert_eq!(
        everything(&pool).await?,
        before,
        "the refusal wrote something"
    );
    assert_eq!(run_status(&pool, id).await?, "succeeded");

    // A dry-run asks nobody; `--yes` rolls back.
    assert_success(&replay(&["rollback", id, "--dry-run"], url).output()?);
    assert_eq!(everything(&pool).await?, before);
    let out = Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(["rollback", id, "--yes"])
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .output()?;
    assert_success(&out);
    assert_eq!(run_status(&pool, id).await?, "rolled_back");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn ctrl_c_at_the_rollback_question_writes_nothing_and_the_answer_rolls_back(
    pool: PgPool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let case = undoable(&pool, &dir, "preview-ask").await?;
    let (id, url) = (case.run.as_str(), case.url.as_str());
    let before = everything(&pool).await?;
    let question = "Type `preview-ask` to confirm: ";

    let mut pty = Pty::replay(&["rollback", id], url)?;
    let screen = pty.wait_for(question)?;
    for shown in [
        format!("About to roll back run `{id}` (plan `preview-ask`):"),
        format!(
            "restore processed_events: {} row(s)",
            thousands(case.selected - 1)
        ),
        format!(
            "keeps 1 row(s) of `processed_events` changed since the run wrote them: {}",
            case.touched
        ),
    ] {
        assert!(screen.contains(&shown), "`{shown}` not shown:\n{screen}");
    }
    pty.ctrl_c()?;
    assert_eq!(pty.exit_code()?, 130, "{}", pty.screen());
    assert!(
        pty.screen()
            .contains("interrupted at the question; nothing was written"),
        "{}",
        pty.screen()
    );
    assert_eq!(everything(&pool).await?, before, "Ctrl-C wrote something");

    let mut pty = Pty::replay(&["rollback", id], url)?;
    pty.wait_for(question)?;
    pty.type_line("preview")?;
    assert_eq!(pty.exit_code()?, 4, "{}", pty.screen());
    assert!(
        pty.screen().contains("not confirmed; nothing was written"),
        "{}",
        pty.screen()
    );
    assert_eq!(
        everything(&pool).await?,
        before,
        "a wrong answer wrote something"
    );

    let mut pty = Pty::replay(&["rollback", id], url)?;
    pty.wait_for(question)?;
    pty.type_line("preview-ask")?;
    assert_eq!(pty.exit_code()?, 0, "{}", pty.screen());
    assert!(
        pty.screen().contains(&format!("run `{id}` is rolled back")),
        "{}",
        pty.screen()
    );
    assert_eq!(run_status(&pool, id).await?, "rolled_back");
    let by_operator: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM replay.run_log WHERE run_id = $1::uuid AND kind = 'operator_rollback'",
    )
    .bind(id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(by_operator, 1);
    Ok(())
}
