//! Which events a run acts on, in structured form compiled to parameterised SQL.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Filters combined with AND. A value written as exactly `{{ params.NAME }}` takes that parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Statuses to select, e.g. `[error]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<String>,
    /// Event type patterns; `*` matches any run of characters (`contribution.*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Exact event ids, or one `{{ params.NAME }}` of type string or list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<String>,
    /// Events processed within this duration before the run starts (`24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_within: Option<String>,
    /// Events processed longer ago than this duration (`5m`), e.g. stuck ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_before: Option<String>,
    /// Events processed in a time range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_between: Option<ProcessedBetween>,
    /// Payload fields that must equal these values (`payload->>'field' = value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub payload: BTreeMap<String, String>,
    /// Selects every event when no filter is given. Without it, an empty selection is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Stop selecting after this many events (oldest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
}

/// A half-open time range `[from, to)` on the processed-at column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessedBetween {
    /// Inclusive start: RFC 3339 timestamp, date, or `{{ params.NAME }}`.
    pub from: String,
    /// Exclusive end: RFC 3339 timestamp, date, or `{{ params.NAME }}`.
    pub to: String,
}
