//! `replay` in CI: `validate --format github|sarif`, `--strict-sql` for plans from unreviewed pull
//! requests, and the formats each command accepts.
//!
//! Every test drives the real `replay` binary (`CARGO_BIN_EXE_replay`).

use std::process::Command;

use serde_json::Value;

/// Plans that use SQL `--strict-sql` judges, relative to the package root.
const STRICT: &str = "tests/plans/strict";

/// The plans `--strict-sql` refuses, each valid without it.
const REFUSED: &[&str] = &["terminate-backend", "dblink-exec", "copy-to-program"];

const ONE_VALID: &str = "1 plan(s) checked: 1 valid, 0 invalid (0 error(s), 0 warning(s))\n";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn replay(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .output()
        .expect("the replay binary runs");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "replay {args:?} panicked:\n{}",
        run.stderr
    );
    run
}

fn strict_plan(name: &str) -> String {
    format!("{STRICT}/{name}.yaml")
}

#[test]
fn strict_sql_refuses_what_a_rollback_does_not_undo() {
    for name in REFUSED {
        let plan = strict_plan(name);
        let lenient = replay(&["validate", &plan]);
        assert_eq!(
            (lenient.code, lenient.stdout.as_str()),
            (0, ONE_VALID),
            "{plan} is valid without --strict-sql"
        );
        let strict = replay(&["validate", "--strict-sql", "--snippets", "always", &plan]);
        let text = format!("exit: {}\n---\n{}", strict.code, strict.stdout);
        insta::with_settings!({ omit_expression => true }, {
            insta::assert_snapshot!(format!("strict_sql__{name}"), text);
        });
        assert_eq!(strict.code, 2, "{plan}");
    }
}

#[test]
fn strict_sql_accepts_ordinary_sql() {
    let run = replay(&["validate", "--strict-sql", &strict_plan("allowed")]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, ONE_VALID),
        "{}",
        run.stdout
    );
}

/// Every shipped plan passes `--strict-sql`, so the example workflow's staging job can dry-run
/// any of them.
#[test]
fn shipped_plans_pass_strict_sql() {
    let mut plans: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/plans"))
        .expect("plans/ exists")
        .map(|e| {
            format!(
                "plans/{}",
                e.expect("an entry").file_name().to_string_lossy()
            )
        })
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    plans.sort();
    assert!(plans.len() >= 9, "{plans:?}");
    for plan in plans {
        let run = replay(&["validate", "--strict-sql", &plan]);
        assert_eq!((run.code, run.stdout.as_str()), (0, ONE_VALID), "{plan}");
    }
}

/// The files the github and sarif snapshots report on: schema errors, a warning, a strict-SQL
/// refusal with a help line, a file that does not exist and a valid plan.
fn mixed_files() -> Vec<String> {
    vec![
        "tests/plans/invalid/many-errors.yaml".into(),
        "tests/plans/invalid/unused-param.yaml".into(),
        strict_plan("terminate-backend"),
        "tests/plans/no-such-plan.yaml".into(),
        "plans/replay-single-event.yaml".into(),
    ]
}

#[test]
fn validate_writes_github_annotations() {
    let files = mixed_files();
    let mut args = vec!["validate", "--strict-sql", "--format", "github"];
    args.extend(files.iter().map(String::as_str));
    let run = replay(&args);
    // Unchanged by the format: a file that cannot be read is a failure (1), before invalid (2).
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .lines()
            .all(|l| l.starts_with("::error ") || l.starts_with("::warning ")),
        "{}",
        run.stdout
    );
    insta::with_settings!({ omit_expression => true }, {
        insta::assert_snapshot!("validate_github", run.stdout);
    });

    let invalid = replay(&[
        "validate",
        "--strict-sql",
        "--format",
        "github",
        &strict_plan("dblink-exec"),
    ]);
    assert_eq!(invalid.code, 2);
    let valid = replay(&[
        "validate",
        "--format",
        "github",
        "plans/replay-single-event.yaml",
    ]);
    assert_eq!((valid.code, valid.stdout.as_str()), (0, ""));
}

