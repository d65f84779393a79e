//! The control socket, `--dump` and `--stats`, on real daemons in
//! namespaces: every format, the socket's mode, what a stopped daemon
//! leaves, and misbehaving clients.

mod common;

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::daemons::*;
use common::*;
use nix::sys::signal::Signal;

const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

fn sock(d: &Daemon) -> PathBuf {
    let mut p = d.map.clone().into_os_string();
    p.push(".sock");
    PathBuf::from(p)
}

fn omdiscd(args: &[&str], map: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--map-file")
        .arg(map)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Sends `request` on the control socket at `path`; the whole answer.
fn ask(path: &Path, request: &str) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn dump_asks_the_running_daemon_in_every_format_and_stats_give_every_counter() {
    let (lab, _br, nodes) = Lab::flat(3);
    let iv = ["-i", "eth0", "--interval", "0.3"];
    let ds: Vec<Daemon> = nodes
        .iter()
        .enumerate()
        .map(|(i, &(n, a))| start(&lab, n, a, &format!("n{i}"), &iv))
        .collect();
    let addrs: Vec<Ipv4Addr> = nodes.iter().map(|&(_, a)| a).collect();
    let all = set_of(&addrs);
    wait_for(CONVERGE_TIMEOUT, "converged", &refs(&ds), || {
        all_have(&ds, &all)
    });
    let d = &ds[0];
    // The socket is private to its owner.
    let meta = std::fs::metadata(sock(d)).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // showmap: the same text as from the map file, by the daemon.
    let out = omdiscd(&["--dump"], &d.map);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("My Node-Id: 0x{:04x}\n", nid(d.addr))),
        "{text}"
    );
    // Ranges of consecutive ids and addresses, 3 nodes in all.
    let counted: u32 = text
        .lines()
        .skip(4)
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(counted, 3, "{text}");
    // map: the map file's format, parsed by the tests' own reader.
    let out = omdiscd(&["--dump", "--format", "map"], &d.map);
    let view = parse_map(&stdout(&out));
    assert_eq!(view.nodes, all, "{}", stdout(&out));
    assert_eq!(view.first, Some(entry(d.addr)));
    // hosts: one address per line, this node first.
    let out = omdiscd(&["--dump", "--format=hosts"], &d.map);
    let hosts: Vec<Ipv4Addr> = stdout(&out).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[0], d.addr);
    assert_eq!(
        hosts
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        addrs.iter().copied().collect()
    );
    // json: one object per node with its state and timing.
    let out = omdiscd(&["--dump", "--format", "json"], &d.map);
    let json = stdout(&out);
    assert!(
        json.starts_with(&format!(
            "{{\"source\":\"daemon\",\"node_id\":{},",
            nid(d.addr)
        )),
        "{json}"
    );
    assert_eq!(json.matches("\"id\":").count(), 3, "{json}");
    assert_eq!(json.matches("\"state\":\"self\"").count(), 1, "{json}");
    assert_eq!(json.matches("\"state\":\"alive\"").count(), 2, "{json}");
    assert!(
        json.contains("\"joined\":\"announce\"") || json.contains("\"joined\":\"sync\""),
        "{json}"
    );
    assert!(json.trim_end().ends_with("]}"), "{json}");

    // --stats: text, json and Prometheus.
    let out = omdiscd(&["--stats"], &d.map);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let value = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.split(' ').next() == Some(name));
        line.unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(value("received") > 0);
    assert_eq!(value("nodes"), 3);
    for name in [
        "sent",
        "relayed",
        "answers",
        "collisions",
        "publishes",
        "kernel_drops",
        "auth_failed",
        "dropped_bad_magic",
        "uptime_seconds",
        "setpe_runs",
        "setpe_failures",
        "hook_runs",
        "child_timeouts",
    ] {
        value(name);
    }
    let prom = stdout(&omdiscd(&["--stats", "--format", "prometheus"], &d.map));
    assert!(
        prom.contains("# TYPE omdiscd_received_total counter\nomdiscd_received_total "),
        "{prom}"
    );
    assert!(prom.contains("omdiscd_nodes 3\n"), "{prom}");
    assert!(
        prom.contains("omdiscd_dropped_total{reason=\"bad_magic\"} 0\n"),
        "{prom}"
    );
    assert_eq!(
        prom.matches("# TYPE omdiscd_dropped_total").count(),
        1,
        "{prom}"
    );
    for line in prom.lines().filter(|l| !l.starts_with('#')) {
        let (name, v) = line.rsplit_once(' ').unwrap();
        assert!(name.starts_with("omdiscd_"), "{line}");
        v.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
    }
    let json = stdout(&omdiscd(&["--stats", "--format", "json"], &d.map));
    assert!(json.starts_with("{\n\"received\":"), "{json}");
    assert!(json.contains("\"nodes\":3"), "{json}");
}

