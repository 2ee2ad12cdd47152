//! Safety gates: each refuses with exit 4 and its own message, and each override passes and is recorded.

use super::support::*;
use std::process::{Command, Stdio};

use habitat::{self, GeneratorConfig};
use sqlx::PgPool;

struct Case {
    name: &'static str,
    body: String,
    args: &'static [&'static str],
    exit: i32,
    says: &'static str,
}

fn case(
    name: &'static str,
    body: impl Into<String>,
    args: &'static [&'static str],
    exit: i32,
    says: &'static str,
) -> Case {
    Case {
        name,
        body: body.into(),
        args,
        exit,
        says,
    }
}

/// A window that is closed now: it opens two hours from now, for one hour.
fn closed_window() -> String {
    use chrono::Timelike;
    let h = (chrono::Utc::now().hour() + 2) % 24;
    format!(
        "window: {{ between: \"{h:02}:00-{:02}:00\", timezone: UTC }}",
        (h + 1) % 24
    )
}

#[sqlx::test(migrations = false)]
async fn every_gate_refuses_and_every_override_is_recorded(pool: PgPool) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        events: 1_000,
        failed_share: 0.1,
        stuck_share: 0.0,
        days: 1,
        now: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    habitat::generate(&pool, &config).await?;
    let url = database_url(&pool).await?;
    let reset = "steps:\n  - { id: reset, kind: reset }\n";
    let dumps = tempfile::tempdir()?;
    let (empty, fresh) = (dumps.path().join("empty"), dumps.path().join("fresh"));
    std::fs::create_dir_all(&empty)?;
    std::fs::create_dir_all(&fresh)?;
    std::fs::write(fresh.join("nightly.dump"), b"PGDMP")?;
    let recent = |dir: &std::path::Path| {
        format!(
            "safety: {{ recent_dump: {{ directory: \"{}\", max_age: 24h }} }}\n",
            dir.display()
        )
    };
    let cases = [
        case(
            "max-events",
            format!("select: {{ status: [error] }}\nsafety: {{ max_events: 5 }}\n{reset}"),
            &["--yes"],
            4,
            "safety gate `max_events`: 100 selected; the plan allows at most 5",
        ),
        case(
            "max-events-overridden",
            format!(
                "select: {{ status: [error], limit: 10 }}\nsafety: {{ max_events: 5 }}\n{reset}"
            ),
            &[
                "--yes",
                "--override",
                "max_events",
                "--because",
                "incident 42: the whole backlog",
            ],
            0,
            "gate max_events: pass",
        ),
        case(
            "window",
            format!(
                "select: {{ status: [error] }}\nsafety: {{ {} }}\n{reset}",
                closed_window()
            ),
            &["--yes"],
            4,
            "safety gate `window`",
        ),
        case(
            "window-overridden",
            format!(
                "select: {{ status: [error], limit: 10 }}\nsafety: {{ {} }}\n{reset}",
                closed_window()
            ),
            &[
                "--yes",
                "--override",
                "window",
                "--because",
                "customer escalation, approved by ops lead",
            ],
            0,
            "outcome: succeeded",
        ),
        case(
            "empty",
            format!(
                "select: {{ event_ids: [\"{}\"] }}\n{reset}",
                uuid::Uuid::new_v4()
            ),
            &["--yes"],
            4,
            "safety gate `empty`: no event selected",
        ),
        case(
            "empty-allowed",
            format!(
                "select: {{ event_ids: [\"{}\"] }}\nsafety: {{ allow_empty: true }}\n{reset}",
                uuid::Uuid::new_v4()
            ),
            &["--yes"],
            0,
            "gate empty: pass (no event selected; the plan allows an empty selection)",
        ),
        case(
            "unfiltered",
            format!("select: {{ all: true, limit: 10 }}\n{reset}"),
            &["--yes"],
            4,
            "safety gate `unfiltered`",
        ),
        case(
            "backup",
            format!("select: {{ status: [error] }}\nsafety: {{ require_backup: true }}\n{reset}"),
            &["--yes"],
            4,
            "safety gate `backup`: the plan requires a backup but `backup` takes none",
        ),
        case(
            "backup-taken",
            format!(
                "select: {{ status: [processed] }}\nsafety: {{ require_backup: true }}\nbackup: {{ tables: [{{ table: processed_events }}] }}\n{reset}"
            ),
            &["--yes"],
            0,
            "gate backup: pass",
        ),
        case(
            "stale-dump",
            format!("select: {{ status: [error] }}\n{}{reset}", recent(&empty)),
            &["--yes"],
            4,
            "safety gate `recent_dump`: no `*.dump` file in",
        ),
        case(
            "recent-dump",
            format!(
                // Every status an event can be left in by the cases before: this case never
                // depends on what they reset.
                "select: {{ status: [error, pending, processed], limit: 10 }}\n{}{reset}",
                recent(&fresh)
            ),
            &["--yes"],
            0,
            "gate recent_dump: pass (newest dump",
        ),
        case(
            "unfiltered-overridden",
            format!("select: {{ all: true, limit: 10 }}\n{reset}"),
            &[
                "--yes",
                "--override",
                "unfiltered",
                "--because",
                "override 3: ten oldest events of all kinds",
            ],
            0,
            "outcome: succeeded",
        ),
        case(
            "backup-overridden",
            format!(
                "select: {{ status: [error], limit: 10 }}\nsafety: {{ require_backup: true }}\n{reset}"
            ),
            &[
                "--yes",
                "--override",
                "backup",
                "--because",
                "override 4: the table is rebuilt nightly",
            ],
            0,
            "outcome: succeeded",
        ),
        case(
            "stale-dump-overridden",
            format!(
                "select: {{ status: [error], limit: 10 }}\n{}{reset}",
                recent(&empty)
            ),
            &[
                "--yes",
                "--override",
                "recent_dump",
                "--because",
                "override 5: dump server down, approved",
            ],
            0,
            "outcome: succeeded",
        ),
        case(
            "rehearsal",
            format!("select: {{ status: [error] }}\nsafety: {{ rehearsal: apply }}\n{reset}"),
            &["--yes"],
            4,
            "safety gate `rehearsal`: no staging rehearsal",
        ),
        case(
            "rehearsal-overridden",
            format!(
                "select: {{ status: [error], limit: 10 }}\nsafety: {{ rehearsal: apply }}\n{reset}"
            ),
            &[
                "--yes",
                "--override",
                "rehearsal",
                "--because",
                "override 6: staging is down for the migration",
            ],
            0,
            "outcome: succeeded",
        ),
        case(
            "override-without-reason",
            format!("select: {{ status: [error] }}\n{reset}"),
            &["--yes", "--override", "window"],
            2,
            "`--override` needs `--because",
        ),
        case(
            "lease-too-short",
            format!("select: {{ status: [error] }}\n{reset}"),
            &["--yes", "--lease", "0s"],
            2,
            "`0s` is too short for a lease; give at least `1s`",
        ),
        case(
            "override-unknown-gate",
            format!("select: {{ status: [error] }}\n{reset}"),
            &[
                "--yes",
                "--override",
                "speed",
                "--because",
                "no such gate here",
            ],
            2,
            "invalid value 'speed' for '--override <GATE>'",
        ),
        case(
            "no-terminal-no-yes",
            format!("select: {{ status: [error] }}\n{reset}"),
            &[],
            4,
            "pass `--yes`",
        ),
        case(
            "force-dry-run",
            format!(
                "select: {{ status: [error] }}\nsafety: {{ force: true, acknowledge: duplicate-side-effects }}\n{reset}"
            ),
            &["--dry-run"],
            0,
            "WARNING: idempotency is bypassed",
        ),
    ];
    let dir = tempfile::tempdir()?;
    for c in cases {
        let path = dir.path().join(format!("{}.yaml", c.name));
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: gate-{}\nreason: \"testing the safety gates\"\n{}",
                c.name, c.body
            ),
        )?;
        let out = Command::new(env!("CARGO_BIN_EXE_replay"))
            .arg("apply")
            .arg(&path)
            .args(c.args)
            .env("DATABASE_URL", &url)
            .env("AMQP_URL", AMQP)
            .stdin(Stdio::null())
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(c.exit), "{}: {text}", c.name);
        assert!(
            text.contains(c.says),
            "{}: expected {:?} in:\n{text}",
            c.name,
            c.says
        );
    }
    // Overrides are in the audit row and the run log.
    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE details LIKE '%\"overrides\":[{%' ORDER BY id",
    )
    .fetch_all(&pool)
    .await?;
    let reasons = [
        "incident 42: the whole backlog",
        "customer escalation",
        "override 3:",
        "override 4:",
        "override 5:",
        "override 6:",
    ];
    assert_eq!(audited.len(), reasons.len(), "{audited:?}");
    for (row, reason) in audited.iter().zip(reasons) {
        assert!(row.contains(reason), "{reason} not in {row}");
    }
    let logged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM replay.run_log WHERE kind = 'override'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(logged, reasons.len() as i64);
    Ok(())
}

