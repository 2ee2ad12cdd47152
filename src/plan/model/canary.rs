//! `canary:` the first events of the frozen selection go through every step and verification
//! before the rest.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Run the plan on the first `events` of the frozen selection, verify, and only then the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// How many events, from the start of the frozen selection (its order: oldest first).
    #[schemars(range(min = 1))]
    pub events: u64,
    /// Wait this long after the canary's steps before judging its verifications, e.g. `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
}
