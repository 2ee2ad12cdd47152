//! Verifications compare one way, and rollback restores only what the backup holds.

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::{RawPlan, RollbackStep};

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    for (i, v) in plan.verify.iter().enumerate() {
        let e = &v.expect;
        let count = usize::from(e.equals.is_some())
            + usize::from(e.equals_before)
            + usize::from(e.at_most.is_some() || e.at_least.is_some());
        if count != 1 {
            out.push(
                Diagnostic::error(
                    "expectation",
                    Location::root().key("verify").index(i).key("expect"),
                    "an expectation has exactly one comparison",
                )
                .with_help(
                    "one of `equals: V`, `equals_before: true`, or `at_least`/`at_most` bounds",
                ),
            );
        }
    }
    let backed_up: Vec<&str> = plan
        .backup
        .iter()
        .flat_map(|b| b.tables.iter().map(|t| t.table.as_str()))
        .collect();
    for (i, r) in plan.rollback.iter().enumerate() {
        let RollbackStep::RestoreBackup(restore) = r else {
            continue;
        };
        for (j, table) in restore.tables.iter().enumerate() {
            if !backed_up.contains(&table.as_str()) {
                out.push(
                    Diagnostic::error(
                        "restore-without-backup",
                        Location::root()
                            .key("rollback")
                            .index(i)
                            .key("tables")
                            .index(j),
                        format!("`{table}` is restored but not snapshotted in `backup.tables`"),
                    )
                    .with_help(format!(
                        "add `- table: {table}` (with a `where`) to `backup.tables`"
                    )),
                );
            }
        }
    }
    if let Some(backup) = &plan.backup {
        for (i, t) in backup.tables.iter().enumerate() {
            let here = Location::root().key("backup").key("tables").index(i);
            let is_events = t.table == plan.target.events_table;
            if t.filter.is_none() && !is_events && !t.whole_table {
                out.push(
                    Diagnostic::error(
                        "unbounded-backup",
                        here,
                        format!(
                            "backup of `{}` has no `where`: it would snapshot the whole table",
                            t.table
                        ),
                    )
                    .with_help(
                        "add `where:` choosing the rows the run touches, or `whole_table: true`",
                    ),
                );
            }
        }
    }
}
