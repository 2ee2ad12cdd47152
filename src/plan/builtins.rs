//! Names the engine provides to SQL binds and templates, besides the plan's own parameters.

/// Binds every SQL text gets.
pub const BINDS: &[&str] = &[
    "selected_event_ids",
    "run_id",
    "run_started_at",
    "plan_name",
];
/// Bind a `sql` step with `each: batch` gets: the event ids of the current batch.
pub const BATCH_BIND: &str = "batch_event_ids";
/// Template roots besides `params` and `event`.
pub const TEMPLATE_ROOTS: &[&str] = &["run", "plan", "step"];
/// Fields of `event` in templates.
pub const EVENT_FIELDS: &[&str] = &["event_id", "event_type", "payload", "status"];
/// Fields of `run`, `plan` and `step` in templates.
pub const RUN_FIELDS: &[&str] = &["id", "started_at"];
pub const PLAN_FIELDS: &[&str] = &["name", "hash"];
pub const STEP_FIELDS: &[&str] = &["id"];