#[test]
fn a_stopped_daemon_leaves_no_socket_and_dump_falls_back_to_the_map_file() {
    let (lab, _br, nodes) = Lab::flat(1);
    let (n, a) = nodes[0];
    let d = start(&lab, n, a, "solo", &["-i", "eth0", "--interval", "0.3"]);
    wait_for(CONVERGE_TIMEOUT, "the map file", &[&d], || d.lists(a));
    wait_for(CONVERGE_TIMEOUT, "the socket", &[&d], || sock(&d).exists());
    d.proc().signal(Signal::SIGTERM);
    assert!(d.proc().wait_exit(EXIT_TIMEOUT).is_some());
    assert!(!sock(&d).exists(), "the socket was removed");
    // The map file is what is left: printed, with the stale warning.
    let out = omdiscd(&["--dump", "--format", "hosts"], &d.map);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(stdout(&out), format!("{a}\n"));
    let out = omdiscd(&["--dump", "--format", "json"], &d.map);
    assert!(
        stdout(&out).starts_with("{\"source\":\"map-file\""),
        "{out:?}"
    );
    // --stats has nothing to fall back to.
    let out = omdiscd(&["--stats"], &d.map);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("omdiscd: no omdiscd answers on "), "{err}");
}

#[test]
fn another_user_is_told_the_daemon_runs_and_its_socket_is_closed_to_them() {
    use std::os::unix::process::CommandExt;
    let (lab, _br, nodes) = Lab::flat(1);
    let (n, a) = nodes[0];
    let d = start(&lab, n, a, "solo", &["-i", "eth0", "--interval", "0.3"]);
    wait_for(CONVERGE_TIMEOUT, "the map file", &[&d], || d.lists(a));
    wait_for(CONVERGE_TIMEOUT, "the socket", &[&d], || sock(&d).exists());
    // The lab's directory is root's; the map file in it is for everyone.
    std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--map-file")
            .arg(&d.map)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let out = as_nobody(&["--stats"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "omdiscd runs, but its control socket {} is open only to the user it runs as",
        sock(&d).display()
    );
    assert!(err.contains(&want), "{err}");
    // --dump says so too, and shows the map file.
    let out = as_nobody(&["--dump", "--format", "hosts"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("showing the map file it writes instead"),
        "{err}"
    );
    assert_eq!(stdout(&out), format!("{a}\n"));
}

#[test]
fn a_socket_left_by_a_killed_daemon_is_replaced_and_a_file_in_its_place_refused() {
    let (lab, _br, nodes) = Lab::flat(1);
    let (n, a) = nodes[0];
    let iv = ["-i", "eth0", "--interval", "0.3"];
    let d = start(&lab, n, a, "k", &iv);
    wait_for(CONVERGE_TIMEOUT, "the socket", &[&d], || sock(&d).exists());
    d.proc().kill();
    assert!(sock(&d).exists(), "SIGKILL leaves the socket");
    let d = start(&lab, n, a, "k", &iv);
    wait_for(CONVERGE_TIMEOUT, "the new daemon answers", &[&d], || {
        UnixStream::connect(sock(&d)).is_ok()
    });
    d.proc().signal(Signal::SIGTERM);
    assert!(d.proc().wait_exit(EXIT_TIMEOUT).is_some());
    // A regular file where the socket goes is not ours to remove.
    std::fs::write(sock(&d), "keep me").unwrap();
    let d = start(&lab, n, a, "k", &iv);
    let status = d.proc().wait_exit(EXIT_TIMEOUT).expect("refused");
    assert_eq!(status.code(), Some(1));
    let err = d.proc().stderr_text();
    assert!(
        err.contains("control socket") && err.contains("not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(sock(&d)).unwrap(), "keep me");
    // A map file deep enough that its socket's path would not fit: refused
    // with what to do about it.
    let deep = lab.dir().join("d".repeat(100));
    std::fs::create_dir_all(&deep).unwrap();
    let map = deep.join("m.map");
    let out = Command::new(BIN)
        .args(["-n", "-i", "lo", "--port", "17918", "--map-file"])
        .arg(&map)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("longer than 105 bytes") && err.contains("--control-socket"),
        "{err}"
    );
}

#[test]
fn bad_silent_and_excess_clients_do_not_hold_up_the_daemon() {
    let (lab, _br, nodes) = Lab::flat(1);
    let (n, a) = nodes[0];
    let d = start(&lab, n, a, "c", &["-i", "eth0", "--interval", "0.3"]);
    wait_for(CONVERGE_TIMEOUT, "the socket", &[&d], || sock(&d).exists());
    let path = sock(&d);
    assert!(ask(&path, "bogus\n").starts_with("error: unknown request"));
    assert!(ask(&path, &"x".repeat(100)).starts_with("error: unknown request"));
    // Silent clients fill every slot; they are disconnected after 5 s.
    let slots = omdiscd::control::MAX_CLIENTS;
    let mut silent: Vec<UnixStream> = (0..slots + 2)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let t = std::time::Instant::now();
    let answer = ask(&path, "hosts\n");
    assert_eq!(answer, format!("{a}\n"));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "served while all slots were taken: {waited:?}"
    );
    let mut buf = [0u8; 16];
    for s in &mut silent[..slots] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 0, "disconnected");
    }
    // And the daemon went on announcing meanwhile.
    assert!(d.proc().try_wait().is_none());
    assert!(ask(&path, "stats\n").contains("received "));
}

