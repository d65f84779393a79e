//! Proves the design rule "no heap allocation after start-up": a counting
//! global allocator watches the daemon's thread while its real epoll loop
//! receives signed announcements (asking for the map, so it answers with
//! SYNCs), leaves, SYNCs, unsigned, forged and spoofed messages and garbage
//! over a real socket, checks every MAC, probes and expires nodes,
//! publishes the map file, runs setpe and the `--on-change` program, serves
//! control socket clients in every format, logs, and handles signals
//! (SIGHUP re-reads the key file); then while four watchers (`watch`) are
//! told every change, three reading and one that never reads, which is
//! dropped without holding up the loop.
//!
//! It runs in a network namespace of its own (the test thread unshares
//! one), on `lo` with 10.77.0.1/16, so that every sender has an address of
//! its own: loopback addresses are never node addresses.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use omdiscd::auth::{Keyring, Mode};
use omdiscd::config::Config;
use omdiscd::daemon::Daemon;
use omdiscd::wire::{self, Auth, Label, MessageType, Notice, Repr, SyncEntry, What};

#[path = "common/basics.rs"]
mod basics;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::watched;

const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn keys() -> Keyring {
    Keyring::parse(format!("4 {SECRET}\n").as_bytes()).unwrap()
}

fn packet(kind: MessageType, addr: Ipv4Addr, seq: u32, label: Label) -> Vec<u8> {
    let mut entries = ArrayVec::new();
    if kind == MessageType::Sync {
        for i in 0..20u8 {
            entries.push(SyncEntry {
                addr: Ipv4Addr::new(10, 77, 9, i + 1),
                incarnation: 5,
                hold_ms: 400,
            });
        }
    }
    let repr = Repr {
        kind,
        flags: 0,
        hops: 0,
        node_id: wire::node_id_of(addr),
        incarnation: 77,
        sequence: seq,
        interval_ms: 100,
        hold_ms: 400,
        label,
        addr,
        members: 0,
        aliases: ArrayVec::new(),
        entries,
        notice: None,
        auth: Some(Auth {
            key_id: 0,
            stamp: 1_000,
            mac: [0; wire::MAC_LEN],
        }),
    };
    let mut buf = vec![0u8; wire::MAX_MESSAGE_LEN];
    let n = repr.emit(&mut buf).unwrap();
    buf.truncate(n);
    keys().sign(&mut buf);
    buf
}

/// A signed NOTICE from `from` saying `what` of `subject` (incarnation 77).
/// A NOTICE from `from` (message `seq`) about `subject`'s message `about`.
fn notice(
    from: Ipv4Addr,
    seq: u32,
    what: What,
    subject: Ipv4Addr,
    about: u32,
    label: Label,
) -> Vec<u8> {
    let mut repr = Repr::parse(&packet(MessageType::Announce, from, seq, label)).unwrap();
    repr.kind = MessageType::Notice;
    repr.notice = Some(Notice {
        what,
        addr: subject,
        incarnation: 77,
        sequence: about,
    });
    let mut buf = vec![0u8; wire::MAX_MESSAGE_LEN];
    let n = repr.emit(&mut buf).unwrap();
    buf.truncate(n);
    keys().sign(&mut buf);
    buf
}

/// Runs `ip` in this thread's network namespace.
fn ip(args: &[&str]) {
    let st = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "ip {args:?}");
}

