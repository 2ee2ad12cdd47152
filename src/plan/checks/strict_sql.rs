//! `--strict-sql`: every SQL text uses only allowed functions and statement kinds.

use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::RawPlan;
use crate::plan::sql;
use crate::plan::strict_sql;
use crate::plan::usage::{self, SqlRole};

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    for text in usage::sql_texts(plan) {
        let statement = match text.role {
            SqlRole::BackupFilter => format!("SELECT 1 WHERE {}", text.text),
            _ => text.text.to_string(),
        };
        // A text that does not parse is reported by the SQL check already.
        let Ok(parsed) = sql::parse(&statement) else {
            continue;
        };
        for refusal in strict_sql::refusals(&parsed) {
            let help = match refusal {
                strict_sql::Refusal::Function(_) | strict_sql::Refusal::Schema(_) => {
                    "`--strict-sql` allows the functions listed in docs/strict-sql.md; a plan that needs \
                     another must be dry-run by an operator, without `--strict-sql`"
                }
                _ => {
                    "`--strict-sql` allows `SELECT`, `INSERT`, `UPDATE`, `DELETE` and `MERGE` (see \
                     docs/strict-sql.md); a plan that needs more must be dry-run by an operator, \
                     without `--strict-sql`"
                }
            };
            out.push(
                Diagnostic::error("strict-sql", text.location.clone(), refusal.message())
                    .with_help(help),
            );
        }
    }
}
