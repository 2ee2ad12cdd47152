//! The selection filters something, and its values are well-formed literals or whole parameter references.

use crate::plan::diagnostic::Diagnostic;
use crate::plan::location::Location;
use crate::plan::model::{ParamType, RawPlan};
use crate::plan::params::{param_ref, parse_timestamp};
use crate::plan::{duration, usage};

pub fn check(plan: &RawPlan, out: &mut Vec<Diagnostic>) {
    let s = &plan.select;
    let here = Location::root().key("select");
    let filtered = !s.status.is_empty()
        || !s.event_types.is_empty()
        || !s.event_ids.is_empty()
        || s.processed_within.is_some()
        || s.processed_before.is_some()
        || s.processed_between.is_some()
        || !s.payload.is_empty();
    if !filtered && !s.all {
        out.push(
            Diagnostic::error("unfiltered-selection", here.clone(), "selection has no filter and would select every event")
                .with_help("add a filter (status, event_types, event_ids, processed_within, payload …) or say `all: true`"),
        );
    }
    if filtered && s.all {
        out.push(Diagnostic::warning(
            "unfiltered-selection",
            here.key("all").at_key(),
            "`all: true` has no effect when filters are given",
        ));
    }
    // A status the target never has selects nothing: a typo, almost always.
    for (i, status) in s.status.iter().enumerate() {
        if param_ref(status).is_some() || status.contains("{{") {
            continue;
        }
        if !plan.target.statuses.iter().any(|known| known == status) {
            let known = &plan.target.statuses;
            let help = match crate::plan::schema::closest(status, known) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "the target's statuses are {} (`target.statuses` lists them)",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            out.push(
                Diagnostic::error(
                    "unknown-status",
                    here.key("status").index(i),
                    format!("`{status}` is not a status of the target: it would select nothing"),
                )
                .with_help(help),
            );
        }
    }
    // A range that ends before it starts selects nothing.
    if let Some(range) = &s.processed_between
        && let (Ok(from), Ok(to)) = (parse_timestamp(&range.from), parse_timestamp(&range.to))
        && from >= to
    {
        out.push(
            Diagnostic::error(
                "inverted-range",
                here.key("processed_between").key("from"),
                format!(
                    "`from` ({}) is not before `to` ({}): the range is empty",
                    range.from, range.to
                ),
            )
            .with_help("swap them: `from` is the inclusive start, `to` the exclusive end"),
        );
    }
    for (location, value) in usage::selection_values(plan) {
        if let Some(name) = param_ref(value) {
            // Declared-ness is the parameter check's; here the type must fit the place.
            if let Some(spec) = plan.params.get(name)
                && let Some(wanted) = wanted_types(&location)
                && !wanted.contains(&spec.kind)
            {
                out.push(Diagnostic::error(
                    "param-type",
                    location.clone(),
                    format!(
                        "parameter `{name}` is a {} but `{location}` needs a {}",
                        spec.kind.name(),
                        wanted
                            .iter()
                            .map(|k| k.name())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                ));
            }
            continue;
        }
        if value.contains("{{") {
            out.push(
                Diagnostic::error(
                    "template-in-selection",
                    location,
                    "a selection value is a literal or exactly `{{ params.NAME }}`",
                )
                .with_help("the selection compiles to bound SQL parameters; declare a parameter instead of building text"),
            );
            continue;
        }
        let leaf = last_key(&location);
        let problem = match leaf.as_str() {
            "processed_within" | "processed_before" => duration::parse(value).err(),
            "from" | "to" => parse_timestamp(value).err(),
            _ if value.trim().is_empty() => Some("value is empty".to_string()),
            _ => None,
        };
        if let Some(problem) = problem {
            out.push(Diagnostic::error("bad-value", location, problem));
        }
    }
}

fn last_key(location: &Location) -> String {
    location
        .segments
        .iter()
        .rev()
        .find_map(|s| match s {
            crate::plan::location::Segment::Key(k) => Some(k.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The parameter types a selection place accepts.
fn wanted_types(location: &Location) -> Option<&'static [ParamType]> {
    use crate::plan::location::Segment;
    let keys: Vec<&str> = location
        .segments
        .iter()
        .filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    match keys.get(1).copied() {
        Some("processed_within" | "processed_before") => Some(&[ParamType::Duration]),
        Some("processed_between") => Some(&[ParamType::Timestamp]),
        Some("event_ids" | "status" | "event_types") => Some(&[ParamType::String, ParamType::List]),
        Some("payload") => Some(&[ParamType::String, ParamType::Uuid, ParamType::Int]),
        _ => None,
    }
}
