//! `replay` on a pseudo-terminal, as a person at a terminal runs it: util-linux `script` gives
//! the command a pty, what the test writes to `script`'s input is typed at that terminal (a
//! `0x03` byte is Ctrl-C: the pty's line discipline turns it into SIGINT), and what the command
//! prints on either stream is read back from `script`'s output.

// The child is held in `Pty`, whose `Drop` kills and reaps it.
#![allow(clippy::zombie_processes)]

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::support::AMQP;

/// How long a test waits for text on the terminal, or for the command to end.
const DEADLINE: Duration = Duration::from_secs(60);

pub struct Pty {
    child: Child,
    input: ChildStdin,
    screen: Arc<Mutex<String>>,
}

impl Pty {
    /// `replay ARGS` on a terminal of its own, with `DATABASE_URL`.
    pub fn replay(args: &[&str], url: &str) -> anyhow::Result<Pty> {
        let command = std::iter::once(env!("CARGO_BIN_EXE_replay"))
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("DATABASE_URL", url)
            .env("AMQP_URL", AMQP)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let input = child
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
        Ok(Pty {
            child,
            input,
            screen,
        })
    }

    /// Everything the terminal showed so far.
    pub fn screen(&self) -> String {
        self.screen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until the terminal shows `text`.
    pub fn wait_for(&self, text: &str) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return Ok(screen);
            }
            if started.elapsed() > DEADLINE {
                anyhow::bail!("`{text}` never appeared; the terminal shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types a line and Enter.
    pub fn type_line(&mut self, text: &str) -> anyhow::Result<()> {
        self.input.write_all(format!("{text}\r").as_bytes())?;
        Ok(self.input.flush()?)
    }

    /// Ctrl-C.
    pub fn ctrl_c(&mut self) -> anyhow::Result<()> {
        self.input.write_all(&[0x03])?;
        Ok(self.input.flush()?)
    }

    /// The command's exit code (`script -e` passes it on), within the deadline.
    pub fn exit_code(&mut self) -> anyhow::Result<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return status
                    .code()
                    .ok_or_else(|| anyhow::anyhow!("ended by a signal: {status}"));
            }
            if started.elapsed() > DEADLINE {
                anyhow::bail!("still running; the terminal shows:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
