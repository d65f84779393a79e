//! Self-test of the network-namespace lab harness (tests/common/mod.rs).
//! Needs root and iproute2; everything happens inside namespaces it creates.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 42);
const PORT: u16 = 47742;
const WAIT: Duration = Duration::from_secs(5);
/// How long we listen to show that something does NOT arrive, after a later
/// packet on the same path already did.
const QUIET: Duration = Duration::from_millis(200);

fn send_mcast(sock: &UdpSocket, payload: &[u8]) {
    let n = sock
        .send_to(payload, SocketAddr::from((GROUP, PORT)))
        .expect("send multicast");
    assert_eq!(n, payload.len());
}

/// Receives one datagram within [`WAIT`] and checks it is `want`.
fn expect_datagram(sock: &UdpSocket, want: &[u8], who: &str) -> SocketAddr {
    match recv_timeout(sock, WAIT) {
        Some((d, from)) if d == want => from,
        Some((d, from)) => panic!("{who}: unexpected datagram {d:?} from {from}"),
        None => panic!(
            "{who}: no datagram {:?} within {WAIT:?}",
            String::from_utf8_lossy(want)
        ),
    }
}

fn expect_nothing(sock: &UdpSocket, who: &str) {
    if let Some((d, from)) = recv_timeout(sock, QUIET) {
        panic!(
            "{who}: should have received nothing, got {:?} from {from}",
            String::from_utf8_lossy(&d)
        );
    }
}

