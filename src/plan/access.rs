//! Which tables a SQL text reads and writes, found in the parsed statement (PostgreSQL dialect),
//! and so which table privileges it needs.

use std::ops::ControlFlow;

use sqlparser::ast::{
    FromTable, MergeAction, ObjectName, OnConflict, OnConflictAction, OnInsert, Query, Statement,
    TableFactor, TableObject, Visit,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::sql::SqlError;

/// A table privilege, as `has_table_privilege` and `GRANT` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Privilege {
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
        }
    }
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One table a statement touches, with the privilege it needs there. `table` is the name as
/// written in the SQL (quotes kept, so PostgreSQL resolves it as the statement would).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableAccess {
    pub table: String,
    pub privilege: Privilege,
}

/// The tables one statement reads (SELECT) and writes (INSERT, UPDATE, DELETE, TRUNCATE), CTE
/// names and table functions left out. A table an `UPDATE` or `DELETE` changes is read too (its
/// `WHERE` reads it).
pub fn of_statement(text: &str) -> Result<Vec<TableAccess>, SqlError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, text)
        .map_err(|e| SqlError::Syntax(e.to_string()))?;
    let mut found = Found::default();
    let _ = statements.visit(&mut found);
    Ok(found.finish())
}

/// The tables a condition (a backup's `where`) reads.
pub fn of_condition(text: &str) -> Result<Vec<TableAccess>, SqlError> {
    of_statement(&format!("SELECT 1 WHERE ({text})"))
}

#[derive(Default)]
struct Found {
    ctes: Vec<String>,
    accesses: Vec<TableAccess>,
    /// Inside how many queries with `FOR UPDATE`/`FOR SHARE`: their tables need UPDATE too.
    locking: usize,
}

impl Found {
    fn add(&mut self, name: &ObjectName, privilege: Privilege) {
        self.accesses.push(TableAccess {
            table: name.to_string(),
            privilege,
        });
    }

    fn finish(self) -> Vec<TableAccess> {
        let ctes = self.ctes;
        let mut out: Vec<TableAccess> = self
            .accesses
            .into_iter()
            .filter(|a| a.table.contains('.') || !ctes.contains(&a.table))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl sqlparser::ast::Visitor for Found {
    type Break = ();

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if !query.locks.is_empty() {
            self.locking -= 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if !query.locks.is_empty() {
            self.locking += 1;
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.push(cte.alias.name.to_string());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        // `args` marks a table function (`unnest(…)`), which needs no table privilege.
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            self.add(name, Privilege::Select);
            if self.locking > 0 {
                self.add(name, Privilege::Update);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Update(update) => {
                if let TableFactor::Table { name, .. } = &update.table.relation {
                    self.add(name, Privilege::Update);
                    if update.returning.is_some() {
                        self.add(name, Privilege::Select);
                    }
                }
            }
            Statement::Merge(merge) => {
                if let TableFactor::Table { name, .. } = &merge.table {
                    for clause in &merge.clauses {
                        let privilege = match clause.action {
                            MergeAction::Insert(_) => Privilege::Insert,
                            MergeAction::Update(_) => Privilege::Update,
                            MergeAction::Delete { .. } => Privilege::Delete,
                            _ => continue,
                        };
                        self.add(name, privilege);
                    }
                }
            }
            Statement::Delete(delete) => {
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                for t in from {
                    if let TableFactor::Table { name, .. } = &t.relation {
                        self.add(name, Privilege::Delete);
                    }
                }
            }
            Statement::Insert(insert) => {
                if let TableObject::TableName(name) = &insert.table {
                    self.add(name, Privilege::Insert);
                    // `ON CONFLICT DO UPDATE` updates, `RETURNING` reads.
                    if let Some(OnInsert::OnConflict(OnConflict {
                        action: OnConflictAction::DoUpdate(_),
                        ..
                    })) = &insert.on
                    {
                        self.add(name, Privilege::Update);
                    }
                    if insert.returning.is_some() {
                        self.add(name, Privilege::Select);
                    }
                }
            }
            Statement::Truncate(truncate) => {
                for t in &truncate.table_names {
                    self.add(&t.name, Privilege::Truncate);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str) -> Vec<String> {
        of_statement(text)
            .unwrap()
            .into_iter()
            .map(|a| format!("{} {}", a.privilege, a.table))
            .collect()
    }

    #[test]
    fn tables_and_privileges_are_found_in_the_parsed_statement() {
        let cases: [(&str, &[&str]); 11] = [
            (
                "INSERT INTO totals (k, n) VALUES (:k, 1) ON CONFLICT (k) DO UPDATE SET n = totals.n + 1",
                &["INSERT totals", "UPDATE totals"],
            ),
            (
                "INSERT INTO notes (x) VALUES (1) RETURNING id",
                &["SELECT notes", "INSERT notes"],
            ),
            (
                "MERGE INTO totals t USING staged s ON t.k = s.k WHEN MATCHED THEN UPDATE SET n = s.n WHEN NOT MATCHED THEN INSERT (k, n) VALUES (s.k, s.n)",
                &[
                    "SELECT staged",
                    "SELECT totals",
                    "INSERT totals",
                    "UPDATE totals",
                ],
            ),
            (
                "SELECT id FROM queue_items WHERE done = false FOR UPDATE SKIP LOCKED",
                &["SELECT queue_items", "UPDATE queue_items"],
            ),
            (
                "UPDATE allocations SET status = 'pending' WHERE period_id = :period_id",
                &["SELECT allocations", "UPDATE allocations"],
            ),
            (
                "DELETE FROM allocations a USING contributions c WHERE a.id = c.id",
                &[
                    "SELECT allocations",
                    "DELETE allocations",
                    "SELECT contributions",
                ],
            ),
            (
                "INSERT INTO audit.notes (x) SELECT id FROM \"Members\" m, unnest(:ids) u",
                &["SELECT \"Members\"", "INSERT audit.notes"],
            ),
            (
                "SELECT count(*) FROM processed_events WHERE event_id = ANY(:selected_event_ids)",
                &["SELECT processed_events"],
            ),
            (
                "WITH gone AS (DELETE FROM idempotency_keys WHERE key = :k RETURNING key) SELECT count(*) FROM gone",
                &["SELECT idempotency_keys", "DELETE idempotency_keys"],
            ),
            (
                "SELECT status = 'closed' FROM allocation_periods WHERE id IN (SELECT period_id FROM allocations)",
                &["SELECT allocation_periods", "SELECT allocations"],
            ),
            ("TRUNCATE scratch", &["TRUNCATE scratch"]),
        ];
        for (text, expected) in cases {
            let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            let mut got = case(text);
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn a_condition_reads_the_tables_it_names() {
        let got: Vec<String> = of_condition("period_id IN (SELECT id FROM allocation_periods)")
            .unwrap()
            .into_iter()
            .map(|a| a.table)
            .collect();
        assert_eq!(got, ["allocation_periods"]);
    }
}
