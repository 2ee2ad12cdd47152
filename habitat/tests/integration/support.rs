//! What the tests share: the `habitat` binary, URLs of test databases, a running process whose
//! output is read as it comes, and scratch databases named for one test.

// A running child is held in `Running`, whose `Drop` kills and reaps it.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use sqlx::PgPool;

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long a test waits for a line, a row count or a process to end.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The server `DATABASE_URL` names (`.cargo/config.toml` sets it for cargo).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The URL of database `db` on that server.
pub fn url_of(db: &str) -> String {
    habitat::scratch::url_of(&server_url(), db)
}

/// The URL of the test's own database (`#[sqlx::test]` made it).
pub async fn database_url(pool: &PgPool) -> anyhow::Result<String> {
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(pool)
        .await?;
    Ok(url_of(&db))
}

/// `habitat ARGS`, with no URL, target or terminal inherited from the test's environment.
pub fn habitat(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_habitat"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env_remove("REPLAY_TARGET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// Runs `habitat ARGS` to its end.
pub fn run(args: &[&str]) -> anyhow::Result<Output> {
    Ok(habitat(args).output()?)
}

/// Standard output then standard error, for assertions and their messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A `habitat` process whose standard output is read line by line as it comes.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    pub fn spawn(args: &[&str]) -> anyhow::Result<Running> {
        let mut child = habitat(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Running {
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        })
    }

    /// Waits for a line of standard output starting with `prefix`.
    pub fn wait_for_line(&mut self, prefix: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    anyhow::bail!("no line `{prefix}…` within {DEADLINE:?}: {:?}", self.stdout)
                }
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!(
                    "the process ended without printing `{prefix}…`: {:?}",
                    self.stdout
                ),
            }
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }

    /// Waits for the process to end; returns its exit code, standard output and error.
    pub fn finish(mut self) -> anyhow::Result<(Option<i32>, String, String)> {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the process did not end within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader ends with the process's output.
        let rest: Vec<String> = self.lines.iter().collect();
        self.stdout.extend(rest);
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        Ok((status.code(), self.stdout.join("\n"), stderr))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `query` (a count) until it returns `expected`, or fails at the deadline.
pub async fn wait_for_count(pool: &PgPool, query: &str, expected: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned()))
            .fetch_one(pool)
            .await?;
        if n == expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "`{query}` still {n}, not {expected}, after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database named for one test on the server, dropped when the test ends.
pub struct ScratchDatabase {
    pub name: String,
    server: PgPool,
}

impl ScratchDatabase {
    /// A name no other test uses, not yet created.
    pub async fn named(prefix: &str) -> anyhow::Result<ScratchDatabase> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let server = PgPool::connect(&server_url()).await?;
        Ok(ScratchDatabase { name, server })
    }

    /// Creates it, with `comment` as its `COMMENT ON DATABASE`, and a table `keep` of one row.
    pub async fn create(&self, comment: Option<&str>) -> anyhow::Result<()> {
        let quoted = habitat::scratch::quote_identifier(&self.name);
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&self.server)
            .await?;
        if let Some(comment) = comment {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "COMMENT ON DATABASE {quoted} IS '{}'",
                comment.replace('\'', "''")
            )))
            .execute(&self.server)
            .await?;
        }
        let pool = self.pool().await?;
        sqlx::raw_sql("CREATE TABLE keep (note TEXT); INSERT INTO keep VALUES ('mine')")
            .execute(&pool)
            .await?;
        pool.close().await;
        Ok(())
    }

    pub fn url(&self) -> String {
        url_of(&self.name)
    }

    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPool::connect(&self.url()).await?)
    }

    /// Whether it exists, and its comment.
    pub async fn existing(&self) -> anyhow::Result<habitat::scratch::Existing> {
        Ok(habitat::scratch::existing(&self.server, &self.name).await?)
    }

    /// Whether the table `keep` is still there with its row.
    pub async fn kept(&self) -> anyhow::Result<bool> {
        let pool = self.pool().await?;
        let kept: bool = sqlx::query_scalar(
            "SELECT to_regclass('keep') IS NOT NULL \
             AND EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'keep')",
        )
        .fetch_one(&pool)
        .await?;
        let rows: i64 = if kept {
            sqlx::query_scalar("SELECT count(*) FROM keep")
                .fetch_one(&pool)
                .await?
        } else {
            0
        };
        pool.close().await;
        Ok(kept && rows == 1)
    }

    pub async fn drop_it(self) -> anyhow::Result<()> {
        habitat::scratch::drop(&self.server, &self.name).await?;
        self.server.close().await;
        Ok(())
    }
}

/// Deletes a test's queue and exchange.
pub async fn remove_topology(exchange: &str, queue: &str) -> anyhow::Result<()> {
    let publisher = habitat::Publisher::connect(AMQP, exchange).await?;
    publisher.delete_topology(queue).await?;
    publisher.close().await?;
    Ok(())
}
