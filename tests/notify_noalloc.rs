//! sd_notify without the heap: every message of [`omdiscd::notify`] is
//! formatted on the stack and sent with one `sendto`, also when sending
//! fails (nobody listening any more).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use omdiscd::notify::Notifier;

#[path = "common/basics.rs"]
mod basics;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::watched;

#[test]
fn notifying_does_not_allocate() {
    let dir = basics::temp_dir("notify");
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = Notifier::from_values(
        Some(path.as_os_str()),
        Some("200000".as_ref()),
        None,
        std::process::id(),
    )
    .unwrap();

    counting_alloc::reset();
    let sent = watched(|| {
        [
            n.ready(4096),
            n.status(17),
            n.reloading(u64::MAX),
            n.watchdog(),
            n.stopping(),
        ]
    });
    assert_eq!(counting_alloc::count(), 0, "heap allocations while sending");
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    let mut buf = [0u8; 512];
    for want in [
        &b"READY=1\nSTATUS=announcing, 4096 nodes in the map"[..],
        b"STATUS=announcing, 17 nodes in the map",
        b"RELOADING=1\nMONOTONIC_USEC=18446744073709551615",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ] {
        let got = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], want);
    }

    // Nobody listening: an error (ECONNREFUSED or ENOENT), still no heap.
    drop(sock);
    std::fs::remove_dir_all(&dir).unwrap();
    counting_alloc::reset();
    let failed = watched(|| n.watchdog().map_err(|e| e.raw_os_error()));
    assert_eq!(
        counting_alloc::count(),
        0,
        "heap allocations on the error path"
    );
    assert!(failed.is_err());
}

/// An unsigned ANNOUNCE of the node at `addr`.
fn announce(addr: std::net::Ipv4Addr, seq: u32) -> Vec<u8> {
    use omdiscd::wire::{self, Label, MessageType, Repr};
    let repr = Repr {
        kind: MessageType::Announce,
        flags: 0,
        hops: 0,
        node_id: wire::node_id_of(addr),
        incarnation: 77,
        sequence: seq,
        interval_ms: 100,
        hold_ms: 400,
        label: Label([0; 16]),
        addr,
        members: 0,
        aliases: Default::default(),
        entries: Default::default(),
        notice: None,
        auth: None,
    };
    let mut buf = vec![0u8; wire::MAX_MESSAGE_LEN];
    let n = repr.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// The daemon's real loop with `NOTIFY_SOCKET` and `WATCHDOG_USEC` set:
/// READY=1, the pings, the status line when peers join (once a second at
/// most), RELOADING=1 and READY=1 on SIGHUP, STOPPING=1 on SIGTERM, and no
/// heap allocation in between. In a network namespace of the test thread's
/// own, on `lo` with 10.78.0.1/16, so that peers have addresses of their own.
#[test]
fn the_loop_notifies_without_allocating() {
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    use std::time::Instant;

    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (run as root)");
    let ip = |args: &[&str]| {
        let st = std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    ip(&["link", "set", "lo", "up"]);
    ip(&["addr", "add", "10.78.0.1/16", "dev", "lo"]);
    let dir = std::env::temp_dir().join(format!("omd-notify-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    let log_file = std::fs::File::create(dir.join("log")).unwrap();
    omdiscd::log::init(omdiscd::log::Sink::Fd(std::os::fd::AsRawFd::as_raw_fd(
        &log_file,
    )));
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // A reader of its own, as a service manager reads: a new network
    // namespace queues only 10 datagrams (net.unix.max_dgram_qlen).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
                    if got.last().is_some_and(|m| m == "STOPPING=1") {
                        break;
                    }
                }
            }
            got
        })
    };
    // The only test of this binary that reads the environment.
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "40000");
    let port = basics::PORT;
    let cfg = omdiscd::config::Config {
        daemonize: false,
        interfaces: vec!["lo".to_string()],
        port,
        interval_ms: 100,
        hold_ms: Some(400),
        map_file: dir.join("openmosix.map"),
        proc_root: dir.join("proc"),
        ..Default::default()
    };
    let mut daemon = omdiscd::daemon::Daemon::new(&cfg).expect("daemon on lo");
    daemon.start().unwrap();

    let to = SocketAddrV4::new(Ipv4Addr::new(10, 78, 0, 1), port);
    let peers: Vec<(UdpSocket, Vec<Vec<u8>>)> = (2..=4u8)
        .map(|i| {
            let a = Ipv4Addr::new(10, 78, 0, i);
            let s = UdpSocket::bind(SocketAddrV4::new(a, 0)).unwrap();
            (s, (1..=40).map(|seq| announce(a, seq)).collect())
        })
        .collect();
    let step = |daemon: &mut omdiscd::daemon::Daemon, ms: u64| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(ms) {
            watched(|| daemon.step(Some(Duration::from_millis(10)))).unwrap();
        }
    };
    // Warm up (READY=1 goes out once the node announces).
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(200) {
        step(&mut daemon, 10);
    }
    counting_alloc::reset();
    // Peers announce every 50 ms for 1.5 s; SIGHUP half-way.
    for round in 0..30 {
        for (s, packets) in &peers {
            s.send_to(&packets[round], to).unwrap();
        }
        if round == 15 {
            // SAFETY: raising a signal this thread blocked for the signalfd.
            unsafe { libc::raise(libc::SIGHUP) };
        }
        step(&mut daemon, 50);
    }
    // SAFETY: as above.
    unsafe { libc::raise(libc::SIGTERM) };
    let t = Instant::now();
    while !daemon.core().finished() && t.elapsed() < Duration::from_secs(2) {
        step(&mut daemon, 10);
    }
    let allocations = counting_alloc::count();
    assert!(daemon.core().finished());

    // The reader ends at STOPPING=1; told to stop if that never comes.
    let t = Instant::now();
    while !reader.is_finished() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let got = reader.join().unwrap();
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    let rest: Vec<&str> = got
        .iter()
        .filter(|m| *m != "WATCHDOG=1")
        .map(|m| {
            m.split_once("MONOTONIC_USEC=")
                .map_or(m.as_str(), |(a, _)| a)
        })
        .collect();
    // READY=1 first (once the node announces: after its start-up delay, so
    // with 1 to 4 nodes), the status line when the count changes (at most
    // once a second, so perhaps not before the reload), then the reload,
    // READY=1 again with all 4 nodes, and STOPPING=1 last.
    assert!(
        rest[0].starts_with("READY=1\nSTATUS=announcing, "),
        "{got:?}"
    );
    let reload = rest
        .iter()
        .position(|m| *m == "RELOADING=1\n")
        .expect("RELOADING=1");
    assert!(
        rest[..reload]
            .iter()
            .all(|m| m.starts_with("READY=1\n") || m.starts_with("STATUS=")),
        "{got:?}"
    );
    assert_eq!(
        rest[reload + 1..],
        [
            "READY=1\nSTATUS=announcing, 4 nodes in the map",
            "STOPPING=1"
        ],
        "{got:?}"
    );
    // Every 20 ms for about 1.7 s (a loaded machine may be late).
    assert!(pings >= 20, "{pings} pings: {got:?}");
    assert_eq!(allocations, 0, "heap allocations in the loop");
    std::fs::remove_dir_all(&dir).unwrap();
}
