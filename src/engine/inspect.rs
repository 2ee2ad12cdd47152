//! A read-only look at the events a selection picks (counts, a sample, queue depths) and the plan
//! skeleton that replays exactly that selection.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::engine::binds::{audited, bind_all};
use crate::engine::broker::{Amqp, Broker};
use crate::engine::error::{BrokerError, RunError};
use crate::engine::state;
use crate::plan::model::{Selection, Target};
use crate::plan::params::ParamValue;
use crate::plan::selection::{self, quote_ident};

/// Version of the JSON document; bumped when a field changes meaning or disappears.
pub const VERSION: u32 = 1;

/// Characters of an error message kept per sampled event.
const ERROR_MESSAGE_CHARS: usize = 200;

/// What `replay inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub version: u32,
    /// `host:port/db` of the target, without credentials.
    pub target: String,
    pub events_table: String,
    /// The filters in words, or `all events`.
    pub filters: String,
    /// The selection exactly as a plan would write it.
    pub selection: Selection,
    pub total: u64,
    pub oldest_processed_at: Option<DateTime<Utc>>,
    pub newest_processed_at: Option<DateTime<Utc>>,
    /// Counts by event type and status, ordered by type then status.
    pub counts: Vec<TypeStatusCount>,
    /// The newest events of the selection.
    pub sample: Vec<SampledEvent>,
    pub queues: Vec<QueueDepth>,
    /// Where the plan skeleton was written.
    pub plan_file: Option<String>,
    /// The run whose frozen selection this inspection is limited to (`--run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<uuid::Uuid>,
    /// With `--run`: the ids of the events that match now, in selection order (what
    /// `--emit-plan` selects exactly).
    #[serde(skip)]
    pub matching: Vec<String>,
    /// With `--group-by error`: the matching events grouped by the fingerprint of their error
    /// message, largest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<crate::engine::groups::FailureGroup>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeStatusCount {
    pub event_type: String,
    pub status: String,
    pub count: u64,
    pub last_processed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampledEvent {
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub processed_at: Option<DateTime<Utc>>,
    /// At most 200 characters.
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueDepth {
    pub queue: String,
    pub state: QueueState,
    /// Messages in the queue, when it exists and the broker answered.
    pub messages: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Exists,
    Missing,
    /// The broker could not be reached, so the depth is unknown.
    Unknown,
}

/// The summary of the events the selection picks, in one read-only, repeatable-read transaction
/// so that the counts, the time range and the sample agree with one another.
pub async fn inspect(
    database_url: &str,
    target: &Target,
    select: &Selection,
    sample: i64,
    run: Option<uuid::Uuid>,
    group_by_error: bool,
) -> Result<Inspection, RunError> {
    let pool = state::connect(database_url).await?;
    let result = async {
        let Some(run) = run else {
            let mut found = summarise(&pool, target, select, sample).await?;
            if group_by_error {
                found.groups = Some(crate::engine::groups::groups(&pool, target, select).await?);
            }
            return Ok(found);
        };
        // Limited to what the run selected: e.g. `--run RUN --status error`, its events that
        // failed again.
        let in_run = state::selected_event_ids(&pool, run).await?;
        let mut select = select.clone();
        select.event_ids = match select.event_ids.is_empty() {
            true => in_run,
            false => in_run
                .into_iter()
                .filter(|id| select.event_ids.contains(id))
                .collect(),
        };
        let mut found = summarise(&pool, target, &select, sample).await?;
        found.matching = matching_ids(&pool, target, &select).await?;
        found.run = Some(run);
        if group_by_error {
            found.groups = Some(crate::engine::groups::groups(&pool, target, &select).await?);
        }
        Ok(found)
    }
    .await;
    pool.close().await;
    result
}

/// The ids of the events a selection matches now, oldest first.
async fn matching_ids(
    pool: &sqlx::PgPool,
    target: &Target,
    select: &Selection,
) -> Result<Vec<String>, RunError> {
    let literal = |text: &str| ParamValue::String(text.to_string());
    let q = selection::compile(target, select, &literal);
    let c = &target.columns;
    let rows = bind_all(
        sqlx::query(audited(&format!(
            "SELECT {event_id}::text FROM {table} WHERE {conditions} \
             ORDER BY {processed_at} NULLS FIRST, {event_id}",
            event_id = quote_ident(&c.event_id),
            processed_at = quote_ident(&c.processed_at),
            table = quote_ident(&target.events_table),
            conditions = q.where_clause(),
        ))),
        &q.binds,
    )
    .fetch_all(pool)
    .await
    .map_err(RunError::db("listing the matching events"))?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(RunError::db("listing the matching events"))
}

async fn summarise(
    pool: &sqlx::PgPool,
    target: &Target,
    select: &Selection,
    sample: i64,
) -> Result<Inspection, RunError> {
    let literal = |text: &str| ParamValue::String(text.to_string());
    let q = selection::compile(target, select, &literal);
    let c = &target.columns;
    let table = quote_ident(&target.events_table);
    let (event_id, event_type, status, processed_at, error_message) = (
        quote_ident(&c.event_id),
        quote_ident(&c.event_type),
        quote_ident(&c.status),
        quote_ident(&c.processed_at),
        quote_ident(&c.error_message),
    );
    let conditions = q.where_clause();
    let mut tx = pool
        .begin()
        .await
        .map_err(RunError::db("starting a read-only transaction"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(RunError::db("starting a read-only transaction"))?;
    let doing = format!("counting events in `{}`", target.events_table);
    let groups = bind_all(
        sqlx::query(audited(&format!(
            "SELECT {event_type}::text, {status}::text, count(*), max({processed_at}), min({processed_at}) \
             FROM {table} WHERE {conditions} GROUP BY 1, 2 ORDER BY 1, 2"
        ))),
        &q.binds,
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(RunError::db(doing.clone()))?
    .iter()
    .map(|r| {
        Ok((
            TypeStatusCount {
                event_type: r.try_get(0)?,
                status: r.try_get(1)?,
                count: u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or_default(),
                last_processed_at: r.try_get(3)?,
            },
            r.try_get::<Option<DateTime<Utc>>, _>(4)?,
        ))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()
    .map_err(RunError::db(doing))?;
    let oldest = groups.iter().filter_map(|(_, min)| *min).min();
    let newest = groups.iter().filter_map(|(c, _)| c.last_processed_at).max();
    let counts: Vec<TypeStatusCount> = groups.into_iter().map(|(count, _)| count).collect();
    let n = q.binds.len() + 1;
    let sample = bind_all(
        sqlx::query(audited(&format!(
            "SELECT {event_id}::text, {event_type}::text, {status}::text, {processed_at}, \
             left({error_message}::text, {ERROR_MESSAGE_CHARS}) \
             FROM {table} WHERE {conditions} \
             ORDER BY {processed_at} DESC NULLS LAST, {event_id} LIMIT ${n}"
        ))),
        &q.binds,
    )
    .bind(sample)
    .fetch_all(&mut *tx)
    .await
    .map_err(RunError::db("sampling events"))?
    .iter()
    .map(|r| {
        Ok(SampledEvent {
            event_id: r.try_get(0)?,
            event_type: r.try_get(1)?,
            status: r.try_get(2)?,
            processed_at: r.try_get(3)?,
            error_message: r.try_get(4)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()
    .map_err(RunError::db("sampling events"))?;
    // Nothing was written; ending with a rollback says so.
    tx.rollback()
        .await
        .map_err(RunError::db("ending the read-only transaction"))?;
    Ok(Inspection {
        version: VERSION,
        target: String::new(),
        events_table: target.events_table.clone(),
        filters: describe(select),
        selection: select.clone(),
        total: counts.iter().map(|c| c.count).sum(),
        oldest_processed_at: oldest,
        newest_processed_at: newest,
        counts,
        sample,
        queues: Vec::new(),
        plan_file: None,
        run: None,
        matching: Vec::new(),
        groups: None,
    })
}

/// Depths of the named queues by passive declare: nothing is created.
pub async fn queue_depths(
    amqp_url: &str,
    queues: &[String],
) -> Result<Vec<QueueDepth>, BrokerError> {
    let mut amqp = Amqp::connect(amqp_url).await?;
    let mut out = Vec::with_capacity(queues.len());
    for queue in queues {
        let depth = amqp.queue_depth(queue).await;
        out.push(match depth {
            Ok(Some(messages)) => QueueDepth {
                queue: queue.clone(),
                state: QueueState::Exists,
                messages: Some(messages),
            },
            Ok(None) => QueueDepth {
                queue: queue.clone(),
                state: QueueState::Missing,
                messages: None,
            },
            Err(e) => {
                amqp.close().await;
                return Err(e);
            }
        });
    }
    amqp.close().await;
    Ok(out)
}

/// Queues whose depth is unknown because the broker could not be reached.
pub fn unknown_depths(queues: &[String]) -> Vec<QueueDepth> {
    queues
        .iter()
        .map(|queue| QueueDepth {
            queue: queue.clone(),
            state: QueueState::Unknown,
            messages: None,
        })
        .collect()
}

/// The filters in the operator's words: `status error; processed within 24h`, or `all events`.
pub fn describe(select: &Selection) -> String {
    let mut parts = Vec::new();
    if !select.status.is_empty() {
        parts.push(format!("status {}", select.status.join(" or ")));
    }
    if !select.event_types.is_empty() {
        parts.push(format!("type {}", select.event_types.join(" or ")));
    }
    match select.event_ids.as_slice() {
        [] => {}
        [one] => parts.push(format!("event id {one}")),
        many => parts.push(format!("{} event ids", many.len())),
    }
    if let Some(within) = &select.processed_within {
        parts.push(format!("processed within {within}"));
    }
    if let Some(before) = &select.processed_before {
        parts.push(format!("processed more than {before} ago"));
    }
    if let Some(between) = &select.processed_between {
        parts.push(format!("processed from {} to {}", between.from, between.to));
    }
    for (field, value) in &select.payload {
        parts.push(format!("payload {field} = {value}"));
    }
    if let Some(limit) = select.limit {
        parts.push(format!("oldest {limit}"));
    }
    if parts.is_empty() {
        "all events".into()
    } else {
        parts.join("; ")
    }
}

/// The `replay inspect` command line that shows this selection again.
pub fn command(select: &Selection) -> String {
    let mut out = String::from("replay inspect");
    let mut flag = |name: &str, value: &str| {
        let _ = write!(out, " --{name} {}", shell_quote(value));
    };
    for s in &select.status {
        flag("status", s);
    }
    for t in &select.event_types {
        flag("type", t);
    }
    for id in &select.event_ids {
        flag("event-id", id);
    }
    if let Some(within) = &select.processed_within {
        flag("within", within);
    }
    if let Some(before) = &select.processed_before {
        flag("older-than", before);
    }
    for (field, value) in &select.payload {
        flag("payload", &format!("{field}={value}"));
    }
    out
}

fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/,@+=".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A plan name from the filters: `replay-error-contribution-within-24h`.
pub fn plan_name(select: &Selection) -> String {
    let mut words: Vec<String> = vec!["replay".into()];
    words.extend(select.status.iter().cloned());
    words.extend(
        select
            .event_types
            .iter()
            .map(|t| t.trim_end_matches(['*', '.']).to_string()),
    );
    match select.event_ids.len() {
        0 => {}
        1 => words.push("event".into()),
        n => words.push(format!("{n}-events")),
    }
    if let Some(within) = &select.processed_within {
        words.push(format!("within-{within}"));
    }
    if let Some(before) = &select.processed_before {
        words.push(format!("older-than-{before}"));
    }
    words.extend(select.payload.keys().map(|k| format!("by-{k}")));
    if words.len() == 1 {
        words.push("all-events".into());
    }
    let mut name = String::new();
    for ch in words.join("-").chars().flat_map(char::to_lowercase) {
        let ch = if ch.is_ascii_alphanumeric() || "_.".contains(ch) {
            ch
        } else {
            '-'
        };
        if !(ch == '-' && name.ends_with('-')) {
            name.push(ch);
        }
    }
    let name: String = name.chars().take(100).collect();
    name.trim_end_matches(['-', '.', '_']).to_string()
}

/// A `max_events` cap just above the count: two significant digits, rounded up, at least 10.
pub fn max_events_for(total: u64) -> u64 {
    let digits = total.max(1).ilog10() + 1;
    let step = 10u64.pow(digits.saturating_sub(2).max(1));
    total
        .div_ceil(step)
        .saturating_mul(step)
        .clamp(10, 100_000_000)
}

/// A reviewable plan with exactly this selection (literal values): reset it, wait until the worker
/// drained it, verify none is still failing, restore the backed-up rows on failure. It passes
/// `replay validate` as written; its `reason` is a placeholder to replace before review.
pub fn plan_skeleton(inspection: &Inspection, now: DateTime<Utc>) -> String {
    let select = &inspection.selection;
    let target = Target::default();
    let c = &target.columns;
    let table = &target.events_table;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Plan skeleton written by `replay inspect` at {} from:",
        now.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let _ = writeln!(
        out,
        "#   {}",
        match inspection.run {
            // The ids below are the run's events that matched; the command that found them:
            Some(run) => command(&Selection {
                event_ids: Vec::new(),
                ..select.clone()
            })
            .replacen("replay inspect", &format!("replay inspect --run {run}"), 1),
            None => command(select),
        }
    );
    let _ = writeln!(
        out,
        "# The selection ({}) matched {} event(s) then:",
        inspection.filters, inspection.total
    );
    const LISTED: usize = 20;
    for count in inspection.counts.iter().take(LISTED) {
        let _ = writeln!(
            out,
            "#   {} {}: {}",
            count.event_type, count.status, count.count
        );
    }
    if inspection.counts.len() > LISTED {
        let _ = writeln!(
            out,
            "#   … and {} more type/status pairs",
            inspection.counts.len() - LISTED
        );
    }
    out.push_str(
        "#\n\
         # TODO before review: replace `reason`, check the steps, then rehearse:\n\
         #   replay validate THIS_FILE\n\
         #   replay apply THIS_FILE --dry-run\n",
    );
    out.push_str("version: 1\n");
    let _ = writeln!(out, "name: {}", plan_name(select));
    out.push_str(
        "# TODO: the incident and the fix (recorded with the run and in the audit log).\n",
    );
    out.push_str("reason: \"TODO: describe the incident and the fix before applying this plan\"\n");
    out.push_str("select:\n");
    if !select.status.is_empty() {
        let _ = writeln!(out, "  status: {}", yaml_list(&select.status));
    }
    if !select.event_types.is_empty() {
        let _ = writeln!(out, "  event_types: {}", yaml_list(&select.event_types));
    }
    if !select.event_ids.is_empty() {
        out.push_str("  event_ids:\n");
        for id in &select.event_ids {
            let _ = writeln!(out, "    - {}", yaml_string(id));
        }
    }
    if let Some(within) = &select.processed_within {
        let _ = writeln!(
            out,
            "  processed_within: {}   # before the run starts, not before this inspection",
            yaml_string(within)
        );
    }
    if let Some(before) = &select.processed_before {
        let _ = writeln!(out, "  processed_before: {}", yaml_string(before));
    }
    if let Some(between) = &select.processed_between {
        let _ = writeln!(
            out,
            "  processed_between: {{ from: {}, to: {} }}",
            yaml_string(&between.from),
            yaml_string(&between.to)
        );
    }
    if !select.payload.is_empty() {
        out.push_str("  payload:\n");
        for (field, value) in &select.payload {
            let _ = writeln!(out, "    {}: {}", yaml_string(field), yaml_string(value));
        }
    }
    if let Some(limit) = select.limit {
        let _ = writeln!(out, "  limit: {limit}");
    }
    if select.all {
        out.push_str(
            "  # No filter: every event of the table. Narrow it if you can.\n  all: true\n",
        );
    }
    let _ = writeln!(
        out,
        "safety:\n  \
         # {} event(s) at inspection, rounded up: a selection that grew past it is refused.\n  \
         max_events: {}",
        inspection.total,
        max_events_for(inspection.total)
    );
    let _ = writeln!(
        out,
        "backup:\n  tables:\n    \
         # The selected rows of the events table, restorable by the rollback below.\n    \
         - table: {table}"
    );
    out.push_str(
        "rate_limit:\n  \
         # 10,000 events are reset in about 20 s; the worker drains them at its own pace.\n  \
         per_second: 500\n  \
         batch_size: 500\n",
    );
    let _ = writeln!(
        out,
        "steps:\n  \
         - id: reset-status\n    \
           kind: reset\n    \
           description: {status} = pending, {retry} = 0, {error} = NULL for the selection\n  \
         - id: wait-drained\n    \
           kind: wait\n    \
           description: the worker has taken every selected event\n    \
           until: >-\n      \
             SELECT count(*) = 0 FROM {table}\n      \
             WHERE {id} = ANY(:selected_event_ids) AND {status} IN ('pending', 'processing')\n    \
           timeout: 30m\n    \
           poll_interval: 2s\n\
         verify:\n  \
         - name: no selected event is still failing\n    \
           sql: \"SELECT count(*) FROM {table} WHERE {id} = ANY(:selected_event_ids) AND {status} = 'error'\"\n    \
           expect: {{ equals: 0 }}\n\
         rollback:\n  \
         # Put the selected rows back as they were.\n  \
         - kind: restore_backup\n    \
           tables: [{table}]",
        status = c.status,
        retry = c.retry_count,
        error = c.error_message,
        id = c.event_id,
    );
    out
}

/// A YAML double-quoted scalar: JSON string escapes are valid YAML ones.
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

fn yaml_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| yaml_string(i)).collect();
    format!("[{}]", items.join(", "))
}

impl Inspection {
    /// The summary for people: totals, a table of counts, a sample, queue depths.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Events in `{}` on {}: {}",
            self.events_table, self.target, self.filters
        );
        let none = if self.total == 0 {
            " (no event matches)"
        } else {
            ""
        };
        let _ = writeln!(out, "  total: {}{none}", self.total);
        if let (Some(oldest), Some(newest)) = (self.oldest_processed_at, self.newest_processed_at) {
            let _ = writeln!(
                out,
                "  processed: oldest {}, newest {}",
                timestamp(Some(oldest)),
                timestamp(Some(newest))
            );
        }
        if !self.counts.is_empty() {
            out.push('\n');
            let rows: Vec<[String; 4]> = self
                .counts
                .iter()
                .map(|c| {
                    [
                        c.event_type.clone(),
                        c.status.clone(),
                        c.count.to_string(),
                        timestamp(c.last_processed_at),
                    ]
                })
                .collect();
            table(
                &mut out,
                ["event type", "status", "count", "last processed"],
                &rows,
                &[false, false, true, false],
            );
        }
        if !self.sample.is_empty() {
            let _ = writeln!(
                out,
                "\nSample (newest first, {} of {}):",
                self.sample.len(),
                self.total
            );
            let rows: Vec<[String; 5]> = self
                .sample
                .iter()
                .map(|e| {
                    [
                        e.event_id.clone(),
                        e.event_type.clone(),
                        e.status.clone(),
                        timestamp(e.processed_at),
                        truncate(e.error_message.as_deref().unwrap_or(""), 60),
                    ]
                })
                .collect();
            table(
                &mut out,
                ["event id", "type", "status", "processed at", "error"],
                &rows,
                &[false; 5],
            );
        }
        if !self.queues.is_empty() {
            out.push_str("\nQueues:\n");
            let width = self.queues.iter().map(|q| q.queue.len()).max().unwrap_or(0);
            for q in &self.queues {
                let state = match (q.state, q.messages) {
                    (QueueState::Exists, Some(n)) => format!("{n} message(s)"),
                    (QueueState::Missing, _) => "does not exist".into(),
                    _ => "unknown (the broker is unreachable)".into(),
                };
                let _ = writeln!(out, "  {:<width$}  {state}", q.queue);
            }
        }
        if let Some(groups) = &self.groups {
            let _ = writeln!(
                out,
                "\nFailure groups, by error message ({}):",
                match groups.len() {
                    1 => "1 group".to_string(),
                    n => format!("{n} groups"),
                }
            );
            for g in groups {
                let _ = writeln!(
                    out,
                    "  #{}  {} event(s)  first {}  last {}  types: {}\n      {}\n      sample {}: {}",
                    g.key,
                    g.count,
                    timestamp(g.first_seen),
                    timestamp(g.last_seen),
                    g.event_types.join(", "),
                    g.fingerprint,
                    g.sample_event_id,
                    g.sample_message
                );
            }
        }
        if let Some(file) = &self.plan_file {
            let _ = writeln!(
                out,
                "\nPlan skeleton written to {file}: replace its `reason`, review it, then\n  \
                 replay validate {file}\n  replay apply {file} --dry-run"
            );
        }
        out
    }
}

fn timestamp(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn truncate(text: &str, n: usize) -> String {
    let text = text.replace(['\n', '\r', '\t'], " ");
    if text.chars().count() > n {
        format!("{}…", text.chars().take(n - 1).collect::<String>())
    } else {
        text
    }
}

/// Aligned columns with a header; `right` marks numeric columns.
fn table<const N: usize>(
    out: &mut String,
    header: [&str; N],
    rows: &[[String; N]],
    right: &[bool],
) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut text = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < cells.len() {
                text.push_str("  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(edit: impl FnOnce(&mut Selection)) -> Selection {
        let mut s = Selection::default();
        edit(&mut s);
        s
    }

    #[test]
    fn max_events_rounds_up_to_two_significant_digits() {
        let case = |total, expected| assert_eq!(max_events_for(total), expected, "{total}");
        case(0, 10);
        case(3, 10);
        case(10, 10);
        case(47, 50);
        case(147, 150);
        case(150, 150);
        case(1_234, 1_300);
        case(99_999, 100_000);
        case(u64::MAX, 100_000_000);
    }

    #[test]
    fn plan_names_follow_the_filters() {
        let case = |s: Selection, expected: &str| assert_eq!(plan_name(&s), expected);
        case(Selection::default(), "replay-all-events");
        case(
            select(|s| {
                s.status = vec!["error".into()];
                s.event_types = vec!["contribution.*".into()];
                s.processed_within = Some("24h".into());
            }),
            "replay-error-contribution-within-24h",
        );
        case(
            select(|s| {
                s.event_ids = vec!["a".into(), "b".into()];
                s.payload = [("Member ID".to_string(), "x".to_string())].into();
            }),
            "replay-2-events-by-member-id",
        );
        case(
            select(|s| s.status = vec!["x".repeat(200)]),
            &format!("replay-{}", "x".repeat(93)),
        );
    }

    #[test]
    fn descriptions_and_commands_read_like_the_flags() {
        let s = select(|s| {
            s.status = vec!["error".into()];
            s.event_types = vec!["contribution.*".into()];
            s.processed_before = Some("5m".into());
            s.payload = [("contribution_id".to_string(), "it's".to_string())].into();
        });
        assert_eq!(
            describe(&s),
            "status error; type contribution.*; processed more than 5m ago; payload contribution_id = it's"
        );
        assert_eq!(
            command(&s),
            r"replay inspect --status error --type 'contribution.*' --older-than 5m --payload 'contribution_id=it'\''s'"
        );
        assert_eq!(describe(&Selection::default()), "all events");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("äbcd", 3), "äb…");
        assert_eq!(truncate("a\nb", 5), "a b");
    }
}
