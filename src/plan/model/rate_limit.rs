//! Throughput limits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Limits that hold over the whole run (token bucket), and back-pressure from the worker's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Events per second across every step.
    #[schemars(range(min = 1, max = 100_000))]
    pub per_second: u32,
    /// Events per batch; each batch commits with its checkpoint.
    #[schemars(range(min = 1, max = 10_000))]
    pub batch_size: u32,
    /// Publisher confirms in flight at once.
    #[schemars(range(min = 1, max = 10_000))]
    pub confirms_in_flight: u32,
    /// Pause publishing while `queue` holds more messages than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pause_when_queue_depth_above: Option<u64>,
    /// The worker's queue watched for back-pressure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 500,
            batch_size: 500,
            confirms_in_flight: 500,
            pause_when_queue_depth_above: None,
            queue: None,
        }
    }
}
