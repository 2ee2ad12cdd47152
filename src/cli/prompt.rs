//! Questions put to the person at the terminal before anything is written: a typed answer
//! confirms, anything else declines, and Ctrl-C ends the command at once (exit 130).

use std::io::{IsTerminal, Write};

/// What the person at the terminal answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// They typed the expected text.
    Confirmed,
    /// They typed something else, or standard input ended.
    Declined,
    /// Ctrl-C (or SIGTERM) while the question was open.
    Interrupted,
}

/// Whether a person can answer: standard input is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// What the person types to confirm: the plan's name; on a production target, `target/plan`, so
/// that the answer names where it writes.
pub fn expected_answer(plan: &str, target: Option<&str>, production: bool) -> String {
    match (production, target) {
        (true, Some(name)) => format!("{name}/{plan}"),
        _ => plan.to_string(),
    }
}

/// Prints `summary` and asks for `expected` to be typed, on standard error. The answer is read on
/// a thread of its own, so that a signal ends the wait at once instead of after the next line.
pub async fn confirm(summary: &str, expected: &str) -> Answer {
    let mut err = std::io::stderr();
    let _ = write!(err, "{summary}Type `{expected}` to confirm: ");
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
            Some(text) if text.trim() == expected => Answer::Confirmed,
            _ => Answer::Declined,
        },
        () = signalled() => {
            let _ = writeln!(err);
            Answer::Interrupted
        }
    }
}

/// Ctrl-C, or SIGTERM where there is one.
pub async fn signalled() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_names_a_production_target_too() {
        let case = |target, production, expected: &str| {
            assert_eq!(
                expected_answer("reset-failed", target, production),
                expected
            );
        };
        case(None, false, "reset-failed");
        case(Some("staging"), false, "reset-failed");
        case(Some("production"), true, "production/reset-failed");
        case(None, true, "reset-failed");
    }
}
