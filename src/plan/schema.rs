//! The JSON Schema of plans: generated from the types, and used to validate a document before serde reads it.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::diagnostic::Diagnostic;
use super::location::Location;
use super::model::RawPlan;
use super::yaml::Node;

/// The schema as `replay schema` prints it and `schemas/replay-plan.schema.json` holds it.
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(RawPlan);
    schema.to_value()
}

/// The schema as pretty JSON with a trailing newline (the committed file's exact bytes).
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

fn validator() -> &'static Result<Validator, String> {
    static VALIDATOR: OnceLock<Result<Validator, String>> = OnceLock::new();
    VALIDATOR.get_or_init(|| jsonschema::validator_for(&json_schema()).map_err(|e| e.to_string()))
}

/// Every schema violation of the document, each pointed at its node.
pub fn check(document: &Value, root: &Node) -> Vec<Diagnostic> {
    let validator = match validator() {
        Ok(v) => v,
        Err(e) => {
            return vec![Diagnostic::error(
                "internal",
                Location::root(),
                format!("the built-in schema does not compile: {e}"),
            )];
        }
    };
    let mut out = Vec::new();
    for error in validator.iter_errors(document) {
        translate(&error, document, root, &mut out);
    }
    out.dedup();
    out
}

fn translate(
    error: &ValidationError<'_>,
    document: &Value,
    root: &Node,
    out: &mut Vec<Diagnostic>,
) {
    let pointer = error.instance_path().as_str();
    let here = Location::from_pointer(pointer, root);
    let instance = document.pointer(pointer).unwrap_or(&Value::Null);
    let diagnostic = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_keys(error);
            for key in unexpected {
                let mut d = Diagnostic::error(
                    "unknown-key",
                    here.key(key.clone()).at_key(),
                    format!("unknown key `{key}` in {}", describe(&here)),
                );
                if let Some(help) = suggest(key, &allowed) {
                    d = d.with_help(help);
                }
                out.push(d);
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            Diagnostic::error(
                "missing-key",
                here.clone(),
                format!("missing required key `{key}` in {}", describe(&here)),
            )
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            return tagged_union(context, instance, &here, document, root, out);
        }
        ValidationErrorKind::Type { kind } => Diagnostic::error(
            "wrong-type",
            here.clone(),
            format!(
                "expected {} at `{here}`, found {}",
                type_names(kind),
                json_type(instance)
            ),
        ),
        ValidationErrorKind::Enum { options } => Diagnostic::error(
            "not-allowed",
            here.clone(),
            format!("`{}` is not allowed at `{here}`", scalar_text(instance)),
        )
        .with_help(format!("use one of: {}", list(options))),
        ValidationErrorKind::Constant { expected_value } => Diagnostic::error(
            "not-allowed",
            here.clone(),
            format!(
                "`{}` is not allowed at `{here}`; expected `{}`",
                scalar_text(instance),
                scalar_text(expected_value)
            ),
        ),
        ValidationErrorKind::Pattern { pattern } => Diagnostic::error(
            "bad-format",
            here.clone(),
            format!(
                "`{}` is not a valid value for `{here}`",
                scalar_text(instance)
            ),
        )
        .with_help(format!("it must match the pattern `{pattern}`")),
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!(
                "`{here}` is {}; the minimum is {limit}",
                scalar_text(instance)
            ),
        ),
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!(
                "`{here}` is {}; the maximum is {limit}",
                scalar_text(instance)
            ),
        ),
        ValidationErrorKind::MinLength { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!("`{here}` must be at least {limit} characters long"),
        ),
        ValidationErrorKind::MaxLength { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!("`{here}` must be at most {limit} characters long"),
        ),
        ValidationErrorKind::MinItems { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!("`{here}` needs at least {limit} item(s)"),
        ),
        ValidationErrorKind::MaxItems { limit } => Diagnostic::error(
            "out-of-range",
            here.clone(),
            format!("`{here}` takes at most {limit} item(s)"),
        ),
        _ => Diagnostic::error("schema", here.clone(), error.masked().to_string()),
    };
    out.push(diagnostic);
}

