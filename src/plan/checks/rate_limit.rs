//! Rates and durations are in range, and back-pressure names its queue.

use std::time::Duration;

use crate::plan::diagnostic::Diagnostic;
use crate::plan::duration;
use crate::plan::location::Location;
use crate::plan::model::{RawPlan, Step};

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    let here = Location::root().key("rate_limit");
    let r = &plan.rate_limit;
    match (&r.pause_when_queue_depth_above, &r.queue) {
        (Some(_), None) => out.push(Diagnostic::error(
            "missing-key",
            here.key("pause_when_queue_depth_above").at_key(),
            "`pause_when_queue_depth_above` needs `queue`: the queue whose depth is watched",
        )),
        (None, Some(_)) => out.push(Diagnostic::warning(
            "unused-setting",
            here.key("queue").at_key(),
            "`queue` has no effect without `pause_when_queue_depth_above`",
        )),
        _ => {}
    }
    if r.batch_size > r.per_second.saturating_mul(60) {
        out.push(Diagnostic::warning(
            "out-of-range",
            here.key("batch_size"),
            format!(
                "a batch of {} at {}/s takes over a minute; checkpoints will be far apart",
                r.batch_size, r.per_second
            ),
        ));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let Step::Wait(w) = step else { continue };
        let at = Location::root().key("steps").index(i);
        if w.until.is_none() == w.queue_empty.is_none() {
            out.push(Diagnostic::error(
                "wait-condition",
                at.clone(),
                "a wait step needs exactly one of `until` (a query) or `queue_empty` (a queue name)",
            ));
        }
        bounded(
            out,
            at.key("timeout"),
            &w.timeout,
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        );
        bounded(
            out,
            at.key("poll_interval"),
            &w.poll_interval,
            Duration::from_millis(100),
            Duration::from_secs(600),
        );
    }
}

fn bounded(out: &mut Vec<Diagnostic>, at: Location, text: &str, min: Duration, max: Duration) {
    match duration::parse(text) {
        Err(reason) => out.push(Diagnostic::error("bad-value", at, reason)),
        Ok(d) if d < min || d > max => out.push(Diagnostic::error(
            "out-of-range",
            at.clone(),
            format!(
                "`{at}` is {}; it must be between {} and {}",
                duration::format(d),
                duration::format(min),
                duration::format(max)
            ),
        )),
        Ok(_) => {}
    }
}
