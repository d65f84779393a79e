//! The foundation round trip: announcements on the wire -> cluster map ->
//! map file (written by the real writer) -> `omdiscd --dump` (the real
//! binary), checked against the exact `showmap` text of the openMosix HOWTO's
//! example cluster. Plus `--dump`'s failures.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};

use arrayvec::ArrayVec;
use omdiscd::map::{Announcement, ClusterMap};
use omdiscd::procfs::AtomicFile;
use omdiscd::wire::{self, Label, MessageType, Repr};

#[path = "common/basics.rs"]
mod basics;
use basics::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");

fn dump(map_file: &Path) -> Output {
    Command::new(BIN)
        .args(["--dump", "--map-file"])
        .arg(map_file)
        .output()
        .unwrap()
}

/// What the peer at `addr` puts on the wire.
fn announcement_bytes(addr: Ipv4Addr, seq: u32) -> Vec<u8> {
    let repr = Repr {
        kind: MessageType::Announce,
        flags: 0,
        hops: 0,
        node_id: wire::node_id_of(addr),
        incarnation: 0x1234_5678,
        sequence: seq,
        interval_ms: 2000,
        hold_ms: 6000,
        label: Label([0; 16]),
        addr,
        members: 0,
        aliases: ArrayVec::new(),
        entries: ArrayVec::new(),
        notice: None,
        auth: None,
    };
    let mut buf = [0u8; wire::MAX_MESSAGE_LEN];
    let n = repr.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn howto_cluster_from_the_wire_to_dump() {
    let dir = temp_dir("howto");
    let mut map = ClusterMap::new(Ipv4Addr::new(192, 168, 10, 220), &[], 99);
    for (seq, last) in [78u8, 86, 67, 74].into_iter().enumerate() {
        let bytes = announcement_bytes(Ipv4Addr::new(192, 168, 10, last), seq as u32);
        let repr = Repr::parse(&bytes).unwrap();
        let a = Announcement {
            addr: repr.addr,
            aliases: &repr.aliases,
            incarnation: repr.incarnation,
            sequence: repr.sequence,
            hold_ms: repr.hold_ms,
            started: 0,
            probe_ms: 0,
            ifindex: 0,
            authentic: false,
            watcher: false,
        };
        map.apply_announce(&a, 1000);
    }
    let path = dir.join("run/omdiscd/openmosix.map");
    AtomicFile::new(&path).unwrap().write(&map, "test").unwrap();

    // The writer (this process) runs: the map is live, exit 0.
    let text = std::fs::read_to_string(&path).unwrap();
    let writer = format!("# writer: pid {} time ", std::process::id());
    assert!(text.contains(&writer), "{text}");
    let out = dump(&path);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "My Node-Id: 0x0adc

Base Node-Id Address          Count
------------ ---------------- -----
0x0adc       192.168.10.220   1
0x0a43       192.168.10.67    1
0x0a4a       192.168.10.74    1
0x0a4e       192.168.10.78    1
0x0a56       192.168.10.86    1
"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_map_whose_writer_is_gone_is_printed_with_a_warning_and_exit_4() {
    let dir = temp_dir("stale");
    // A PID that is not running: a child that has exited and been reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let path = dir.join("openmosix.map");
    let text = format!(
        "# openMosix map written by omdiscd 0.1.0: do not edit, rewritten on every change\n\
         # writer: pid {gone} time 1764460800\n\
         # this-node: 2780 192.168.10.220\n\
         # nodes: 1\n\
         2780 192.168.10.220 1\n"
    );
    std::fs::write(&path, text).unwrap();
    let out = dump(&path);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("My Node-Id: 0x0adc"), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let want = format!(
        "omdiscd: warning: the map file {} is stale: the omdiscd that wrote it (PID {gone}) is not running",
        path.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    // When, as a date, and how long ago.
    assert!(
        stderr.contains("it was written at 2025-11-30T00:00:00Z (") && stderr.contains(" ago)"),
        "{stderr}"
    );
    // A hand-written map names no writer: printed as it is, exit 0.
    std::fs::write(&path, "2780 192.168.10.220 1\n").unwrap();
    let out = dump(&path);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_map_file_says_which_and_why() {
    let dir = temp_dir("missing");
    let path = dir.join("nope.map");
    let out = dump(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&*path.to_string_lossy()), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(err.contains("omdiscd running"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_map_file_names_the_line() {
    let dir = temp_dir("malformed");
    let path = dir.join("bad.map");
    std::fs::write(
        &path,
        "# this-node: 1 10.0.0.1\n1 10.0.0.1 1\n2 10.0.0.2 zero\n",
    )
    .unwrap();
    let out = dump(&path);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains(&*path.to_string_lossy()), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn only_a_regular_nonempty_map_file_of_sane_size_is_read() {
    let dir = temp_dir("odd");
    let failure = |path: &Path, what: &str| {
        let out = dump(path);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(what) && err.contains(&*path.to_string_lossy()),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    };
    // A FIFO would block a plain read for ever.
    let fifo = dir.join("fifo");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    failure(&fifo, "not a regular file");
    failure(&dir, "not a regular file");
    // Larger than any map can be (sparse: no disk used).
    let big = dir.join("big.map");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(omdiscd::procfs::MAX_MAP_FILE_BYTES + 1).unwrap();
    failure(&big, "larger than 16 MiB");
    // Empty, or comments only: no node, not "My Node-Id: 0x0000".
    let empty = dir.join("empty.map");
    std::fs::write(&empty, "").unwrap();
    failure(&empty, "lists no node");
    std::fs::write(&empty, "# openMosix map\n# nodes: 0\n").unwrap();
    failure(&empty, "lists no node");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2_with_a_hint_help_and_version_exit_0() {
    let out = Command::new(BIN).args(["--port", "abc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--port") && err.contains("abc"), "{err}");
    assert!(
        err.ends_with("Try 'omdiscd --help' for more information.\n"),
        "{err}"
    );

    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8(help.stdout)
        .unwrap()
        .starts_with("Usage: omdiscd"));

    let version = Command::new(BIN).arg("-V").output().unwrap();
    assert!(version.status.success());
    let v = String::from_utf8(version.stdout).unwrap();
    assert!(
        v.starts_with(&format!("omdiscd {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
}
