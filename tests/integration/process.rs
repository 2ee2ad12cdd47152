//! Driving the `replay` binary as an operator would: worlds, plan files, processes that can be
//! killed or paused, a TCP proxy that can be cut, and queues to drain.

// Spawned processes are held in `Running`, whose `Drop` kills and reaps them; the lint cannot see
// through that.
#![allow(clippy::zombie_processes)]

use super::support::*;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use habitat::{self, GeneratorConfig};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection as Amqp, ConnectionProperties, ExchangeKind};
use sqlx::PgPool;

pub async fn world(pool: &PgPool, events: u64) -> anyhow::Result<i64> {
    let config = GeneratorConfig {
        events,
        failed_share: 0.5,
        stuck_share: 0.0,
        days: 1,
        now: chrono::Utc::now(),
        ..GeneratorConfig::default()
    };
    habitat::generate(pool, &config).await?;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE status = 'error'")
            .fetch_one(pool)
            .await?,
    )
}

pub fn plan_file(dir: &tempfile::TempDir, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!("version: 1\nname: {name}\nreason: \"resilience test of the executor\"\n{body}"),
    )
    .expect("write plan");
    path
}

pub fn replay(args: &[&str], url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay"));
    // Nobody is at a terminal to confirm an apply or a rollback.
    let asks = matches!(args.first(), Some(&"apply" | &"rollback"));
    let yes: &[&str] = if asks && !args.contains(&"--dry-run") {
        &["--yes"]
    } else {
        &[]
    };
    cmd.args(args)
        .args(yes)
        .env("DATABASE_URL", url)
        .env("AMQP_URL", AMQP)
        .stdin(Stdio::null());
    cmd
}

pub fn run(args: &[&str], url: &str) -> Output {
    replay(args, url).output().expect("run replay")
}

/// The process exited 0; else its stderr says why.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The database holds one run, and it is `status`.
pub async fn assert_one_run(pool: &PgPool, status: &str, why: &str) -> anyhow::Result<()> {
    let (runs, recorded): (i64, String) =
        sqlx::query_as("SELECT count(*) OVER (), status FROM replay.runs")
            .fetch_one(pool)
            .await?;
    assert_eq!((runs, recorded.as_str()), (1, status), "{why}");
    Ok(())
}

/// The process exited with `code`; else its stderr says why.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `replay`; killed and reaped if a test ends early.
pub struct Running(pub Option<Child>);

impl Running {
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, as a crash would, and reap.
    pub fn kill(&mut self) -> std::io::Result<()> {
        if let Some(mut child) = self.0.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Whether the process has exited by itself.
    pub fn finished(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|child| matches!(child.try_wait(), Ok(Some(_))))
    }

    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        match self.0.take() {
            Some(child) => child.wait_with_output(),
            None => Err(std::io::Error::other("already reaped")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

pub fn start(args: &[&str], url: &str) -> Running {
    Running(Some(
        replay(args, url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn replay"),
    ))
}

/// The checkpoint of a step once it is between its first and last batch.
pub async fn checkpoint_midway(pool: &PgPool, step: &str, total: i64) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cp: Option<i64> =
            sqlx::query_scalar("SELECT checkpoint FROM replay.step_runs WHERE step_id = $1")
                .bind(step)
                .fetch_optional(pool)
                .await
                .unwrap_or(None);
        if let Some(cp) = cp.filter(|cp| *cp > 0 && *cp < total) {
            return Ok(cp);
        }
        anyhow::ensure!(Instant::now() < deadline, "step `{step}` never got midway");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Declares an exchange with a queue bound to `#`; returns a function that drains the queue's message ids.
pub async fn bound_queue(name: &str) -> anyhow::Result<Amqp> {
    let conn = Amqp::connect(AMQP, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.exchange_declare(
        name.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        name.into(),
        name.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(conn)
}

/// Drains a run's messages and checks that every one of the `total` selected events arrived;
/// returns how many arrived more than once.
pub async fn drain_each_once_at_least(queue: &str, total: i64) -> anyhow::Result<usize> {
    let ids = drain_ids(queue, total as usize).await?;
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    anyhow::ensure!(
        distinct.len() as i64 == total,
        "{} of the {total} selected events were published",
        distinct.len()
    );
    Ok(ids.len() - distinct.len())
}

pub async fn drain_ids(queue: &str, expect_at_least: usize) -> anyhow::Result<Vec<String>> {
    drain_with(queue, expect_at_least, |delivery| {
        delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    })
    .await
}

/// Consumes every message of a test's queue (then deletes the queue and its exchange of the same
/// name), reading each with `read`.
pub async fn drain_with<T>(
    queue: &str,
    expect_at_least: usize,
    read: impl Fn(&lapin::message::Delivery) -> T,
) -> anyhow::Result<Vec<T>> {
    // A fresh connection: the run may have taken long enough for an idle one to be dropped.
    let conn = Amqp::connect(AMQP, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut ids = Vec::new();
    loop {
        let wait = if ids.len() >= expect_at_least {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(20)
        };
        match tokio::time::timeout(wait, consumer.next()).await {
            Ok(Some(delivery)) => {
                let delivery = delivery?;
                ids.push(read(&delivery));
                delivery.ack(BasicAckOptions::default()).await?;
            }
            _ => break,
        }
    }
    ch.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    ch.exchange_delete(queue.into(), ExchangeDeleteOptions::default())
        .await?;
    Ok(ids)
}

/// A TCP proxy to a local service that can be cut, as if the service went away, or stalled, as
/// if it hung: connections stay open and nothing more passes either way.
pub struct Proxy {
    pub port: u16,
    mode: tokio::sync::watch::Sender<Mode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Cut,
    Stall,
}

impl Proxy {
    pub async fn to(upstream: u16) -> anyhow::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (mode, watch) = tokio::sync::watch::channel(Mode::Pass);
        tokio::spawn(async move {
            // Connections accepted while stalled: open, and never answered.
            let mut silent = Vec::new();
            loop {
                let mut stop = watch.clone();
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.wait_for(|m| *m == Mode::Cut) => return,
                };
                let Ok((mut client, _)) = accepted else {
                    return;
                };
                if *watch.borrow() == Mode::Stall {
                    silent.push(client);
                    continue;
                }
                let (mut cut, mut stall) = (watch.clone(), watch.clone());
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let stalled = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        _ = cut.wait_for(|m| *m == Mode::Cut) => false,
                        _ = stall.wait_for(|m| *m == Mode::Stall) => true,
                    };
                    if stalled {
                        // Both ends stay open until the proxy is cut or dropped.
                        let _ = cut.wait_for(|m| *m == Mode::Cut).await;
                    }
                    drop((client, server));
                });
            }
        });
        Ok(Proxy { port, mode })
    }

    pub fn cut(&self) {
        let _ = self.mode.send(Mode::Cut);
    }

    pub fn stall(&self) {
        let _ = self.mode.send(Mode::Stall);
    }
}
