//! Findings about a plan, and how they are printed for people (with carets) and machines (JSON).

use std::fmt::Write as _;

use serde::Serialize;

use super::location::Location;
use super::source::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One finding: what is wrong, where, and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable identifier of the check, e.g. `unknown-key`.
    pub code: &'static str,
    pub message: String,
    pub location: Location,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            location,
            help: None,
        }
    }

    pub fn warning(code: &'static str, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, location, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A diagnostic with its place resolved, as `--format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub severity: Severity,
    pub code: &'static str,
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Rendered {
    pub fn new(source: &Source, diagnostic: &Diagnostic) -> Rendered {
        let pos = source.position(&diagnostic.location);
        Rendered {
            file: source.path.clone(),
            line: pos.line,
            column: pos.col,
            severity: diagnostic.severity,
            code: diagnostic.code,
            path: diagnostic.location.to_string(),
            message: diagnostic.message.clone(),
            help: diagnostic.help.clone(),
        }
    }

    /// `file:line:col: error[code]: message`, optionally with the source line and a caret.
    pub fn to_text(&self, source: Option<&Source>) -> String {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!(
            "{}:{}:{}: {severity}[{}]: {}\n",
            self.file, self.line, self.column, self.code, self.message
        );
        if let Some(line) = source.and_then(|s| s.line(self.line)) {
            let gutter = self.line.to_string().len();
            let caret_len = caret_len(line, self.column);
            let _ = writeln!(out, "{:gutter$} |", "");
            let _ = writeln!(out, "{} | {}", self.line, line);
            let _ = writeln!(
                out,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(self.column.saturating_sub(1)),
                "^".repeat(caret_len)
            );
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

/// Underlines the token that starts at `col`: a quoted string, a key up to its colon, or a plain
/// scalar up to the end of its flow item or line.
fn caret_len(line: &str, col: usize) -> usize {
    let rest: String = line.chars().skip(col.saturating_sub(1)).collect();
    let len = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => rest[1..].find(q).map_or(rest.len(), |end| end + 2),
        Some('{' | '[') => 1,
        _ => [": ", ", ", ",", "}", "]", " #"]
            .iter()
            .filter_map(|stop| rest.find(stop))
            .min()
            .unwrap_or(rest.len()),
    };
    rest[..len.min(rest.len())]
        .trim_end()
        .trim_end_matches(':')
        .chars()
        .count()
        .clamp(1, 80)
}
