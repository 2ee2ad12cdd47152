//! How hints name `replay`: the binary built or installed beside this `habitat`, as the user
//! can type it where they are.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// How to run `replay` from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayCommand {
    /// What to type: `replay` when the shell finds the right one, else its path.
    pub shown: String,
    /// Whether a `replay` binary was found at all (beside this one or on `PATH`).
    pub found: bool,
}

/// `replay` as the user can run it: the binary next to the current executable (by its path, or
/// as `replay` when `PATH` leads to that same file), else `replay` from `PATH`.
pub fn replay_command() -> ReplayCommand {
    let exe = std::env::current_exe().ok();
    let path = std::env::var_os("PATH");
    resolve(exe.as_deref(), path.as_deref())
}

fn resolve(current_exe: Option<&Path>, path: Option<&OsStr>) -> ReplayCommand {
    let name = format!("replay{}", std::env::consts::EXE_SUFFIX);
    let sibling = current_exe
        .and_then(Path::parent)
        .map(|dir| dir.join(&name))
        .filter(|p| executable(p));
    let on_path = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&name))
        .find(|p| executable(p));
    let (shown, found) = match (sibling, on_path) {
        (Some(sibling), Some(found)) if same_file(&sibling, &found) => ("replay".into(), true),
        (Some(sibling), _) => (shell_word(&sibling), true),
        (None, Some(_)) => ("replay".into(), true),
        (None, None) => ("replay".into(), false),
    };
    ReplayCommand { shown, found }
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    canonical(a) == canonical(b)
}

/// The path as one shell word: as it is when it holds nothing a shell would act on, else in
/// single quotes.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(&b));
    if plain && !text.is_empty() {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn binary(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn case(exe: &Path, path: &[&Path], shown: &str, found: bool) {
        let path = std::env::join_paths(path).unwrap();
        assert_eq!(
            resolve(Some(exe), Some(&path)),
            ReplayCommand {
                shown: shown.into(),
                found
            },
            "{} with PATH={path:?}",
            exe.display()
        );
    }

    #[test]
    fn replay_is_named_by_the_binary_beside_this_one_or_from_path() {
        let root = tempfile::tempdir().unwrap();
        let built = root.path().join("target/release");
        let installed = root.path().join("bin");
        let empty = root.path().join("empty");
        for dir in [&built, &installed, &empty] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let habitat = binary(&built, "habitat");
        let replay = binary(&built, "replay");
        let elsewhere = binary(&empty, "habitat");
        // Built together, and that directory is not on PATH: the path.
        case(&habitat, &[&empty], &replay.display().to_string(), true);
        // PATH leads to that very binary: its name.
        case(&habitat, &[&empty, &built], "replay", true);
        // A different `replay` on PATH: still the one built beside this habitat.
        binary(&installed, "replay");
        case(&habitat, &[&installed], &replay.display().to_string(), true);
        // Nothing beside this habitat, one on PATH.
        case(&elsewhere, &[&installed], "replay", true);
        // None anywhere.
        case(&elsewhere, &[&empty], "replay", false);
        // A file that cannot be run does not count.
        std::fs::set_permissions(&replay, std::fs::Permissions::from_mode(0o644)).unwrap();
        case(&habitat, &[&empty], "replay", false);
    }

    #[test]
    fn a_path_a_shell_would_split_is_quoted() {
        assert_eq!(shell_word(Path::new("/a/b/replay")), "/a/b/replay");
        assert_eq!(shell_word(Path::new("/my dir/replay")), "'/my dir/replay'");
        assert_eq!(shell_word(Path::new("/it's/replay")), r"'/it'\''s/replay'");
    }
}
