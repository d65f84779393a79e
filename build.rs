//! Embeds the version shown by `omdiscd --version`: the crate version plus
//! `git describe` when the source is a git checkout with git installed.
//!
//! `git describe --dirty` refreshes the index and writes `.git/index` (with
//! `--no-optional-locks` too), and this script re-runs when that file
//! changes: a fresh clone compiled omdiscd twice. So `describe` runs without
//! `--dirty`, and `-dirty` is added when `git status` (which, with
//! `--no-optional-locks`, writes nothing) lists a changed tracked file.
use std::process::Command;

/// What `git ARGS` prints, trimmed; `None` if git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
}

fn main() {
    let pkg = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let describe = git(&["describe", "--always", "--tags"]).filter(|s| !s.is_empty());
    let version = match describe {
        Some(d) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{pkg} ({d}{})", if dirty { "-dirty" } else { "" })
        }
        None => pkg,
    };
    println!("cargo:rustc-env=OMDISCD_VERSION={version}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rerun-if-changed=build.rs");
}
