//! The `http` step: one call to an HTTP endpoint per selected event (or one for the run), such as
//! an admin API that replays an event.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Call an HTTP endpoint for each selected event (or once), with retries; an event is done when
/// its call was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// Step id, unique in the plan (`[a-z0-9-]`).
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// What the step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `event`: one call per selected event; `once`: a single call for the run.
    #[serde(default)]
    pub each: HttpEach,
    /// The request method.
    #[serde(default)]
    pub method: HttpMethod,
    /// URL template (`http://` or `https://`), e.g. `{{ params.api }}/api/admin/replay-event`.
    pub url: String,
    /// Request headers (templates), e.g. `Authorization: "Bearer {{ secrets.token }}"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body template, e.g. `{"event_id": {{ json event.event_id }}}`; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `Idempotency-Key` header template; defaults to the event id (per event) or
    /// `<run id>:<step id>` (once), so that the endpoint can drop a call made again after a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Secrets read from the environment when the run starts, never from the plan: `{ token:
    /// ADMIN_TOKEN }` makes `{{ secrets.token }}` the value of `$ADMIN_TOKEN`. Their values are
    /// masked in every report and message.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets_env: BTreeMap<String, String>,
    /// Per attempt, e.g. `10s` (100ms to 5m).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Statuses that accept a call; any 2xx when empty. Any other status (after retries for
    /// 429 and 5xx) fails the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// Retries of one call on connection errors, timeouts, 429 and 5xx (exponential backoff with
    /// jitter; `Retry-After` honoured).
    #[serde(default = "default_retries")]
    #[schemars(range(max = 20))]
    pub retries: u32,
    /// Calls in flight at once, per executor.
    #[serde(default = "default_in_flight")]
    #[schemars(range(min = 1, max = 1024))]
    pub in_flight: u32,
    /// PEM file of CA certificates trusted besides the system's, for `https://` (as an `amqps`
    /// URL's `cacertfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl HttpStep {
    /// The `Idempotency-Key` template, or its default: the event id (per event), or
    /// `<run id>:<step id>` (once).
    pub fn idempotency_key_template(&self) -> &str {
        match (&self.idempotency_key, self.each) {
            (Some(template), _) => template,
            (None, HttpEach::Event) => "{{ event.event_id }}",
            (None, HttpEach::Once) => "{{ run.id }}:{{ step.id }}",
        }
    }
}

fn default_timeout() -> String {
    "10s".into()
}

fn default_retries() -> u32 {
    3
}

fn default_in_flight() -> u32 {
    64
}

/// How many calls an http step makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HttpEach {
    /// One call per selected event; `event.*` is available in templates.
    #[default]
    Event,
    /// One call for the whole run.
    Once,
}

/// An HTTP method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}
