//! A plan's SQL prepared once, at compile time: `:name` binds numbered `$1, $2, …` and checked
//! against the declared parameters and the built-ins, so that running a statement reads nothing
//! again and a bind without a value cannot surface in the middle of a run.

use std::collections::BTreeMap;
use std::fmt;

use super::builtins::BuiltinBind;
use super::sql::{self, SqlError};

/// What a `:name` in SQL is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindName {
    /// A declared parameter of the plan.
    Param(String),
    Builtin(BuiltinBind),
}

impl BindName {
    /// What `:name` means in a SQL text; `per_batch`: the text is a `sql` step with `each: batch`.
    /// A built-in takes precedence over a parameter of the same name. Whether a parameter is
    /// declared is for the caller to judge.
    pub fn classify(name: &str, per_batch: bool) -> Result<BindName, PrepareError> {
        match BuiltinBind::from_name(name) {
            Some(BuiltinBind::BatchEventIds) if !per_batch => Err(PrepareError::BatchOnly),
            Some(builtin) => Ok(BindName::Builtin(builtin)),
            None => Ok(BindName::Param(name.to_string())),
        }
    }
}

/// Why a SQL text cannot be prepared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("`:{0}` is neither a declared parameter nor a built-in")]
    Undeclared(String),
    #[error("`:batch_event_ids` is only bound in `sql` steps with `each: batch`")]
    BatchOnly,
}

/// One SQL text ready to run: placeholders numbered, every bind known to have a value.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedSql {
    /// The text with `$1, $2, …`, cut where the selection table's name goes: the table differs
    /// between a run and a rehearsal, so it is filled in when the statement runs, by joining
    /// these pieces, not by reading the SQL again.
    pieces: Vec<String>,
    /// What goes between each piece and the next.
    holes: Vec<Hole>,
    /// What `$1, $2, …` are bound to, in order.
    binds: Vec<BindName>,
}

/// A table named only when a statement runs: it differs between a run and a rehearsal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hole {
    Selection,
    Batches,
}

/// Where a run keeps the tables its statements read besides the target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables<'a> {
    /// The frozen selection (`run_id, seq, event_id, …`).
    pub selection: &'a str,
    /// The batches of batch-wise steps (`run_id, from_seq, upto_seq, done`).
    pub batches: &'a str,
}

impl PreparedSql {
    /// Prepares one text. `:selected_event_ids` becomes a subquery over the frozen selection
    /// (bound to the run's id), so that a million ids never travel through this process.
    /// `per_batch`: the text is a `sql` step with `each: batch`; `declared`: whether a name is a
    /// declared parameter.
    pub fn new(
        text: &str,
        per_batch: bool,
        declared: &dyn Fn(&str) -> bool,
    ) -> Result<PreparedSql, PrepareError> {
        let mut names: Vec<&str> = Vec::new();
        let mut binds = Vec::new();
        let mut pieces = Vec::new();
        let mut holes = Vec::new();
        let mut piece = String::with_capacity(text.len());
        let mut copied = 0;
        let spans = sql::bind_spans(text)?;
        for span in &spans {
            let number = match names.iter().position(|n| *n == span.name) {
                Some(i) => i + 1,
                None => {
                    let bind = BindName::classify(&span.name, per_batch)?;
                    if let BindName::Param(name) = &bind
                        && !declared(name)
                    {
                        return Err(PrepareError::Undeclared(name.clone()));
                    }
                    names.push(&span.name);
                    binds.push(bind);
                    names.len()
                }
            };
            piece.push_str(&text[copied..span.range.start]);
            match binds[number - 1] {
                BindName::Builtin(BuiltinBind::SelectedEventIds) => {
                    piece.push_str("ARRAY(SELECT event_id FROM ");
                    pieces.push(std::mem::take(&mut piece));
                    holes.push(Hole::Selection);
                    piece.push_str(&format!(" WHERE run_id = ${number})"));
                }
                // The events of the selection inside a batch that is done, by any step: the
                // done batches' `seq`s, hashed once, against the selection (not a scan of the
                // batches per selected event).
                BindName::Builtin(BuiltinBind::DoneEventIds) => {
                    piece.push_str("ARRAY(SELECT event_id FROM ");
                    pieces.push(std::mem::take(&mut piece));
                    holes.push(Hole::Selection);
                    piece.push_str(&format!(
                        " WHERE run_id = ${number} AND seq IN (SELECT generate_series(b.from_seq + 1, b.upto_seq) FROM "
                    ));
                    pieces.push(std::mem::take(&mut piece));
                    holes.push(Hole::Batches);
                    piece.push_str(&format!(" b WHERE b.run_id = ${number} AND b.done))"));
                }
                _ => piece.push_str(&format!("${number}")),
            }
            copied = span.range.end;
        }
        piece.push_str(&text[copied..]);
        pieces.push(piece);
        Ok(PreparedSql {
            pieces,
            holes,
            binds,
        })
    }

    /// The text to send, with `$1, $2, …` and the selection table named.
    pub fn text(&self, tables: Tables<'_>) -> String {
        let mut out = String::new();
        for (i, piece) in self.pieces.iter().enumerate() {
            out.push_str(piece);
            match self.holes.get(i) {
                Some(Hole::Selection) => out.push_str(tables.selection),
                Some(Hole::Batches) => out.push_str(tables.batches),
                None => {}
            }
        }
        out
    }

