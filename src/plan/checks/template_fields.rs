//! `{{` only where templates render: a publish step's routing key, payload, message id and
//! headers, and parameter references in the selection. Anywhere else (an exchange, a queue, a
//! description) it would be taken literally, so it is an error. SQL has its own check.

use serde_json::Value;

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::RawPlan;

/// Fields of a publish step that are templates.
const PUBLISH_TEMPLATES: &[&str] = &["routing_key", "payload", "message_id", "headers"];
/// Fields of an http step that are templates.
const HTTP_TEMPLATES: &[&str] = &["url", "headers", "body", "idempotency_key"];
/// Fields holding SQL, which `template-in-sql` reports.
const SQL_FIELDS: &[&str] = &["sql", "until", "where"];

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    let Ok(Value::Object(root)) = serde_json::to_value(plan) else {
        return;
    };
    for (key, value) in &root {
        if key == "select" {
            continue;
        }
        walk(
            value,
            Location::root().key(key.clone()),
            key == "steps",
            out,
        );
    }
}

/// `in_steps`: the value is the `steps` list, whose publish steps hold templates.
fn walk(value: &Value, at: Location, in_steps: bool, out: &mut Vec<Diagnostic>) {
    match value {
        Value::String(text) if text.contains("{{") => out.push(
            Diagnostic::error(
                "template-not-allowed",
                at,
                "this field is not a template, so `{{ … }}` would be taken literally",
            )
            .with_help("templates render only in a publish step's `routing_key`, `payload`, `message_id` and `headers`, and an http step's `url`, `headers`, `body` and `idempotency_key`; parameters reach the selection as `\"{{ params.NAME }}\"` and SQL as `:NAME`"),
        ),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let kind = item.get("kind").and_then(Value::as_str).filter(|_| in_steps);
                let publish = kind == Some("publish");
                let http = kind == Some("http");
                match item {
                    Value::Object(fields) if in_steps => {
                        for (key, field) in fields {
                            let skip = SQL_FIELDS.contains(&key.as_str())
                                || (publish && PUBLISH_TEMPLATES.contains(&key.as_str()))
                                || (http && HTTP_TEMPLATES.contains(&key.as_str()));
                            if !skip {
                                walk(field, at.index(i).key(key.clone()), false, out);
                            }
                        }
                    }
                    _ => walk(item, at.index(i), false, out),
                }
            }
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                if !SQL_FIELDS.contains(&key.as_str()) {
                    walk(field, at.key(key.clone()), false, out);
                }
            }
        }
        _ => {}
    }
}
