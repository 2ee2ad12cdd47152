//! Semantic checks that the schema cannot express; one check per file.

mod canary;
mod expectations;
mod guards;
mod http;
mod notify;
mod params;
mod rate_limit;
mod reason;
mod safety;
mod selection;
mod sql;
mod step_ids;
mod strict_sql;
mod template_fields;
mod templates;

use super::diagnostic::Diagnostic;
use super::model::RawPlan;
use super::validate::Options;

/// Runs every check; the order only decides the order of findings at the same place.
pub fn run(plan: &RawPlan, options: Options) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    reason::check(plan, &mut out);
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
    canary::check(plan, &mut out);
    guards::check(plan, &mut out);
    http::check(plan, &mut out);
    if options.strict_sql {
        strict_sql::check(plan, &mut out);
    }
    out
}
