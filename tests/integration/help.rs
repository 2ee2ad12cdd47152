//! Every command's `--help`, snapshotted: a change to a flag, a default or a description shows
//! up in review. A command the top-level help lists without a snapshot here fails.

use std::process::Command;

const COMMANDS: &[&str] = &[
    "schema",
    "validate",
    "apply",
    "join",
    "status",
    "init",
    "stop",
    "pause",
    "resume",
    "set",
    "rollback",
    "audit",
    "inspect",
    "completions",
    "man",
    "doctor",
];

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env_remove("REPLAY_TARGET")
        .env_remove("REPLAY_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run replay");
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_commands_help_is_snapshotted() {
    let top = help(&["--help"]);
    insta::assert_snapshot!("help", top);
    let listed: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .unwrap_or_default()
        .split("Options:")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert_eq!(listed, COMMANDS, "a command without a help snapshot");
    for command in COMMANDS {
        insta::assert_snapshot!(format!("help__{command}"), help(&[command, "--help"]));
    }
}
