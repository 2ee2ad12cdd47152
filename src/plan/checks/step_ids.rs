//! Step ids are unique: checkpoints and reports are keyed by them.

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::RawPlan;

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    for (i, step) in plan.steps.iter().enumerate() {
        if let Some(first) = plan.steps[..i].iter().position(|s| s.id() == step.id()) {
            out.push(
                Diagnostic::error(
                    "duplicate-step-id",
                    Location::root().key("steps").index(i).key("id"),
                    format!("step id `{}` is already used by steps[{first}]", step.id()),
                )
                .with_help("give every step its own id; checkpoints are kept per step id"),
            );
        }
    }
}
