//! Showing a run while it goes: a progress bar per step on a terminal, periodic log lines otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::render::numbers::{duration, rate, thousands};

use crate::engine::events::{Reporter, RunEvent};

pub struct Progress {
    bar: Option<ProgressBar>,
    terminal: bool,
    last_line: Instant,
    pub events: Vec<RunEvent>,
}

impl Progress {
    pub fn new(terminal: bool) -> Progress {
        Progress {
            bar: None,
            terminal,
            last_line: Instant::now(),
            events: Vec::new(),
        }
    }
}

impl Reporter for Progress {
    fn event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::StepStarted {
                step,
                kind,
                total,
                done,
            } => {
                if self.terminal && (kind == "reset" || kind == "publish" || kind == "sql") {
                    let bar = ProgressBar::new(*total).with_position(*done);
                    bar.set_style(style(*done));
                    bar.set_prefix(step.clone());
                    self.bar = Some(bar);
                } else {
                    tracing::info!(step = %step, kind = %kind, total, from = done, "step started");
                }
            }
            RunEvent::Progress { step, done, total } => match &self.bar {
                Some(bar) => {
                    bar.set_position(*done);
                    bar.set_message("");
                }
                None if self.last_line.elapsed() >= Duration::from_secs(2) || done == total => {
                    self.last_line = Instant::now();
                    tracing::info!(step = %step, done, total, "progress");
                }
                None => {}
            },
            RunEvent::Throttled {
                step,
                queue,
                depth,
                limit,
            } => match &self.bar {
                Some(bar) => bar.set_message(format!("paused: {queue} holds {depth} > {limit}")),
                None => {
                    tracing::info!(step = %step, queue = %queue, depth, limit, "paused: queue too deep")
                }
            },
            RunEvent::Waiting {
                step,
                elapsed_secs,
                holds,
            } => {
                if self.last_line.elapsed() >= Duration::from_secs(5) || *holds == Some(true) {
                    self.last_line = Instant::now();
                    let holds = match holds {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "unknown",
                    };
                    tracing::info!(step = %step, elapsed_secs, holds, "waiting");
                }
            }
            RunEvent::StepFinished { step, touched } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                tracing::info!(step = %step, touched, "step finished");
            }
            RunEvent::StepFailed { step, error } => {
                if let Some(bar) = self.bar.take() {
                    bar.abandon();
                }
                tracing::error!(step = %step, error = %error, "step failed");
            }
            RunEvent::RunStarted {
                run_id,
                resumed,
                selected,
            } => tracing::info!(run_id = %run_id, resumed, selected, "run started"),
            RunEvent::SelectionFrozen { selected } => {
                tracing::info!(selected, "selection frozen")
            }
            RunEvent::BackupTaken {
                table,
                rows,
                checksum,
            } => tracing::info!(table = %table, rows, checksum = %checksum, "backup taken"),
            RunEvent::Verified {
                name,
                passed,
                actual,
                expected,
            } => tracing::info!(
                verification = %name,
                passed,
                actual = %actual,
                expected = %expected,
                "verified"
            ),
            RunEvent::RolledBack { action, rows } => {
                tracing::info!(action = %action, rows, "rolled back")
            }
            RunEvent::Retrying {
                attempt,
                budget,
                after_ms,
                error,
            } => tracing::warn!(attempt, budget, after_ms, error = %error, "retrying"),
            RunEvent::RunFinished { status } => tracing::info!(status = %status, "run finished"),
        }
        // Per-batch events are not kept: memory stays flat however long the run.
        if !matches!(
            event,
            RunEvent::Progress { .. } | RunEvent::Waiting { .. } | RunEvent::Throttled { .. }
        ) {
            self.events.push(event.clone());
        }
    }
}

/// The bar of a batch-wise step: its rate and time left are measured from where this process
/// took the step up (`from`), so a resumed step's earlier events do not count as done in no time.
fn style(from: u64) -> ProgressStyle {
    let measured = move |state: &ProgressState| {
        let secs = state.elapsed().as_secs_f64();
        let done = state.pos().saturating_sub(from);
        (secs > 0.5 && done > 0).then(|| done as f64 / secs)
    };
    ProgressStyle::with_template("{prefix:>20} [{bar:30}] {done}/{total} {rate} eta {left} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "done",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", thousands(state.pos().into()));
            },
        )
        .with_key(
            "total",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", thousands(state.len().unwrap_or(0).into()));
            },
        )
        .with_key(
            "rate",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = match measured(state) {
                    Some(r) => write!(w, "{}/s", rate(r)),
                    None => write!(w, "-/s"),
                };
            },
        )
        .with_key(
            "left",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let left = state.len().unwrap_or(0).saturating_sub(state.pos());
                let _ = match measured(state) {
                    Some(r) => write!(w, "{}", duration(Duration::from_secs_f64(left as f64 / r))),
                    None => write!(w, "-"),
                };
            },
        )
        .progress_chars("=> ")
}
