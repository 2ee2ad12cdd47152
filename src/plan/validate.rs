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

/// Validates a file; a file that cannot be read or parsed as YAML is an error of its own.
pub fn validate_file(path: &Path) -> Result<Validated, LoadError> {
    Ok(validate(Source::read(path)?))
}

/// Validates loaded source.
pub fn validate(source: Source) -> Validated {
    let document = source.root.to_json();
    let mut diagnostics = schema::check(&document, &source.root);
    if !diagnostics.is_empty() {
        return Validated {
            source,
            plan: None,
            diagnostics,
        };
    }
    let plan = match serde_json::from_value::<RawPlan>(document) {
        Ok(plan) => plan,
        Err(err) => {
            diagnostics.push(Diagnostic::error(
                "schema",
                Location::root(),
                err.to_string(),
            ));
            return Validated {
                source,
                plan: None,
                diagnostics,
            };
        }
    };
    diagnostics.extend(checks::run(&plan));
    // Errors first, then by place, so the most important finding is on top.
    diagnostics.sort_by_key(|d| {
        let pos = source.position(&d.location);
        (
            std::cmp::Reverse(d.severity == Severity::Error),
            pos.line,
            pos.col,
        )
    });
    Validated {
        source,
        plan: Some(plan),
        diagnostics,
    }
}
