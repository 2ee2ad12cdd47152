//! SQL texts parse, take values only as binds, write only where allowed, and never bypass idempotency silently.

use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::RawPlan;
use crate::plan::sql::{self, SqlError};
use crate::plan::usage::{self, SqlRole};

/// `… at Line: 3, Column: 7` of a parser's message.
fn parser_position(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.rfind(" at Line: ")? + " at Line: ".len()..];
    let (line, col) = rest.split_once(", Column: ")?;
    let col: String = col.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    let events_table = sql::normalize_table(&plan.target.events_table);
    for text in usage::sql_texts(plan) {
        // A backup filter is a condition; parse it inside the query that will use it.
        let statement = match text.role {
            SqlRole::BackupFilter => format!("SELECT 1 WHERE {}", text.text),
            _ => text.text.to_string(),
        };
        let info = match sql::analyze(&statement) {
            Ok(info) => info,
            Err(err) => {
                // The parser's place in the text, as a place in the plan file.
                let mut location = text.location.clone();
                if let SqlError::Syntax(message) = &err {
                    let prefix = match text.role {
                        SqlRole::BackupFilter => "SELECT 1 WHERE ".len(),
                        _ => 0,
                    };
                    location.inner = parser_position(message).and_then(|(l, c)| match l {
                        1 => c.checked_sub(prefix).filter(|c| *c > 0).map(|c| (1, c)),
                        _ => Some((l, c)),
                    });
                }
                let d = Diagnostic::error(
                    match err {
                        SqlError::Template => "template-in-sql",
                        SqlError::Multiple(_) => "multiple-statements",
                        _ => "sql-syntax",
                    },
                    location,
                    err.to_string(),
                );
                out.push(match err {
                    SqlError::Multiple(_) => d.with_help("split it into several `sql` steps"),
                    SqlError::Template => d.with_help(
                        "e.g. `WHERE id = :period_id` with `period_id` declared in `params`",
                    ),
                    _ => d,
                });
                continue;
            }
        };
        let (allow, allow_ddl) = match text.role {
            SqlRole::Step {
                allow_without_where,
                allow_ddl,
                ..
            }
            | SqlRole::Rollback {
                allow_without_where,
                allow_ddl,
            } => (allow_without_where, allow_ddl),
            SqlRole::Query | SqlRole::BackupFilter => {
                if info.writes {
                    out.push(Diagnostic::error(
                        "query-writes",
                        text.location.clone(),
                        "this query must be read-only (a `SELECT`), but it changes data",
                    ));
                }
                continue;
            }
        };
        if let Some(verb) = info.ddl
            && !allow_ddl
        {
            out.push(
                Diagnostic::error(
                    "ddl-required",
                    text.location.clone(),
                    format!("`{verb}` changes the schema or privileges, which a replay rarely should"),
                )
                .with_help("if that is intended, set `allow_ddl: true` on this step; the review report will show it"),
            );
        }
        if let Some(verb) = info.unbounded_write
            && !allow
        {
            out.push(
                    Diagnostic::error(
                        "unbounded-write",
                        text.location.clone(),
                        format!("`{verb}` without `WHERE` would touch every row of the table"),
                    )
                    .with_help("add a `WHERE`, or set `allow_without_where: true` on this step if that is intended"),
                );
        }
        // Deleting or truncating the events table removes idempotency records.
        let lowered = statement.to_lowercase();
        let removes = lowered.contains("delete") || lowered.contains("truncate");
        let deletes_events = removes
            && info
                .written_tables
                .iter()
                .any(|t| *t == events_table || (t == "*" && lowered.contains(&events_table)));
        if deletes_events && !plan.safety.force {
            out.push(
                Diagnostic::error(
                    "force-required",
                    text.location.clone(),
                    format!(
                        "deleting from `{}` removes idempotency records: events will be processed as new",
                        plan.target.events_table
                    ),
                )
                .with_help("set `safety.force: true` and `safety.acknowledge: duplicate-side-effects`"),
            );
        }
    }
}
