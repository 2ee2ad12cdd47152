//! Tests of the plan language: the invalid-plan corpus, hostile input, the schema and the shipped plans.
//!
//! Every test drives the real `replay` binary (`CARGO_BIN_EXE_replay`), never `target/debug/replay`,
//! which builds from other worktrees overwrite.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The corpus of invalid plans, relative to the package root (as the output prints it).
const CORPUS: &str = "tests/plans/invalid";

/// Every diagnostic code `replay validate` can report about a plan that loads, except `internal`
/// (the built-in schema failing to compile) and `schema` (a plan the schema accepts but the types
/// reject: the two disagree, a bug with no plan to show it). The corpus must hold a case for each.
const PLAN_CODES: &[&str] = &[
    // schema
    "unknown-key",
    "missing-key",
    "wrong-type",
    "not-allowed",
    "bad-format",
    "out-of-range",
    "unknown-kind",
    // semantic
    "duplicate-step-id",
    "undeclared-param",
    "unused-param",
    "param-default-type",
    "param-type",
    "unknown-bind",
    "template-syntax",
    "unknown-variable",
    "unknown-helper",
    "sql-syntax",
    "template-in-sql",
    "multiple-statements",
    "unbounded-write",
    "ddl-required",
    "query-writes",
    "force-required",
    "force-unacknowledged",
    "unfiltered-selection",
    "template-in-selection",
    "template-not-allowed",
    "bad-value",
    "placeholder-reason",
    "wait-condition",
    "expectation",
    "restore-without-backup",
    "unbounded-backup",
    "unused-setting",
    "canary-unjudged",
    "unknown-status",
    "inverted-range",
    "duplicate-guard",
    "guard-value",
    "guard-bound",
    "http-url",
];

/// Corpus files whose `# expect:` line states the right diagnostics but `replay validate` reports
/// others today: bugs in `src/plan/`, described in the branch's report. This test fails when one is
/// fixed, so that the entry is removed here and its snapshot reviewed.
const KNOWN_BUGS: &[&str] = &[];

/// One run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A `replay` command line, run from the package root.
struct Replay {
    args: Vec<OsString>,
}

impl Replay {
    fn new(subcommand: &str) -> Replay {
        Replay {
            args: vec![subcommand.into()],
        }
    }

    fn validate() -> Replay {
        Replay::new("validate")
    }

    fn arg(mut self, arg: impl Into<OsString>) -> Replay {
        self.args.push(arg.into());
        self
    }

    fn run(self) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_replay"))
            .args(&self.args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("NO_COLOR", "1")
            .output()
            .expect("the replay binary runs");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "replay {:?} panicked:\n{}",
            self.args,
            run.stderr
        );
        run
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The corpus files, sorted, as paths relative to the package root.
fn corpus() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(CORPUS))
        .expect("the corpus folder exists")
        .map(|e| e.expect("a readable entry").file_name())
        .map(|name| format!("{CORPUS}/{}", name.to_string_lossy()))
        .filter(|path| path.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

fn stem(path: &str) -> &str {
    Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a file name")
}

/// The first line of a corpus file (what is wrong) and its `# expect:` line (sorted findings as
/// `severity[code]`, empty for a valid plan).
fn header(path: &str) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(root().join(path)).expect("a readable corpus file");
    let mut lines = text.lines();
    let what = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .unwrap_or_else(|| panic!("{path}: the first line says what is wrong"));
    let expect = lines
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{path}: the second line is `# expect: …`"));
    let mut findings: Vec<String> = match expect {
        "valid" => Vec::new(),
        list => list.split(", ").map(str::to_string).collect(),
    };
    findings.sort();
    (what.to_string(), findings)
}

/// Replaces the corpus path with a placeholder so snapshots do not depend on the layout.
fn normalise(text: &str) -> String {
    text.replace(&format!("{CORPUS}/"), "[corpus]/")
}

