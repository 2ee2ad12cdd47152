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
    // As copied from anywhere: 12 digits without their dash name it too.
    let dashless: String = real.simple().to_string()[..12].to_string();
    let out = run(&["status", &dashless], &url);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&real.to_string()));
    // A prefix two runs share lists both and names neither.
    for command in [
        vec!["status", "abcdef"],
        vec!["stop", "abcdef"],
        vec!["rollback", "abcdef"],
        vec!["join", "abcdef"],
        vec!["pause", "abcdef"],
        vec!["resume", "abcdef"],
        vec!["set", "abcdef", "rate=10"],
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
        vec!["pause", "fedcba98"],
        vec!["set", "fedcba98", "batch=10"],
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

#[sqlx::test(migrations = false)]
async fn a_closed_port_is_said_at_once_naming_host_and_port_without_the_password(
    _pool: PgPool,
) -> anyhow::Result<()> {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("postgres://postgres:s3cret-pw@127.0.0.1:{port}/nowhere");
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(["status", "--database-url", &url])
        .stdin(std::process::Stdio::null())
        .output()?;
    // Said, not asserted: timing belongs in benchmarks.
    eprintln!("a closed port was reported after {:?}", started.elapsed());
    assert_exit(&out, 1);
    let text = stderr(&out);
    assert!(
        text.contains(&format!("cannot reach 127.0.0.1:{port}")) && text.contains("refused"),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(!text.contains("pool timed out"), "{text}");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn logs_carry_no_colour_when_not_on_a_terminal(pool: PgPool) -> anyhow::Result<()> {
    failed_tenth(&pool, 100).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    // A guard that trips at once, so that the run logs a warning.
    let plan = plan_file(
        &dir,
        "no-colour",
        "select: { status: [error] }\n\
         guards:\n  - { name: always, sql: \"SELECT 1\", max: 0 }\n\
         steps:\n  - { id: reset, kind: reset }\n",
    );
    let out = run(&["apply", plan.to_str().unwrap_or_default()], &url);
    assert_exit(&out, 5);
    let text = stderr(&out);
    assert!(text.contains("WARN"), "the run logged its guard: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "an escape sequence in a piped log: {text:?}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn status_and_audit_read_as_text_with_separators_or_as_json(
    pool: PgPool,
) -> anyhow::Result<()> {
    failed_tenth(&pool, 12_000).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "read-back",
        "select: { status: [error] }\nsafety: { max_events: 1000 }\nsteps:\n  - { id: reset, kind: reset }\n",
    );
    let because = "test: the whole backlog at once";
    assert_exit(
        &run(
            &[
                "apply",
                plan.to_str().unwrap_or_default(),
                "--override",
                "max_events",
                "--because",
                because,
            ],
            &url,
        ),
        0,
    );
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;

    let out = run(&["status", &id.to_string()[..8]], &url);
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("selected 1,200") && text.contains("checkpoint 1,200  touched 1,200"),
        "{text}"
    );
    let out = run(&["status", &id.to_string(), "--format", "json"], &url);
    assert_exit(&out, 0);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(status["store"], true, "{status}");
    assert_eq!(status["runs"][0]["id"], id.to_string(), "{status}");
    assert_eq!(status["runs"][0]["status"], "succeeded", "{status}");
    assert_eq!(status["runs"][0]["selected"], 1_200, "{status}");
    assert_eq!(status["runs"][0]["steps"][0]["touched"], 1_200, "{status}");
    assert!(
        !status["database"]
            .as_str()
            .unwrap_or_default()
            .contains('@')
    );

    let out = run(&["audit", "--format", "json"], &url);
    assert_exit(&out, 0);
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let action = &audit["runs"][0]["actions"][0];
    assert_eq!(action["kind"], "override", "{audit}");
    assert_eq!(action["gate"], "max_events", "{audit}");
    assert_eq!(action["because"], because, "{audit}");
    let out = run(&["audit"], &url);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("    actions: override max_events by ")
            && text.contains(&format!(": {because}")),
        "{text}"
    );
    // Only the formats each really writes are offered.
    let out = run(&["status", "--format", "markdown"], &url);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("[possible values: text, json]"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// What a person reads from `apply --dry-run`, `apply`, `status`, `audit` and `rollback --dry-run`,
/// on a small fixture:
/// snapshotted, with only what changes from run to run (ids, times, the database, the process,
/// the measured rate) written as placeholders.
#[sqlx::test(migrations = false)]
async fn human_output_of_apply_status_audit_and_a_rollback_preview(
    pool: PgPool,
) -> anyhow::Result<()> {
    failed_tenth(&pool, 200).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan_file(
        &dir,
        "fixture",
        "select: { status: [error] }\nbackup: { tables: [{ table: processed_events }] }\n\
         steps:\n  - { id: reset, kind: reset }\nrollback:\n  - { kind: restore_backup, tables: [processed_events] }\n",
    );
    let as_ana = |args: &[&str]| {
        super::process::replay(args, &url)
            .env("REPLAY_OPERATOR", "ana")
            .output()
            .expect("run replay")
    };
    let plan_s = plan.to_str().unwrap_or_default();
    let dry_run = as_ana(&["apply", plan_s, "--dry-run"]);
    assert_exit(&dry_run, 0);
    let applied = as_ana(&["apply", plan_s]);
    assert_exit(&applied, 0);
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM replay.runs")
        .fetch_one(&pool)
        .await?;
    let db = url.rsplit_once('/').map_or("", |(_, db)| db).to_string();
    let normalise = |text: &str| {
        let text = text.replace(&id.to_string(), "[RUN]").replace(&db, "[DB]");
        let stamp = regex::Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").expect("a regex");
        let executor = regex::Regex::new(r"executor [^\s]+:\d+  ").expect("a regex");
        let rate = regex::Regex::new(r"  [\d,.]+/s  ").expect("a regex");
        let text = stamp.replace_all(&text, "[AT]");
        let text = text.replace(plan_s, "[PLAN]");
        // What the generator's clock decides: the days, the sampled events, the checksum.
        let day = regex::Regex::new(r"by day: .*").expect("a regex");
        let sample = regex::Regex::new(r"sample: evt_\w+").expect("a regex");
        let checksum = regex::Regex::new(r"checksum [0-9a-f]{32}").expect("a regex");
        let text = day.replace_all(&text, "by day: [DAYS]");
        let text = sample.replace_all(&text, "sample: [EVENT]");
        let text = checksum.replace_all(&text, "checksum [MD5]");
        let text = executor.replace_all(&text, "executor [HOST:PID]  ");
        rate.replace_all(&text, "  [RATE]/s  ").into_owned()
    };
    let mut shown = String::new();
    for (args, out) in [
        ("apply [PLAN] --dry-run", &dry_run),
        ("apply [PLAN]", &applied),
    ] {
        shown.push_str(&format!(
            "$ replay {args}\n{}\n",
            normalise(&String::from_utf8_lossy(&out.stdout))
        ));
    }
    for args in [
        vec!["status", &id.to_string()[..8]],
        vec!["audit"],
        vec!["rollback", &id.to_string()[..8], "--dry-run"],
    ] {
        let out = as_ana(&args);
        assert_exit(&out, 0);
        shown.push_str(&format!(
            "$ replay {}\n{}\n",
            args.join(" ").replace(&id.to_string()[..8], "[RUN8]"),
            normalise(&String::from_utf8_lossy(&out.stdout))
        ));
    }
    insta::assert_snapshot!("human_output", shown);
    Ok(())
}