    /// What `$1, $2, …` are bound to, in order.
    pub fn binds(&self) -> &[BindName] {
        &self.binds
    }
}

/// Where a SQL text stands in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlSite<'a> {
    /// The statement of a `sql` step or the `until` query of a `wait` step, by step id.
    Step(&'a str),
    /// `verify[i].sql`.
    Verification(usize),
    /// `rollback[i].sql`.
    Rollback(usize),
    /// `guards[i].sql`.
    Guard(usize),
    /// `backup.tables[i].where`.
    BackupFilter(usize),
}

impl fmt::Display for SqlSite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlSite::Step(id) => write!(f, "the SQL of step `{id}`"),
            SqlSite::Verification(i) => write!(f, "`verify[{i}].sql`"),
            SqlSite::Rollback(i) => write!(f, "`rollback[{i}].sql`"),
            SqlSite::Guard(i) => write!(f, "`guards[{i}].sql`"),
            SqlSite::BackupFilter(i) => write!(f, "`backup.tables[{i}].where`"),
        }
    }
}

/// A statement looked up where the plan has none: the plan was not compiled with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{site} was not prepared when the plan was compiled (a bug in replay)")]
pub struct NotPrepared {
    site: String,
}

/// Every SQL text of a plan, prepared, by where it stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statements {
    steps: BTreeMap<String, PreparedSql>,
    verify: BTreeMap<usize, PreparedSql>,
    rollback: BTreeMap<usize, PreparedSql>,
    guards: BTreeMap<usize, PreparedSql>,
    backup_filters: BTreeMap<usize, PreparedSql>,
}

impl Statements {
    pub fn insert(&mut self, site: SqlSite<'_>, sql: PreparedSql) {
        match site {
            SqlSite::Step(id) => self.steps.insert(id.to_string(), sql),
            SqlSite::Verification(i) => self.verify.insert(i, sql),
            SqlSite::Rollback(i) => self.rollback.insert(i, sql),
            SqlSite::Guard(i) => self.guards.insert(i, sql),
            SqlSite::BackupFilter(i) => self.backup_filters.insert(i, sql),
        };
    }

    pub fn get(&self, site: SqlSite<'_>) -> Result<&PreparedSql, NotPrepared> {
        let found = match site {
            SqlSite::Step(id) => self.steps.get(id),
            SqlSite::Verification(i) => self.verify.get(&i),
            SqlSite::Rollback(i) => self.rollback.get(&i),
            SqlSite::Guard(i) => self.guards.get(&i),
            SqlSite::BackupFilter(i) => self.backup_filters.get(&i),
        };
        found.ok_or_else(|| NotPrepared {
            site: site.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str, per_batch: bool) -> Result<(String, Vec<BindName>), String> {
        let declared = |name: &str| ["since", "tenant"].contains(&name);
        PreparedSql::new(text, per_batch, &declared)
            .map(|p| {
                (
                    p.text(crate::plan::prepared::Tables {
                        selection: "replay.selection",
                        batches: "replay.batches",
                    }),
                    p.binds().to_vec(),
                )
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn binds_are_numbered_checked_and_the_selection_is_a_subquery() {
        use BuiltinBind::*;
        let param = |n: &str| BindName::Param(n.into());
        let cases = [
            (
                "DELETE FROM t WHERE at > now() - :since AND id = ANY(:selected_event_ids) AND at > now() - :since",
                false,
                Ok((
                    "DELETE FROM t WHERE at > now() - $1 AND id = ANY(ARRAY(SELECT event_id FROM replay.selection WHERE run_id = $2)) AND at > now() - $1",
                    vec![param("since"), BindName::Builtin(SelectedEventIds)],
                )),
            ),
            (
                "UPDATE t SET x = :plan_name WHERE id = ANY(:batch_event_ids) AND run = :run_id",
                true,
                Ok((
                    "UPDATE t SET x = $1 WHERE id = ANY($2) AND run = $3",
                    vec![
                        BindName::Builtin(PlanName),
                        BindName::Builtin(BatchEventIds),
                        BindName::Builtin(RunId),
                    ],
                )),
            ),
            (
                "SELECT ':since' -- :nope\n, x::text",
                false,
                Ok(("SELECT ':since' -- :nope\n, x::text", vec![])),
            ),
            (
                "SELECT :tenant, :other",
                false,
                Err("`:other` is neither a declared parameter nor a built-in"),
            ),
            (
                "SELECT :batch_event_ids",
                false,
                Err("`:batch_event_ids` is only bound in `sql` steps with `each: batch`"),
            ),
        ];
        for (text, per_batch, expected) in cases {
            let expected = expected
                .map(|(sql, binds)| (sql.to_string(), binds))
                .map_err(str::to_string);
            assert_eq!(case(text, per_batch), expected, "{text}");
        }
    }

    #[test]
    fn the_selection_table_is_named_when_the_statement_runs() {
        let sql = PreparedSql::new(
            "SELECT :selected_event_ids, :selected_event_ids",
            false,
            &|_| false,
        )
        .unwrap();
        assert_eq!(
            sql.text(crate::plan::prepared::Tables {
                selection: "pg_temp.s",
                batches: "replay.batches"
            }),
            "SELECT ARRAY(SELECT event_id FROM pg_temp.s WHERE run_id = $1), ARRAY(SELECT event_id FROM pg_temp.s WHERE run_id = $1)"
        );
    }
}