/// A step or rollback action is a `oneOf` tagged by `kind`: report the branch its `kind` names.
fn tagged_union(
    context: &[Vec<ValidationError<'static>>],
    instance: &Value,
    here: &Location,
    document: &Value,
    root: &Node,
    out: &mut Vec<Diagnostic>,
) {
    let kinds: Vec<String> = context
        .iter()
        .filter_map(|branch| {
            branch.iter().find_map(|e| match e.kind() {
                ValidationErrorKind::Constant { expected_value } => {
                    expected_value.as_str().map(str::to_string)
                }
                _ => None,
            })
        })
        .collect();
    let Some(map) = instance.as_object() else {
        out.push(Diagnostic::error(
            "wrong-type",
            here.clone(),
            format!(
                "expected a mapping at `{here}`, found {}",
                json_type(instance)
            ),
        ));
        return;
    };
    let Some(kind) = map.get("kind") else {
        out.push(
            Diagnostic::error(
                "missing-key",
                here.clone(),
                format!("missing required key `kind` in {}", describe(here)),
            )
            .with_help(format!("`kind` is one of: {}", kinds.join(", "))),
        );
        return;
    };
    // The matching branch is the one that did not complain about `kind`.
    let branch = context.iter().find(|branch| {
        !branch.iter().any(|e| {
            e.instance_path().as_str().ends_with("/kind")
                && matches!(
                    e.kind(),
                    ValidationErrorKind::Constant { .. } | ValidationErrorKind::Enum { .. }
                )
        })
    });
    match branch {
        Some(errors) => {
            for e in errors {
                translate(e, document, root, out);
            }
        }
        None => out.push(
            Diagnostic::error(
                "unknown-kind",
                here.key("kind"),
                format!("unknown kind `{}` at `{here}`", scalar_text(kind)),
            )
            .with_help(format!("`kind` is one of: {}", kinds.join(", "))),
        ),
    }
}

/// The keys the schema allows where an unknown key was found, read from the error's schema location.
fn allowed_keys(error: &ValidationError<'_>) -> Vec<String> {
    let schema = json_schema();
    let path = error.schema_path().as_str();
    let Some(parent) = path.strip_suffix("/additionalProperties") else {
        return Vec::new();
    };
    resolve_schema(&schema, parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Walks a schema pointer, following `$ref`s into `$defs`.
fn resolve_schema<'a>(schema: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut node = schema;
    for segment in pointer.split('/').skip(1) {
        if segment == "$ref" {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            node = schema.pointer(target)?;
            continue;
        }
        node = match node {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
        if let Some(target) = node.get("$ref").and_then(Value::as_str) {
            node = schema.pointer(target.strip_prefix('#')?)?;
        }
    }
    Some(node)
}

fn suggest(key: &str, allowed: &[String]) -> Option<String> {
    if allowed.is_empty() {
        return None;
    }
    let close = allowed
        .iter()
        .map(|a| (edit_distance(key, a), a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min();
    Some(match close {
        Some((_, a)) => format!("did you mean `{a}`?"),
        None => format!("allowed keys here: {}", allowed.join(", ")),
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn describe(location: &Location) -> String {
    if location.segments.is_empty() {
        "the plan".into()
    } else {
        format!("`{location}`")
    }
}

fn type_names(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => article(&t.to_string()),
        jsonschema::error::TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            names.join(" or ")
        }
    }
}

fn article(t: &str) -> String {
    match t {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "integer" => "an integer".into(),
        "null" => "nothing".into(),
        other => format!("a {other}"),
    }
}

fn json_type(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("a boolean `{b}`"),
        Value::Number(n) => format!("a number `{n}`"),
        Value::String(s) => format!("a string `{}`", truncate(s)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => truncate(s),
        other => truncate(&other.to_string()),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

fn list(options: &Value) -> String {
    options
        .as_array()
        .map(|items| items.iter().map(scalar_text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
