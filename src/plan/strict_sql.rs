//! `--strict-sql`: the functions and statement kinds a plan from an untrusted pull request may use.
//!
//! A dry-run executes a plan's SQL inside a transaction that is rolled back, but some calls have
//! effects no rollback undoes (`pg_terminate_backend`, `dblink_exec`, `COPY … TO PROGRAM`,
//! session settings, advisory locks, sequences). Strict mode judges the parsed statement, never
//! its text: every function call (in expressions and in `FROM`) must be on [`ALLOWED_FUNCTIONS`],
//! and the statement must be a `SELECT`, `INSERT`, `UPDATE`, `DELETE` or `MERGE`. The lists here
//! are the documented ones: `docs/strict-sql.md` is generated from them (see [`allowlist_markdown`]).

use std::fmt::Write as _;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, Select, Statement, TableFactor, Visit, Visitor,
};

/// Functions allowed in strict mode, by group, each group with what it is for. Names are judged
/// after `pg_catalog.` is taken off; any other schema is refused.
pub const ALLOWED_FUNCTIONS: &[(&str, &[&str])] = &[
    (
        "Aggregates",
        &[
            "array_agg",
            "avg",
            "bit_and",
            "bit_or",
            "bool_and",
            "bool_or",
            "count",
            "every",
            "json_agg",
            "json_object_agg",
            "jsonb_agg",
            "jsonb_object_agg",
            "max",
            "min",
            "mode",
            "percentile_cont",
            "percentile_disc",
            "stddev",
            "stddev_pop",
            "stddev_samp",
            "string_agg",
            "sum",
            "var_pop",
            "var_samp",
            "variance",
        ],
    ),
    (
        "Window functions",
        &[
            "cume_dist",
            "dense_rank",
            "first_value",
            "lag",
            "last_value",
            "lead",
            "nth_value",
            "ntile",
            "percent_rank",
            "rank",
            "row_number",
        ],
    ),
    (
        "Date and time",
        &[
            "age",
            "clock_timestamp",
            "current_date",
            "current_time",
            "current_timestamp",
            "date_bin",
            "date_part",
            "date_trunc",
            "isfinite",
            "justify_days",
            "justify_hours",
            "justify_interval",
            "localtime",
            "localtimestamp",
            "make_date",
            "make_interval",
            "make_time",
            "make_timestamp",
            "make_timestamptz",
            "now",
            "statement_timestamp",
            "timezone",
            "to_char",
            "to_date",
            "to_timestamp",
            "transaction_timestamp",
        ],
    ),
    (
        "Conditionals",
        &[
            "coalesce",
            "greatest",
            "least",
            "nullif",
            "num_nonnulls",
            "num_nulls",
        ],
    ),
    (
        "Strings",
        &[
            "btrim",
            "char_length",
            "character_length",
            "concat",
            "concat_ws",
            "decode",
            "encode",
            "format",
            "initcap",
            "left",
            "length",
            "lower",
            "lpad",
            "ltrim",
            "md5",
            "octet_length",
            "position",
            "regexp_like",
            "regexp_match",
            "regexp_matches",
            "regexp_replace",
            "regexp_split_to_array",
            "repeat",
            "replace",
            "reverse",
            "right",
            "rpad",
            "rtrim",
            "split_part",
            "starts_with",
            "string_to_array",
            "strpos",
            "substr",
            "substring",
            "to_hex",
            "translate",
            "trim",
            "upper",
        ],
    ),
    (
        "Numbers",
        &[
            "abs",
            "ceil",
            "ceiling",
            "div",
            "floor",
            "mod",
            "power",
            "random",
            "round",
            "sign",
            "sqrt",
            "to_number",
            "trunc",
            "width_bucket",
        ],
    ),
    (
        "JSON and JSONB",
        &[
            "array_to_json",
            "json_array_elements",
            "json_array_elements_text",
            "json_array_length",
            "json_build_array",
            "json_build_object",
            "json_each",
            "json_each_text",
            "json_extract_path",
            "json_extract_path_text",
            "json_object",
            "json_object_keys",
            "json_strip_nulls",
            "json_typeof",
            "jsonb_array_elements",
            "jsonb_array_elements_text",
            "jsonb_array_length",
            "jsonb_build_array",
            "jsonb_build_object",
            "jsonb_each",
            "jsonb_each_text",
            "jsonb_extract_path",
            "jsonb_extract_path_text",
            "jsonb_insert",
            "jsonb_object",
            "jsonb_object_keys",
            "jsonb_path_exists",
            "jsonb_path_match",
            "jsonb_path_query",
            "jsonb_path_query_array",
            "jsonb_path_query_first",
            "jsonb_pretty",
            "jsonb_set",
            "jsonb_set_lax",
            "jsonb_strip_nulls",
            "jsonb_typeof",
            "row_to_json",
            "to_json",
            "to_jsonb",
        ],
    ),
    (
        "Arrays and sets",
        &[
            "array",
            "array_append",
            "array_cat",
            "array_dims",
            "array_length",
            "array_lower",
            "array_ndims",
            "array_position",
            "array_positions",
            "array_prepend",
            "array_remove",
            "array_replace",
            "array_to_string",
            "array_upper",
            "cardinality",
            "generate_series",
            "generate_subscripts",
            "unnest",
        ],
    ),
    ("Identifiers", &["gen_random_uuid"]),
];

