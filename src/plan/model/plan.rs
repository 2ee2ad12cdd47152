//! The plan document as a whole.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Backup, Canary, Guard, Notify, ParamSpec, RateLimit, Review, RollbackStep, Safety, Selection,
    Step, Target, Verification,
};

/// A replay plan: which events, what to do with them, how fast, how to check and how to undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "replay plan", extend("$id" = "https://replay.dev/schemas/replay-plan.schema.json"))]
pub struct RawPlan {
    /// Plan format version; always `1`.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Short name of the plan; runs are locked and resumed per plan name and target.
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_.-]{0,99}$"))]
    pub name: String,
    /// Why this replay exists (the incident, the fix); recorded with every run and in the audit log.
    #[schemars(length(min = 10, max = 2000))]
    pub reason: String,
    /// Who answers for the plan (a person or a team address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Longer notes for reviewers: when to use the plan, what it must not be used for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameters given at apply time as `--param name=value`; referenced as `:name` in SQL and
    /// `{{ params.name }}` in templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamSpec>,
    /// Where the events live. Defaults are Habitat's.
    #[serde(default)]
    pub target: Target,
    /// Which events the run acts on. Frozen at the start of a run.
    pub select: Selection,
    /// Safety gates checked in dry-run and again at apply.
    #[serde(default)]
    pub safety: Safety,
    /// Rows snapshotted before the first write, restorable by `restore_backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// Throughput limits that hold over the whole run.
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// Run every step and verification on the first events of the selection before the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Conditions checked while the run runs, which stop or pause it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<Guard>,
    /// What the run does, in order.
    #[schemars(length(min = 1, max = 100))]
    pub steps: Vec<Step>,
    /// Checks run after the steps; a failing one triggers the rollback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<Verification>,
    /// What undoes the run's side effects when a step or a verification fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<RollbackStep>,
    /// Webhooks told when the run starts, finishes, fails or stops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notify>,
    /// What the review reports may show: payload fields to mask in samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}
