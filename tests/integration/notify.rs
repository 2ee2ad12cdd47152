//! `notify:` webhooks against receivers started here: one that records what it gets, one that
//! never answers, one that refuses connections.

use super::support::*;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn world(pool: &PgPool) -> anyhow::Result<()> {
    failed_tenth(pool, 300).await
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// A minimal HTTP/1.1 receiver: the n-th request gets `script[n]` (the last one repeats; `None`
/// reads the request and never answers); the bodies of accepted (2xx) requests are kept in
/// order, and every request is counted.
pub(super) struct Receiver {
    pub(super) port: u16,
    pub(super) bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(super) async fn start(script: Vec<Option<u16>>) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, counted) = (bodies.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let kept = kept.clone();
                let counted = counted.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Headers, then as much body as Content-Length says.
                    let body = loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break body.to_string();
                        }
                    };
                    let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let status = script.get(n).or(script.last()).copied().flatten();
                    let Some(status) = status else {
                        // Hold the connection open, answering nothing.
                        let _ = socket.read(&mut buf).await;
                        return;
                    };
                    if (200..300).contains(&status)
                        && let Ok(json) = serde_json::from_str(&body)
                    {
                        kept.lock().expect("receiver lock").push(json);
                    }
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nretry-after: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Ok(Receiver {
            port,
            bodies,
            requests,
            task,
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn plan(dir: &std::path::Path, hooks: &str) -> anyhow::Result<String> {
    let path = dir.join("plan.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: notified-reset\nreason: \"reset the failed events and say so\"\nselect: {{ status: [error] }}\nsteps:\n  - {{ id: reset, kind: reset }}\nnotify:\n{hooks}"
        ),
    )?;
    Ok(path.to_string_lossy().into_owned())
}

/// Run without blocking the test's runtime, on which the receivers answer.
async fn apply(plan: &str, url: &str, env: &[(&str, String)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay"));
    command
        .args(["apply", plan, "--yes", "--database-url", url])
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("run replay")
}

async fn logged(pool: &PgPool) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(
        sqlx::query_scalar("SELECT detail FROM replay.run_log WHERE kind = 'notify' ORDER BY id")
            .fetch_all(pool)
            .await?,
    )
}

#[sqlx::test(migrations = false)]
async fn a_receiver_gets_start_then_finish_and_each_delivery_is_logged(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let receiver = Receiver::start(vec![Some(200)]).await?;
    let dir = tempfile::tempdir()?;
    // The URL comes from the environment; its secret path never reaches the output.
    let plan = plan(dir.path(), "  - { url_env: REPLAY_TEST_WEBHOOK }\n")?;
    let hook = format!("http://127.0.0.1:{}/services/SECRET-PATH", receiver.port);
    let out = apply(&plan, &url, &[("REPLAY_TEST_WEBHOOK", hook)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("SECRET-PATH"), "{}", text(&out));
    assert!(
        text(&out).contains("notified finish to http://127.0.0.1:"),
        "{}",
        text(&out)
    );

    let bodies = receiver.bodies.lock().expect("receiver lock").clone();
    let moments: Vec<&str> = bodies
        .iter()
        .map(|b| b["replay"]["moment"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(moments, ["start", "finish"]);
    let finish = &bodies[1]["replay"];
    assert_eq!(finish["plan"], "notified-reset");
    assert_eq!(finish["outcome"], "succeeded");
    assert_eq!(finish["selected"], 30);
    assert_eq!(finish["steps"][0], serde_json::json!(["reset", 30]));
    let run_id = finish["run_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(finish["inspect"], format!("replay status {run_id}"));
    assert!(
        bodies[1]["text"]
            .as_str()
            .is_some_and(|t| t.contains("succeeded (30 selected event(s); reset 30")),
        "{}",
        bodies[1]
    );
    let log = logged(&pool).await?;
    let logged_moments: Vec<(&str, bool)> = log
        .iter()
        .map(|d| {
            (
                d["moment"].as_str().unwrap_or_default(),
                d["delivered"] == true,
            )
        })
        .collect();
    assert_eq!(logged_moments, [("start", true), ("finish", true)]);
    Ok(())
}

async fn errors_left(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(pool)
            .await?,
    )
}

#[sqlx::test(migrations = false)]
async fn a_dead_receiver_is_retried_and_never_fails_the_run(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    // A port nobody listens on: bound, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let plan = plan(
        dir.path(),
        &format!(
            "  - {{ url: \"http://127.0.0.1:{dead}/hook\", on: [finish], timeout: 30s, retries: 2 }}\n"
        ),
    )?;
    let out = apply(&plan, &url, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(errors_left(&pool).await?, 0, "the run did its work");
    let log = logged(&pool).await?;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["delivered"], false, "{log:?}");
    // Tried 1 + 2 times, refused each time, and said why.
    assert_eq!(log[0]["attempts"], 3, "{log:?}");
    assert!(
        log[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("onnection refused")),
        "{log:?}"
    );
    assert!(
        text(&out).contains("NOT delivered after 3 attempt(s)"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_silent_receiver_costs_the_run_its_timeout_once(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let silent = Receiver::start(vec![None]).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(
        dir.path(),
        &format!(
            "  - {{ url: \"http://127.0.0.1:{}/hook\", on: [finish], timeout: 1s, retries: 5 }}\n",
            silent.port
        ),
    )?;
    let out = apply(&plan, &url, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(errors_left(&pool).await?, 0, "the run did its work");
    let log = logged(&pool).await?;
    assert_eq!(log.len(), 1, "{log:?}");
    // Given up when the run ended, after its timeout once: not after 1 + 5 attempts.
    assert_eq!(log[0]["delivered"], false, "{log:?}");
    assert!(
        log[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("still under way when the run ended; given up after 1s")),
        "{log:?}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_503_then_a_429_are_retried_until_accepted(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let receiver = Receiver::start(vec![Some(503), Some(429), Some(200)]).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(
        dir.path(),
        &format!(
            "  - {{ url: \"http://127.0.0.1:{}/hook\", on: [finish], timeout: 30s, retries: 3 }}\n",
            receiver.port
        ),
    )?;
    let out = apply(&plan, &url, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    let log = logged(&pool).await?;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["delivered"], true, "{log:?}");
    assert_eq!(log[0]["attempts"], 3, "{log:?}");
    assert_eq!(log[0]["status"], 200, "{log:?}");
    assert_eq!(
        receiver.requests.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    assert_eq!(receiver.bodies.lock().expect("receiver lock").len(), 1);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_dry_run_notifies_nobody(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let receiver = Receiver::start(vec![Some(200)]).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(
        dir.path(),
        &format!(
            "  - {{ url: \"http://127.0.0.1:{}/hook\" }}\n",
            receiver.port
        ),
    )?;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay"));
    command
        .args(["apply", &plan, "--dry-run", "--database-url", &url])
        .stdin(Stdio::null());
    let out = command.output().await?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        receiver.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn an_unset_webhook_variable_is_a_warning_not_a_refusal(pool: PgPool) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let dir = tempfile::tempdir()?;
    let plan = plan(dir.path(), "  - { url_env: REPLAY_TEST_WEBHOOK_NOT_SET }\n")?;
    let out = apply(&plan, &url, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the environment variable `REPLAY_TEST_WEBHOOK_NOT_SET` is not set"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_killed_run_resumed_tells_its_start_again_and_its_outcome(
    pool: PgPool,
) -> anyhow::Result<()> {
    world(&pool).await?;
    let url = database_url(&pool).await?;
    let receiver = Receiver::start(vec![Some(200)]).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("plan.yaml");
    // Slow enough to be killed half-way: 30 events at 10 a second.
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: notified-slow-reset\nreason: \"reset the failed events slowly and say so\"\nselect: {{ status: [error] }}\nrate_limit: {{ per_second: 10, batch_size: 5 }}\nsteps:\n  - {{ id: reset, kind: reset }}\nnotify:\n  - {{ url: \"http://127.0.0.1:{}/hook\" }}\n",
            receiver.port
        ),
    )?;
    let plan = path.to_string_lossy().into_owned();
    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(["apply", &plan, "--yes", "--database-url", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Killed once its start has been told.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while receiver.bodies.lock().expect("receiver lock").is_empty() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "no start within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first.kill().await?;
    let out = apply(&plan, &url, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    let bodies = receiver.bodies.lock().expect("receiver lock").clone();
    let moments: Vec<&str> = bodies
        .iter()
        .map(|b| b["replay"]["moment"].as_str().unwrap_or_default())
        .collect();
    // The killed attempt tells nothing more; the resumed one its start and the run's outcome.
    assert_eq!(moments, ["start", "start", "finish"]);
    assert_eq!(bodies[2]["replay"]["outcome"], "succeeded");
    assert_eq!(bodies[0]["replay"]["run_id"], bodies[2]["replay"]["run_id"]);
    // The resumed process recorded its deliveries; the killed one had not yet recorded its own.
    let log = logged(&pool).await?;
    let logged_moments: Vec<&str> = log
        .iter()
        .map(|d| d["moment"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(logged_moments, ["start", "finish"]);
    Ok(())
}
