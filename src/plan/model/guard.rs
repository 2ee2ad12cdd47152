//! `guards:` conditions checked while the run runs, which stop or pause it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One condition on the world while the run runs: a read-only SQL value or a queue's depth,
/// with bounds. Checked every `every`, at batch boundaries and while a wait step polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// Name shown when the guard trips.
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub name: String,
    /// What it protects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A read-only query returning one number. Binds as in verifications, plus
    /// `:done_event_ids` (the selected events whose batches are done so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Or: the depth of this queue (messages ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<String>,
    /// The guard trips when the value is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The guard trips when the value is below this (SQL guards only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// How often to check, e.g. `10s`; at most this often at batch boundaries.
    #[serde(default = "default_every")]
    pub every: String,
    /// What a trip does.
    #[serde(default)]
    pub action: GuardAction,
    /// With `action: pause`: stop (resumable) when the condition has not cleared after this
    /// long, e.g. `30m`.
    #[serde(default = "default_max_pause")]
    pub max_pause: String,
}

/// What a tripped guard does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    /// Stop the run before its next batch; it stays resumable (`replay apply` goes on).
    #[default]
    Stop,
    /// Hold before the next batch until the condition clears, at most `max_pause`.
    Pause,
}

impl GuardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Stop => "stop",
            GuardAction::Pause => "pause",
        }
    }
}

fn default_every() -> String {
    "10s".into()
}

fn default_max_pause() -> String {
    "30m".into()
}
