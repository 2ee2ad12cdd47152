//! Stamps the commit into `replay --version`: `0.1.0 (3f2a9c1)`, or `(unknown commit)` when the
//! sources are not a git checkout (a crate tarball, a container build without `.git`).

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = std::env::var("REPLAY_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    let dirty = commit.is_some()
        && git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let stamp = match (commit, dirty) {
        (Some(c), true) => format!("{c}, modified"),
        (Some(c), false) => c,
        (None, _) => "unknown commit".into(),
    };
    println!(
        "cargo:rustc-env=REPLAY_VERSION={} ({stamp})",
        env!("CARGO_PKG_VERSION")
    );
    println!("cargo:rerun-if-env-changed=REPLAY_COMMIT");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
}
