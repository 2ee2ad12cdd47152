//! Names the engine provides to SQL binds and templates, besides the plan's own parameters.

/// A bind the engine provides; it takes precedence over a parameter of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinBind {
    /// The frozen selection, read server-side (a million ids never travel through `replay`).
    SelectedEventIds,
    /// The selected events whose batches are done so far (for guards: what was replayed).
    DoneEventIds,
    /// The event ids of the current batch, in a `sql` step with `each: batch`.
    BatchEventIds,
    RunId,
    RunStartedAt,
    PlanName,
}

impl BuiltinBind {
    /// Every built-in bind.
    pub const ALL: [BuiltinBind; 6] = [
        BuiltinBind::SelectedEventIds,
        BuiltinBind::DoneEventIds,
        BuiltinBind::BatchEventIds,
        BuiltinBind::RunId,
        BuiltinBind::RunStartedAt,
        BuiltinBind::PlanName,
    ];

    /// The name as SQL writes it, without the colon.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinBind::SelectedEventIds => "selected_event_ids",
            BuiltinBind::DoneEventIds => "done_event_ids",
            BuiltinBind::BatchEventIds => "batch_event_ids",
            BuiltinBind::RunId => "run_id",
            BuiltinBind::RunStartedAt => "run_started_at",
            BuiltinBind::PlanName => "plan_name",
        }
    }

    pub fn from_name(name: &str) -> Option<BuiltinBind> {
        BuiltinBind::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Template roots besides `params` and `event`.
pub const TEMPLATE_ROOTS: &[&str] = &["run", "plan", "step"];
/// Fields of `event` in templates: those of the frozen selection (its status is not kept: it
/// changes under the run).
pub const EVENT_FIELDS: &[&str] = &["event_id", "event_type", "payload"];
/// Fields of `run`, `plan` and `step` in templates.
pub const RUN_FIELDS: &[&str] = &["id", "started_at"];
pub const PLAN_FIELDS: &[&str] = &["name", "hash"];
pub const STEP_FIELDS: &[&str] = &["id"];
