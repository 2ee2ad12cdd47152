//! What the review reports (the dry-run's text, JSON and Markdown) may show of the events.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the review reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// Payload fields shown as `"***"` in every sample of the reports (sampled events and
    /// rendered messages): a field name (`email`), or a dotted path into nested objects
    /// (`customer.email`; a number indexes an array, `items.0.iban`). Field names that contain a
    /// dot cannot be named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(pattern(r"^[^.\s]+(\.[^.\s]+)*$"), length(max = 200))
    )]
    pub mask: Vec<String>,
}

impl Review {
    /// Each masked field as the path of keys into the payload.
    pub fn mask_paths(&self) -> Vec<Vec<String>> {
        self.mask
            .iter()
            .map(|field| field.split('.').map(str::to_string).collect())
            .collect()
    }
}