#[test]
fn validate_writes_sarif() {
    let files = mixed_files();
    let mut args = vec!["validate", "--strict-sql", "--format", "sarif"];
    args.extend(files.iter().map(String::as_str));
    let run = replay(&args);
    assert_eq!(run.code, 1);
    let log: Value = serde_json::from_str(&run.stdout).expect("SARIF is JSON");
    insta::with_settings!({ omit_expression => true }, {
        insta::assert_snapshot!("validate_sarif", run.stdout);
    });

    // The same findings as `--format json`, one result each, each with a rule.
    let mut json_args = vec!["validate", "--strict-sql", "--format", "json"];
    json_args.extend(files.iter().map(String::as_str));
    let json: Value = serde_json::from_str(&replay(&json_args).stdout).expect("JSON");
    let expected: Vec<(String, String, u64, u64)> = json["files"]
        .as_array()
        .expect("files")
        .iter()
        .flat_map(|f| f["diagnostics"].as_array().expect("diagnostics").clone())
        .map(|d| {
            (
                d["file"].as_str().unwrap_or_default().to_string(),
                d["code"].as_str().unwrap_or_default().to_string(),
                d["line"].as_u64().unwrap_or_default(),
                d["column"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(log["version"], "2.1.0");
    let run0 = &log["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "replay");
    let rules: Vec<&str> = run0["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["id"].as_str().expect("a rule id"))
        .collect();
    let found: Vec<(String, String, u64, u64)> = run0["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let rule = r["ruleId"].as_str().expect("ruleId");
            assert_eq!(
                rules[r["ruleIndex"].as_u64().expect("ruleIndex") as usize],
                rule
            );
            let place = &r["locations"][0]["physicalLocation"];
            (
                place["artifactLocation"]["uri"]
                    .as_str()
                    .expect("uri")
                    .to_string(),
                rule.to_string(),
                place["region"]["startLine"].as_u64().unwrap_or_default(),
                place["region"]["startColumn"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(found, expected);
}

/// Every code a plan can be reported with has a rule description for SARIF.
#[test]
fn every_code_has_a_sarif_rule() {
    let mut files: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plans/invalid"))
            .expect("the corpus")
            .map(|e| {
                format!(
                    "tests/plans/invalid/{}",
                    e.expect("an entry").file_name().to_string_lossy()
                )
            })
            .collect();
    files.extend(REFUSED.iter().map(|n| strict_plan(n)));
    let mut args = vec!["validate", "--strict-sql", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let json: Value = serde_json::from_str(&replay(&args).stdout).expect("JSON");
    let mut codes: Vec<String> = json["files"]
        .as_array()
        .expect("files")
        .iter()
        .flat_map(|f| f["diagnostics"].as_array().expect("diagnostics").clone())
        .map(|d| d["code"].as_str().unwrap_or_default().to_string())
        .collect();
    codes.sort();
    codes.dedup();
    assert!(codes.len() > 30, "{codes:?}");
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| replay::plan::rules::describe(c).is_none())
        .collect();
    assert!(missing.is_empty(), "no rule for {missing:?}");
}

/// Each command takes exactly the formats it has: clap refuses the others as bad arguments.
#[test]
fn commands_refuse_formats_they_do_not_have() {
    let url = "--database-url=postgres://nobody@127.0.0.1:1/none";
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[
                "validate",
                "--format",
                "markdown",
                "plans/replay-single-event.yaml",
            ],
            "--format",
            "markdown",
        ),
        (
            &["inspect", url, "--format", "markdown"],
            "--format",
            "markdown",
        ),
        (&["inspect", url, "--format", "sarif"], "--format", "sarif"),
        (
            &[
                "apply",
                "plans/replay-single-event.yaml",
                url,
                "--format",
                "github",
            ],
            "--format",
            "github",
        ),
        (
            &[
                "apply",
                "plans/replay-single-event.yaml",
                url,
                "--log-format",
                "markdown",
            ],
            "--log-format",
            "markdown",
        ),
        (
            &[
                "join",
                "00000000-0000-0000-0000-000000000000",
                url,
                "--format",
                "sarif",
            ],
            "--format",
            "sarif",
        ),
        (
            &[
                "join",
                "00000000-0000-0000-0000-000000000000",
                url,
                "--log-format",
                "markdown",
            ],
            "--log-format",
            "markdown",
        ),
    ];
    for (args, flag, value) in cases {
        let run = replay(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("invalid value '{value}' for '{flag} <")),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "{args:?}");
    }
}
