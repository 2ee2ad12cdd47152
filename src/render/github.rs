//! `replay validate --format github`: one GitHub Actions workflow annotation per finding.
//!
//! The format is the workflow command `::error file=F,line=L,col=C,title=T::MESSAGE`; data is
//! escaped as GitHub's toolkit does (`%`, `\r`, `\n`), and properties also escape `:` and `,`.

use crate::plan::{Rendered, Severity};

/// The annotations of these findings, one line each.
pub fn annotations(findings: &[Rendered]) -> String {
    findings.iter().map(annotation).collect()
}

fn annotation(finding: &Rendered) -> String {
    let command = match finding.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut properties = vec![format!("file={}", property(&finding.file))];
    // Line 0 means the file could not be read at all: there is no place in it to point at.
    if finding.line > 0 {
        properties.push(format!("line={}", finding.line));
        properties.push(format!("col={}", finding.column));
    }
    properties.push(format!(
        "title={}",
        property(&format!("replay {}", finding.code))
    ));
    let mut message = finding.message.clone();
    if let Some(help) = &finding.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    format!("::{command} {}::{}\n", properties.join(","), data(&message))
}

/// Escapes a command's message.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command's property value.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(file: &str, line: usize, message: &str, help: Option<&str>) -> Rendered {
        Rendered {
            file: file.into(),
            line,
            column: 7,
            severity: Severity::Error,
            code: "strict-sql",
            path: "steps[0].sql".into(),
            message: message.into(),
            help: help.map(str::to_string),
        }
    }

    #[test]
    fn data_and_properties_are_escaped() {
        let cases = [
            (
                finding("plans/a.yaml", 3, "plain", None),
                "::error file=plans/a.yaml,line=3,col=7,title=replay strict-sql::plain\n",
            ),
            (
                finding(
                    "we,ird:name%.yaml",
                    3,
                    "100% sure\r\nnext: a, b",
                    Some("do x"),
                ),
                "::error file=we%2Cird%3Aname%25.yaml,line=3,col=7,title=replay strict-sql::100%25 sure%0D%0Anext: a, b%0Ahelp: do x\n",
            ),
            (
                finding("missing.yaml", 0, "cannot read the file", None),
                "::error file=missing.yaml,title=replay strict-sql::cannot read the file\n",
            ),
        ];
        for (finding, expected) in cases {
            assert_eq!(annotations(&[finding]), expected);
        }
    }
}
