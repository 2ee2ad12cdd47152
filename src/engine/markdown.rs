//! The report as a pull-request comment.

use crate::engine::report::Report;

/// Renders the report as Markdown (not built yet: the text report in a code block).
pub fn render(report: &Report) -> String {
    format!("```\n{}```\n", report.to_text())
}
