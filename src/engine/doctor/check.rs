//! One preflight check and its outcome: what was looked at, what was found, and the fix.

use serde::Serialize;

/// How a check came out. Warnings and skipped checks do not fail the preflight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
    /// Not looked at: what it needs failed (a service that cannot be reached).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Warn => "warn",
            Outcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked, e.g. `postgres`, `table processed_events`, `exchange habitat-events`.
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    /// What to do about a failure or a warning.
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            outcome: Outcome::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            outcome: Outcome::Skipped,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// Every check of one preflight, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    pub version: u32,
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl Findings {
    pub fn new(checks: Vec<Check>) -> Findings {
        Findings {
            version: 1,
            passed: checks.iter().all(|c| c.outcome != Outcome::Fail),
            checks,
        }
    }
}