#[test]
fn multicast_and_unicast_on_one_bridge() {
    let lab = Lab::new();
    let br = lab.bridge();
    let nodes: Vec<NodeId> = (1..=3).map(|i| lab.node(&format!("n{i}"))).collect();
    for (i, &n) in nodes.iter().enumerate() {
        let host = u8::try_from(i + 1).unwrap();
        assert_eq!(lab.link(n, br, Lab::addr(br, host), 24), "eth0");
    }
    // The bridge really has snooping off, and nodes see only lo + eth0.
    let details = ip_ok(&[
        "-n",
        lab.switch_ns(),
        "-d",
        "link",
        "show",
        &lab.bridge_name(br),
    ]);
    assert!(details.contains("mcast_snooping 0"), "{details}");
    assert!(details.contains("stp_state 0"), "{details}");
    let links = lab.ip(nodes[0], &["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 2, "{links}");
    let addrs = lab.ip(nodes[0], &["-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("198.18.10.1/24"), "{addrs}");

    let rx2 = lab.in_netns(nodes[1], || mcast_receiver(GROUP, PORT, "eth0"));
    let rx3 = lab.in_netns(nodes[2], || mcast_receiver(GROUP, PORT, "eth0"));
    let tx = lab.in_netns(nodes[0], || mcast_sender("eth0", 1));

    let t0 = Instant::now();
    send_mcast(&tx, b"hello group");
    let from2 = expect_datagram(&rx2, b"hello group", "node 2");
    let from3 = expect_datagram(&rx3, b"hello group", "node 3");
    eprintln!("multicast delivered to 2 nodes in {:?}", t0.elapsed());
    assert_eq!(from2.ip(), Lab::addr(br, 1));
    assert_eq!(from3.ip(), Lab::addr(br, 1));

    // Unicast node 2 -> node 3 (needs ARP through the bridge).
    let a3 = Lab::addr(br, 3);
    let urx = lab.in_netns(nodes[2], || {
        UdpSocket::bind((a3, PORT + 1)).expect("bind unicast rx")
    });
    let utx = lab.in_netns(nodes[1], || {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind unicast tx")
    });
    utx.send_to(b"hi three", (a3, PORT + 1))
        .expect("send unicast");
    let from = expect_datagram(&urx, b"hi three", "node 3 unicast");
    assert_eq!(from.ip(), Lab::addr(br, 2));
    // A process in the namespace can reach the others as well.
    if which(Path::new("ping")).is_some() {
        let ping = lab.exec(nodes[0], &["ping", "-c", "1", "-W", "5", "198.18.10.3"]);
        assert!(ping.status.success(), "{ping:?}");
    } else {
        skipped(
            "ping between lab namespaces",
            "no ping installed (scripts/test installs iputils-ping)",
        );
    }
}

#[test]
fn multicast_stays_on_its_bridge() {
    let lab = Lab::new();
    let (ba, bb) = (lab.bridge(), lab.bridge());
    let dual = lab.node("dual");
    let on_a = lab.node("on_a");
    let on_b = lab.node("on_b");
    assert_eq!(lab.link(dual, ba, Lab::addr(ba, 1), 24), "eth0");
    assert_eq!(lab.link(dual, bb, Lab::addr(bb, 1), 24), "eth1");
    lab.link(on_a, ba, Lab::addr(ba, 2), 24);
    lab.link(on_b, bb, Lab::addr(bb, 2), 24);
    assert_ne!(lab.ifindex(dual, "eth0"), lab.ifindex(dual, "eth1"));

    let rx_a = lab.in_netns(on_a, || mcast_receiver(GROUP, PORT, "eth0"));
    let rx_b = lab.in_netns(on_b, || mcast_receiver(GROUP, PORT, "eth0"));
    let (tx_a, tx_b) = lab.in_netns(dual, || (mcast_sender("eth0", 1), mcast_sender("eth1", 1)));

    send_mcast(&tx_a, b"on bridge A");
    let from = expect_datagram(&rx_a, b"on bridge A", "node on A");
    assert_eq!(from.ip(), Lab::addr(ba, 1));
    // A marker on B, sent after A's datagram was delivered: node B must see
    // the marker first (had A's datagram leaked, it would be queued ahead).
    send_mcast(&tx_b, b"on bridge B");
    let from = expect_datagram(&rx_b, b"on bridge B", "node on B");
    assert_eq!(from.ip(), Lab::addr(bb, 1));
    expect_nothing(&rx_b, "node on B");
    expect_nothing(&rx_a, "node on A");
}

fn assert_gone(names: &[String], dir: &Path) {
    assert!(!names.is_empty());
    let listed = ip_netns_list();
    for n in names {
        assert!(
            !listed.contains(n),
            "namespace {n} still listed: {listed:?}"
        );
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn drop_removes_namespaces_processes_and_dir() {
    let lab = Lab::new();
    let br = lab.bridge();
    let n = lab.node("x");
    lab.link(n, br, Lab::addr(br, 1), 24);
    let p = lab.spawn(n, Path::new("sleep"), &["30"]);
    let names = lab.namespaces();
    let dir = lab.dir().to_owned();
    assert_eq!(names.len(), 2);
    let listed = ip_netns_list();
    for name in &names {
        assert!(listed.contains(name), "{name} not in {listed:?}");
    }
    assert!(dir.is_dir());
    drop(lab);
    assert_gone(&names, &dir);
    // The lab killed and reaped its process even though the Proc lives on.
    let st = p.try_wait().expect("lab drop reaps its processes");
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert!(!p.signal(Signal::SIGTERM), "must not signal a reaped pid");
}

#[test]
fn panic_in_test_body_still_cleans_up() {
    let seen: Mutex<Option<(Vec<String>, std::path::PathBuf)>> = Mutex::new(None);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new();
        let br = lab.bridge();
        let a = lab.node("a");
        let b = lab.node("b");
        lab.link(a, br, Lab::addr(br, 1), 24);
        lab.link(b, br, Lab::addr(br, 2), 24);
        let _p = lab.spawn(a, Path::new("sleep"), &["30"]);
        *seen.lock().unwrap() = Some((lab.namespaces(), lab.dir().to_owned()));
        panic!("deliberate panic inside a lab test body");
    }));
    assert!(r.is_err());
    let (names, dir) = seen.into_inner().unwrap().expect("body ran");
    assert_eq!(names.len(), 3);
    assert_gone(&names, &dir);
}

#[test]
fn names_carry_the_run_and_process_tokens() {
    let lab = Lab::new();
    let n = lab.node("x");
    let mine = process_prefix();
    assert!(mine.starts_with(&format!("omd{}-{}-", run_token(), process_token())));
    assert!(lab.prefix().starts_with(&mine), "{}", lab.prefix());
    assert!(lab.ns(n).starts_with(lab.prefix()));
    assert!(lab.switch_ns().starts_with(lab.prefix()));
    assert_eq!(lab.dir(), std::env::temp_dir().join(lab.prefix()));
    // Under scripts/test the run token is the one it sweeps for.
    if let Ok(run) = std::env::var(RUN_ENV) {
        assert_eq!(run_token(), run);
    }
}

/// Env var handing the child half of the next test the file to report to.
const LEAK_REPORT_ENV: &str = "OMD_LAB_LEAK_REPORT";

/// Not a check of its own: run in a child process by
/// `exit_removes_leaked_labs_and_nothing_else`. Leaks a lab with a running
/// process and exits.
#[test]
#[ignore = "not a check: the child process of exit_removes_leaked_labs_and_nothing_else"]
fn child_leaks_a_lab_and_exits() {
    let report = std::env::var_os(LEAK_REPORT_ENV).expect("run by the parent test");
    let lab = Lab::new();
    let n = lab.node("leaked");
    let p = lab.spawn(n, Path::new("sleep"), &["30"]);
    let mut text = format!("{}\n{}\n", p.pid(), lab.dir().display());
    for ns in lab.namespaces() {
        text.push_str(&ns);
        text.push('\n');
    }
    std::fs::write(report, text).unwrap();
    std::mem::forget(p);
    std::mem::forget(lab);
}

#[test]
fn exit_removes_leaked_labs_and_nothing_else() {
    // Lab-like names this process did not make: another run's, and another
    // process's of this run. They must survive this process's cleanup.
    let foreign = [
        format!("omdotherrun-{}-0sw", process_token()),
        format!("omd{}-otherproc-0sw", run_token()),
    ];
    struct Remove<'a>(&'a [String]);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            for ns in self.0 {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", ns])
                    .output();
            }
        }
    }
    let _remove = Remove(&foreign);
    for ns in &foreign {
        ip_ok(&["netns", "add", ns]);
    }

    // The child leaks a lab (namespaces, directory, a running process) and
    // exits normally: its exit handler must remove them.
    let report = std::env::temp_dir().join(format!("{}leak-report", process_prefix()));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_leaks_a_lab_and_exits", "--ignored"])
        .env(LEAK_REPORT_ENV, &report)
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {out:?}");
    let text = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    let mut lines = text.lines();
    let pid: u32 = lines.next().unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(lines.next().unwrap());
    let names: Vec<String> = lines.map(str::to_owned).collect();
    assert_eq!(names.len(), 2, "{text}");
    assert_gone(&names, &dir);
    // The leaked sleep was killed (it may linger as a zombie of init).
    poll_until(
        WAIT,
        "the leaked process is killed",
        || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit(") ").next().is_some_and(|f| f.starts_with('Z')),
            Err(_) => true,
        },
    );
    let listed = ip_netns_list();
    for ns in &foreign {
        assert!(listed.contains(ns), "{ns} of another run was removed");
    }
}

