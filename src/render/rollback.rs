//! `replay rollback RUN` as people and programs read it: what it restored and kept (or, previewed,
//! would restore and keep), as text or as one JSON document, and the summary before its question.

use std::fmt::Write as _;

use crate::engine::backup::Restored;
use crate::engine::report::RollbackReport;
use crate::engine::status::RollbackOutcome;
use crate::render::numbers::thousands;

/// The report on standard output. A refusal or a failure says nothing here but what to do next
/// (its error goes to standard error).
pub fn text(report: &RollbackReport) -> String {
    let mut out = String::new();
    match report.outcome {
        RollbackOutcome::WouldRollBack => {
            let _ = writeln!(
                out,
                "dry-run of the rollback of {}; nothing was written:",
                subject(report)
            );
            out.push_str(&preview_lines(report));
        }
        RollbackOutcome::RolledBack => {
            for a in &report.actions {
                let _ = writeln!(
                    out,
                    "rollback {}: {} row(s)",
                    a.action,
                    thousands(a.rows.into())
                );
            }
            for kept in &report.kept {
                let _ = writeln!(out, "{}", kept_line("kept", kept));
            }
            let _ = writeln!(
                out,
                "run `{}` is rolled back",
                report.run.as_deref().unwrap_or_default()
            );
            for warning in &report.warnings {
                let _ = writeln!(out, "warning: {warning}");
            }
        }
        RollbackOutcome::Refused | RollbackOutcome::Interrupted | RollbackOutcome::Failed => {}
    }
    for next in &report.next {
        let _ = writeln!(out, "{next}");
    }
    out
}

/// The report as one JSON document.
pub fn json(report: &RollbackReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// What the person at the terminal reads before typing the answer: the run, the target, and what
/// the rollback would restore and keep.
pub fn question(report: &RollbackReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nAbout to roll back {}:", subject(report));
    let target = match &report.target_name {
        Some(name) => format!("{name} ({})", report.target),
        None => report.target.clone(),
    };
    let _ = writeln!(out, "  target {target}");
    out.push_str(&preview_lines(report));
    out
}

/// ``run `ID` (plan `NAME`)``, and `--force` when given.
fn subject(report: &RollbackReport) -> String {
    let mut text = format!("run `{}`", report.run.as_deref().unwrap_or_default());
    if let Some(plan) = &report.plan {
        let _ = write!(text, " (plan `{plan}`)");
    }
    if report.forced {
        text.push_str(" with `--force`");
    }
    text
}

/// Each action with the rows it would change, then the rows it would keep.
fn preview_lines(report: &RollbackReport) -> String {
    let mut out = String::new();
    for a in &report.actions {
        let _ = writeln!(out, "  {}: {} row(s)", a.action, thousands(a.rows.into()));
    }
    for kept in &report.kept {
        let _ = writeln!(
            out,
            "  {} (`--force` restores them too)",
            kept_line("keeps", kept)
        );
    }
    out
}

/// ``kept 1,204 row(s) of `t` changed since the run wrote them: 17, 42, …``
fn kept_line(verb: &str, kept: &Restored) -> String {
    let mut text = format!(
        "{verb} {} row(s) of `{}` changed since the run wrote them: {}",
        thousands(kept.kept.into()),
        kept.table,
        kept.kept_keys.join(", ")
    );
    if kept.kept > kept.kept_keys.len() as u64 {
        text.push_str(", …");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::RollbackAction;

    fn report(outcome: RollbackOutcome) -> RollbackReport {
        RollbackReport {
            version: 1,
            mode: crate::engine::status::Mode::Rollback,
            outcome,
            run: Some("3f2a9c00-0000-4000-8000-000000000001".into()),
            plan: Some("reset-failed".into()),
            target: "db:5432/shop".into(),
            actions: vec![RollbackAction {
                action: "restore processed_events".into(),
                rows: 12_345,
            }],
            kept: vec![Restored {
                table: "processed_events".into(),
                restored: 12_345,
                kept: 1_203,
                kept_keys: vec!["e-1".into(), "e-2".into()],
            }],
            ..RollbackReport::default()
        }
    }

    #[test]
    fn a_preview_says_what_would_be_restored_and_kept_with_separators() {
        let mut r = report(RollbackOutcome::WouldRollBack);
        r.next = vec!["roll back with: replay rollback 3f2a9c00".into()];
        assert_eq!(
            text(&r),
            "dry-run of the rollback of run `3f2a9c00-0000-4000-8000-000000000001` (plan `reset-failed`); nothing was written:\n  \
             restore processed_events: 12,345 row(s)\n  \
             keeps 1,203 row(s) of `processed_events` changed since the run wrote them: e-1, e-2, … (`--force` restores them too)\n\
             roll back with: replay rollback 3f2a9c00\n"
        );
        assert!(
            question(&r).starts_with(
                "\nAbout to roll back run `3f2a9c00-0000-4000-8000-000000000001` (plan `reset-failed`):\n  target db:5432/shop\n  restore processed_events: 12,345 row(s)\n"
            ),
            "{}",
            question(&r)
        );
    }

    #[test]
    fn a_rollback_says_what_it_restored_and_kept() {
        let mut r = report(RollbackOutcome::RolledBack);
        r.warnings = vec!["the audit row could not be written: denied".into()];
        assert_eq!(
            text(&r),
            "rollback restore processed_events: 12,345 row(s)\n\
             kept 1,203 row(s) of `processed_events` changed since the run wrote them: e-1, e-2, …\n\
             run `3f2a9c00-0000-4000-8000-000000000001` is rolled back\n\
             warning: the audit row could not be written: denied\n"
        );
        for outcome in [
            RollbackOutcome::Refused,
            RollbackOutcome::Interrupted,
            RollbackOutcome::Failed,
        ] {
            assert_eq!(text(&report(outcome)), "", "{outcome:?}");
        }
    }

    #[test]
    fn the_json_names_the_outcome_and_each_action() -> Result<(), serde_json::Error> {
        let value: serde_json::Value =
            serde_json::from_str(&json(&report(RollbackOutcome::WouldRollBack)))?;
        assert_eq!(value["mode"], "rollback");
        assert_eq!(value["outcome"], "would_roll_back");
        assert_eq!(value["actions"][0]["action"], "restore processed_events");
        assert_eq!(value["actions"][0]["rows"], 12_345);
        assert_eq!(value["kept"][0]["kept_keys"][1], "e-2");
        Ok(())
    }
}