/// Statement kinds strict mode refuses, by their leading keywords, with why. Every statement that
/// is not a `SELECT`, `INSERT`, `UPDATE`, `DELETE` or `MERGE` is refused; these say why for the
/// ones a plan is most likely to try. The longest matching keyword sequence wins.
pub const REFUSED_STATEMENTS: &[(&str, &str)] = &[
    (
        "COPY",
        "reads or writes server files, or runs a program (`TO PROGRAM`): a rollback undoes neither",
    ),
    (
        "DO",
        "runs an anonymous code block, which can do anything a function can",
    ),
    (
        "CALL",
        "runs a procedure, which can commit on its own and call anything",
    ),
    (
        "SET",
        "changes the session's settings or role, which outlive the statement on a pooled connection",
    ),
    (
        "RESET",
        "changes the session's settings, which outlive the statement on a pooled connection",
    ),
    (
        "LISTEN",
        "subscribes the session to notifications, which outlives the statement",
    ),
    ("UNLISTEN", "changes the session's subscriptions"),
    (
        "NOTIFY",
        "signals other sessions and programs; a replay has no need to",
    ),
    (
        "VACUUM",
        "cannot run inside a transaction, and its work is not undone",
    ),
    (
        "ANALYZE",
        "updates planner statistics in place (`pg_class`), which a rollback leaves",
    ),
    (
        "CHECKPOINT",
        "forces a server-wide checkpoint; not a replay's business",
    ),
    ("LOAD", "loads a shared library into the server process"),
    ("DISCARD", "throws away the session's state"),
    (
        "LOCK",
        "takes explicit table locks that block staging's own traffic until the dry-run ends",
    ),
    (
        "PREPARE",
        "creates session-level prepared statements that outlive the transaction",
    ),
    ("EXECUTE", "runs a prepared statement that was not reviewed"),
    ("DEALLOCATE", "changes the session's prepared statements"),
    (
        "BEGIN",
        "transaction control: the run (and the dry-run's rollback) owns the transaction",
    ),
    (
        "START TRANSACTION",
        "transaction control: the run (and the dry-run's rollback) owns the transaction",
    ),
    (
        "COMMIT",
        "transaction control: a `COMMIT` would make a dry-run's writes permanent",
    ),
    (
        "ROLLBACK",
        "transaction control: the run (and the dry-run's rollback) owns the transaction",
    ),
    (
        "SAVEPOINT",
        "transaction control: the run (and the dry-run's rollback) owns the transaction",
    ),
    (
        "RELEASE",
        "transaction control: the run (and the dry-run's rollback) owns the transaction",
    ),
    ("GRANT", "changes privileges"),
    ("REVOKE", "changes privileges"),
    ("CREATE ROLE", "creates a role"),
    ("CREATE USER", "creates a role"),
    (
        "ALTER ROLE",
        "changes a role (its password, its privileges)",
    ),
    (
        "ALTER USER",
        "changes a role (its password, its privileges)",
    ),
    ("DROP ROLE", "drops a role"),
    ("DROP USER", "drops a role"),
    (
        "ALTER SYSTEM",
        "writes the server's configuration file, outside any transaction",
    ),
    (
        "CREATE DATABASE",
        "cannot run inside a transaction, so no rollback undoes it",
    ),
    (
        "DROP DATABASE",
        "cannot run inside a transaction, so no rollback undoes it",
    ),
    (
        "CREATE EXTENSION",
        "installs code into the database (e.g. `dblink`, which can reach other servers)",
    ),
    (
        "CREATE FUNCTION",
        "defines code that later statements could call",
    ),
    (
        "CREATE PROCEDURE",
        "defines code that later statements could call",
    ),
    (
        "CREATE",
        "changes the schema: it holds an `ACCESS EXCLUSIVE` lock on staging until the dry-run ends, and some forms (`CONCURRENTLY`) cannot be rolled back",
    ),
    (
        "ALTER",
        "changes the schema: it holds an `ACCESS EXCLUSIVE` lock on staging until the dry-run ends",
    ),
    (
        "DROP",
        "changes the schema: it holds an `ACCESS EXCLUSIVE` lock on staging until the dry-run ends",
    ),
    (
        "TRUNCATE",
        "holds an `ACCESS EXCLUSIVE` lock on staging until the dry-run ends",
    ),
    ("COMMENT", "changes the schema's documentation"),
];

