//! `--static-nodes`: the nodes of a hand-written map are permanent members
//! while discovery adds the rest. Real daemons in a network-namespace lab
//! (`tests/common`): a pinned node that never runs is in the map from the
//! start and stays; a pinned node that says goodbye stays; a discovered
//! node that dies expires as usual; pinned nodes are not passed on to
//! other nodes. And the files `--static-nodes` refuses.
//!
//! Needs root.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::daemons::*;
use common::*;
use nix::sys::signal::Signal;

#[test]
fn pinned_nodes_stay_while_discovered_ones_come_and_go() {
    let (lab, br, nodes) = Lab::flat(3);
    let (na, a) = nodes[0];
    let (nb, b) = nodes[1];
    let (nd, d) = nodes[2];
    // b runs omdiscd; c never does. Ids by the address rule; an alias of c.
    let c = Lab::addr(br, 50);
    let file = lab.dir().join("static.map");
    fs::write(
        &file,
        format!(
            "# permanent members\n{} {b} 1\n{}\t{c}\t1\n{} 10.99.0.50 alias\n",
            nid(b),
            nid(c),
            nid(c)
        ),
    )
    .unwrap();
    let fast = ["-i", "eth0", "--interval", "0.1", "--hold", "0.3"];
    let mut with_file = fast.to_vec();
    with_file.extend(["--static-nodes", file.to_str().unwrap()]);
    let da = start(&lab, na, a, "a", &with_file);
    let db = start(&lab, nb, b, "b", &fast);
    let dd = start(&lab, nd, d, "d", &fast);
    let all = [&da, &db, &dd];

    // a: itself, both pinned nodes, and d, discovered. b and d never hear
    // of c: a pinned node is a's setting, not news to pass on.
    wait_for(CONVERGE_TIMEOUT, "a lists a, b, c, d", &all, || {
        da.has_exactly(&set_of(&[a, b, c, d]))
    });
    wait_for(CONVERGE_TIMEOUT, "b and d list a, b, d", &all, || {
        db.has_exactly(&set_of(&[a, b, d])) && dd.has_exactly(&set_of(&[a, b, d]))
    });
    // Not even for a moment (a hearsay entry would have been logged).
    for other in [&db, &dd] {
        assert!(!other.log().contains(&format!("{c}")), "{}", other.log());
    }
    let line = format!(
        "static nodes {}: 2 permanent members (never expired); discovery adds the rest",
        file.display()
    );
    assert!(da.log().contains(&line), "{}", da.log());
    let json = Command::new(BIN)
        .args(["--dump", "--format", "json", "--map-file"])
        .arg(&da.map)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&json.stdout);
    let c_row = format!(
        "{{\"id\":{},\"address\":\"{c}\",\"aliases\":[\"10.99.0.50\"],\"state\":\"static\",\"last_heard_s\":0.000,\"hold_left_s\":0.000,",
        nid(c)
    );
    assert!(json.contains(&c_row), "{json}");
    assert!(
        json.contains(&format!(
            "\"address\":\"{b}\",\"aliases\":[],\"state\":\"static\""
        )) && json.contains(&format!(
            "\"address\":\"{d}\",\"aliases\":[],\"state\":\"alive\""
        )),
        "{json}"
    );

    // d dies without a goodbye: it expires from a's map as usual.
    dd.proc().kill();
    wait_for(CONVERGE_TIMEOUT, "d expires at a", &all, || {
        da.has_exactly(&set_of(&[a, b, c]))
    });
    // b says goodbye: a keeps it; and over many holds (0.3 s) nothing of
    // the pinned nodes goes.
    assert!(db.proc().signal(Signal::SIGTERM));
    assert!(db.proc().wait_exit(Duration::from_secs(5)).is_some());
    holds_for(Duration::from_secs(2), "a keeps b and c", &all, || {
        da.has_exactly(&set_of(&[a, b, c]))
    });
    let log = da.log();
    for pinned in [b, c] {
        let left = format!("(IP address {pinned}) left the cluster");
        assert!(!log.contains(&left), "{log}");
    }
    assert!(
        log.contains(&format!("(IP address {d}) left the cluster (expired")),
        "{log}"
    );
}

#[test]
fn static_nodes_must_follow_the_id_rule_and_be_addresses() {
    let lab = Lab::new();
    let br = lab.bridge();
    let n = lab.node("n");
    let own = Lab::addr(br, 1);
    lab.link(n, br, own, 24);
    let root = empty_proc_root(&lab);
    let cases = [
        (
            "5 10.0.0.10 1\n",
            "node #5 is at 10.0.0.10, whose node id is #10 (the last two octets): with discovery, ids follow the addresses",
        ),
        (
            "10 node10.lab 1\n",
            "node #10 is at the host name node10.lab: --static-nodes takes IPv4 addresses (omdiscd resolves no names)",
        ),
        (
            "10 10.0.0.10 1\n11 10.0.0.99 ALIAS\n",
            "alias 10.0.0.99 of node #11, which the file does not list",
        ),
        (
            &format!("{} 10.9.{}.{} 1\n", nid(own), own.octets()[2], own.octets()[3]),
            &format!(
                "node #{} (10.9.{}.{}) has this node's id, and this node is {own}",
                nid(own),
                own.octets()[2],
                own.octets()[3]
            ),
        ),
    ];
    for (i, (text, why)) in cases.iter().enumerate() {
        let file = lab.dir().join(format!("bad{i}.map"));
        fs::write(&file, text).unwrap();
        let map = lab.dir().join(format!("bad{i}.out"));
        let out = lab.exec(
            n,
            &[
                BIN,
                "-n",
                "-i",
                "eth0",
                "--map-file",
                map.to_str().unwrap(),
                "--proc-root",
                root.to_str().unwrap(),
                "--static-nodes",
                file.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!("omdiscd: static map {}: {why}\n", file.display());
        assert_eq!(out.status.code(), Some(1), "{text:?}: {out:?}");
        assert!(err.ends_with(&want), "{text:?}: {err}");
    }
}
