//! SQL texts of a plan: parsed with the PostgreSQL dialect, named `:binds` found and rewritten to `$n`.

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// What the checks need to know of one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlInfo {
    /// Bind names in order of first appearance, without the colon.
    pub binds: Vec<String>,
    /// `UPDATE` or `DELETE` with no `WHERE`.
    pub unbounded_write: Option<&'static str>,
    /// Whether the statement can change data.
    pub writes: bool,
    /// Tables the statement writes to (lower-case, as written).
    pub written_tables: Vec<String>,
    /// The statement changes the schema or privileges (`DROP`, `ALTER`, `TRUNCATE`, `CREATE`,
    /// `GRANT`, `REVOKE`, `COMMENT`): its leading keyword.
    pub ddl: Option<&'static str>,
}

/// Leading keywords of statements that change the schema or privileges.
const DDL: &[&str] = &[
    "DROP", "ALTER", "TRUNCATE", "CREATE", "GRANT", "REVOKE", "COMMENT",
];

/// Why a SQL text is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SqlError {
    #[error(
        "SQL must not contain template interpolation (`{{{{`); pass values as `:name` bind parameters"
    )]
    Template,
    #[error("SQL does not parse: {0}")]
    Syntax(String),
    #[error("SQL text is empty")]
    Empty,
    #[error("one statement per SQL text; found {0}")]
    Multiple(usize),
}

/// Parses exactly one statement (PostgreSQL dialect).
pub fn parse(text: &str) -> Result<Statement, SqlError> {
    if text.contains("{{") {
        return Err(SqlError::Template);
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, text).map_err(|e| {
        SqlError::Syntax(
            e.to_string()
                .trim_start_matches("sql parser error: ")
                .to_string(),
        )
    })?;
    match statements.len() {
        0 => Err(SqlError::Empty),
        1 => Ok(statements.remove(0)),
        many => Err(SqlError::Multiple(many)),
    }
}

/// Parses one statement and lists its binds.
pub fn analyze(text: &str) -> Result<SqlInfo, SqlError> {
    let statement = &parse(text)?;
    let (unbounded_write, writes, written_tables) = match statement {
        Statement::Update(update) => (
            update.selection.is_none().then_some("UPDATE"),
            true,
            vec![update.table.relation.to_string().to_lowercase()],
        ),
        Statement::Delete(delete) => {
            let tables = match &delete.from {
                sqlparser::ast::FromTable::WithFromKeyword(from)
                | sqlparser::ast::FromTable::WithoutKeyword(from) => from
                    .iter()
                    .map(|t| t.relation.to_string().to_lowercase())
                    .collect(),
            };
            (delete.selection.is_none().then_some("DELETE"), true, tables)
        }
        Statement::Insert(insert) => (None, true, vec![insert.table.to_string().to_lowercase()]),
        Statement::Truncate(truncate) => (
            Some("TRUNCATE"),
            true,
            truncate
                .table_names
                .iter()
                .map(|t| t.name.to_string().to_lowercase())
                .collect(),
        ),
        // A CTE may hide a write (`WITH d AS (DELETE …) SELECT …`): judge by its keywords.
        Statement::Query(_) => {
            let writes = has_write_keyword(text);
            (
                None,
                writes,
                if writes {
                    vec!["*".to_string()]
                } else {
                    Vec::new()
                },
            )
        }
        _ => (None, true, Vec::new()),
    };
    // Judged on the parsed statement as sqlparser prints it, not on the text's first word.
    let printed = statement.to_string();
    let first = printed
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_uppercase();
    let ddl = DDL.iter().find(|k| **k == first).copied();
    Ok(SqlInfo {
        binds: rewrite(text)?.1,
        unbounded_write,
        ddl,
        writes,
        written_tables: written_tables.iter().map(|t| normalize_table(t)).collect(),
    })
}

/// `"public"."processed_events"` and `public.processed_events` both name `processed_events`.
pub fn normalize_table(name: &str) -> String {
    let unquoted = name.replace('"', "").to_lowercase();
    unquoted
        .strip_prefix("public.")
        .map(str::to_string)
        .unwrap_or(unquoted)
}