/// Why statements without a specific reason are refused.
const OTHER_STATEMENT: &str =
    "strict mode allows only `SELECT`, `INSERT`, `UPDATE`, `DELETE` and `MERGE`";

/// One thing strict mode refuses in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A function that is not on the allowlist, as written (schema included).
    Function(String),
    /// A function in a schema other than `pg_catalog`.
    Schema(String),
    /// A statement kind, by its leading keywords, and why.
    Statement {
        keyword: String,
        reason: &'static str,
    },
    /// `SELECT … INTO`, which creates a table.
    SelectInto,
    /// `OPERATOR(schema.op)`, which may call any function.
    Operator(String),
}

impl Refusal {
    /// The message of the diagnostic.
    pub fn message(&self) -> String {
        match self {
            Refusal::Function(name) => {
                format!("function `{name}` is not on the `--strict-sql` allowlist")
            }
            Refusal::Schema(name) => format!(
                "function `{name}` is outside `pg_catalog`; `--strict-sql` cannot judge what it does"
            ),
            Refusal::Statement { keyword, reason } => {
                format!("`{keyword}` is refused by `--strict-sql`: {reason}")
            }
            Refusal::SelectInto => {
                "`SELECT … INTO` creates a table, which `--strict-sql` refuses".to_string()
            }
            Refusal::Operator(op) => format!(
                "operator `OPERATOR({op})` is refused by `--strict-sql`: an operator outside `pg_catalog` may call any function"
            ),
        }
    }
}

/// Whether a function name (unqualified, as PostgreSQL folds it) is on the allowlist.
pub fn is_allowed(name: &str) -> bool {
    ALLOWED_FUNCTIONS
        .iter()
        .any(|(_, names)| names.contains(&name))
}

/// Everything strict mode refuses in one parsed statement, each once, in order of appearance.
pub fn refusals(statement: &Statement) -> Vec<Refusal> {
    let mut judge = Judge::default();
    judge.statement_kind(statement);
    let _ = statement.visit(&mut judge);
    let mut unique: Vec<Refusal> = Vec::new();
    for r in judge.found {
        if !unique.contains(&r) {
            unique.push(r);
        }
    }
    unique
}

#[derive(Default)]
struct Judge {
    found: Vec<Refusal>,
}

impl Judge {
    fn statement_kind(&mut self, statement: &Statement) {
        if matches!(
            statement,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
                | Statement::Merge(_)
        ) {
            return;
        }
        let printed = statement.to_string();
        let words: Vec<String> = printed
            .split_whitespace()
            .take(2)
            .map(str::to_uppercase)
            .collect();
        let matched = REFUSED_STATEMENTS
            .iter()
            .filter(|(keyword, _)| {
                let parts: Vec<&str> = keyword.split(' ').collect();
                parts.len() <= words.len() && parts.iter().zip(&words).all(|(a, b)| *a == b)
            })
            .max_by_key(|(keyword, _)| keyword.len());
        let (keyword, reason) = match matched {
            Some((keyword, reason)) => (keyword.to_string(), *reason),
            None => (words.first().cloned().unwrap_or_default(), OTHER_STATEMENT),
        };
        self.found.push(Refusal::Statement { keyword, reason });
    }

