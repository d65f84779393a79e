//! Under systemd with `-n`, standard output is the journal (`JOURNAL_STREAM`
//! names its device and inode): every line then starts with `<N>`, its
//! syslog priority, so `journalctl -p` sees the levels. Anywhere else the
//! lines stay as the original printed them.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/basics.rs"]
mod basics;

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");

/// Runs the daemon on loopback (alone: it sends nothing) with its stdout in
/// `out`, until it has logged its start-up; returns what it printed.
fn run(dir: &Path, name: &str, journal: impl Fn(&File) -> Option<String>) -> String {
    let out_path = dir.join(format!("{name}.out"));
    let out = File::create(&out_path).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["-n", "-i", "lo", "--port", "17917", "--map-file"])
        .arg(dir.join(format!("{name}.map")))
        .stdout(out.try_clone().unwrap())
        .stderr(Stdio::null())
        .env_remove("JOURNAL_STREAM");
    if let Some(v) = journal(&out) {
        cmd.env("JOURNAL_STREAM", v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&out_path).unwrap();
        if text.contains("receive buffer") {
            break text;
        }
        assert!(Instant::now() < deadline, "no start-up lines: {text:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    text
}

#[test]
fn lines_carry_syslog_priorities_only_when_stdout_is_the_journal() {
    let dir = basics::temp_dir("priorities");
    let id = |f: &File| {
        let m = f.metadata().unwrap();
        Some(format!("{}:{}", m.dev(), m.ino()))
    };
    let text = run(&dir, "journal", id);
    for line in text.lines() {
        let p = line.strip_prefix('<').and_then(|l| l.split_once('>'));
        assert!(p.is_some_and(|(n, _)| n.len() == 1 && n < "8"), "{line:?}");
    }
    assert!(text.starts_with("<6>omdiscd "), "info: {text}");
    // The loopback warning is a warning.
    assert!(
        text.contains("\n<4>127.0.0.1 is a loopback address"),
        "{text}"
    );
    // Another stream named (stdout is not the journal), or none: bare lines.
    for (name, text) in [
        ("other", run(&dir, "other", |_| Some("1:2".into()))),
        ("none", run(&dir, "none", |_| None)),
    ] {
        assert!(text.starts_with("omdiscd "), "{name}: {text}");
        assert!(!text.contains("\n<"), "{name}: {text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
