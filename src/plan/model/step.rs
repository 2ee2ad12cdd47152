//! The kinds of step a plan runs, tagged by `kind`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One step of the run. Steps run in order; each resumes from its own checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// Mark the selected events `pending` (retry count 0, error cleared) for the worker to pick up.
    Reset(ResetStep),
    /// Publish each selected event (or one message) to the exchange, with publisher confirms.
    Publish(PublishStep),
    /// Run one SQL statement with `:param` binds, once or once per batch of the selection.
    Sql(SqlStep),
    /// Poll a query, or a queue's depth, until it holds or the timeout passes.
    Wait(WaitStep),
    /// Purge a queue (emergency plans).
    PurgeQueue(PurgeQueueStep),
    /// Call an HTTP endpoint for each selected event (or once), with retries.
    Http(super::HttpStep),
}

impl Step {
    pub fn id(&self) -> &str {
        match self {
            Step::Reset(s) => &s.id,
            Step::Publish(s) => &s.id,
            Step::Sql(s) => &s.id,
            Step::Wait(s) => &s.id,
            Step::PurgeQueue(s) => &s.id,
            Step::Http(s) => &s.id,
        }
    }

    /// The same step, recorded under another id (the canary runs every step under its own).
    pub fn recorded_as(&self, id: String) -> Step {
        let mut step = self.clone();
        match &mut step {
            Step::Reset(s) => s.id = id,
            Step::Publish(s) => s.id = id,
            Step::Sql(s) => s.id = id,
            Step::Wait(s) => s.id = id,
            Step::PurgeQueue(s) => s.id = id,
            Step::Http(s) => s.id = id,
        }
        step
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Step::Reset(_) => "reset",
            Step::Publish(_) => "publish",
            Step::Sql(_) => "sql",
            Step::Wait(_) => "wait",
            Step::PurgeQueue(_) => "purge_queue",
            Step::Http(_) => "http",
        }
    }
}

/// Reset the selected events so the worker processes them again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetStep {
    /// Step id, unique in the plan (`[a-z0-9-]`).
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// What the step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Also set the processed-at column to NULL (as the runbook's single-event reset does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear_processed_at: bool,
}

/// Publish messages to the exchange, persistent, with publisher confirms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishStep {
    /// Step id, unique in the plan (`[a-z0-9-]`).
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// What the step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `event`: one message per selected event; `once`: a single message.
    #[serde(default)]
    pub each: PublishEach,
    /// Exchange to publish to; defaults to `target.exchange`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// Routing key template, e.g. `{{ event.event_type }}`.
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    /// Message body template, e.g. `{{ json event.payload }}`.
    #[serde(default = "default_payload")]
    pub payload: String,
    /// AMQP `message_id` template; defaults to the event id (per event) or `<run id>:<step id>` (once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Message headers (templates), e.g. `x-replay-run: "{{ run.id }}"` to tag each message with
    /// its run; none by default (a header table costs the broker throughput).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl PublishStep {
    /// The `message_id` template, or its default: the event id (per event), or
    /// `<run id>:<step id>` (once), so that a consumer can drop a redelivered message.
    pub fn message_id_template(&self) -> &str {
        match (&self.message_id, self.each) {
            (Some(template), _) => template,
            (None, PublishEach::Event) => "{{ event.event_id }}",
            (None, PublishEach::Once) => "{{ run.id }}:{{ step.id }}",
        }
    }
}

fn default_routing_key() -> String {
    "{{ event.event_type }}".into()
}

fn default_payload() -> String {
    "{{ json event.payload }}".into()
}

/// How many messages a publish step sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PublishEach {
    /// One message per selected event; `event.*` is available in templates.
    #[default]
    Event,
    /// One message for the whole run.
    Once,
}

/// One SQL statement; values come only from `:name` bind parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlStep {
    /// Step id, unique in the plan (`[a-z0-9-]`).
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// What the step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The statement. Built-in binds: `:selected_event_ids`, `:batch_event_ids` (with `each: batch`),
    /// `:run_id`, `:run_started_at`, `:plan_name`.
    pub sql: String,
    /// `once`: one statement; `batch`: once per batch of the selection, bound to `:batch_event_ids`.
    #[serde(default)]
    pub each: SqlEach,
    /// Bounds on the rows affected (per execution); outside them the step fails and rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_rows: Option<ExpectRows>,
    /// Allow `UPDATE`/`DELETE` without `WHERE` (touches the whole table).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_without_where: bool,
    /// Allow a statement that changes the schema or privileges (`DROP`, `ALTER`, `TRUNCATE`,
    /// `CREATE`, `GRANT`, `REVOKE`); the review report shows it loudly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_ddl: bool,
}

/// How often a SQL step runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SqlEach {
    /// Once for the run.
    #[default]
    Once,
    /// Once per batch of selected events, committed with the batch's checkpoint.
    Batch,
}

/// Bounds on affected rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectRows {
    /// At least this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// At most this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// Wait until a condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    /// Step id, unique in the plan (`[a-z0-9-]`).
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// What the step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A query returning one boolean; the wait ends when it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Or: wait until this queue is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_empty: Option<String>,
    /// Give up (and fail the step) after this long, e.g. `30m`.
    pub timeout: String,
    /// How often to check.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: String,
}

fn default_poll_interval() -> String {
    "1s".into()
}

/// Purge every message from a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeQueueStep {
    /// Step id, unique in the plan (`[a-z0-9-]`).
    #[schemars(pattern(r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// What the step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The queue to purge.
    pub queue: String,
}

/// One rollback action, run in order when a step or a verification fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RollbackStep {
    /// Run one SQL statement with `:param` binds.
    Sql(RollbackSql),
    /// Put the snapshotted rows of these backup tables back as they were.
    RestoreBackup(RestoreBackup),
}

/// A rollback SQL statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackSql {
    /// What it undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The statement (`:run_started_at` is the start of the run being undone).
    pub sql: String,
    /// Allow `UPDATE`/`DELETE` without `WHERE`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_without_where: bool,
    /// Allow a statement that changes the schema or privileges.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_ddl: bool,
}

/// Restore snapshotted rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBackup {
    /// Tables named in `backup.tables`.
    #[schemars(length(min = 1))]
    pub tables: Vec<String>,
}