    fn function(&mut self, name: &ObjectName) {
        let written = name.to_string();
        let parts: Option<Vec<&Ident>> = name.0.iter().map(|p| p.as_ident()).collect();
        let refusal = match parts.as_deref() {
            Some([function]) => {
                (!is_allowed(&folded(function))).then_some(Refusal::Function(written))
            }
            Some([schema, function]) if folded(schema) == "pg_catalog" => {
                (!is_allowed(&folded(function))).then_some(Refusal::Function(written))
            }
            _ => Some(Refusal::Schema(written)),
        };
        self.found.extend(refusal);
    }
}

/// An identifier as PostgreSQL resolves it: unquoted folds to lower case, quoted stays as written.
fn folded(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

impl Visitor for Judge {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => self.function(&f.name),
            Expr::BinaryOp {
                op: BinaryOperator::PGCustomBinaryOperator(parts),
                ..
            } => {
                let schema = parts.first().map(|s| s.to_lowercase());
                if parts.len() != 2 || schema.as_deref() != Some("pg_catalog") {
                    self.found.push(Refusal::Operator(parts.join(".")));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            // `FROM f(…)`: a table function, parsed as a table with arguments.
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.function(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.into.is_some() {
            self.found.push(Refusal::SelectInto);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        // Statements nested in a query (a data-modifying `WITH`) are judged like the top one,
        // which `refusals` judges itself.
        if !matches!(statement, Statement::Query(_)) {
            let mut nested = Judge::default();
            nested.statement_kind(statement);
            self.found.extend(nested.found);
        }
        ControlFlow::Continue(())
    }
}

/// The allowlist and the refused statements as Markdown, as `docs/strict-sql.md` holds them
/// between its `<!-- generated -->` markers.
pub fn allowlist_markdown() -> String {
    let mut out = String::new();
    out.push_str("### Allowed functions\n\n");
    for (group, names) in ALLOWED_FUNCTIONS {
        let listed: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let _ = writeln!(out, "- **{group}:** {}", listed.join(", "));
    }
    out.push_str("\n### Refused statements\n\n");
    out.push_str(
        "Every statement other than `SELECT`, `INSERT`, `UPDATE`, `DELETE` and `MERGE` is refused; \
         these are the ones a plan is most likely to try, and why:\n\n",
    );
    out.push_str("| statement | why |\n|---|---|\n");
    for (keyword, reason) in REFUSED_STATEMENTS {
        let _ = writeln!(out, "| `{keyword}` | {reason} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sql;

    fn case(text: &str, expected: &[&str]) {
        let statement = sql::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let found: Vec<String> = refusals(&statement).iter().map(Refusal::message).collect();
        assert_eq!(found, expected, "{text}");
    }

    #[test]
    fn functions_are_judged_on_the_parsed_statement() {
        case(
            "SELECT coalesce(sum(amount), 0), count(*) FILTER (WHERE a > 1), now() - interval '1 day' FROM t",
            &[],
        );
        case(
            "SELECT pg_catalog.jsonb_build_object('a', payload->>'email'), date_trunc('day', CURRENT_TIMESTAMP), \
             EXTRACT(EPOCH FROM now()), CAST(x AS int), SUBSTRING(s FROM 1 FOR 2), TRIM(s), \
             ARRAY(SELECT 1), EXISTS (SELECT 1), gen_random_uuid() FROM t",
            &[],
        );
        case(
            "SELECT e.x FROM jsonb_array_elements(:ids) e, unnest(:other) u, generate_series(1, 3) g",
            &[],
        );
        case(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'worker'",
            &["function `pg_terminate_backend` is not on the `--strict-sql` allowlist"],
        );
        case(
            "SELECT dblink_exec('host=prod', 'DELETE FROM t')",
            &["function `dblink_exec` is not on the `--strict-sql` allowlist"],
        );
        case(
            "UPDATE t SET a = 1 WHERE id = :id AND set_config('role', 'admin', false) IS NOT NULL",
            &["function `set_config` is not on the `--strict-sql` allowlist"],
        );
        case(
            "SELECT count(*) FROM t WHERE pg_advisory_lock(1) IS NULL OR pg_advisory_lock(1) IS NULL",
            &["function `pg_advisory_lock` is not on the `--strict-sql` allowlist"],
        );
        case(
            "SELECT nextval('s')",
            &["function `nextval` is not on the `--strict-sql` allowlist"],
        );
        case(
            "SELECT * FROM dblink('host=prod', 'SELECT 1') AS r",
            &["function `dblink` is not on the `--strict-sql` allowlist"],
        );
        case(
            "SELECT public.now(), \"NOW\"(), pg_catalog.pg_sleep(1)",
            &[
                "function `public.now` is outside `pg_catalog`; `--strict-sql` cannot judge what it does",
                "function `\"NOW\"` is not on the `--strict-sql` allowlist",
                "function `pg_catalog.pg_sleep` is not on the `--strict-sql` allowlist",
            ],
        );
        case(
            "DELETE FROM t WHERE id IN (SELECT lo_unlink(oid) FROM pg_largeobject_metadata)",
            &["function `lo_unlink` is not on the `--strict-sql` allowlist"],
        );
        case(
            "SELECT 1 WHERE a OPERATOR(myschema.+) b",
            &[
                "operator `OPERATOR(myschema.+)` is refused by `--strict-sql`: an operator outside `pg_catalog` may call any function",
            ],
        );
    }

    #[test]
    fn statements_whose_effects_a_rollback_keeps_are_refused() {
        case(
            "COPY (SELECT 1) TO PROGRAM 'curl evil'",
            &[
                "`COPY` is refused by `--strict-sql`: reads or writes server files, or runs a program (`TO PROGRAM`): a rollback undoes neither",
            ],
        );
        case(
            "SET statement_timeout = 0",
            &[
                "`SET` is refused by `--strict-sql`: changes the session's settings or role, which outlive the statement on a pooled connection",
            ],
        );
        case(
            "CALL cleanup()",
            &[
                "`CALL` is refused by `--strict-sql`: runs a procedure, which can commit on its own and call anything",
            ],
        );
        case(
            "ALTER ROLE replay SUPERUSER",
            &[
                "`ALTER ROLE` is refused by `--strict-sql`: changes a role (its password, its privileges)",
            ],
        );
        case(
            "NOTIFY channel",
            &[
                "`NOTIFY` is refused by `--strict-sql`: signals other sessions and programs; a replay has no need to",
            ],
        );
        case(
            "COMMIT",
            &[
                "`COMMIT` is refused by `--strict-sql`: transaction control: a `COMMIT` would make a dry-run's writes permanent",
            ],
        );
        case(
            "VACUUM t",
            &[
                "`VACUUM` is refused by `--strict-sql`: cannot run inside a transaction, and its work is not undone",
            ],
        );
        case(
            "SELECT * INTO copy_of_t FROM t",
            &["`SELECT … INTO` creates a table, which `--strict-sql` refuses"],
        );
        case(
            "WITH d AS (DELETE FROM t WHERE id = :id RETURNING id) SELECT count(*) FROM d",
            &[],
        );
        case(
            "INSERT INTO t (id, at) VALUES (gen_random_uuid(), now()) ON CONFLICT (id) DO NOTHING",
            &[],
        );
    }

    #[test]
    fn the_documented_lists_are_the_code() {
        let doc = include_str!("../../docs/strict-sql.md");
        let generated = doc
            .split_once("<!-- generated: start -->\n")
            .and_then(|(_, rest)| rest.split_once("<!-- generated: end -->"))
            .map(|(inside, _)| inside.trim());
        assert_eq!(
            generated,
            Some(allowlist_markdown().trim()),
            "docs/strict-sql.md is out of date: replace what stands between its markers with \
             `allowlist_markdown()` (printed by `cargo test --lib strict_sql -- --nocapture`):\n{}",
            allowlist_markdown()
        );
    }

    #[test]
    fn allowlist_names_are_unique_and_lower_case() {
        let mut all: Vec<&str> = ALLOWED_FUNCTIONS
            .iter()
            .flat_map(|(_, n)| n.iter().copied())
            .collect();
        assert!(all.iter().all(|n| *n == n.to_lowercase()));
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
