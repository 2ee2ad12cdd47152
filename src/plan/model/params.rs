//! Declared plan parameters.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One parameter: its type, and either a default or nothing (then it is required).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// The value's type; values are checked against it when given.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Value used when `--param` does not give one. Without a default the parameter is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// What the parameter means, shown in errors and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Parameter types. `list` is a comma-separated list of strings on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Any text.
    String,
    /// A 64-bit integer.
    Int,
    /// A UUID such as `123e4567-e89b-12d3-a456-426614174000`.
    Uuid,
    /// An RFC 3339 timestamp or a date (`2026-11-01`, midnight UTC).
    Timestamp,
    /// A duration such as `30s`, `5m`, `24h`, `7d`, `1h30m`.
    Duration,
    /// `true` or `false`.
    Bool,
    /// A list of strings (comma-separated on the command line).
    List,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Uuid => "uuid",
            ParamType::Timestamp => "timestamp",
            ParamType::Duration => "duration",
            ParamType::Bool => "bool",
            ParamType::List => "list",
        }
    }
}
