//! The canary: the first events of the frozen selection go through every step, the pause and the
//! verifications before the rest. Its steps are the plan's, recorded under `canary/<id>`, and
//! bound to the canary's events; when it passes, the plan's batch-wise steps start after it (their
//! checkpoint), so a resume never runs it again.

use std::time::Duration;

use crate::plan::Plan;
use crate::plan::model::{HttpEach, PublishEach, SqlEach, Step};

/// Step ids of the canary's records; `/` never stands in a plan's step id.
const PREFIX: &str = "canary/";

/// The id under which the canary records a step of the plan.
pub fn recorded_id(step: &str) -> String {
    format!("{PREFIX}{step}")
}

/// The plan's step id of a recorded one (the canary's records name the plan's steps).
pub fn plan_step_id(recorded: &str) -> &str {
    recorded.strip_prefix(PREFIX).unwrap_or(recorded)
}

/// The name under which the canary keeps a verification's value before the run.
pub fn before_name(verification: &str) -> String {
    format!("{PREFIX}{verification}")
}

/// How many events the canary of a run of `selected` takes: `None` without a canary, or when it
/// would be the whole selection (then the run is judged once, at its end).
pub fn size(plan: &Plan, selected: u64) -> Option<u64> {
    plan.raw
        .canary
        .as_ref()
        .map(|c| c.events.min(selected))
        .filter(|&n| n > 0 && n < selected)
}

/// The plan's steps as the canary runs them.
pub fn steps(plan: &Plan) -> Vec<Step> {
    plan.raw
        .steps
        .iter()
        .map(|s| s.recorded_as(recorded_id(s.id())))
        .collect()
}

/// The plan's batch-wise steps, which go on after the canary from its last event (a once-step
/// runs again after the canary, over the rest).
pub fn batch_wise(plan: &Plan) -> Vec<&str> {
    plan.raw
        .steps
        .iter()
        .filter(|s| match s {
            Step::Reset(_) => true,
            Step::Sql(s) => s.each == SqlEach::Batch,
            Step::Publish(p) => p.each == PublishEach::Event,
            Step::Http(h) => h.each == HttpEach::Event,
            Step::Wait(_) | Step::PurgeQueue(_) => false,
        })
        .map(Step::id)
        .collect()
}

/// The selection as the canary's steps and verifications see it: its first `n` events.
pub fn canary_table(selection: &str, n: u64) -> String {
    format!("(SELECT * FROM {selection} WHERE seq <= {n}) canary")
}

/// The selection as the steps after the canary see it: the events it did not take.
pub fn rest_table(selection: &str, n: u64) -> String {
    format!("(SELECT * FROM {selection} WHERE seq > {n}) rest")
}

/// The selection a rollback of the run binds `:selected_event_ids` to: while its canary has not
/// passed, only the canary's events were touched, and only they are undone.
pub async fn undo_table(
    plan: &Plan,
    pool: &sqlx::PgPool,
    run_id: uuid::Uuid,
    selected: Option<i64>,
    selection: &str,
) -> Result<String, crate::engine::error::RunError> {
    use crate::engine::state;
    match selected.and_then(|n| size(plan, n as u64)) {
        Some(n) if !state::logged(pool, run_id, state::CANARY_PASSED).await? => {
            Ok(canary_table(selection, n))
        }
        _ => Ok(selection.to_string()),
    }
}

/// How long to wait after the canary's steps before judging it.
pub fn pause(plan: &Plan) -> Duration {
    plan.raw
        .canary
        .as_ref()
        .and_then(|c| c.pause.as_deref())
        .and_then(|p| crate::plan::duration::parse(p).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_ids_name_the_plans_steps() {
        assert_eq!(recorded_id("reset"), "canary/reset");
        assert_eq!(plan_step_id("canary/reset"), "reset");
        assert_eq!(plan_step_id("reset"), "reset");
    }
}
