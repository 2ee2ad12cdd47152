//! Parameter values: parsed from `--param name=value` and defaults, checked against declared types.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::duration;
use super::model::{ParamSpec, ParamType};

/// A typed parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    String(String),
    Int(i64),
    Uuid(uuid::Uuid),
    Timestamp(DateTime<Utc>),
    Duration(Duration),
    Bool(bool),
    List(Vec<String>),
}

impl ParamValue {
    /// Parses a command-line value for a declared type.
    pub fn parse(kind: ParamType, text: &str) -> Result<ParamValue, String> {
        Ok(match kind {
            ParamType::String => ParamValue::String(text.to_string()),
            ParamType::Int => ParamValue::Int(
                text.trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not an integer"))?,
            ),
            ParamType::Uuid => ParamValue::Uuid(
                uuid::Uuid::parse_str(text.trim())
                    .map_err(|_| format!("`{text}` is not a UUID"))?,
            ),
            ParamType::Timestamp => ParamValue::Timestamp(parse_timestamp(text)?),
            ParamType::Duration => ParamValue::Duration(duration::parse(text)?),
            ParamType::Bool => ParamValue::Bool(match text.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(format!("`{text}` is not `true` or `false`")),
            }),
            ParamType::List => ParamValue::List(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        })
    }

    /// Reads a default written in the plan.
    pub fn from_default(kind: ParamType, value: &Value) -> Result<ParamValue, String> {
        match (kind, value) {
            (ParamType::Int, Value::Number(n)) => n
                .as_i64()
                .map(ParamValue::Int)
                .ok_or_else(|| format!("`{n}` is not an integer")),
            (ParamType::Bool, Value::Bool(b)) => Ok(ParamValue::Bool(*b)),
            (ParamType::List, Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!("list items must be strings, found `{other}`")),
                })
                .collect::<Result<_, _>>()
                .map(ParamValue::List),
            (_, Value::String(s)) => ParamValue::parse(kind, s),
            (_, other) => Err(format!("`{other}` is not a {}", kind.name())),
        }
    }

    /// The value as templates see it.
    pub fn to_json(&self) -> Value {
        match self {
            ParamValue::String(s) => Value::String(s.clone()),
            ParamValue::Int(i) => Value::from(*i),
            ParamValue::Uuid(u) => Value::String(u.to_string()),
            ParamValue::Timestamp(t) => Value::String(t.to_rfc3339()),
            ParamValue::Duration(d) => Value::String(duration::format(*d)),
            ParamValue::Bool(b) => Value::Bool(*b),
            ParamValue::List(items) => Value::from(items.clone()),
        }
    }

    /// The value as it would be typed on the command line (for reports and resume commands).
    pub fn to_arg(&self) -> String {
        match self {
            ParamValue::List(items) => items.join(","),
            ParamValue::String(s) => s.clone(),
            other => match other.to_json() {
                Value::String(s) => s,
                v => v.to_string(),
            },
        }
    }
}

/// A parameter value recorded as JSON, written back as a `--param` value.
pub fn json_to_arg(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(json_to_arg).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Parses RFC 3339 (`2026-11-01T00:00:00Z`) or a date (`2026-11-01`, midnight UTC).
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(format!(
        "`{text}` is not a timestamp; write `2026-11-01T00:00:00Z` or `2026-11-01`"
    ))
}

/// When a whole value is `{{ params.NAME }}`, the parameter's name.
pub fn param_ref(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let name = inner.strip_prefix("params.")?;
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    valid.then_some(name)
}

/// Why the given parameters do not fit the plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("missing required parameter `{name}` ({kind}); give it as `--param {name}=VALUE`")]
    Missing { name: String, kind: &'static str },
    #[error("parameter `{name}` expects a {kind}: {reason}")]
    WrongType {
        name: String,
        kind: &'static str,
        reason: String,
    },
    #[error("unknown parameter `{name}`; the plan declares: {declared}")]
    Unknown { name: String, declared: String },
    #[error("`{arg}` is not `name=value`")]
    Malformed { arg: String },
    #[error("parameter `{name}` is given twice")]
    Repeated { name: String },
}

/// Binds `--param name=value` arguments and defaults to the declared parameters.
pub fn bind(
    specs: &BTreeMap<String, ParamSpec>,
    args: &[String],
) -> Result<BTreeMap<String, ParamValue>, ParamError> {
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    for arg in args {
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| ParamError::Malformed { arg: arg.clone() })?;
        let name = name.trim();
        if !specs.contains_key(name) {
            let declared: Vec<&str> = specs.keys().map(String::as_str).collect();
            return Err(ParamError::Unknown {
                name: name.to_string(),
                declared: if declared.is_empty() {
                    "(none)".into()
                } else {
                    declared.join(", ")
                },
            });
        }
        if given.insert(name, value).is_some() {
            return Err(ParamError::Repeated {
                name: name.to_string(),
            });
        }
    }
    let mut values = BTreeMap::new();
    for (name, spec) in specs {
        let wrong = |reason| ParamError::WrongType {
            name: name.clone(),
            kind: spec.kind.name(),
            reason,
        };
        let value = match (given.get(name.as_str()), &spec.default) {
            (Some(text), _) => ParamValue::parse(spec.kind, text).map_err(wrong)?,
            (None, Some(default)) => ParamValue::from_default(spec.kind, default).map_err(wrong)?,
            (None, None) => {
                return Err(ParamError::Missing {
                    name: name.clone(),
                    kind: spec.kind.name(),
                });
            }
        };
        values.insert(name.clone(), value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ParamType, default: Option<Value>) -> ParamSpec {
        ParamSpec {
            kind,
            default,
            description: None,
        }
    }

    #[test]
    fn binding_reports_the_parameter() {
        let specs: BTreeMap<String, ParamSpec> = [
            (
                "since".to_string(),
                spec(ParamType::Duration, Some("24h".into())),
            ),
            ("period_id".to_string(), spec(ParamType::Uuid, None)),
        ]
        .into();
        let cases: [(&[&str], Result<&str, &str>); 5] = [
            (
                &[],
                Err(
                    "missing required parameter `period_id` (uuid); give it as `--param period_id=VALUE`",
                ),
            ),
            (
                &["period_id=nope"],
                Err("parameter `period_id` expects a uuid: `nope` is not a UUID"),
            ),
            (
                &["other=1"],
                Err("unknown parameter `other`; the plan declares: period_id, since"),
            ),
            (&["period_id"], Err("`period_id` is not `name=value`")),
            (
                &["period_id=123e4567-e89b-12d3-a456-426614174000"],
                Ok("1d"),
            ),
        ];
        for (args, expected) in cases {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            match (bind(&specs, &args), expected) {
                (Ok(values), Ok(since)) => assert_eq!(values["since"].to_arg(), since),
                (Err(e), Err(message)) => assert_eq!(e.to_string(), message),
                (got, _) => panic!("{args:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn param_refs_are_whole_values_only() {
        assert_eq!(param_ref("{{ params.since }}"), Some("since"));
        assert_eq!(param_ref("{{params.x_1}}"), Some("x_1"));
        assert_eq!(param_ref("x {{ params.since }}"), None);
        assert_eq!(param_ref("{{ event.id }}"), None);
    }
}
