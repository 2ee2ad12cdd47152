//! The offline pipeline: load a file, check it against the schema, read it into types, run the checks.

use std::path::Path;

use super::diagnostic::{Diagnostic, Severity};
use super::location::Location;
use super::model::RawPlan;
use super::source::{LoadError, Source};
use super::{checks, schema};

/// A plan file after validation: the typed plan when the schema accepted it, and every finding.
#[derive(Debug)]
pub struct Validated {
    pub source: Source,
    pub plan: Option<RawPlan>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Validated {
    pub fn has_errors(&self) -> bool {
        self.plan.is_none() || self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The plan when it is valid.
    pub fn valid_plan(&self) -> Option<&RawPlan> {
        if self.has_errors() {
            None
        } else {
            self.plan.as_ref()
        }
    }
}

/// Checks beyond the ones every plan gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Refuse functions outside the allowlist and statements a rollback does not undo
    /// (`--strict-sql`).
    pub strict_sql: bool,
}

/// Validates a file; a file that cannot be read or parsed as YAML is an error of its own.
pub fn validate_file(path: &Path) -> Result<Validated, LoadError> {
    validate_file_with(path, Options::default())
}

/// Validates a file with extra checks.
pub fn validate_file_with(path: &Path, options: Options) -> Result<Validated, LoadError> {
    Ok(validate_with(Source::read(path)?, options))
}

/// Validates loaded source.
pub fn validate(source: Source) -> Validated {
    validate_with(source, Options::default())
}

/// Validates loaded source with extra checks.
pub fn validate_with(source: Source, options: Options) -> Validated {
    let document = source.root.to_json();
    let mut diagnostics = schema::check(&document, &source.root);
    // Schema errors do not hide the rest: what can be read is checked in the same pass.
    let schema_clean = diagnostics.is_empty();
    if !schema_clean {
        diagnostics.extend(super::prune::semantic_findings(&document, options));
    }
    let plan = if schema_clean {
        match serde_json::from_value::<RawPlan>(document) {
            Ok(plan) => Some(plan),
            // The schema accepted what the types reject: the two disagree, and serde's error
            // carries no path, so this can only point at the document.
            Err(err) => {
                diagnostics.push(
                    Diagnostic::error("schema", Location::root(), err.to_string()).with_help(
                        "the schema accepted this plan but its types do not: a bug in replay; \
                         please report it with the plan",
                    ),
                );
                None
            }
        }
    } else {
        None
    };
    if let Some(plan) = &plan {
        diagnostics.extend(checks::run(plan, options));
    }
    sort(&mut diagnostics, &source);
    Validated {
        source,
        plan,
        diagnostics,
    }
}

/// Errors first, then by place, so the most important finding is on top.
fn sort(diagnostics: &mut [Diagnostic], source: &Source) {
    diagnostics.sort_by_key(|d| {
        let pos = source.position(&d.location);
        (
            std::cmp::Reverse(d.severity == Severity::Error),
            pos.line,
            pos.col,
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_errors_are_sorted_by_place() {
        let text = "version: 1
colour: blue
name: Replay Period Close
reason: short
select:
  status: [error]
rate_limit:
  per_second: 0
steps:
  - kind: reset
";
        let validated = validate(Source::from_text("plan.yaml".into(), text.into()).unwrap());
        let found: Vec<(usize, &str)> = validated
            .diagnostics
            .iter()
            .map(|d| (validated.source.position(&d.location).line, d.code))
            .collect();
        assert_eq!(
            found,
            [
                (2, "unknown-key"),
                (3, "bad-format"),
                (4, "out-of-range"),
                (8, "out-of-range"),
                (10, "missing-key"),
            ]
        );
        assert!(validated.plan.is_none());
    }
}
