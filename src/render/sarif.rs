//! `replay validate --format sarif`: the findings as a SARIF 2.1.0 log, for GitHub code scanning.

use serde::Serialize;

use crate::plan::{Rendered, Severity, rules};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The same home as the plan schema's `$id`.
const INFORMATION_URI: &str = "https://replay.dev/";

#[derive(Debug, Serialize)]
pub struct Log {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<Run>,
}

#[derive(Debug, Serialize)]
struct Run {
    tool: Tool,
    results: Vec<SarifResult>,
}

#[derive(Debug, Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    information_uri: &'static str,
    rules: Vec<Rule>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: &'static str,
    short_description: Message,
}

#[derive(Debug, Serialize)]
struct Message {
    text: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: &'static str,
    rule_index: usize,
    level: &'static str,
    message: Message,
    locations: Vec<Location>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: PhysicalLocation,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

#[derive(Debug, Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
    start_column: usize,
}

/// The log of these findings: one run of `replay`, one rule per code that was found.
pub fn log(findings: &[Rendered]) -> Log {
    let mut codes: Vec<&'static str> = findings.iter().map(|f| f.code).collect();
    codes.sort_unstable();
    codes.dedup();
    let rules = codes
        .iter()
        .map(|&code| Rule {
            id: code,
            short_description: Message {
                text: rules::describe(code).unwrap_or(code).to_string(),
            },
        })
        .collect();
    let results = findings
        .iter()
        .map(|f| SarifResult {
            rule_id: f.code,
            rule_index: codes.binary_search(&f.code).unwrap_or_default(),
            level: match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            message: Message {
                text: match &f.help {
                    Some(help) => format!("{}\nhelp: {help}", f.message),
                    None => f.message.clone(),
                },
            },
            locations: vec![Location {
                physical_location: PhysicalLocation {
                    artifact_location: ArtifactLocation { uri: uri(&f.file) },
                    // Line 0: the file could not be read; the finding is about the whole file.
                    region: (f.line > 0).then_some(Region {
                        start_line: f.line,
                        start_column: f.column.max(1),
                    }),
                },
            }],
        })
        .collect();
    Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: vec![Run {
            tool: Tool {
                driver: Driver {
                    name: "replay",
                    version: env!("CARGO_PKG_VERSION"),
                    information_uri: INFORMATION_URI,
                    rules,
                },
            },
            results,
        }],
    }
}

/// A path as a relative URI reference: forward slashes, and the characters a URI cannot hold
/// percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.replace('\\', "/").chars() {
        if c.is_ascii_alphanumeric() || "-._~/".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_relative_uris() {
        for (path, expected) in [
            ("plans/a.yaml", "plans/a.yaml"),
            ("my plans/ä#1.yaml", "my%20plans/%C3%A4%231.yaml"),
            ("dir\\a.yaml", "dir/a.yaml"),
        ] {
            assert_eq!(uri(path), expected);
        }
    }
}