#[test]
fn the_event_loop_does_not_allocate() {
    // A network namespace for this thread alone (and the `ip` it runs).
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (run as root)");
    ip(&["link", "set", "lo", "up"]);
    // On lo the whole /16 is local: every node below can bind its address.
    ip(&["addr", "add", "10.77.0.1/16", "dev", "lo"]);
    let dir = std::env::temp_dir().join(format!("omd-noalloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // An openMosix 2.4 kernel stand-in: publishing writes mospe and runs setpe
    // (posix_spawn, reaped on SIGCHLD), which must not allocate either.
    std::fs::create_dir_all(dir.join("proc/hpc/admin")).unwrap();
    std::fs::write(dir.join("proc/hpc/admin/config"), b"").unwrap();
    std::fs::write(dir.join("proc/hpc/admin/mospe"), b"0\n").unwrap();
    let setpe = dir.join("setpe");
    let calls = dir.join("setpe.calls");
    std::fs::write(
        &setpe,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&setpe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The --on-change program records each run and writes to stderr (logged).
    let hook = dir.join("hook");
    let hook_runs = dir.join("hook.runs");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$OMDISCD_NODES $OMDISCD_JOINED\" >> '{}'\necho hook says hello >&2\n",
            hook_runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The log goes to a file of the test's, read at the end.
    let log_path = dir.join("log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    omdiscd::log::init(omdiscd::log::Sink::Fd(std::os::fd::AsRawFd::as_raw_fd(
        &log_file,
    )));

    let key_file = dir.join("keys");
    std::fs::write(&key_file, format!("4 {SECRET}\n")).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let port = basics::PORT;
    let cfg = Config {
        key_file: Some(key_file),
        auth: Mode::Enforce,
        daemonize: false,
        interfaces: vec!["lo".to_string()],
        port,
        interval_ms: 100,
        hold_ms: Some(400),
        map_file: dir.join("openmosix.map"),
        proc_root: dir.join("proc"),
        setpe: setpe.clone(),
        on_change: Some(hook),
        ..Config::default()
    };
    let mut daemon = Daemon::new(&cfg).expect("daemon on lo");
    daemon.start().unwrap();

    // Everything the sender needs is made before counting starts.
    let label = Label([0; 16]);
    let foreign = Label(*b"elsewhere\0\0\0\0\0\0\0");
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), port);
    let nodes: Vec<Ipv4Addr> = (1..=200u16)
        .map(|i| Ipv4Addr::new(10, 77, (i >> 8) as u8 + 1, i as u8))
        .collect();
    // Every node sends from its own address (a direct message must).
    let bind = |a: Ipv4Addr| UdpSocket::bind(SocketAddrV4::new(a, 0)).unwrap();
    let sockets: Vec<UdpSocket> = nodes.iter().map(|&a| bind(a)).collect();
    let sync_from = Ipv4Addr::new(10, 77, 9, 9);
    let stranger = bind(sync_from);
    let newcomer_addr = Ipv4Addr::new(10, 77, 200, 1);
    let newcomer_socket = bind(newcomer_addr);
    // (sending socket, datagram)
    let mut rounds: Vec<Vec<(&UdpSocket, Vec<u8>)>> = Vec::new();
    // 25 rounds: every node has earned a probe (20 messages) when it falls
    // silent.
    for seq in 1..=25u32 {
        let mut round: Vec<(&UdpSocket, Vec<u8>)> = nodes
            .iter()
            .zip(&sockets)
            .map(|(&a, s)| {
                let mut p = packet(MessageType::Announce, a, seq * 10, label);
                // They all ask for the map: answered by multicast SYNCs.
                p[6] |= wire::flags::JOIN;
                keys().sign(&mut p);
                (s, p)
            })
            .collect();
        let s0 = &sockets[0];
        round.push((s0, packet(MessageType::Announce, nodes[0], seq, foreign)));
        // A SYNC from a stranger, a replay, a LEAVE.
        round.push((&stranger, packet(MessageType::Sync, sync_from, seq, label)));
        round.push((s0, packet(MessageType::Announce, nodes[0], seq * 10, label)));
        let i = seq as usize;
        let leave = packet(MessageType::Leave, nodes[i], seq * 10 + 1, label);
        round.push((&sockets[i], leave));
        // Forged: a wrong MAC, unsigned, an unknown key, a spoofed source.
        let mut forged = packet(MessageType::Announce, nodes[7], seq * 10 + 1, label);
        forged[18] ^= 1; // the sequence number: still a valid message
        round.push((&sockets[7], forged));
        let mut unsigned = packet(MessageType::Announce, nodes[8], seq * 10 + 1, label);
        let at = unsigned.len() - 24;
        unsigned[at..].fill(0);
        round.push((&sockets[8], unsigned));
        let mut unknown = packet(MessageType::Announce, nodes[9], seq * 10 + 1, label);
        let at = unknown.len() - 24;
        unknown[at..at + 4].copy_from_slice(&99u32.to_be_bytes());
        round.push((&sockets[9], unknown));
        let spoofed = packet(MessageType::Announce, nodes[10], seq * 10 + 1, label);
        round.push((&sockets[11], spoofed));
        // A member that missed node 41's last message asks to check it
        // (answered ALIVE), and a death notice that came by unicast
        // (ignored).
        let ask = notice(
            nodes[40],
            seq * 10 + 1,
            What::Ask,
            nodes[41],
            seq * 10 - 1,
            label,
        );
        round.push((&sockets[40], ask));
        let dead = notice(
            nodes[40],
            seq * 10 + 2,
            What::Dead,
            nodes[50 + i],
            seq * 10 + 2,
            label,
        );
        round.push((&sockets[40], dead));
        round.push((s0, b"garbage that is not ours".to_vec()));
        round.push((s0, vec![b'O', b'M', b'D', b'S', 1, 1, 0, 0, 0, 3]));
        let mut too_long = packet(MessageType::Announce, nodes[9], seq, label);
        too_long.extend_from_slice(&[0; 600]);
        round.push((s0, too_long));
        rounds.push(round);
    }
    // Warm up: first announcements, first publish, lazy one-time set-ups.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(400) {
        daemon.step(Some(Duration::from_millis(20))).unwrap();
    }

    let setpe_runs =
        |path: &std::path::Path| std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
    let runs_before = setpe_runs(&calls);
    let hook_runs_before = setpe_runs(&hook_runs);
    // Control socket clients, from another thread (not counted), ask for
    // everything while the loop is watched.
    let control = dir.join("openmosix.map.sock");
    let control_path = control.clone();
    let clients = std::thread::spawn(move || {
        let control = control_path;
        let mut answers = Vec::new();
        for _ in 0..3 {
            for request in [
                "showmap",
                "map",
                "json",
                "hosts",
                "stats",
                "stats json",
                "stats prometheus",
                "bogus",
            ] {
                let mut s = std::os::unix::net::UnixStream::connect(&control).unwrap();
                std::io::Write::write_all(&mut s, format!("{request}\n").as_bytes()).unwrap();
                let mut answer = String::new();
                std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
                answers.push(answer);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        answers
    });
    counting_alloc::reset();
    let mut peak = 0;
    for round in &rounds {
        for (socket, p) in round {
            socket.send_to(p, to).unwrap();
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(60) {
            watched(|| daemon.step(Some(Duration::from_millis(10)))).unwrap();
        }
        peak = peak.max(daemon.core().map().len());
    }
    // Signals: SIGHUP re-reads interfaces over netlink, SIGUSR1 logs counters.
    // raise() targets this thread, which blocked them for the signalfd.
    // SAFETY: raising a blocked signal on our own thread.
    unsafe {
        libc::raise(libc::SIGHUP);
        libc::raise(libc::SIGUSR1);
    }
    // Silence: every node expires after its 400 ms hold and is unpublished.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(900) {
        watched(|| daemon.step(Some(Duration::from_millis(20)))).unwrap();
    }
    let allocations = counting_alloc::count();
    let len_after_silence = daemon.core().map().len();
    let answers = clients.join().unwrap();
    assert!(
        answers.iter().any(|a| a.matches("\"id\":").count() > 100),
        "a json map of over 100 nodes was served"
    );
    assert!(
        answers.iter().all(|a| !a.is_empty()),
        "every request answered"
    );

    // Error paths: the map file cannot be written (a directory stands where
    // its temporary file goes) and setpe cannot be started (gone). Each is
    // logged with its OS error, which std would format into a `String`.
    std::fs::create_dir(dir.join(".openmosix.map.tmp")).unwrap();
    std::fs::remove_file(&setpe).unwrap();
    let newcomer = packet(MessageType::Announce, newcomer_addr, 1, label);
    counting_alloc::reset();
    newcomer_socket.send_to(&newcomer, to).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        watched(|| daemon.step(Some(Duration::from_millis(20)))).unwrap();
    }
    let error_allocations = counting_alloc::count();
    let log_text = std::fs::read_to_string(&log_path).unwrap();

    let c = daemon.core().counters();
    assert!(
        setpe_runs(&calls) > runs_before,
        "setpe ran during the watched window"
    );
    assert!(
        setpe_runs(&hook_runs) > hook_runs_before,
        "the --on-change program ran during the watched window"
    );
    assert!(
        log_text.contains("on-change program: hook says hello"),
        "{log_text}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("proc/hpc/admin/mospe")).unwrap(),
        "1\n"
    );
    assert!(
        peak >= 200,
        "the daemon learned {peak} nodes, expected all 200"
    );
    assert_eq!(len_after_silence, 1, "every peer expired");
    assert!(c.foreign_cluster >= 5, "{c:?}");
    assert!(c.dropped.iter().sum::<u64>() >= 15, "{c:?}");
    assert!(c.publishes >= 3, "{c:?}");
    assert!(c.sent >= 10, "{c:?}");
    assert!(
        c.answers >= 1 && c.syncs >= 2,
        "the asks were answered: {c:?}"
    );
    assert!(
        c.auth_failed >= 5 && c.unsigned >= 5 && c.unknown_key >= 5,
        "every forgery refused: {c:?}"
    );
    assert!(
        c.spoofed >= 5 && c.not_member >= 5 && c.replayed >= 4,
        "{c:?}"
    );
    // The 200 silent nodes announce without WATCHER (as nodes of the first
    // release): this node watches them all, and probes those whose hold
    // ran out (all earned a probe), 50 a second at most.
    assert!(c.probes >= 10, "silent nodes were probed: {c:?}");
    assert!(c.asks_answered >= 20, "the asks were answered: {c:?}");
    assert_eq!(allocations, 0, "heap allocations in the steady state");
    assert!(
        log_text.contains("Is a directory (os error 21)"),
        "the failed map-file write was logged: {log_text}"
    );
    assert!(
        log_text.contains("starting setpe: No such file or directory (os error 2)"),
        "the failed setpe start was logged: {log_text}"
    );
    assert_eq!(error_allocations, 0, "heap allocations on the error paths");
    let published = std::fs::read_to_string(dir.join("openmosix.map")).unwrap();
    assert!(published.contains("# nodes: 1\n"), "{published}");

    // The newcomer expires first, so that the watchers see only what follows.
    let t = Instant::now();
    while daemon.core().map().len() > 1 && t.elapsed() < Duration::from_secs(5) {
        daemon.step(Some(Duration::from_millis(10))).unwrap();
    }
    // Four watchers, as many as may watch: three read every line, one never
    // reads. The three are drained by this thread after every step (outside
    // the counted closure), so that they keep up however loaded the machine
    // is: a reader in a thread of its own can be starved of the CPU long
    // enough to be dropped, which is right for the daemon but not what this
    // test is about.
    let watcher = |request: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(&control).unwrap();
        std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
        s
    };
    let mut readers: Vec<(std::os::unix::net::UnixStream, Vec<u8>)> =
        ["watch\n", "watch text\n", "watch json\n"]
            .into_iter()
            .map(|r| {
                let s = watcher(r);
                s.set_nonblocking(true).unwrap();
                (s, Vec::new())
            })
            .collect();
    // Reads what each reader has; true while none has ended.
    let drain = |readers: &mut Vec<(std::os::unix::net::UnixStream, Vec<u8>)>| {
        let mut buf = [0u8; 65536];
        let mut open = true;
        for (s, text) in readers.iter_mut() {
            loop {
                match std::io::Read::read(s, &mut buf) {
                    Ok(0) => {
                        open = false;
                        break;
                    }
                    Ok(n) => text.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("reading a watcher: {e}"),
                }
            }
        }
        open
    };
    let silent = watcher("watch json\n");
    // Rounds of 200 joins and 200 expiries, until the silent watcher is
    // dropped (its socket and its backlog full).
    let dropped = |d: &Daemon| {
        let stats = d.stats(0);
        stats
            .iter()
            .find(|s| s.name == "watchers_dropped")
            .unwrap()
            .value
    };
    let mut announces = Vec::new();
    for round in 0..20u32 {
        let seq = 1_000 + round * 10;
        announces.push(
            nodes
                .iter()
                .map(|&a| packet(MessageType::Announce, a, seq, label))
                .collect::<Vec<_>>(),
        );
    }
    counting_alloc::reset();
    let mut slowest = Duration::ZERO;
    for round in &announces {
        for (socket, p) in sockets.iter().zip(round) {
            socket.send_to(p, to).unwrap();
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1_000) {
            let step = Instant::now();
            watched(|| daemon.step(Some(Duration::from_millis(10)))).unwrap();
            slowest = slowest.max(step.elapsed());
            drain(&mut readers);
        }
        if dropped(&daemon) > 0 {
            break;
        }
    }
    // Then every node expires.
    let t = Instant::now();
    while daemon.core().map().len() > 1 && t.elapsed() < Duration::from_secs(5) {
        watched(|| daemon.step(Some(Duration::from_millis(10)))).unwrap();
        drain(&mut readers);
    }
    let watch_allocations = counting_alloc::count();
    assert_eq!(dropped(&daemon), 1, "the silent watcher was dropped");
    assert_eq!(watch_allocations, 0, "heap allocations while watched");
    // The loop never waited for a watcher: the silent one was dropped, and
    // the readers below got every line. How long a step took is printed,
    // not asserted (a loaded machine can preempt any step).
    eprintln!("MEASURED slowest loop step with four watchers: {slowest:?}");
    // The daemon goes: the readers end, with every change, in order.
    drop(daemon);
    drop(silent);
    let t = Instant::now();
    while drain(&mut readers) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the watchers did not end"
        );
        std::thread::yield_now();
    }
    let texts: Vec<String> = readers
        .into_iter()
        .map(|(_, text)| String::from_utf8(text).unwrap())
        .collect();
    for text in &texts {
        let joined = text.matches("joined").count();
        let left = text.matches("expired").count();
        assert!(joined >= 400, "{joined} joins");
        assert_eq!(joined, left, "every node that joined expired");
        assert!(!text.contains("dropped"), "a reader was dropped");
    }
    assert_eq!(texts[0], texts[1], "two text watchers saw the same");
    std::fs::remove_dir_all(&dir).unwrap();
}