#[test]
fn proc_signal_wait_and_output() {
    let lab = Lab::new();
    let n = lab.node("p");
    let p = lab.spawn(n, Path::new("sleep"), &["30"]);
    // The pid is sleep itself (ip netns exec exec'd it), in the node's netns.
    let exe = std::fs::canonicalize(format!("/proc/{}/exe", p.pid())).unwrap();
    assert_eq!(exe, which(Path::new("sleep")).unwrap());
    assert_eq!(
        ns_inode(Path::new(&format!("/proc/{}/ns/net", p.pid()))),
        ns_inode(&Path::new("/run/netns").join(lab.ns(n)))
    );
    assert!(p.wait_exit(Duration::from_millis(50)).is_none());
    assert!(p.signal(Signal::SIGTERM));
    let st = p.wait_exit(WAIT).expect("sleep exits on SIGTERM");
    assert_eq!(st.signal(), Some(libc::SIGTERM));

    let e = lab.spawn(
        n,
        Path::new("sh"),
        &["-c", "echo hi; echo oops >&2; exit 3"],
    );
    let st = e.wait_exit(WAIT).expect("sh exits");
    assert_eq!(st.code(), Some(3));
    assert_eq!(e.stdout_text(), "hi\n");
    assert_eq!(e.stderr_text(), "oops\n");

    // Drop of a live Proc kills it.
    let q = lab.spawn(n, Path::new("sleep"), &["30"]);
    let pid = q.pid();
    drop(q);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());

    // exec runs to completion inside the namespace.
    let out = lab.exec(n, &["sh", "-c", "cat /proc/net/dev | grep -c :"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "only lo");
}

#[test]
fn routes_and_sysctl() {
    let lab = Lab::new();
    let br = lab.bridge();
    let n = lab.node("r");
    lab.link(n, br, Lab::addr(br, 1), 24);
    lab.default_route(n, Lab::addr(br, 254));
    assert!(lab
        .ip(n, &["route", "show", "default"])
        .contains("via 198.18.10.254"));
    lab.del_default_route(n);
    assert!(lab.ip(n, &["route", "show", "default"]).trim().is_empty());
    lab.sysctl(n, "net.ipv4.ip_forward", "1");
    let v = lab.in_netns(n, || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
    });
    assert_eq!(v.unwrap().trim(), "1");
    // Another namespace is untouched.
    let other = lab.node("o");
    let ov = lab.in_netns(other, || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
    });
    assert_eq!(ov.unwrap().trim(), "0");
}

#[test]
fn five_node_lab_builds_within_a_minute() {
    let t0 = Instant::now();
    let lab = Lab::new();
    let br = lab.bridge();
    for i in 1..=5u8 {
        let n = lab.node(&format!("t{i}"));
        lab.link(n, br, Lab::addr(br, i), 24);
    }
    let built = t0.elapsed();
    let t1 = Instant::now();
    drop(lab);
    let dropped = t1.elapsed();
    eprintln!(
        "LAB TIMING: 5 nodes + 1 bridge + 5 links built in {built:?}, dropped in {dropped:?}"
    );
    assert!(built < Duration::from_secs(60), "lab build took {built:?}");
}
