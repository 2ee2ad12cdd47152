//! A canary is judged by the plan's verifications, so it needs at least one, and its pause is a
//! duration.

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::RawPlan;

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    let Some(canary) = &plan.canary else { return };
    let at = Location::root().key("canary");
    if plan.verify.is_empty() {
        out.push(
            Diagnostic::error(
                "canary-unjudged",
                at.clone(),
                "a canary is judged by the plan's verifications, and the plan has none",
            )
            .with_help("add a `verify:` query over `:selected_event_ids` (the canary's events while it runs)"),
        );
    }
    if let Some(pause) = &canary.pause
        && let Err(reason) = crate::plan::duration::parse(pause)
    {
        out.push(Diagnostic::error("bad-value", at.key("pause"), reason));
    }
}
