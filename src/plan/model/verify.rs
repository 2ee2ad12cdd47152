//! Verification queries run after the steps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One check: a query returning a single value, and what that value must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// What is being checked, in words.
    pub name: String,
    /// A query returning one row with one column; `:param` binds allowed.
    pub sql: String,
    /// The expectation; exactly one comparison.
    pub expect: Expectation,
}

/// Compare the query's value with a literal, or with the value captured before the run started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The value must equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// The value must equal what the same query returned before the first step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub equals_before: bool,
    /// The value must be at most this number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<f64>,
    /// The value must be at least this number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<f64>,
}
