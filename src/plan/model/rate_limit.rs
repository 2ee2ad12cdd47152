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
    /// Batches of a `reset` that run side by side, each in a transaction of its own on a
    /// connection of its own (`1`: one after another). Each still commits with its checkpoint;
    /// the rate limit holds over all of them.
    #[serde(skip_serializing_if = "is_default_parallel_batches")]
    #[schemars(range(min = 1, max = 8))]
    pub parallel_batches: u32,
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
            parallel_batches: DEFAULT_PARALLEL_BATCHES,
            confirms_in_flight: 500,
            pause_when_queue_depth_above: None,
            queue: None,
        }
    }
}

/// Two batches side by side: one set-based `UPDATE` uses one core of the database; a reset in
/// batches with two in flight comes close to that `UPDATE`, one at a time does not (see the
/// README's figures).
pub const DEFAULT_PARALLEL_BATCHES: u32 = 2;

/// Left out of a serialised plan at its default, so that the plan hashes of runs started before
/// the setting existed stay the same.
fn is_default_parallel_batches(n: &u32) -> bool {
    *n == DEFAULT_PARALLEL_BATCHES
}