#[test]
fn metrics_file_has_every_counter_in_the_prometheus_format_and_a_bad_path_is_refused() {
    let (lab, _br, nodes) = Lab::flat(2);
    let prom = lab.dir().join("textfile/omdiscd.prom");
    let prom_s = prom.to_str().unwrap();
    let iv = ["-i", "eth0", "--interval", "0.3"];
    let mut args = iv.to_vec();
    args.extend(["--metrics-file", prom_s]);
    let d = start(&lab, nodes[0].0, nodes[0].1, "m0", &args);
    let peer = start(&lab, nodes[1].0, nodes[1].1, "m1", &iv);
    wait_for(CONVERGE_TIMEOUT, "the metrics file", &[&d, &peer], || {
        prom.exists()
    });
    let text = std::fs::read_to_string(&prom).unwrap();
    // The same names as --stats --format prometheus, each with HELP and TYPE.
    let names = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("# TYPE "))
            .map(|l| l.split(' ').nth(2).unwrap().to_string())
            .collect()
    };
    let live = stdout(&omdiscd(&["--stats", "--format", "prometheus"], &d.map));
    assert_eq!(names(&text), names(&live));
    assert!(names(&text).len() >= 30, "{text}");
    assert!(text.contains("\nomdiscd_uptime_seconds "), "{text}");
    // Written whole: no temporary file is left beside it.
    let beside: Vec<_> = std::fs::read_dir(prom.parent().unwrap()).unwrap().collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    // A directory in its place is refused at start-up.
    let dir = lab.dir().join("a-dir.prom");
    std::fs::create_dir(&dir).unwrap();
    let mut args = iv.to_vec();
    // (Another port: a second daemon for the peer's address and port is refused.)
    args.extend(["--metrics-file", dir.to_str().unwrap(), "--port", "7743"]);
    let bad = start(&lab, nodes[1].0, nodes[1].1, "m2", &args);
    let status = bad.proc().wait_exit(EXIT_TIMEOUT).expect("refused");
    assert_eq!(status.code(), Some(1));
    let err = bad.proc().stderr_text();
    assert!(
        err.starts_with("omdiscd: preparing --metrics-file: ")
            && err.contains("not a regular file"),
        "{err}"
    );
}

/// The change lines `omdiscd --watch` printed so far (after the map): for
/// text, the lines after the showmap table without their time; for json,
/// the lines after the `present` ones.
fn watched_changes(p: &Proc, json: bool) -> Vec<String> {
    let text = p.stdout_text();
    let mut out = Vec::new();
    for line in text.lines() {
        if json {
            if !line.contains("\"event\":\"present\"") {
                out.push(line.to_string());
            }
        } else if let Some((time, rest)) = line.split_once(' ') {
            // 2026-12-07T14:02:21Z
            let is_time = time.len() == 20
                && time.ends_with('Z')
                && time.as_bytes()[10] == b'T'
                && time[..4].parse::<u32>().is_ok();
            if is_time {
                out.push(rest.to_string());
            }
        }
    }
    out
}

