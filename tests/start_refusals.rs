//! What the real binary refuses before it opens any socket.
//!
//! - A key file it must not trust: exit status 1 and one line naming the
//!   file and the problem, never a secret. Inconsistent options exit 2.
//! - A second daemon on one map file: while another process holds the lock
//!   file (`--pid-file`, by default the map file's path with `.pid`), it
//!   names that process and exits 3. A lock file that is not a regular file
//!   is refused with exit 1.
//! - A path it could not use (the map file, metrics file, lock file or
//!   control socket: a directory, a FIFO, a symlink, a trailing `/`, `/`
//!   itself): exit 1, and no file created; a user who may not write there
//!   is told to run as root or move the map file.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/basics.rs"]
mod basics;
use basics::{temp_dir, write_key_file};

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");
const SECRET: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9";

/// Runs the daemon in the foreground on `lo` with `args`; it must fail
/// before it gets to the network.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--nodaemon", "--interface", "lo", "--map-file"])
        .arg(dir.join("map"))
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

#[test]
fn an_untrusted_or_malformed_key_file_stops_start_up_with_exit_1_naming_file_and_problem() {
    let dir = temp_dir("bad");
    let good_line = format!("1 {SECRET}\n");
    let cases: Vec<(PathBuf, String)> = vec![
        (
            write_key_file(&dir, "readable", &good_line, 0o644),
            "group or others may access it (mode 0644); make it mode 600".into(),
        ),
        (
            write_key_file(&dir, "group", &good_line, 0o640),
            "group or others may access it (mode 0640)".into(),
        ),
        (
            dir.join("missing"),
            "No such file or directory (os error 2)".into(),
        ),
        (dir.clone(), "not a regular file".into()),
        (
            write_key_file(&dir, "empty", "# nothing yet\n", 0o600),
            "no key in it".into(),
        ),
        (
            write_key_file(
                &dir,
                "badline",
                &format!("{good_line}2 {SECRET} x\n"),
                0o600,
            ),
            "line 2: not '<key-id> <secret in hex>'".into(),
        ),
        (
            write_key_file(&dir, "short", "1 00ff00ff\n", 0o600),
            "line 1: the secret is not 32 to 64 bytes in hex".into(),
        ),
    ];
    for (path, problem) in &cases {
        let out = run(&dir, &["--key-file", path.to_str().unwrap()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {t}", path.display());
        let want = format!("key file {}: {problem}", path.display());
        assert!(
            t.contains(&want),
            "{}: want {want:?} in {t}",
            path.display()
        );
        assert!(!t.contains(SECRET), "a secret was printed: {t}");
        assert!(!dir.join("map").exists(), "nothing was published");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn auth_modes_that_contradict_the_key_file_and_a_hold_under_two_intervals_exit_2() {
    let dir = temp_dir("usage");
    let keys = write_key_file(&dir, "keys", &format!("1 {SECRET}\n"), 0o600);
    let keys = keys.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--auth", "enforce"],
            "option '--auth' enforce needs '--key-file'",
        ),
        (
            &["--auth", "permissive"],
            "option '--auth' permissive needs '--key-file'",
        ),
        (
            &["--auth", "off", "--key-file", keys],
            "then '--key-file' has no use",
        ),
        (
            &["--interval", "1", "--hold", "1.5"],
            "shorter than 2 x the interval (2s)",
        ),
    ];
    for (args, want) in cases {
        let out = run(&dir, args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: want {want:?} in {t}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
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
    let default = dir.join("map.pid");
    let held = hold(&default, "4242\n");
    let out = run(&dir, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    let want = format!(
        "another omdiscd is running (PID 4242): it holds {}",
        default.display()
    );
    assert!(t.contains(&want), "want {want:?} in {t}");
    assert!(!dir.join("map").exists(), "nothing was published");
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

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_refused_path_leaves_no_file_behind_in_any_shape() {
    let dir = temp_dir("shapes");
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let link = dir.join("link");
    std::os::unix::fs::symlink(dir.join("target"), &link).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let slash = |p: &Path| format!("{}/", p.display());
    let long = format!("{}/{}", dir.display(), "s".repeat(120));
    let static_map = dir.join("openmosix.map");
    std::fs::write(&static_map, "1 127.0.0.1 1\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        // --map-file DIR: would have made DIR.pid.
        (vec!["--map-file".into(), s(&sub)], "not a regular file"),
        // --map-file DIR/: would have made DIR/.pid.
        (vec!["--map-file".into(), slash(&sub)], "ends with '/'"),
        (
            vec!["--map-file".into(), slash(&dir.join("new"))],
            "ends with '/'",
        ),
        (vec!["--map-file".into(), s(&fifo)], "not a regular file"),
        (vec!["--map-file".into(), s(&link)], "not a regular file"),
        (vec!["--metrics-file".into(), s(&sub)], "--metrics-file: "),
        (
            vec!["--metrics-file".into(), slash(&dir.join("m"))],
            "ends with '/'",
        ),
        (
            vec!["--pid-file".into(), slash(&dir.join("p"))],
            "lock file",
        ),
        (vec!["--pid-file".into(), s(&fifo)], "lock file"),
        (
            vec!["--control-socket".into(), slash(&dir.join("c"))],
            "control socket",
        ),
        (vec!["--control-socket".into(), s(&sub)], "control socket"),
        (
            vec!["--control-socket".into(), long],
            "longer than 105 bytes",
        ),
        // A static map that wins checks the paths as discovery does.
        (
            vec![
                "--static-map".into(),
                s(&static_map),
                "--map-file".into(),
                slash(&sub),
            ],
            "ends with '/'",
        ),
    ];
    let before = tree(&dir);
    for (args, want) in &cases {
        // The map file last given wins: the first only keeps the default
        // (/run/omdiscd) out of reach.
        let mut full = vec!["--nodaemon", "--interface", "lo", "--map-file"];
        let map = s(&dir.join("map"));
        full.push(&map);
        full.extend(args.iter().map(String::as_str));
        let out = Command::new(BIN).args(&full).output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: want {want:?} in {t}");
        assert_eq!(tree(&dir), before, "{args:?} created a file: {t}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--map-file /` would make `/.pid`: tried in a private mount namespace
/// whose root is a tmpfs holding only the binary and its libraries, so the
/// machine's own `/` is never at stake.
#[test]
fn map_file_slash_creates_no_lock_file_at_the_root() {
    let dir = temp_dir("root");
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let script = r#"
set -e
root=$1 bin=$2
mount --make-rprivate /
mount -t tmpfs omd-refusals "$root"
mkdir -p "$root/bin"
cp "$bin" "$root/bin/omdiscd"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp "$lib" "$root$lib"
done
list() { (cd "$root" && find . | sort); }
list > "$root/../before"
status=0
chroot "$root" /bin/omdiscd --nodaemon --interface lo --map-file / 2> "$root/../stderr" || status=$?
list > "$root/../after"
echo "$status" > "$root/../status"
"#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(&root)
        .arg(BIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let err = read("stderr");
    assert_eq!(read("status").trim(), "1", "{err}");
    assert!(err.contains("/ ends with '/'"), "{err}");
    assert_eq!(read("before"), read("after"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A user that cannot write where the map file goes is told what to do.
#[test]
fn a_user_without_write_access_is_told_to_run_as_root_or_move_the_map_file() {
    use std::os::unix::process::CommandExt;
    let dir = temp_dir("user");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let map = dir.join("root-only").join("map");
    std::fs::create_dir(map.parent().unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["--nodaemon", "--interface", "lo", "--map-file"])
        .arg(&map)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("Permission denied"), "{t}");
    assert!(
        t.contains("run omdiscd as root, or give --map-file a path this user can write"),
        "{t}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
