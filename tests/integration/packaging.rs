//! What packaging promises: `--version` names the commit, and completions and the manual page
//! are generated from the same flags the binary parses.

use std::process::{Command, Output};

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replay"))
        .args(args)
        .output()
        .expect("run replay")
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let out = replay(&["--version"]);
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    let expected = match head {
        Some(commit) => format!("replay {} ({commit}", env!("CARGO_PKG_VERSION")),
        None => format!("replay {} (unknown commit)", env!("CARGO_PKG_VERSION")),
    };
    assert!(version.starts_with(&expected), "{version} vs {expected}");
}

#[test]
fn completions_and_the_manual_page_cover_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = replay(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["apply", "rollback", "completions", "--target"] {
            assert!(
                script.contains(command),
                "{shell} completions lack `{command}`"
            );
        }
    }
    let out = replay(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let out = replay(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH replay 1"), "{page}");
    for command in ["apply", "join", "status", "rollback", "man"] {
        assert!(page.contains(command), "the manual page lacks `{command}`");
    }
}
