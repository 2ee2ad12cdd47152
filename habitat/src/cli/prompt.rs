//! A question put to the person at the terminal before something is destroyed: the typed
//! answer confirms, anything else declines, and Ctrl-C ends the wait at once.

use std::io::{IsTerminal, Write};

use super::signalled;

/// What the person at the terminal answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// They typed the expected text.
    Confirmed,
    /// They typed something else, or standard input ended.
    Declined,
    /// SIGINT or SIGTERM while the question was open.
    Interrupted,
}

/// Whether a person can answer: standard input is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Prints `question` on standard error and waits for `expected` to be typed. The answer is read
/// on a thread of its own, so that a signal ends the wait at once instead of after the next line.
pub async fn confirm(question: &str, expected: &str) -> Answer {
    let mut err = std::io::stderr();
    let _ = write!(err, "{question}Type `{expected}` to confirm: ");
    let _ = err.flush();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Detached: a thread blocked on standard input must not hold the process open after Ctrl-C.
    std::thread::spawn(move || {
        let mut answer = String::new();
        let read = std::io::stdin().read_line(&mut answer);
        let _ = tx.send(read.ok().filter(|&n| n > 0).map(|_| answer));
    });
    tokio::select! {
        answer = rx => match answer.ok().flatten() {
            Some(text) if text.trim_end_matches(['\r', '\n']) == expected => Answer::Confirmed,
            _ => Answer::Declined,
        },
        () = signalled() => {
            let _ = writeln!(err);
            Answer::Interrupted
        }
    }
}
