//! The selection compiled to a WHERE clause with positional bind parameters over the configured table.

use super::duration;
use super::model::{Selection, Target};
use super::params::{ParamValue, parse_timestamp};

/// A value bound to a positional parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    TextArray(Vec<String>),
    Int(i64),
    Uuid(uuid::Uuid),
    Timestamp(chrono::DateTime<chrono::Utc>),
    Interval(std::time::Duration),
    Bool(bool),
}

impl From<&ParamValue> for Bind {
    fn from(value: &ParamValue) -> Bind {
        match value {
            ParamValue::String(s) => Bind::Text(s.clone()),
            ParamValue::Int(i) => Bind::Int(*i),
            ParamValue::Uuid(u) => Bind::Uuid(*u),
            ParamValue::Timestamp(t) => Bind::Timestamp(*t),
            ParamValue::Duration(d) => Bind::Interval(*d),
            ParamValue::Bool(b) => Bind::Bool(*b),
            ParamValue::List(items) => Bind::TextArray(items.clone()),
        }
    }
}

/// `WHERE` conditions (joined with AND, `$1…$n`) and their values; `limit` caps the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionQuery {
    pub conditions: Vec<String>,
    pub binds: Vec<Bind>,
    pub limit: Option<u64>,
}

impl SelectionQuery {
    /// Relative windows (`processed_within`, `processed_before`) counted back from `now` instead
    /// of the database's `now()`: a pinned plan selects at apply time what its dry-run selected.
    pub fn freeze_now(&mut self, now: chrono::DateTime<chrono::Utc>) {
        if !self.conditions.iter().any(|c| c.contains(NOW)) {
            return;
        }
        self.binds.push(Bind::Timestamp(now));
        let at = format!("${}::timestamptz - $", self.binds.len());
        for condition in &mut self.conditions {
            *condition = condition.replace(NOW, &at);
        }
    }

    pub fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            "TRUE".into()
        } else {
            self.conditions.join(" AND ")
        }
    }
}

/// How a relative window starts in a condition: the database's clock.
const NOW: &str = "now() - $";

/// Quotes an identifier validated by the schema (`name` or `schema.name`).
pub fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Compiles the selection; `resolve` turns a value (literal or `{{ params.x }}`) into a typed value.
pub fn compile(
    target: &Target,
    select: &Selection,
    resolve: &dyn Fn(&str) -> ParamValue,
) -> SelectionQuery {
    let c = &target.columns;
    let mut q = SelectionQuery {
        conditions: Vec::new(),
        binds: Vec::new(),
        limit: select.limit,
    };
    let push = |q: &mut SelectionQuery, condition: &dyn Fn(usize) -> String, bind: Bind| {
        q.binds.push(bind);
        let n = q.binds.len();
        q.conditions.push(condition(n));
    };
    let texts = |values: &[String]| -> Vec<String> {
        values
            .iter()
            .flat_map(|v| match resolve(v) {
                ParamValue::List(items) => items,
                other => vec![other.to_arg()],
            })
            .collect()
    };
    if !select.status.is_empty() {
        let col = quote_ident(&c.status);
        push(
            &mut q,
            &|n| format!("{col} = ANY(${n})"),
            Bind::TextArray(texts(&select.status)),
        );
    }
    if !select.event_types.is_empty() {
        let col = quote_ident(&c.event_type);
        let patterns = texts(&select.event_types)
            .iter()
            .map(|p| like_pattern(p))
            .collect();
        push(
            &mut q,
            &|n| format!("{col} LIKE ANY(${n})"),
            Bind::TextArray(patterns),
        );
    }
    if !select.event_ids.is_empty() {
        let col = quote_ident(&c.event_id);
        push(
            &mut q,
            &|n| format!("{col} = ANY(${n})"),
            Bind::TextArray(texts(&select.event_ids)),
        );
    }
    let col = quote_ident(&c.processed_at);
    let interval = |text: &str| match resolve(text) {
        ParamValue::Duration(d) => d,
        other => duration::parse(&other.to_arg()).unwrap_or_default(),
    };
    let timestamp = |text: &str| match resolve(text) {
        ParamValue::Timestamp(t) => t,
        other => parse_timestamp(&other.to_arg()).unwrap_or_default(),
    };
    if let Some(within) = &select.processed_within {
        push(
            &mut q,
            &|n| format!("{col} > now() - ${n}::interval"),
            Bind::Interval(interval(within)),
        );
    }
    if let Some(before) = &select.processed_before {
        push(
            &mut q,
            &|n| format!("{col} < now() - ${n}::interval"),
            Bind::Interval(interval(before)),
        );
    }
    if let Some(between) = &select.processed_between {
        push(
            &mut q,
            &|n| format!("{col} >= ${n}"),
            Bind::Timestamp(timestamp(&between.from)),
        );
        push(
            &mut q,
            &|n| format!("{col} < ${n}"),
            Bind::Timestamp(timestamp(&between.to)),
        );
    }
    let payload = quote_ident(&c.payload);
    for (field, value) in &select.payload {
        q.binds.push(Bind::Text(field.clone()));
        let key = q.binds.len();
        q.binds.push(Bind::Text(resolve(value).to_arg()));
        let val = q.binds.len();
        q.conditions.push(format!("{payload} ->> ${key} = ${val}"));
    }
    q
}

/// `contribution.*` → `contribution.%`, with LIKE's own wildcards escaped.
fn like_pattern(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for ch in glob.chars() {
        match ch {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_now_replaces_the_databases_clock_in_relative_windows() {
        let select = Selection {
            status: vec!["error".into()],
            processed_within: Some("24h".into()),
            processed_before: Some("5m".into()),
            ..Selection::default()
        };
        let resolve = |t: &str| ParamValue::String(t.to_string());
        let mut q = compile(&Target::default(), &select, &resolve);
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        q.freeze_now(at);
        assert_eq!(
            q.where_clause(),
            "\"status\" = ANY($1) AND \"processed_at\" > $4::timestamptz - $2::interval AND \"processed_at\" < $4::timestamptz - $3::interval"
        );
        assert_eq!(q.binds[3], Bind::Timestamp(at));
        // Without a relative window, nothing changes.
        let mut plain = compile(
            &Target::default(),
            &Selection {
                status: vec!["error".into()],
                ..Selection::default()
            },
            &resolve,
        );
        plain.freeze_now(at);
        assert_eq!(plain.binds.len(), 1);
    }

    #[test]
    fn selection_compiles_to_bound_conditions() {
        let select = Selection {
            status: vec!["error".into()],
            event_types: vec!["contribution.*".into(), "a_b".into()],
            processed_within: Some("{{ params.since }}".into()),
            payload: [("contribution_id".to_string(), "x'y".to_string())].into(),
            ..Selection::default()
        };
        let resolve = |t: &str| match t {
            "{{ params.since }}" => ParamValue::Duration(std::time::Duration::from_secs(3600)),
            other => ParamValue::String(other.to_string()),
        };
        let q = compile(&Target::default(), &select, &resolve);
        assert_eq!(
            q.where_clause(),
            "\"status\" = ANY($1) AND \"event_type\" LIKE ANY($2) AND \"processed_at\" > now() - $3::interval AND \"payload\" ->> $4 = $5"
        );
        assert_eq!(
            q.binds[1],
            Bind::TextArray(vec!["contribution.%".into(), "a\\_b".into()])
        );
        assert_eq!(q.binds[4], Bind::Text("x'y".into()));
    }
}
