//! One daemon per map file: the real binary refuses to start while another
//! process holds the lock file (`--pid-file`, by default the map file's path
//! with `.pid`), names that process, and exits 3, before it opens any
//! socket. A lock file that is not a regular file is refused with exit 1.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("omd-pidfile-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The daemon in the foreground on `lo`; it must stop before the network.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--nodaemon", "--interface", "lo", "--map-file"])
        .arg(dir.join("openmosix.map"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Holds `path` locked as a running daemon would, with `pid` in it.
fn hold(path: &Path, pid: &str) -> std::fs::File {
    std::fs::write(path, pid).unwrap();
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: flock on a descriptor this function owns; no pointers.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(r, 0, "locking {}", path.display());
    f
}

#[test]
fn a_second_daemon_on_a_locked_map_file_exits_3_naming_the_running_one() {
    let dir = temp_dir("held");
    // The default lock file, next to the map file.
    let default = dir.join("openmosix.map.pid");
    let held = hold(&default, "4242\n");
    let out = run(&dir, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    let want = format!(
        "another omdiscd is running (PID 4242): it holds {}",
        default.display()
    );
    assert!(t.contains(&want), "want {want:?} in {t}");
    assert!(!dir.join("openmosix.map").exists(), "nothing was published");
    assert_eq!(std::fs::read_to_string(&default).unwrap(), "4242\n");
    drop(held);
    // --pid-file names another lock; one held without a PID in it.
    let other = dir.join("other.lock");
    let _held = hold(&other, "");
    let out = run(&dir, &["--pid-file", other.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("another omdiscd is running: it holds"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_lock_file_that_is_a_directory_or_a_symlink_is_refused_with_exit_1() {
    let dir = temp_dir("odd");
    let as_dir = dir.join("a-directory");
    std::fs::create_dir(&as_dir).unwrap();
    let link = dir.join("a-link");
    std::os::unix::fs::symlink(dir.join("target"), &link).unwrap();
    for path in [&as_dir, &link] {
        let out = run(&dir, &["--pid-file", path.to_str().unwrap()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {t}", path.display());
        let want = format!("lock file {}:", path.display());
        assert!(t.contains(&want), "want {want:?} in {t}");
    }
    assert!(!dir.join("target").exists(), "the symlink was not followed");
    std::fs::remove_dir_all(&dir).unwrap();
}
