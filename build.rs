//! Embeds the version shown by `omdiscd --version`: the crate version plus
//! `git describe` when the source is a git checkout with git installed.
//!
//! `git describe --dirty` refreshes the index, which rewrites `.git/index`;
//! a build script that re-ran on that file would then make every second
//! cargo command compile the crate again. So git runs with
//! `--no-optional-locks` (it may still compare the files, but it writes
//! nothing), and the script re-runs when HEAD moves or the index is changed
//! by a commit or an add, not by its own look.
use std::process::Command;

fn main() {
    let pkg = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let describe = Command::new("git")
        .args([
            "--no-optional-locks",
            "describe",
            "--always",
            "--dirty",
            "--tags",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let version = match describe {
        Some(d) => format!("{pkg} ({d})"),
        None => pkg,
    };
    println!("cargo:rustc-env=OMDISCD_VERSION={version}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rerun-if-changed=build.rs");
}
