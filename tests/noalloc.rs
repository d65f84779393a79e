//! Proves the design rule "no heap allocation after start-up": a counting
//! global allocator watches the daemon's thread while its real epoll loop
//! receives announcements (asking for the map, so it answers with SYNCs),
//! leaves, SYNCs and garbage over a real socket,
//! expires nodes, publishes the map file, logs, and handles signals.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use omdiscd::daemon::Config;
use omdiscd::daemon::Daemon;
use omdiscd::wire::{self, Label, MessageType, Repr, SyncEntry};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::watched;

fn packet(kind: MessageType, addr: Ipv4Addr, seq: u32, label: Label) -> Vec<u8> {
    let mut entries = ArrayVec::new();
    if kind == MessageType::Sync {
        for i in 0..20u8 {
            entries.push(SyncEntry {
                addr: Ipv4Addr::new(127, 9, 1, i + 1),
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
        auth: None,
    };
    let mut buf = vec![0u8; wire::MAX_MESSAGE_LEN];
    let n = repr.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn the_event_loop_does_not_allocate() {
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
    // The log goes to a file of the test's, read at the end.
    let log_path = dir.join("log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    omdiscd::log::init(omdiscd::log::Sink::Fd(std::os::fd::AsRawFd::as_raw_fd(
        &log_file,
    )));

    let port = 20000 + (std::process::id() % 20000) as u16;
    let cfg = Config {
        daemonize: false,
        interfaces: vec!["lo".to_string()],
        port,
        interval_ms: 100,
        hold_ms: Some(400),
        map_file: dir.join("openmosix.map"),
        proc_root: dir.join("proc"),
        setpe: setpe.clone(),
        ..Config::default()
    };
    let mut daemon = Daemon::new(&cfg).expect("daemon on lo");
    daemon.start().unwrap();

    // Everything the sender needs is made before counting starts.
    let label = Label([0; 16]);
    let foreign = Label(*b"elsewhere\0\0\0\0\0\0\0");
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nodes: Vec<Ipv4Addr> = (1..=200u16)
        .map(|i| Ipv4Addr::new(127, 3, (i >> 8) as u8 + 1, i as u8))
        .collect();
    let mut rounds: Vec<Vec<Vec<u8>>> = Vec::new();
    for seq in 1..=5u32 {
        let mut round: Vec<Vec<u8>> = nodes
            .iter()
            .map(|&a| {
                let mut p = packet(MessageType::Announce, a, seq, label);
                // They all ask for the map: answered by multicast SYNCs.
                p[6] |= wire::flags::JOIN;
                p
            })
            .collect();
        round.push(packet(MessageType::Announce, nodes[0], seq, foreign));
        round.push(packet(
            MessageType::Sync,
            Ipv4Addr::new(127, 3, 9, 9),
            seq,
            label,
        ));
        round.push(packet(MessageType::Leave, nodes[seq as usize], seq, label));
        round.push(b"garbage that is not ours".to_vec());
        round.push(vec![b'O', b'M', b'D', b'S', 1, 1, 0, 0, 0, 3]);
        let mut too_long = packet(MessageType::Announce, nodes[9], seq, label);
        too_long.extend_from_slice(&[0; 600]);
        round.push(too_long);
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
    counting_alloc::reset();
    let mut peak = 0;
    for round in &rounds {
        for p in round {
            sender.send_to(p, to).unwrap();
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

    // Error paths: the map file cannot be written (a directory stands where
    // its temporary file goes) and setpe cannot be started (gone). Each is
    // logged with its OS error, which std would format into a `String`.
    std::fs::create_dir(dir.join(".openmosix.map.tmp")).unwrap();
    std::fs::remove_file(&setpe).unwrap();
    let newcomer = packet(
        MessageType::Announce,
        Ipv4Addr::new(127, 3, 200, 1),
        1,
        label,
    );
    counting_alloc::reset();
    sender.send_to(&newcomer, to).unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
}
