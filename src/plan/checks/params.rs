//! Every parameter used is declared, every declared one is used, and defaults fit their types.

use std::collections::BTreeSet;

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::RawPlan;
use crate::plan::params::{ParamValue, param_ref};
use crate::plan::prepared::BindName;
use crate::plan::usage;
use crate::plan::{sql, template};

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut undeclared = |name: &str, location: Location, out: &mut Vec<Diagnostic>| {
        used.insert(name.to_string());
        if !plan.params.contains_key(name) {
            out.push(
                Diagnostic::error(
                    "undeclared-param",
                    location,
                    format!("parameter `{name}` is used but not declared in `params`"),
                )
                .with_help({
                    let declared: Vec<&str> = plan.params.keys().map(String::as_str).collect();
                    match crate::plan::schema::closest(name, &declared) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("declare it: `params: {{ {name}: {{ type: string }} }}`"),
                    }
                }),
            );
        }
    };
    for text in usage::sql_texts(plan) {
        // Syntax errors are reported by the SQL check; here only the binds matter.
        let Ok((_, binds)) = sql::rewrite(text.text) else {
            continue;
        };
        for bind in binds {
            match BindName::classify(&bind, text.role.per_batch()) {
                Ok(BindName::Builtin(_)) => {}
                Ok(BindName::Param(name)) => undeclared(&name, text.location.clone(), out),
                Err(refusal) => out.push(
                    Diagnostic::error("unknown-bind", text.location.clone(), refusal.to_string())
                        .with_help("use `:selected_event_ids` for the whole selection"),
                ),
            }
        }
    }
    for text in usage::templates(plan) {
        let Ok(info) = template::analyze(text.text) else {
            continue;
        };
        for variable in info.variables {
            if let Some(name) = variable.strip_prefix("params.") {
                let name = name.split('.').next().unwrap_or(name);
                undeclared(name, text.location.clone(), out);
            }
        }
    }
    for (location, value) in usage::selection_values(plan) {
        if let Some(name) = param_ref(value) {
            undeclared(name, location, out);
        }
    }
    for (name, spec) in &plan.params {
        let here = Location::root().key("params").key(name.clone());
        if !used.contains(name) {
            out.push(
                Diagnostic::warning(
                    "unused-param",
                    here.clone().at_key(),
                    format!("parameter `{name}` is declared but never used"),
                )
                .with_help(
                    "remove it, or use it as `:name` in SQL or `{{ params.name }}` in a template",
                ),
            );
        }
        if let Some(default) = &spec.default
            && let Err(reason) = ParamValue::from_default(spec.kind, default)
        {
            out.push(Diagnostic::error(
                "param-default-type",
                here.key("default"),
                format!(
                    "default of `{name}` is not a {}: {reason}",
                    spec.kind.name()
                ),
            ));
        }
    }
}
