//! The final report of a run or dry-run: as a versioned JSON document, or as text for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::backup::Snapshot;
use crate::engine::broker::OutgoingMessage;
use crate::engine::freeze::Breakdown;
use crate::engine::gates::GateResult;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub version: u32,
    pub mode: crate::engine::status::Mode,
    pub plan: String,
    pub plan_hash: String,
    pub reason: String,
    pub params: serde_json::Value,
    pub target: String,
    pub run_id: Option<String>,
    /// Whether this apply resumed an unfinished run.
    pub resumed: bool,
    pub status: String,
    pub error: Option<String>,
    pub selected: u64,
    /// MD5 of the selected event ids in order (what a pinned plan compares).
    pub selection_digest: String,
    pub breakdown: Breakdown,
    /// Statements of the plan that change the schema or privileges (`allow_ddl: true`).
    pub schema_changes: Vec<String>,
    pub gates: Vec<GateResult>,
    pub backups: Vec<Snapshot>,
    pub dump_file: Option<String>,
    pub steps: Vec<StepReport>,
    pub messages: Vec<OutgoingMessage>,
    pub verifications: Vec<VerificationReport>,
    pub rolled_back: bool,
    pub rollback: Vec<(String, u64)>,
    /// Rows a rollback kept because they changed since the run wrote them.
    pub kept: Vec<crate::engine::backup::Restored>,
    /// Selected events that are still failing after the run: the total and the first ones.
    pub failing: Option<Failing>,
    /// Things that went wrong after the work was done (an audit row that could not be written).
    pub warnings: Vec<String>,
    pub estimated_secs: Option<f64>,
    /// Passing faults retried from the checkpoint during this apply.
    pub retries: u32,
    /// Seconds the run held outside its window.
    pub paused_secs: f64,
    /// Whether this attempt reached the steps (so a refusal cannot say "nothing was written").
    #[serde(skip)]
    pub wrote: bool,
    pub next: Vec<String>,
}

/// The selected events whose status is still the failed one after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Failing {
    pub total: u64,
    /// `(event_id, error_message)` of the first ones, in selection order.
    pub first: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: String,
    pub kind: String,
    /// Rows changed, or messages published (rendered, in a dry-run).
    pub touched: u64,
    pub resumed_from: Option<u64>,
    /// A rehearsal that ran this batch-wise step over only the first events of the selection:
    /// how many (the rest were counted, not rehearsed).
    pub rehearsed: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerificationReport {
    pub name: String,
    pub passed: bool,
    pub actual: serde_json::Value,
    pub expected: serde_json::Value,
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let dry = self.mode == crate::engine::status::Mode::DryRun;
        let _ = writeln!(
            out,
            "{} plan `{}` ({}) on {}",
            if dry { "DRY-RUN of" } else { "Run of" },
            self.plan,
            &self.plan_hash[..self.plan_hash.len().min(12)],
            self.target
        );
        if let Some(id) = &self.run_id {
            let _ = writeln!(
                out,
                "  run id: {id}{}",
                if self.resumed { " (resumed)" } else { "" }
            );
        }
        let _ = writeln!(out, "  selected events: {}", self.selected);
        for (t, n) in &self.breakdown.by_type {
            let _ = writeln!(out, "    {t}: {n}");
        }
        if !self.breakdown.by_day.is_empty() {
            let days: Vec<String> = self
                .breakdown
                .by_day
                .iter()
                .take(10)
                .map(|(d, n)| format!("{d}: {n}"))
                .collect();
            let more = self.breakdown.by_day.len().saturating_sub(10);
            let _ = writeln!(
                out,
                "    by day: {}{}",
                days.join(", "),
                if more > 0 {
                    format!(" (+{more} more days)")
                } else {
                    String::new()
                }
            );
        }
        for (id, t, payload) in &self.breakdown.sample {
            let _ = writeln!(out, "    sample: {id} {t} {}", truncate(payload, 100));
        }
        for g in &self.gates {
            let _ = writeln!(out, "  {g}");
        }
        for b in &self.backups {
            let _ = writeln!(
                out,
                "  backup {}: {} row(s){}",
                b.table,
                b.rows,
                if b.checksum.is_empty() {
                    " would be snapshotted".to_string()
                } else {
                    format!(", checksum {}", b.checksum)
                }
            );
        }
        if let Some(file) = &self.dump_file {
            let _ = writeln!(out, "  pg_dump: {file}");
        }
        for s in &self.steps {
            let verb = match (dry, s.kind.as_str()) {
                (true, "publish") => "message(s) would be published",
                (true, _) => "row(s) would be touched",
                (false, "publish") => "message(s) published and confirmed",
                (false, _) => "row(s) touched",
            };
            let resumed = match (s.resumed_from, s.rehearsed) {
                (Some(c), _) => format!(" (resumed at {c})"),
                (None, Some(n)) => format!(
                    " (rehearsed on the first {n} of {} events; the rest counted)",
                    self.selected
                ),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "  step {} [{}]: {} {verb}{resumed}",
                s.id, s.kind, s.touched
            );
        }
        for change in &self.schema_changes {
            let _ = writeln!(out, "  SCHEMA CHANGE (allow_ddl): {change}");
        }
        for m in &self.messages {
            let _ = writeln!(
                out,
                "    message to {} key `{}` id `{}`: {}",
                m.exchange,
                m.routing_key,
                m.message_id,
                truncate(&m.body, 120)
            );
        }
        for v in &self.verifications {
            if dry {
                let _ = writeln!(
                    out,
                    "  verify `{}`: currently {} (expects {})",
                    v.name, v.actual, v.expected
                );
            } else {
                let _ = writeln!(
                    out,
                    "  verify `{}`: {} (actual {}, expected {})",
                    v.name,
                    if v.passed { "PASS" } else { "FAIL" },
                    v.actual,
                    v.expected
                );
            }
        }
        for (action, rows) in &self.rollback {
            let _ = writeln!(out, "  rollback {action}: {rows} row(s)");
        }
        for kept in &self.kept {
            let _ = writeln!(out, "  {kept}");
        }
        if let Some(failing) = &self.failing {
            let _ = writeln!(
                out,
                "  still failing: {} selected event(s){}",
                failing.total,
                if failing.total > failing.first.len() as u64 {
                    format!(" (the first {} below)", failing.first.len())
                } else {
                    String::new()
                }
            );
            for (id, message) in &failing.first {
                let _ = writeln!(out, "    {id}: {message}");
            }
        }
        if self.paused_secs > 0.0 {
            let _ = writeln!(
                out,
                "  paused outside the window for {}",
                crate::plan::duration::format(std::time::Duration::from_secs(
                    self.paused_secs as u64
                ))
            );
        }
        if self.retries > 0 {
            let _ = writeln!(
                out,
                "  retried {} passing fault(s) from the checkpoint",
                self.retries
            );
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        if let Some(secs) = self.estimated_secs {
            let _ = writeln!(
                out,
                "  estimated duration at the rate limit: {secs:.1}s (waits not included)"
            );
        }
        let _ = writeln!(out, "  outcome: {}", self.status);
        if let Some(e) = &self.error {
            let _ = writeln!(out, "  error: {e}");
        }
        for n in &self.next {
            let _ = writeln!(out, "  next: {n}");
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n).collect::<String>())
    } else {
        s.to_string()
    }
}
