//! What a run reports while it goes: the executor emits these, progress bars and logs only read them.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run_id: String,
        resumed: bool,
        selected: u64,
    },
    SelectionFrozen {
        selected: u64,
    },
    BackupTaken {
        table: String,
        rows: i64,
        checksum: String,
    },
    StepStarted {
        step: String,
        kind: String,
        total: u64,
        done: u64,
    },
    Progress {
        step: String,
        done: u64,
        total: u64,
    },
    Throttled {
        step: String,
        queue: String,
        depth: u64,
        limit: u64,
    },
    Waiting {
        step: String,
        elapsed_secs: u64,
        holds: Option<bool>,
    },
    StepFinished {
        step: String,
        touched: u64,
    },
    StepFailed {
        step: String,
        error: String,
    },
    Verified {
        name: String,
        passed: bool,
        actual: serde_json::Value,
        expected: serde_json::Value,
    },
    RolledBack {
        action: String,
        rows: u64,
    },
    /// A passing fault; the run goes on from its last checkpoint after a pause.
    Retrying {
        attempt: u32,
        budget: u32,
        after_ms: u64,
        error: String,
    },
    RunFinished {
        status: String,
    },
}

/// Something that shows or records run events.
pub trait Reporter {
    fn event(&mut self, event: &RunEvent);
}

/// Keeps every event (for the final report and for tests).
#[derive(Debug, Default)]
pub struct Collect {
    pub events: Vec<RunEvent>,
}

impl Reporter for Collect {
    fn event(&mut self, event: &RunEvent) {
        self.events.push(event.clone());
    }
}
