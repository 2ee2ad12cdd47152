//! Failure groups: failed events grouped by a fingerprint of their error message, with the
//! variable parts (quoted values, UUIDs, hexadecimal ids, numbers) normalised away, as failed-message
//! consoles group by exception.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use regex::Regex;
use serde::Serialize;
use sqlx::Row;

use crate::engine::binds::{audited, bind_all};
use crate::engine::error::RunError;
use crate::plan::model::{Selection, Target};
use crate::plan::params::ParamValue;
use crate::plan::selection::{self, quote_ident};

/// One family of failures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureGroup {
    /// 1 for the largest group; what `--group K` names.
    pub key: usize,
    pub fingerprint: String,
    pub count: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Event types in the group, sorted.
    pub event_types: Vec<String>,
    /// The oldest event of the group and its message as written.
    pub sample_event_id: String,
    pub sample_message: String,
    /// Every event id of the group, oldest first (for `--emit-plan`; not printed).
    #[serde(skip)]
    pub event_ids: Vec<String>,
}

static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // Quoted values first: what they hold is data, whatever it looks like.
        (r#""(?:[^"\\]|\\.)*""#, "\"…\""),
        (r"'(?:[^'\\]|\\.)*'", "'…'"),
        (r"`[^`]*`", "`…`"),
        (
            r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "<uuid>",
        ),
        (r"(?i)\b0x[0-9a-f]+\b", "<hex>"),
        // Long hexadecimal ids (hashes, object ids) that hold at least one digit.
        (r"(?i)\b(?:[a-f]*[0-9][a-f0-9]*){8,}\b", "<hex>"),
        // Numbers, also inside ids such as `evt-000123` or `user42`.
        (r"[0-9]+(?:\.[0-9]+)?", "<n>"),
        (r"\s+", " "),
    ]
    .into_iter()
    .map(|(pattern, with)| (Regex::new(pattern).expect("a valid pattern"), with))
    .collect()
});

/// The message with its variable parts replaced: `user 42 not found` → `user <n> not found`.
pub fn fingerprint(message: &str) -> String {
    let mut text = message.trim().to_string();
    for (pattern, with) in RULES.iter() {
        text = pattern.replace_all(&text, *with).into_owned();
    }
    text
}

/// The failure groups among the events a selection matches, largest first (then oldest).
pub async fn groups(
    pool: &sqlx::PgPool,
    target: &Target,
    select: &Selection,
) -> Result<Vec<FailureGroup>, RunError> {
    let literal = |text: &str| ParamValue::String(text.to_string());
    let q = selection::compile(target, select, &literal);
    let c = &target.columns;
    let query = format!(
        "SELECT {event_id}::text, {event_type}::text, {error}::text, {processed_at} \
         FROM {table} WHERE {conditions} ORDER BY {processed_at} NULLS FIRST, {event_id}",
        event_id = quote_ident(&c.event_id),
        event_type = quote_ident(&c.event_type),
        error = quote_ident(&c.error_message),
        processed_at = quote_ident(&c.processed_at),
        table = quote_ident(&target.events_table),
        conditions = q.where_clause(),
    );
    let rows = bind_all(sqlx::query(audited(&query)), &q.binds).fetch(pool);
    collect(rows).await
}

/// Folds rows of `(event id, type, error message, processed at)` into groups, keeping one group
/// per fingerprint in memory, not the rows.
pub async fn collect(
    mut rows: impl futures_util::Stream<Item = Result<sqlx::postgres::PgRow, sqlx::Error>> + Unpin,
) -> Result<Vec<FailureGroup>, RunError> {
    let doing = "grouping failures by their error message";
    let mut by_print: HashMap<String, FailureGroup> = HashMap::new();
    while let Some(row) = rows.try_next().await.map_err(RunError::db(doing))? {
        let id: String = row.try_get(0).map_err(RunError::db(doing))?;
        let event_type: String = row.try_get(1).map_err(RunError::db(doing))?;
        let message: Option<String> = row.try_get(2).map_err(RunError::db(doing))?;
        let at: Option<DateTime<Utc>> = row.try_get(3).map_err(RunError::db(doing))?;
        let message = message.unwrap_or_default();
        let print = fingerprint(&message);
        let group = by_print
            .entry(print.clone())
            .or_insert_with(|| FailureGroup {
                key: 0,
                fingerprint: print,
                count: 0,
                first_seen: at,
                last_seen: at,
                event_types: Vec::new(),
                sample_event_id: id.clone(),
                sample_message: message.clone(),
                event_ids: Vec::new(),
            });
        group.count += 1;
        group.first_seen = group.first_seen.min(at).or(at);
        group.last_seen = group.last_seen.max(at);
        if !group.event_types.contains(&event_type) {
            group.event_types.push(event_type);
        }
        group.event_ids.push(id);
    }
    Ok(ranked(by_print.into_values().collect()))
}

/// Largest first, then the oldest first seen, then by fingerprint; keys from 1.
pub fn ranked(mut groups: Vec<FailureGroup>) -> Vec<FailureGroup> {
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.first_seen.cmp(&b.first_seen))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    for (i, g) in groups.iter_mut().enumerate() {
        g.key = i + 1;
        g.event_types.sort();
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn variable_parts_are_normalised_away() {
        let cases = [
            ("user 42 not found", "user <n> not found"),
            ("user 1017 not found", "user <n> not found"),
            (
                "contribution 7b0e6c1e-2f4a-4d8e-9c3b-1a2b3c4d5e6f rejected: amount 12.50 over limit",
                "contribution <uuid> rejected: amount <n> over limit",
            ),
            (
                "duplicate key value violates unique constraint \"allocations_pkey\"",
                "duplicate key value violates unique constraint \"…\"",
            ),
            (
                "column 'amount' is null for evt-000123",
                "column '…' is null for evt-<n>",
            ),
            ("object 5f3a9c0d1e2b4a6f missing", "object <hex> missing"),
            ("pointer 0xDEADBEEF", "pointer <hex>"),
            ("  timeout  after\n30s ", "timeout after <n>s"),
            ("", ""),
        ];
        for (message, expected) in cases {
            assert_eq!(fingerprint(message), expected, "{message}");
        }
        // Words made of hexadecimal letters alone stay words.
        assert_eq!(fingerprint("deadbeef facade"), "deadbeef facade");
    }
}
