//! Embeds the version shown by `omdiscd --version`: the crate version plus
//! `git describe` when the source is a git checkout with git installed.
//!
//! `git describe --dirty` refreshes the index and writes `.git/index` (with
//! `--no-optional-locks` too), and this script re-runs when that file
//! changes: a fresh clone compiled omdiscd twice. So `describe` runs without
//! `--dirty`, and `-dirty` is added when `git status` (which, with
//! `--no-optional-locks`, writes nothing) lists a changed tracked file.
//!
//! It also links the `omdiscd` binary with packed relative relocations
//! (DT_RELR, `-z pack-relative-relocs`): the few hundred pointers in the
//! position-independent binary's read-only data (format strings, vtables,
//! tables) are relocated at start from a bitmap of a few hundred bytes
//! instead of 24 bytes each in `.rela.dyn` (about 15 KiB less, the same
//! relocations applied, ASLR unchanged; docs/SCALE.md, "Binary size"). The
//! static musl binary relocates itself (musl 1.2.4 and later, the one Rust
//! ships); a glibc build needs glibc 2.36 or later where it runs, so it is
//! used only for a native build on such a glibc (the binary then names
//! `GLIBC_ABI_DT_RELR`, and an older glibc refuses it by name).
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
    if relr_supported() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rerun-if-changed=build.rs");
}

/// Whether the binary may use DT_RELR: always for musl (static, relocated by
/// its own start-up code); for glibc only when building for this host and
/// its glibc is 2.36 or later (`getconf GNU_LIBC_VERSION`: `glibc 2.36`).
fn relr_supported() -> bool {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ARCH") != "x86_64" {
        return false;
    }
    match var("CARGO_CFG_TARGET_ENV").as_str() {
        "musl" => true,
        "gnu" if var("HOST") == var("TARGET") => {
            let version = Command::new("getconf")
                .arg("GNU_LIBC_VERSION")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok());
            let Some(v) = version
                .as_deref()
                .and_then(|v| v.trim().strip_prefix("glibc "))
            else {
                return false;
            };
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            (major, minor) >= (2, 36)
        }
        _ => false,
    }
}
