//! Each guard reads exactly one value (SQL or a queue's depth), has a bound, a unique name and
//! durations that parse.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::RawPlan;

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    let mut names = BTreeSet::new();
    for (i, guard) in plan.guards.iter().enumerate() {
        let at = Location::root().key("guards").index(i);
        if !names.insert(guard.name.as_str()) {
            out.push(Diagnostic::error(
                "duplicate-guard",
                at.key("name"),
                format!("another guard is named `{}`", guard.name),
            ));
        }
        match (&guard.sql, &guard.queue_depth) {
            (Some(_), Some(_)) => out.push(Diagnostic::error(
                "guard-value",
                at.clone(),
                "give `sql` or `queue_depth`, not both",
            )),
            (None, None) => out.push(Diagnostic::error(
                "guard-value",
                at.clone(),
                "a guard needs `sql` (a read-only query returning one number) or `queue_depth`",
            )),
            _ => {}
        }
        if guard.max.is_none() && guard.min.is_none() {
            out.push(Diagnostic::error(
                "guard-bound",
                at.clone(),
                "a guard needs `max` or `min`: the value it must stay within",
            ));
        }
        if guard.queue_depth.is_some() && guard.min.is_some() {
            out.push(Diagnostic::error(
                "guard-bound",
                at.key("min"),
                "a queue-depth guard takes `max` only",
            ));
        }
        if let (Some(min), Some(max)) = (guard.min, guard.max)
            && min > max
        {
            out.push(Diagnostic::error(
                "guard-bound",
                at.key("min"),
                format!("`min` ({min}) is above `max` ({max}): the guard would always trip"),
            ));
        }
        match crate::plan::duration::parse(&guard.every) {
            Err(reason) => out.push(Diagnostic::error("bad-value", at.key("every"), reason)),
            Ok(d) if d < Duration::from_millis(100) => out.push(Diagnostic::error(
                "out-of-range",
                at.key("every"),
                "a guard is checked at most every 100ms",
            )),
            Ok(_) => {}
        }
        if let Err(reason) = crate::plan::duration::parse(&guard.max_pause) {
            out.push(Diagnostic::error("bad-value", at.key("max_pause"), reason));
        }
    }
}
