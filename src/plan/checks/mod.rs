//! Semantic checks that the schema cannot express; one check per file.

mod expectations;
mod notify;
mod params;
mod rate_limit;
mod safety;
mod selection;
mod sql;
mod step_ids;
mod template_fields;
mod templates;

use super::diagnostic::Diagnostic;
use super::model::RawPlan;

/// Runs every check; the order only decides the order of findings at the same place.
pub fn run(plan: &RawPlan) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    step_ids::check(plan, &mut out);
    params::check(plan, &mut out);
    selection::check(plan, &mut out);
    templates::check(plan, &mut out);
    template_fields::check(plan, &mut out);
    sql::check(plan, &mut out);
    safety::check(plan, &mut out);
    rate_limit::check(plan, &mut out);
    expectations::check(plan, &mut out);
    notify::check(plan, &mut out);
    out
}
