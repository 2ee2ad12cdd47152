//! `force` carries its acknowledgement, and the window names a real time zone.

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::RawPlan;

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    let here = Location::root().key("safety");
    if plan.safety.force && plan.safety.acknowledge.is_none() {
        out.push(
            Diagnostic::error(
                "force-unacknowledged",
                here.key("force"),
                "`force: true` bypasses idempotency: side effects (emails, payments) may happen twice",
            )
            .with_help("add `acknowledge: duplicate-side-effects` to `safety` once this is understood"),
        );
    }
    if !plan.safety.force && plan.safety.acknowledge.is_some() {
        out.push(Diagnostic::warning(
            "force-unacknowledged",
            here.key("acknowledge").at_key(),
            "`acknowledge` has no effect without `force: true`",
        ));
    }
    if let Some(recent) = &plan.safety.recent_dump
        && let Err(reason) = crate::plan::duration::parse(&recent.max_age)
    {
        out.push(Diagnostic::error(
            "bad-value",
            here.key("recent_dump").key("max_age"),
            reason,
        ));
    }
    if let Some(window) = &plan.safety.window {
        if window.timezone.parse::<chrono_tz::Tz>().is_err() {
            out.push(
                Diagnostic::error(
                    "bad-value",
                    here.key("window").key("timezone"),
                    format!("`{}` is not an IANA time zone", window.timezone),
                )
                .with_help("e.g. `UTC`, `Europe/Berlin`, `America/New_York`"),
            );
        }
        if let Some((from, to)) = window.between.split_once('-')
            && from == to
        {
            out.push(Diagnostic::error(
                "bad-value",
                here.key("window").key("between"),
                "the window opens and closes at the same minute",
            ));
        }
    }
}