/// Runs `replay apply` on a pseudo-terminal (through `script`), typing `answer` at the prompt.
fn apply_on_a_terminal(
    plan: &std::path::Path,
    url: &str,
    answer: &str,
) -> anyhow::Result<(Option<i32>, String)> {
    use std::io::Write;
    let command = format!("{} apply {}", env!("CARGO_BIN_EXE_replay"), plan.display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DATABASE_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{answer}\n").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[sqlx::test(migrations = false)]
async fn a_person_confirms_by_typing_the_plan_name(pool: PgPool) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        events: 500,
        failed_share: 0.1,
        stuck_share: 0.0,
        days: 1,
        now: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    habitat::generate(&pool, &config).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = dir.path().join("confirm.yaml");
    std::fs::write(
        &plan,
        "version: 1\nname: gate-confirm\nreason: \"testing the confirmation\"\nselect: { status: [error] }\nsteps:\n  - { id: reset, kind: reset }\n",
    )?;
    let (code, text) = apply_on_a_terminal(&plan, &url, "yes")?;
    assert_eq!(code, Some(4), "{text}");
    assert!(
        text.contains("About to apply plan `gate-confirm`")
            && text.contains("events  50 selected now"),
        "{text}"
    );
    assert!(
        text.contains("not confirmed; nothing was written"),
        "{text}"
    );
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'pending'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(pending, 0, "nothing was written");
    let (code, text) = apply_on_a_terminal(&plan, &url, "gate-confirm")?;
    assert_eq!(code, Some(0), "{text}");
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'pending'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(pending, 50);
    Ok(())
}