#[test]
fn watch_prints_the_map_then_a_join_a_goodbye_and_an_expiry_in_order() {
    let (lab, _br, nodes) = Lab::flat(3);
    let iv = ["-i", "eth0", "--interval", "0.3"];
    let d = start(&lab, nodes[0].0, nodes[0].1, "w0", &iv);
    wait_for(CONVERGE_TIMEOUT, "the socket", &[&d], || sock(&d).exists());
    let path = sock(&d);
    let path = path.to_str().unwrap();
    let text = lab.spawn(
        nodes[0].0,
        Path::new(BIN),
        &["--watch", "--control-socket", path],
    );
    let json = lab.spawn(
        nodes[0].0,
        Path::new(BIN),
        &["--watch", "--format", "json", "--control-socket", path],
    );
    // The map first: this node alone.
    wait_for(CONVERGE_TIMEOUT, "the maps", &[&d], || {
        text.stdout_text()
            .contains("------------ ---------------- -----\n")
            && json.stdout_text().contains("\"self\":true}\n")
    });
    let map = text.stdout_text();
    assert!(
        map.starts_with(&format!("My Node-Id: 0x{:04x}\n", nid(d.addr))),
        "{map}"
    );
    assert_eq!(
        json.stdout_text(),
        format!(
            "{{\"event\":\"present\",\"id\":{},\"address\":\"{}\",\"self\":true}}\n",
            nid(d.addr),
            d.addr
        )
    );

    let (a1, a2) = (nodes[1].1, nodes[2].1);
    let joined = |a: Ipv4Addr| format!("openMosix #{} (IP address {a}) joined the cluster", nid(a));
    let left = |a: Ipv4Addr, why: &str| {
        format!(
            "openMosix #{} (IP address {a}) left the cluster ({why}",
            nid(a)
        )
    };
    let d1 = start(&lab, nodes[1].0, a1, "w1", &iv);
    wait_for(CONVERGE_TIMEOUT, "the first join", &[&d, &d1], || {
        watched_changes(&text, false).contains(&joined(a1))
    });
    let d2 = start(&lab, nodes[2].0, a2, "w2", &iv);
    wait_for(CONVERGE_TIMEOUT, "the second join", &[&d, &d2], || {
        watched_changes(&text, false).contains(&joined(a2))
    });
    // A graceful stop says goodbye; a killed node expires.
    d1.proc().signal(Signal::SIGTERM);
    wait_for(CONVERGE_TIMEOUT, "the goodbye", &[&d, &d1], || {
        watched_changes(&text, false).len() == 3
    });
    d2.proc().kill();
    wait_for(CONVERGE_TIMEOUT, "the expiry", &[&d, &d2], || {
        watched_changes(&text, false).len() == 4
    });
    let changes = watched_changes(&text, false);
    assert_eq!(changes[..2], [joined(a1), joined(a2)], "{changes:?}");
    assert_eq!(
        changes[2],
        format!("{})", left(a1, "goodbye")),
        "{changes:?}"
    );
    assert!(
        changes[3].starts_with(&left(a2, "expired after "))
            && changes[3].ends_with(" s of silence)"),
        "{changes:?}"
    );
    // The same four as JSON objects, in the same order.
    wait_for(CONVERGE_TIMEOUT, "the json lines", &[&d], || {
        watched_changes(&json, true).len() == 4
    });
    let objects = watched_changes(&json, true);
    let ids = |event: &str, a: Ipv4Addr| {
        format!(
            "\"event\":\"{event}\",\"id\":{},\"address\":\"{a}\"",
            nid(a)
        )
    };
    for (line, want) in objects.iter().zip([
        format!("{}}}", ids("joined", a1)),
        format!("{}}}", ids("joined", a2)),
        format!("{},\"reason\":\"goodbye\"}}", ids("left", a1)),
        format!("{},\"reason\":\"expired\",\"silent_s\":", ids("left", a2)),
    ]) {
        assert!(line.starts_with("{\"time\":\"20"), "{objects:?}");
        assert!(line.contains(&want), "{want} not in {objects:?}");
    }
    // Watching is not a request: no 5 s limit. The daemon counts no drop.
    assert!(text.try_wait().is_none() && json.try_wait().is_none());
    let stats = stdout(&omdiscd(&["--stats"], &d.map));
    assert!(stats.contains("\nwatchers_dropped 0\n"), "{stats}");
    // Four watch at most; a fifth is refused, and --dump still answers.
    let more: Vec<UnixStream> = (0..2)
        .map(|_| {
            let mut s = UnixStream::connect(sock(&d)).unwrap();
            s.write_all(b"watch\n").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // Answered: it holds a slot.
            s.read_exact(&mut [0; 8]).unwrap();
            s
        })
        .collect();
    let out = omdiscd(&["--watch"], &d.map);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: too many watchers"), "{err}");
    let out = omdiscd(&["--dump", "--format", "hosts"], &d.map);
    assert_eq!(stdout(&out), format!("{}\n", d.addr), "{out:?}");
    drop(more);
    // The daemon stops: the watchers end, successfully.
    d.proc().signal(Signal::SIGTERM);
    for w in [&text, &json] {
        let status = w.wait_exit(EXIT_TIMEOUT).expect("the watcher ended");
        assert_eq!(status.code(), Some(0), "{}", w.stderr_text());
    }
    // Without a daemon, --watch fails at once, saying so.
    let out = omdiscd(&["--watch"], &d.map);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("omdiscd: no omdiscd answers on ") && err.contains("is it running?"),
        "{err}"
    );
}
