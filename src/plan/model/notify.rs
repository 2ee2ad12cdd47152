//! `notify:` webhooks told of a run's start and end.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One webhook (a Slack-compatible JSON body). Delivery is retried, never blocks or fails the
/// run, and is recorded in the run log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The environment variable that holds the webhook URL, so no secret sits in the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub url_env: Option<String>,
    /// Or the URL itself (`http://` or `https://`), for a receiver without a secret in its URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When to send; every moment when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<NotifyOn>,
    /// How long one delivery may take, e.g. `5s`; at the end of the run, the wait for deliveries
    /// still under way never exceeds it.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Deliveries tried again after a connection error, a 429 or a 5xx.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 10))]
    pub retries: u32,
}

/// A moment of a run that a webhook can be told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// The run began (or resumed) writing.
    Start,
    /// The run succeeded.
    Finish,
    /// The run failed, was rolled back or was refused.
    Failure,
    /// The run was stopped (`replay stop`, a signal) or interrupted; it is resumable.
    Stop,
    /// A guard tripped (it stops or pauses the run).
    Guard,
}

impl NotifyOn {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Start => "start",
            NotifyOn::Finish => "finish",
            NotifyOn::Failure => "failure",
            NotifyOn::Stop => "stop",
            NotifyOn::Guard => "guard",
        }
    }
}

fn default_timeout() -> String {
    "5s".into()
}

fn default_retries() -> u32 {
    2
}
