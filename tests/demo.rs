//! `scripts/demo`, the README's first command: three nodes in network
//! namespaces converge and each prints its map, then a join, a goodbye and
//! a kill each show in the maps and the log; everything it made is gone
//! afterwards. Without root it says what it needs. Needs root.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");

fn demo() -> Command {
    let mut c = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo"));
    c.env("OMDISCD_BIN", BIN);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn namespaces() -> String {
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_demo_shows_three_nodes_converge_then_a_join_a_goodbye_and_a_kill() {
    let out = demo().output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // Each of the three prints a map of three nodes, its own first.
    for i in 1..=3 {
        let own = format!("My Node-Id: 0x4d0{i}");
        assert!(t.contains(&own), "{t}");
    }
    assert_eq!(
        t.matches("Base Node-Id Address          Count").count(),
        4,
        "{t}"
    );
    for line in [
        "every map lists all three after",
        "(IP address 198.18.77.4) joined the cluster",
        "(IP address 198.18.77.2) left the cluster (goodbye)",
        "(IP address 198.18.77.3) left the cluster (confirmed dead after",
    ] {
        assert!(t.contains(line), "want {line:?} in\n{t}");
    }
    // The last map: nodes 1 and 4.
    let last = t.rsplit("My Node-Id").next().unwrap();
    assert!(
        last.contains("198.18.77.1 ") && last.contains("198.18.77.4 "),
        "{t}"
    );
    assert!(
        !last.contains("198.18.77.2 ") && !last.contains("198.18.77.3 "),
        "{t}"
    );
    // Its names carry the run's tag and its PID: none is left.
    let tag = format!(
        "omd{}-",
        std::env::var("OMD_TEST_RUN").unwrap_or("demo".into())
    );
    assert!(
        !namespaces()
            .lines()
            .any(|l| l.starts_with(&tag) && l.contains("-sw")),
        "{}",
        namespaces()
    );
}

#[test]
fn the_demo_without_root_says_it_needs_root_and_how_to_run_one_daemon_without() {
    use std::os::unix::process::CommandExt;
    let out = demo().uid(65534).gid(65534).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("scripts/demo: needs root"), "{t}");
    assert!(t.contains("sudo ./scripts/demo"), "{t}");
    assert!(t.contains("--map-file /tmp/omdiscd/openmosix.map"), "{t}");
}
