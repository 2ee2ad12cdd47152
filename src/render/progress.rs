//! Showing a run while it goes: a progress bar per step on a terminal, periodic log lines otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

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
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>20} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
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
                    tracing::info!(step = %step, elapsed_secs, holds = ?holds, "waiting");
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
            other => tracing::info!(event = ?other, "run"),
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
