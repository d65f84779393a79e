//! `daemonize()` forks, so it is exercised in a re-executed copy of this test
//! binary: the parent test runs `current_exe()` with `OMDISCD_DAEMONIZE_OUT` set
//! and this same test selected; in that child the test calls `daemonize()` and the
//! resulting daemon writes what it observes about itself to the given file.
//!
//! libtest runs the test on a spawned thread, so the child forks a multi-threaded
//! process. That is why the daemon side only makes raw system calls on stack
//! buffers (no allocation, no std locks) and leaves with `_exit`.
use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::process::{Command, Stdio};

use omdiscd::sys::{daemonize, write_all_fd};

const ENV: &str = "OMDISCD_DAEMONIZE_OUT";
const TEST_NAME: &str = "daemonize_detaches";
/// `fail`: the daemon reports a failure; `die`: it exits without a word.
const MODE: &str = "OMDISCD_DAEMONIZE_MODE";

fn readlink<'a>(path: &CStr, out: &'a mut [u8]) -> &'a str {
    // SAFETY: `path` is NUL-terminated and `out` is writable for its length.
    let n = unsafe { libc::readlink(path.as_ptr(), out.as_mut_ptr().cast(), out.len()) };
    core::str::from_utf8(&out[..n.max(0) as usize]).unwrap_or("?")
}

fn die(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and skips the test harness entirely.
    unsafe { libc::_exit(code) }
}

/// Runs in the re-executed child. Never returns.
fn child(out: &str) -> ! {
    let out = CString::new(out).unwrap();
    let tmp = CString::new(format!("{}.tmp", out.to_str().unwrap())).unwrap();
    let Ok(starter) = daemonize() else { die(3) };
    match std::env::var(MODE).as_deref() {
        Ok("fail") => {
            starter.failed(3, "first line\nsecond line");
            die(3)
        }
        Ok("die") => die(0),
        _ => {}
    }
    // SAFETY: these getters have no preconditions.
    let (pid, sid) = unsafe { (libc::getpid(), libc::getsid(0)) };
    // SAFETY: umask cannot fail; we only read the value daemonize() set.
    let umask = unsafe { libc::umask(0o077) };
    let (mut cwd, mut stdin, mut stdout) = ([0u8; 256], [0u8; 256], [0u8; 256]);
    let mut line: heapless::String<1024> = heapless::String::new();
    let _ = writeln!(
        line,
        "{pid} {sid} {umask:o} {} {} {}",
        readlink(c"/proc/self/cwd", &mut cwd),
        readlink(c"/proc/self/fd/0", &mut stdin),
        readlink(c"/proc/self/fd/1", &mut stdout),
    );
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    // SAFETY: `tmp` is NUL-terminated.
    let fd = unsafe { libc::open(tmp.as_ptr(), flags, 0o600) };
    if fd < 0 || write_all_fd(fd, line.as_bytes()).is_err() {
        die(4);
    }
    // SAFETY: `fd` is ours; both paths are NUL-terminated. The rename publishes
    // the file atomically, so the parent never reads half of it.
    unsafe {
        libc::close(fd);
        libc::rename(tmp.as_ptr(), out.as_ptr());
    }
    starter.ready();
    die(0)
}

#[test]
fn daemonize_detaches() {
    if let Ok(out) = std::env::var(ENV) {
        child(&out);
    }

    let dir = std::env::temp_dir().join(format!("omdiscd-daemonize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("daemon.txt");
    let _ = std::fs::remove_file(&out);

    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(ENV, &out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    // The original process exits 0 once the daemon says it is ready, which
    // it does after writing its file.
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&out).expect("written before ready");

    // A daemon that fails: its starter exits with its status and message.
    let run = |mode: &str| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(ENV, dir.join(mode))
            .env(MODE, mode)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let failed = run("fail");
    assert_eq!(failed.status.code(), Some(3), "{failed:?}");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.ends_with("omdiscd: first line\nomdiscd: second line\n"),
        "{err:?}"
    );
    // One that dies without a word: exit 1, and it says so.
    let died = run("die");
    assert_eq!(died.status.code(), Some(1), "{died:?}");
    let err = String::from_utf8_lossy(&died.stderr);
    assert!(
        err.ends_with("omdiscd: the daemon exited during start-up; see the system log\n"),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 6, "{text:?}");
    let pid: i32 = f[0].parse().unwrap();
    let sid: i32 = f[1].parse().unwrap();
    // SAFETY: getsid(0) has no preconditions.
    let our_sid = unsafe { libc::getsid(0) };
    assert_ne!(sid, our_sid, "daemon still in the test's session");
    assert_ne!(
        pid, sid,
        "daemon is a session leader and could regain a tty"
    );
    assert_ne!(pid as u32, std::process::id());
    assert_eq!(f[2], "22", "umask");
    assert_eq!(f[3], "/", "cwd");
    assert_eq!(f[4], "/dev/null", "stdin");
    assert_eq!(f[5], "/dev/null", "stdout");
}
