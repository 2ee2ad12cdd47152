//! The table privileges a plan needs on its target, and why: found offline from the plan (its
//! target, its steps' kinds, every SQL text parsed, its backups), checked by `replay doctor`.

use super::access::{self, Privilege};
use super::model::{RawPlan, RollbackStep, Step, Target};
use super::selection::quote_ident;
use super::usage::{self, SqlRole};

/// A privilege the plan needs on a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNeed {
    /// How PostgreSQL finds the table (`to_regclass` text: quoted as the engine quotes it, or
    /// as the plan's SQL writes it).
    pub lookup: String,
    /// The name as the plan writes it.
    pub table: String,
    pub privilege: Privilege,
    /// What needs it, e.g. `steps[2].sql` or `reset steps`.
    pub why: String,
    /// The events or audit table (whose existence the target's own checks report).
    pub target_table: bool,
}

/// What a `restore_backup` needs UPDATE and INSERT for.
pub const RESTORE: &str = "rollback restore_backup";

/// Every table privilege the plan needs; a SQL text that does not parse is left out (`replay
/// validate` reports it).
pub fn table_needs(plan: &RawPlan) -> Vec<TableNeed> {
    let mut out = target_needs(
        &plan.target,
        plan.steps.iter().any(|s| matches!(s, Step::Reset(_))),
    );
    let configured = |table: &str, privilege, why: String| TableNeed {
        lookup: quote_ident(table),
        table: table.to_string(),
        privilege,
        why,
        target_table: false,
    };
    for text in usage::sql_texts(plan) {
        let found = match text.role {
            SqlRole::BackupFilter => access::of_condition(text.text),
            _ => access::of_statement(text.text),
        };
        for a in found.unwrap_or_default() {
            out.push(TableNeed {
                lookup: a.table.clone(),
                table: a.table,
                privilege: a.privilege,
                why: text.location.to_string(),
                target_table: false,
            });
        }
    }
    if let Some(backup) = &plan.backup {
        let restored: Vec<&String> = plan
            .rollback
            .iter()
            .filter_map(|r| match r {
                RollbackStep::RestoreBackup(r) => Some(&r.tables),
                RollbackStep::Sql(_) => None,
            })
            .flatten()
            .collect();
        for t in &backup.tables {
            out.push(configured(&t.table, Privilege::Select, "backup".into()));
            if restored.contains(&&t.table) {
                for p in [Privilege::Update, Privilege::Insert] {
                    out.push(configured(&t.table, p, RESTORE.into()));
                }
            }
        }
    }
    out
}

/// What any run on this target needs: SELECT on the events table (the selection), UPDATE when
/// the plan resets events, INSERT on the audit table (one row per run).
pub fn target_needs(target: &Target, resets: bool) -> Vec<TableNeed> {
    let configured = |table: &str, privilege, why: &str| TableNeed {
        lookup: quote_ident(table),
        table: table.to_string(),
        privilege,
        why: why.into(),
        target_table: true,
    };
    let mut out = vec![configured(
        &target.events_table,
        Privilege::Select,
        "the selection",
    )];
    if resets {
        out.push(configured(
            &target.events_table,
            Privilege::Update,
            "reset steps",
        ));
    }
    if !target.audit_table.is_empty() {
        out.push(configured(
            &target.audit_table,
            Privilege::Insert,
            "the audit row",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plans_needs_come_from_its_target_steps_sql_and_backups() {
        let yaml = r#"
version: 1
name: needs
reason: "a test of the privileges a plan needs"
select: { status: [error] }
backup:
  tables:
    - table: allocations
      where: "period_id = :p"
steps:
  - { id: reset, kind: reset }
  - id: delete
    kind: sql
    sql: "DELETE FROM allocations WHERE period_id = :p"
verify:
  - name: v
    sql: "SELECT count(*) FROM payments"
    expect: { equals: 0 }
rollback:
  - kind: restore_backup
    tables: [allocations]
params: { p: { type: uuid } }
"#;
        let validated = crate::plan::validate(
            crate::plan::Source::from_text("needs.yaml".into(), yaml.into()).unwrap(),
        );
        let plan = validated.valid_plan().expect("valid");
        let mut got: Vec<String> = table_needs(plan)
            .into_iter()
            .map(|n| format!("{} {} ({})", n.privilege, n.table, n.why))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "DELETE allocations (steps[1].sql)",
                "INSERT allocations (rollback restore_backup)",
                "INSERT audit_log (the audit row)",
                "SELECT allocations (backup)",
                "SELECT allocations (steps[1].sql)",
                "SELECT payments (verify[0].sql)",
                "SELECT processed_events (the selection)",
                "UPDATE allocations (rollback restore_backup)",
                "UPDATE processed_events (reset steps)",
            ]
        );
    }
}
