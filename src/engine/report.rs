//! The final report of a run or dry-run: what the executor says happened, as data (serialised as a
//! versioned JSON document); `crate::render` turns it into text and Markdown for people.

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
    /// The named target (`--target NAME` of `replay.toml`), when the run was given one.
    pub target_name: Option<String>,
    /// Whether the connections to the database and the broker are encrypted.
    pub connections: Connections,
    pub run_id: Option<String>,
    /// Whether this apply resumed an unfinished run.
    pub resumed: bool,
    pub status: String,
    pub error: Option<String>,
    pub selected: u64,
    /// MD5 of the selected event ids in order (what a pinned plan compares).
    pub selection_digest: String,
    /// The selected event ids in order, up to `freeze::KEPT_KEYS` (a pinned plan keeps them to
    /// tell which events a drifted selection gained or lost); never in the report itself.
    #[serde(skip)]
    pub selection_keys: Option<Vec<String>>,
    /// The target server's `system_identifier`, read for a pinned plan.
    #[serde(skip)]
    pub system_identifier: Option<String>,
    pub breakdown: Breakdown,
    /// Statements of the plan that change the schema or privileges (`allow_ddl: true`).
    pub schema_changes: Vec<String>,
    pub gates: Vec<GateResult>,
    pub backups: Vec<Snapshot>,
    pub dump_file: Option<String>,
    /// The canary (`canary:`): its events, and in a run its steps and verifications.
    pub canary: Option<CanaryReport>,
    /// The plan's guards with their values now (a dry-run).
    pub guards: Vec<crate::engine::guards::GuardReport>,
    /// Guards that tripped during this apply, in order.
    pub guard_trips: Vec<crate::engine::guards::Trip>,
    pub steps: Vec<StepReport>,
    pub messages: Vec<OutgoingMessage>,
    /// The first calls of each http step, rendered (a dry-run), credentials masked.
    pub requests: Vec<crate::engine::http::OutgoingRequest>,
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
    /// Executors that took part in the run (this one included), when it reached them.
    pub executors: u64,
    /// Whether this process joined a run that another executor was driving (`--join`), and the
    /// batches it did there.
    pub joined: Option<Joined>,
    /// Webhook deliveries of this process (`notify:`), as recorded in the run log.
    pub notifications: Vec<crate::engine::notify::Delivery>,
    /// Whether this process drove the run (started it, or took it over): it tells the run's
    /// outcome to the webhooks.
    #[serde(skip)]
    pub led: bool,
    /// Whether this attempt reached the steps (so a refusal cannot say "nothing was written").
    #[serde(skip)]
    pub wrote: bool,
    pub next: Vec<String>,
}

/// What `replay rollback RUN` did, or (`--dry-run`, and before its question) would do: a
/// versioned JSON document of its own.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackReport {
    pub version: u32,
    pub mode: crate::engine::status::Mode,
    pub outcome: crate::engine::status::RollbackOutcome,
    pub run: Option<String>,
    pub plan: Option<String>,
    /// `host:port/db` of the target, without user or password.
    pub target: String,
    /// The named target (`--target NAME` of `replay.toml`), when the command was given one.
    pub target_name: Option<String>,
    /// `--force`: rows changed since the run wrote them are restored too.
    pub forced: bool,
    pub actions: Vec<RollbackAction>,
    /// Rows kept because they changed since the run wrote them, per table.
    pub kept: Vec<crate::engine::backup::Restored>,
    pub error: Option<String>,
    pub warnings: Vec<String>,
    pub next: Vec<String>,
}

/// One rollback action, and the rows it changed (or, previewed, would change).
#[derive(Debug, Clone, Serialize)]
pub struct RollbackAction {
    pub action: String,
    pub rows: u64,
}

/// The canary of a run: the first events of its frozen selection, run and verified before the rest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CanaryReport {
    /// Events in the canary.
    pub events: u64,
    /// The first of them (at most 20), in selection order.
    pub event_ids: Vec<String>,
    /// How long it waits after its steps before it is judged.
    pub pause_secs: f64,
    /// Whether its verifications passed; `None` before it was judged (a dry-run).
    pub passed: Option<bool>,
    pub steps: Vec<StepReport>,
    pub verifications: Vec<VerificationReport>,
}

/// How this process reached the target's services.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Connections {
    pub database: Option<Encryption>,
    /// None when the plan needs no broker.
    pub broker: Option<Encryption>,
}

/// Whether one connection is encrypted, and with which protocol when it is known.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Encryption {
    pub encrypted: bool,
    pub protocol: Option<String>,
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.encrypted, &self.protocol) {
            (true, Some(p)) => write!(f, "encrypted ({p})"),
            (true, None) => write!(f, "encrypted (TLS)"),
            (false, _) => write!(f, "NOT encrypted"),
        }
    }
}

impl Connections {
    /// `database encrypted (TLSv1.3), broker NOT encrypted`.
    pub fn summary(&self) -> Option<String> {
        let parts: Vec<String> = [("database", &self.database), ("broker", &self.broker)]
            .into_iter()
            .filter_map(|(name, e)| e.as_ref().map(|e| format!("{name} {e}")))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// What an executor that joined a run did in it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Joined {
    pub batches: u64,
    pub events: u64,
}

/// The selected events whose status is still the failed one after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Failing {
    pub total: u64,
    /// `(event_id, error_message)` of the first ones, in selection order.
    pub first: Vec<(String, String)>,
    /// All of them, grouped by the fingerprint of their error message (repeated-failure
    /// tracking), largest group first.
    pub groups: Vec<crate::engine::groups::FailureGroup>,
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

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct VerificationReport {
    pub name: String,
    pub passed: bool,
    pub actual: serde_json::Value,
    pub expected: serde_json::Value,
}
