//! The real binary refuses a key file it must not trust, before it opens any
//! socket: exit status 1 and one line naming the file and the problem, never
//! a secret. Inconsistent options exit 2.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");
const SECRET: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("omd-keyfile-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn key_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

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
            key_file(&dir, "readable", &good_line, 0o644),
            "group or others may access it (mode 0644); make it mode 600".into(),
        ),
        (
            key_file(&dir, "group", &good_line, 0o640),
            "group or others may access it (mode 0640)".into(),
        ),
        (
            dir.join("missing"),
            "No such file or directory (os error 2)".into(),
        ),
        (dir.clone(), "not a regular file".into()),
        (
            key_file(&dir, "empty", "# nothing yet\n", 0o600),
            "no key in it".into(),
        ),
        (
            key_file(
                &dir,
                "badline",
                &format!("{good_line}2 {SECRET} x\n"),
                0o600,
            ),
            "line 2: not '<key-id> <secret in hex>'".into(),
        ),
        (
            key_file(&dir, "short", "1 00ff00ff\n", 0o600),
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
    let keys = key_file(&dir, "keys", &format!("1 {SECRET}\n"), 0o600);
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
