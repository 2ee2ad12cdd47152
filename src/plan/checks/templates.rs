//! Templates compile and read only variables that exist where they are rendered.

use crate::plan::builtins;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::RawPlan;
use crate::plan::{template, usage};

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    for text in usage::templates(plan) {
        let info = match template::analyze(text.text) {
            Ok(info) => info,
            Err(reason) => {
                out.push(Diagnostic::error(
                    "template-syntax",
                    text.location.clone(),
                    format!("template does not compile: {reason}"),
                ));
                continue;
            }
        };
        for helper in &info.helpers {
            if !template::is_known_helper(helper) {
                out.push(
                    Diagnostic::error(
                        "unknown-helper",
                        text.location.clone(),
                        format!("template calls unknown helper `{helper}`"),
                    )
                    .with_help("available: json, if, unless, each, with, lookup, eq, ne, gt, gte, lt, lte, and, or, not, len"),
                );
            }
        }
        for variable in &info.variables {
            if let Some(problem) =
                unknown_variable(variable, text.per_event, text.secrets.as_deref())
            {
                out.push(
                    Diagnostic::error("unknown-variable", text.location.clone(), problem).with_help(
                        "templates see `params.*`, `event.{event_id,event_type,payload}` (per-event publish and http), `run.{id,started_at}`, `plan.{name,hash}`, `step.id`, and `secrets.NAME` (http steps, named in `secrets_env`)",
                    ),
                );
            }
        }
    }
}

fn unknown_variable(variable: &str, per_event: bool, secrets: Option<&[&str]>) -> Option<String> {
    let mut parts = variable.split('.');
    let root = parts.next().unwrap_or_default();
    let field = parts.next();
    let fields: &[&str] = match root {
        // Declared-ness of parameters is the parameter check's.
        "params" | "this" | "" => return None,
        "event" if !per_event => {
            let what = match secrets {
                Some(_) => "this http step makes one call",
                None => "this publish step sends one message",
            };
            return Some(format!(
                "`{variable}` is not available: {what} (`each: once`)"
            ));
        }
        "secrets" => match secrets {
            None => {
                return Some(format!(
                    "`{variable}` is not available: only http steps read secrets (`secrets_env`)"
                ));
            }
            Some(names) => names,
        },
        "event" => {
            if field == Some("payload") {
                return None;
            }
            builtins::EVENT_FIELDS
        }
        "run" => builtins::RUN_FIELDS,
        "plan" => builtins::PLAN_FIELDS,
        "step" => builtins::STEP_FIELDS,
        _ => return Some(format!("unknown variable `{variable}`")),
    };
    match field {
        Some(f) if fields.contains(&f) && parts.next().is_none() => None,
        Some(f) => match crate::plan::schema::closest(f, fields) {
            Some(near) => Some(format!(
                "unknown variable `{variable}`; did you mean `{root}.{near}`?"
            )),
            None => Some(format!("unknown variable `{variable}`")),
        },
        None => Some(format!("unknown variable `{variable}`")),
    }
}