fn has_write_keyword(text: &str) -> bool {
    let dialect = PostgreSqlDialect {};
    Tokenizer::new(&dialect, text).tokenize().is_ok_and(|tokens| {
        tokens.iter().any(|t| {
            matches!(t, Token::Word(w) if w.quote_style.is_none()
                && ["delete", "update", "insert", "truncate"].contains(&w.value.to_lowercase().as_str()))
        })
    })
}

/// Rewrites `:name` binds to `$1, $2, …` (one number per distinct name) for the server.
pub fn rewrite(text: &str) -> Result<(String, Vec<String>), SqlError> {
    let mut names: Vec<String> = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for span in bind_spans(text)? {
        let number = match names.iter().position(|n| *n == span.name) {
            Some(i) => i + 1,
            None => {
                names.push(span.name);
                names.len()
            }
        };
        out.push_str(&text[copied..span.range.start]);
        out.push_str(&format!("${number}"));
        copied = span.range.end;
    }
    out.push_str(&text[copied..]);
    Ok((out, names))
}

/// Where one `:name` bind stands in a SQL text.
#[derive(Debug, Clone, PartialEq)]
pub struct BindSpan {
    /// Byte range of `:name`, colon included.
    pub range: std::ops::Range<usize>,
    /// The name, without the colon.
    pub name: String,
}

/// The `:name` binds of a SQL text, in order, found by tokenising it (so `':x'` in a string, a
/// comment or `x::text` is not one).
pub fn bind_spans(text: &str) -> Result<Vec<BindSpan>, SqlError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| SqlError::Syntax(e.to_string()))?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let byte_at = |line: u64, col: u64| -> usize {
        let start = line_starts[(line as usize).saturating_sub(1).min(line_starts.len() - 1)];
        text[start..]
            .char_indices()
            .nth((col as usize).saturating_sub(1))
            .map_or(text.len(), |(i, _)| start + i)
    };
    let mut spans = Vec::new();
    for pair in tokens.windows(2) {
        let (colon, word) = (&pair[0], &pair[1]);
        let Token::Word(w) = &word.token else {
            continue;
        };
        if colon.token != Token::Colon || w.quote_style.is_some() {
            continue;
        }
        let colon_start = byte_at(colon.span.start.line, colon.span.start.column);
        let word_start = byte_at(word.span.start.line, word.span.start.column);
        // `:name` only when the word follows the colon directly.
        if word_start != colon_start + 1 {
            continue;
        }
        spans.push(BindSpan {
            range: colon_start..word_start + w.value.len(),
            name: w.value.clone(),
        });
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_are_found_and_rewritten() {
        let (sql, names) = rewrite(
            "SELECT x::text FROM t WHERE a = :a AND b = ANY(:ids) AND c = :a AND d = ':not' -- :nor\n AND e = 'x:y'",
        )
        .unwrap();
        assert_eq!(names, ["a", "ids"]);
        assert_eq!(
            sql,
            "SELECT x::text FROM t WHERE a = $1 AND b = ANY($2) AND c = $1 AND d = ':not' -- :nor\n AND e = 'x:y'"
        );
    }

    #[test]
    fn statements_are_classified() {
        let cases: [(&str, Result<Option<&str>, &str>); 6] = [
            ("UPDATE t SET a = 1", Ok(Some("UPDATE"))),
            ("DELETE FROM t", Ok(Some("DELETE"))),
            ("DELETE FROM t WHERE id = :id", Ok(None)),
            (
                "SELECT 1; SELECT 2",
                Err("one statement per SQL text; found 2"),
            ),
            (
                "UPDATE t SET a = {{ params.x }}",
                Err(
                    "SQL must not contain template interpolation (`{{`); pass values as `:name` bind parameters",
                ),
            ),
            ("SELEC 1", Err("")),
        ];
        for (text, expected) in cases {
            match (analyze(text), expected) {
                (Ok(info), Ok(unbounded)) => assert_eq!(info.unbounded_write, unbounded, "{text}"),
                (Err(err), Err("")) => {
                    assert!(matches!(err, SqlError::Syntax(_)), "{text}: {err}")
                }
                (Err(err), Err(message)) => assert_eq!(err.to_string(), message, "{text}"),
                (got, _) => panic!("{text}: unexpected {got:?}"),
            }
        }
    }
}