/// The findings of one `--format json` file report, sorted, as `severity[code]`.
fn findings(file: &Value) -> Vec<String> {
    let mut out: Vec<String> = file["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            format!(
                "{}[{}]",
                d["severity"].as_str().unwrap(),
                d["code"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn invalid_plans_snapshot() {
    for path in corpus() {
        let (what, _) = header(&path);
        let run = Replay::validate()
            .arg("--snippets")
            .arg("always")
            .arg(&path)
            .run();
        let mut text = format!("exit: {}\n---\n{}", run.code, normalise(&run.stdout));
        if !run.stderr.is_empty() {
            text.push_str(&format!("--- stderr\n{}", normalise(&run.stderr)));
        }
        insta::with_settings!({ description => what, omit_expression => true }, {
            insta::assert_snapshot!(format!("invalid__{}", stem(&path)), text);
        });
    }
}

#[test]
fn invalid_plans_report_what_their_header_expects() {
    let known: BTreeSet<&str> = KNOWN_BUGS.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut fixed = Vec::new();
    for path in corpus() {
        let (_, expected) = header(&path);
        let run = Replay::validate()
            .arg("--format")
            .arg("json")
            .arg(&path)
            .run();
        let report: Value = serde_json::from_str(&run.stdout).expect("JSON output");
        let got = findings(&report["files"][0]);
        let expected_code = if expected.iter().any(|f| f.starts_with("error[")) {
            2
        } else {
            0
        };
        let right = got == expected && run.code == expected_code;
        match (right, known.contains(stem(&path))) {
            (true, true) => fixed.push(path),
            (false, false) => wrong.push(format!(
                "{path}: expected {expected:?} (exit {expected_code}), got {got:?} (exit {})",
                run.code
            )),
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected findings:\n{}",
        wrong.join("\n")
    );
    assert!(
        fixed.is_empty(),
        "fixed: remove these from KNOWN_BUGS and review their snapshots:\n{}",
        fixed.join("\n")
    );
}

#[test]
fn corpus_covers_every_code() {
    let expected: BTreeSet<String> = corpus()
        .iter()
        .flat_map(|path| header(path).1)
        .filter_map(|f| Some(f.split_once('[')?.1.trim_end_matches(']').to_string()))
        .collect();
    let missing: Vec<&&str> = PLAN_CODES
        .iter()
        .filter(|code| !expected.contains(**code))
        .collect();
    assert!(missing.is_empty(), "no corpus case for: {missing:?}");
    let unknown: Vec<&String> = expected
        .iter()
        .filter(|code| !PLAN_CODES.contains(&code.as_str()))
        .collect();
    assert!(unknown.is_empty(), "codes not in PLAN_CODES: {unknown:?}");
}

#[test]
fn several_plans_as_json_snapshot() {
    let run = Replay::validate()
        .arg("--format")
        .arg("json")
        .arg(format!("{CORPUS}/unknown-key-top-level.yaml"))
        .arg(format!("{CORPUS}/many-errors.yaml"))
        .arg("plans/replay-single-event.yaml")
        .run();
    assert_eq!(run.code, 2);
    let text = format!("exit: {}\n---\n{}", run.code, normalise(&run.stdout));
    insta::with_settings!({ omit_expression => true }, {
        insta::assert_snapshot!("validate_json", text);
    });
}

#[test]
fn unknown_key_points_at_the_key() {
    let run = Replay::validate()
        .arg("--format")
        .arg("json")
        .arg(format!("{CORPUS}/unknown-key-in-step.yaml"))
        .run();
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON output");
    let d = &report["files"][0]["diagnostics"][0];
    // `    descripton: back to pending` on line 16: the key starts in column 5.
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64(), d["path"].as_str()),
        (Some(16), Some(5), Some("steps[0].descripton"))
    );
    assert_eq!(d["help"].as_str(), Some("did you mean `description`?"));
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

/// What a hostile case puts on disk.
enum Input {
    Bytes(Vec<u8>),
    Directory,
    Missing,
}

/// A hostile file, the exit code, and the first line of standard output (`[dir]` is the tempdir).
fn case(name: &str, input: Input, code: i32, first_line: &str) -> (String, Input, i32, String) {
    (name.to_string(), input, code, first_line.to_string())
}

fn text(s: &str) -> Input {
    Input::Bytes(s.as_bytes().to_vec())
}

/// A "billion laughs": ten levels of ten aliases each, 10^10 nodes when expanded.
fn alias_bomb() -> String {
    let mut doc =
        String::from("version: 1\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let previous = vec![format!("*a{}", i - 1); 10].join(", ");
        doc.push_str(&format!("a{i}: &a{i} [{previous}]\n"));
    }
    doc
}

/// A valid plan padded with a comment to just over the 1 MiB limit.
fn oversized() -> String {
    let plan = std::fs::read_to_string(root().join("plans/replay-single-event.yaml")).unwrap();
    let mut doc = plan;
    let line = format!("# {}\n", "x".repeat(1021));
    while doc.len() <= 1024 * 1024 {
        doc.push_str(&line);
    }
    doc
}

fn nested_block(depth: usize) -> String {
    (0..depth)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .collect()
}

#[test]
fn hostile_input_fails_cleanly() {
    let summary_invalid = "1 plan(s) checked: 0 valid, 1 invalid (1 error(s), 0 warning(s))";
    let cases = [
        case(
            "missing.yaml",
            Input::Missing,
            1,
            "[dir]/missing.yaml:0:0: error[unreadable]: cannot read the file: No such file or directory (os error 2)",
        ),
        case(
            "a-directory.yaml",
            Input::Directory,
            1,
            "[dir]/a-directory.yaml:0:0: error[unreadable]: cannot read the file: Is a directory (os error 21)",
        ),
        case(
            "empty.yaml",
            text(""),
            2,
            "[dir]/empty.yaml:1:1: error[yaml]: the file is empty",
        ),
        case(
            "blank.yaml",
            text("\n   \n\t\n# only a comment\n  # and another\n"),
            2,
            "[dir]/blank.yaml:1:1: error[yaml]: the file is empty",
        ),
        case(
            "latin1.yaml",
            Input::Bytes(b"version: 1\nname: caf\xe9\n".to_vec()),
            2,
            "[dir]/latin1.yaml:2:10: error[encoding]: file is not valid UTF-8 (invalid byte at offset 20)",
        ),
        case(
            "syntax.yaml",
            text("version: 1\nsteps: [reset\nname: x\n"),
            2,
            "",
        ),
        case(
            "duplicate-keys.yaml",
            text("version: 1\nname: a\nreason: first of two names\nname: b\n"),
            2,
            "[dir]/duplicate-keys.yaml:4:1: error[yaml]: duplicate key `name` (first defined at line 2)",
        ),
        case(
            "two-documents.yaml",
            text("version: 1\n---\nversion: 1\n"),
            2,
            "[dir]/two-documents.yaml:2:1: error[yaml]: a plan file holds one YAML document; found a second `---`",
        ),
        case("alias-bomb.yaml", text(&alias_bomb()), 2, ""),
        case("oversized.yaml", text(&oversized()), 2, ""),
        case(
            "deep-block.yaml",
            text(&nested_block(200)),
            2,
            "[dir]/deep-block.yaml:65:129: error[yaml]: document is nested deeper than 64 levels",
        ),
        case(
            "deep-flow.yaml",
            text(&format!(
                "a: {}{}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            )),
            2,
            "",
        ),
        case(
            "deep-flow-maps.yaml",
            text(&format!("a: {}\n", "{a: ".repeat(100_000))),
            2,
            "",
        ),
        case(
            "top-level-list.yaml",
            text("- version: 1\n- name: x\n"),
            2,
            "[dir]/top-level-list.yaml:1:1: error[wrong-type]: expected a mapping at `(document)`, found a list",
        ),
        case(
            "top-level-scalar.yaml",
            text("replay everything\n"),
            2,
            "[dir]/top-level-scalar.yaml:1:1: error[wrong-type]: expected a mapping at `(document)`, found a string `replay everything`",
        ),
    ];
    let dir = tempfile::tempdir().expect("a tempdir");
    let dir_text = dir.path().display().to_string();
    let mut failures = Vec::new();
    for (name, input, code, first_line) in cases {
        let path = dir.path().join(&name);
        match &input {
            Input::Bytes(bytes) => std::fs::write(&path, bytes).unwrap(),
            Input::Directory => std::fs::create_dir(&path).unwrap(),
            Input::Missing => {}
        }
        let run = Replay::validate().arg(&path).run();
        let stdout = run.stdout.replace(&dir_text, "[dir]");
        let got_first = stdout.lines().next().unwrap_or_default();
        let last = stdout.lines().last().unwrap_or_default();
        if run.code != code
            || (!first_line.is_empty() && got_first != first_line)
            || last != summary_invalid
        {
            failures.push(format!("{name}: exit {}\n{stdout}{}", run.code, run.stderr));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn hostile_messages_name_the_limit() {
    let dir = tempfile::tempdir().expect("a tempdir");
    let big = oversized();
    let too_large = format!(
        ":1:1: error[too-large]: file is {} bytes; plans are limited to 1048576 bytes",
        big.len()
    );
    let cases = [
        (
            "alias-bomb.yaml",
            alias_bomb(),
            "error[yaml]: document expands to more than 100000 nodes (an alias bomb?); plans are far smaller",
        ),
        ("oversized.yaml", big.clone(), too_large.as_str()),
        (
            "syntax.yaml",
            "version: 1\nsteps: [reset\nname: x\n".to_string(),
            "error[yaml]: invalid YAML: ",
        ),
        (
            "deep-flow.yaml",
            format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
            "error[yaml]: invalid YAML: recursion limit exceeded",
        ),
        (
            "deep-flow-maps.yaml",
            format!("a: {}\n", "{a: ".repeat(100_000)),
            ":1:256: error[yaml]: document is nested deeper than 64 levels",
        ),
    ];
    for (name, contents, message) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        let run = Replay::validate().arg(&path).run();
        assert!(
            run.stdout
                .lines()
                .next()
                .unwrap_or_default()
                .contains(message),
            "{name}: expected {message:?} in\n{}",
            run.stdout
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The schema and the shipped plans
// ---------------------------------------------------------------------------------------------

#[test]
fn committed_schema_matches_the_code() {
    let run = Replay::new("schema").run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let committed = std::fs::read_to_string(root().join("schemas/replay-plan.schema.json"))
        .expect("schemas/replay-plan.schema.json exists");
    assert!(
        run.stdout == committed,
        "schemas/replay-plan.schema.json is out of date; regenerate it with \
         `cargo run -- schema --out schemas/replay-plan.schema.json` and commit it"
    );
}

#[test]
fn schema_describes_every_top_level_property() {
    let run = Replay::new("schema").run();
    let schema: Value = serde_json::from_str(&run.stdout).expect("the schema is JSON");
    let properties = schema["properties"]
        .as_object()
        .expect("top-level properties");
    assert!(properties.len() > 5, "{properties:?}");
    let undocumented: Vec<&String> = properties
        .iter()
        .filter(|(_, p)| {
            p["description"]
                .as_str()
                .is_none_or(|d| d.trim().is_empty())
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        undocumented.is_empty(),
        "top-level properties without a `description` (editors show it as help): {undocumented:?}"
    );
}

#[test]
fn shipped_plans_are_valid_without_warnings() {
    let mut plans: Vec<String> = std::fs::read_dir(root().join("plans"))
        .expect("plans/ exists")
        .map(|e| format!("plans/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    plans.sort();
    assert!(!plans.is_empty());
    for plan in plans {
        let run = Replay::validate().arg(&plan).run();
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (
                0,
                "1 plan(s) checked: 1 valid, 0 invalid (0 error(s), 0 warning(s))\n"
            ),
            "{plan}"
        );
    }
}

/// The README's plan, key by key, is a plan `validate` accepts without a warning.
#[test]
fn the_readme_plan_example_is_valid_without_warnings() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme
        .find("```yaml\n")
        .expect("the README shows a plan in a yaml block")
        + "```yaml\n".len();
    let end = start + readme[start..].find("```").expect("the yaml block ends");
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("readme-plan.yaml");
    std::fs::write(&plan, &readme[start..end]).expect("write the plan");
    let run = Replay::validate().arg(&plan).run();
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (
            0,
            "1 plan(s) checked: 1 valid, 0 invalid (0 error(s), 0 warning(s))\n"
        ),
        "{}",
        run.stderr
    );
}
