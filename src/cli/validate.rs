//! `replay validate`: every finding of every plan, for people or machines.

use std::io::IsTerminal;

use serde::Serialize;

use crate::exit_codes;
use crate::plan::{self, LoadError, Rendered, Severity};

use super::args::{Snippets, ValidateArgs, ValidateFormat};

/// The outcome for one file.
#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    valid: bool,
    diagnostics: Vec<Rendered>,
}

/// `--format json` output.
#[derive(Debug, Serialize)]
struct Report {
    version: u32,
    valid: bool,
    files: Vec<FileReport>,
}

pub fn run(args: &ValidateArgs) -> u8 {
    let snippets = match args.snippets {
        Snippets::Always => true,
        Snippets::Never => false,
        Snippets::Auto => std::io::stdout().is_terminal(),
    };
    let mut files = Vec::new();
    let mut text = String::new();
    let mut unreadable = false;
    let options = plan::Options {
        strict_sql: args.strict_sql,
    };
    for path in &args.plans {
        match plan::validate_file_with(path, options) {
            Ok(validated) => {
                let rendered: Vec<Rendered> = validated
                    .diagnostics
                    .iter()
                    .map(|d| Rendered::new(&validated.source, d))
                    .collect();
                for r in &rendered {
                    text.push_str(&r.to_text(snippets.then_some(&validated.source)));
                }
                files.push(FileReport {
                    file: validated.source.path.clone(),
                    valid: !validated.has_errors(),
                    diagnostics: rendered,
                });
            }
            Err(err) => {
                unreadable |= matches!(err, LoadError::Read { .. });
                let rendered = load_diagnostic(&err);
                text.push_str(&rendered.to_text(None));
                files.push(FileReport {
                    file: err.path().to_string(),
                    valid: false,
                    diagnostics: vec![rendered],
                });
            }
        }
    }
    let invalid = files.iter().filter(|f| !f.valid).count();
    match args.format {
        ValidateFormat::Github => {
            let findings: Vec<Rendered> = files.into_iter().flat_map(|f| f.diagnostics).collect();
            print!("{}", crate::render::github::annotations(&findings));
        }
        ValidateFormat::Sarif => {
            let findings: Vec<Rendered> = files.into_iter().flat_map(|f| f.diagnostics).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::render::sarif::log(&findings))
                    .unwrap_or_default()
            );
        }
        ValidateFormat::Json => {
            let report = Report {
                version: 1,
                valid: invalid == 0,
                files,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        ValidateFormat::Text => {
            let count = |s| {
                files
                    .iter()
                    .flat_map(|f| &f.diagnostics)
                    .filter(|d| d.severity == s)
                    .count()
            };
            print!("{text}");
            println!(
                "{} plan(s) checked: {} valid, {} invalid ({} error(s), {} warning(s))",
                files.len(),
                files.len() - invalid,
                invalid,
                count(Severity::Error),
                count(Severity::Warning)
            );
        }
    }
    if unreadable {
        exit_codes::FAILURE
    } else if invalid > 0 {
        exit_codes::INVALID_PLAN
    } else {
        exit_codes::SUCCESS
    }
}

/// A file that could not be loaded, as a finding at the place the loader names.
fn load_diagnostic(err: &LoadError) -> Rendered {
    let (line, column, code, message) = match err {
        LoadError::Yaml { error, .. } => {
            (error.pos.line, error.pos.col, "yaml", error.message.clone())
        }
        LoadError::NotUtf8 {
            line, col, offset, ..
        } => (
            *line,
            *col,
            "encoding",
            format!("file is not valid UTF-8 (invalid byte at offset {offset})"),
        ),
        LoadError::TooLarge { size, .. } => (
            1,
            1,
            "too-large",
            format!(
                "file is {size} bytes; plans are limited to {} bytes",
                plan::source::MAX_FILE_BYTES
            ),
        ),
        LoadError::Read { source, .. } => (
            0,
            0,
            "unreadable",
            format!("cannot read the file: {source}"),
        ),
    };
    Rendered {
        file: err.path().to_string(),
        line,
        column,
        severity: Severity::Error,
        code,
        path: String::new(),
        message,
        help: None,
    }
}
