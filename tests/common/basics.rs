//! Small helpers for every test binary, also those without the namespace
//! lab (they include this file alone: `#[path = "common/basics.rs"] mod
//! basics;`): the daemon's default port, scratch directories, key files.

#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The daemon's default UDP port (`--port`).
pub const PORT: u16 = 7742;

/// A fresh, empty directory under the system temp dir, unique per test
/// binary, process and `tag`: `omd-<binary>-<pid>-<tag>`.
pub fn temp_dir(tag: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let stem = exe.file_stem().unwrap().to_string_lossy();
    // Cargo names test binaries `<name>-<hash>`.
    let name = stem.rsplit_once('-').map_or(&*stem, |(name, _)| name);
    let d = std::env::temp_dir().join(format!("omd-{name}-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `text` as the key file `dir/name` with permissions `mode` (0600
/// is what `--key-file` asks for).
pub fn write_key_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&p)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
    f.write_all(text.as_bytes()).unwrap();
    // The umask may have taken bits away, and an older file kept its own.
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// Writes an executable shell script (`#!/bin/sh` and `body`) at `path`:
/// a stand-in for setpe or an `--on-change` program.
pub fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake openMosix 2.4 procfs under `root`. `self` comes last: a real
/// mount appears at once, and the daemon takes `self` as the sign that
/// procfs is there.
pub fn openmosix_24(root: &Path) {
    fs::create_dir_all(root.join("hpc/admin")).unwrap();
    fs::write(root.join("hpc/admin/mospe"), "0\n").unwrap();
    fs::write(root.join("hpc/admin/config"), "").unwrap();
    fs::create_dir_all(root.join("self")).unwrap();
}
