//! `habitat demo`: a database it did not create is dropped only when a person says so; one it
//! marked is dropped and the demo runs end to end, its hints naming `replay` as it can be run.

// The `script` child is reaped in the test, or killed by the harness ending.
#![allow(clippy::zombie_processes)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use habitat::scratch::{Existing, MARK};

use super::support::{AMQP, DEADLINE, ScratchDatabase, remove_topology, run, server_url, text};

#[tokio::test]
async fn the_demo_refuses_to_drop_a_database_it_did_not_create_without_a_terminal_or_yes()
-> anyhow::Result<()> {
    let server = server_url();
    for comment in [None, Some("production copy, do not touch")] {
        let db = ScratchDatabase::named("habitat_demo_unmarked").await?;
        db.create(comment).await?;
        let name = db.name.clone();
        let out = run(&[
            "demo",
            "--database-url",
            &server,
            "--database",
            &db.name,
            "--amqp-url",
            AMQP,
        ])?;
        let printed = text(&out);
        let existing = db.existing().await?;
        let kept = db.kept().await?;
        db.drop_it().await?;
        assert_eq!(out.status.code(), Some(4), "{printed}");
        assert!(
            printed.contains(&format!(
                "error: refused to drop database `{name}` (postgres://"
            )),
            "{printed}"
        );
        assert!(
            printed.contains("nothing was dropped: no terminal to ask on, and no `--yes`"),
            "{printed}"
        );
        assert!(printed.contains("help: pass `--yes`"), "{printed}");
        if let Some(comment) = comment {
            assert!(printed.contains(comment), "{printed}");
        }
        assert_eq!(
            existing,
            Existing::Unmarked {
                comment: comment.map(str::to_owned)
            }
        );
        assert!(kept, "the database lost its table:\n{printed}");
    }
    Ok(())
}

#[tokio::test]
async fn the_demo_asks_at_a_terminal_and_keeps_the_database_unless_its_name_is_typed()
-> anyhow::Result<()> {
    let db = ScratchDatabase::named("habitat_demo_asked").await?;
    db.create(None).await?;
    let command = [
        env!("CARGO_BIN_EXE_habitat"),
        "demo",
        "--database-url",
        &server_url(),
        "--database",
        &db.name,
        "--amqp-url",
        AMQP,
    ]
    .iter()
    .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
    .collect::<Vec<_>>()
    .join(" ");
    // util-linux `script` gives the demo a terminal; what is written to its input is typed there.
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut input = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no input"))?;
    let mut output = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no output"))?;
    let screen = Arc::new(Mutex::new(String::new()));
    let seen = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = seen.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let shown = |text: &str| screen.lock().map(|s| s.contains(text)).unwrap_or(false);
    let question = format!("Type `{}` to confirm: ", db.name);
    let deadline = Instant::now() + DEADLINE;
    while !shown(&question) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = shown(&question);
    if asked {
        input.write_all(b"replay_demo\n")?;
        input.flush()?;
    }
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let printed = screen.lock().map(|s| s.clone()).unwrap_or_default();
    let kept = db.kept().await?;
    db.drop_it().await?;
    assert!(asked, "no question on the terminal:\n{printed}");
    assert!(
        printed.contains("was not created by `habitat demo`"),
        "{printed}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(4), "{printed}");
    assert!(
        printed.contains("nothing was dropped: the answer was not its name"),
        "{printed}"
    );
    assert!(kept, "the database lost its table:\n{printed}");
    Ok(())
}

#[tokio::test]
async fn the_demo_drops_a_database_it_marked_and_runs_end_to_end() -> anyhow::Result<()> {
    let db = ScratchDatabase::named("habitat_demo_marked").await?;
    db.create(Some(MARK)).await?;
    let url_shown = replay::engine::redact::redact_url(&db.url());
    let name = format!("habitat-demo-{}", uuid::Uuid::new_v4().simple());
    // A URL naming the scratch database itself: the demo must create and drop it from another.
    let out = run(&[
        "demo",
        "--database-url",
        &db.url(),
        "--database",
        &db.name,
        "--amqp-url",
        AMQP,
        "--exchange",
        &name,
        "--queue",
        &name,
        "--events",
        "400",
    ])?;
    let printed = text(&out);
    let existing = db.existing().await?;
    let kept = db.kept().await?;
    let still_failing: i64 = {
        let pool = db.pool().await?;
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM processed_events WHERE status = 'error' AND event_type LIKE 'contribution.%'",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        n
    };
    db.drop_it().await?;
    remove_topology(&name, &name).await?;
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert_eq!(
        existing,
        Existing::Marked,
        "the new database bears the mark"
    );
    assert!(!kept, "the old database was dropped:\n{printed}");
    assert_eq!(still_failing, 0, "{printed}");
    // The hints name `replay` as it can be run from here, never through cargo.
    assert!(!printed.contains("cargo run"), "{printed}");
    let beside = std::path::Path::new(env!("CARGO_BIN_EXE_habitat")).with_file_name("replay");
    let status_hint = printed
        .lines()
        .find(|l| l.contains(" status --database-url "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let replay = status_hint.split(' ').next().unwrap_or_default();
    if beside.exists() {
        assert!(
            replay == beside.display().to_string() || replay == "replay",
            "{status_hint}"
        );
    } else {
        assert_eq!(replay, "replay", "{printed}");
    }
    assert!(
        status_hint.ends_with(&format!(" status --database-url {url_shown}")),
        "{status_hint}"
    );
    Ok(())
}
