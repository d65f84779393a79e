//! Proves the logging hot path does not touch the heap: a counting wrapper
//! around the system allocator counts allocations made by this test's thread
//! while logging through the global logger to an `Sink::Fd` pipe.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use omdiscd::log::{self, Level, Limit, Sink};

#[path = "common/basics.rs"]
mod basics;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_during;

#[test]
fn logging_to_fd_and_syslog_does_not_allocate() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these fds; nothing else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    log::init(Sink::Fd(w.as_raw_fd()));
    let big = "x".repeat(5000);
    let addr = std::net::Ipv4Addr::new(10, 0, 0, 7);
    // Warm-up: anything lazily initialised happens outside the measured window.
    omdiscd::info!("warm-up");

    let n = allocations_during(|| {
        for i in 0..20 {
            omdiscd::info!("joined {} as node {}", addr, i);
            omdiscd::log_limited!(Limit::BadPacket, 60_000, Level::Warn, "bad packet {}", i);
        }
        omdiscd::error!("{}", big.as_str());
        omdiscd::warn!("w {:?}", Some(1.5));
        omdiscd::notice!("n");
        omdiscd::debug!("suppressed {}", 1);
        log::set_debug(true);
        omdiscd::debug!("shown {}", 2);
    });
    assert_eq!(n, 0, "logging allocated {n} times");

    log::set_sink(Sink::Stdout);
    drop(w);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is writable for its length; `r` is an open fd.
        let got = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..got as usize]);
    }
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "warm-up");
    assert_eq!(lines[1], "joined 10.0.0.7 as node 0");
    assert_eq!(lines[2], "bad packet 0");
    assert_eq!(lines[3], "joined 10.0.0.7 as node 1");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("bad packet")).count(),
        1
    );
    assert_eq!(lines[lines.len() - 4].len(), log::LINE_MAX - 1);
    assert_eq!(&lines[lines.len() - 3..], ["w Some(1.5)", "n", "shown 2"]);

    // The syslog sink too, against a datagram socket standing in for /dev/log.
    let dir = basics::temp_dir("syslog");
    let path = dir.join("log.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    log::set_syslog_path(path.to_str().unwrap()).unwrap();
    log::init(Sink::Syslog);
    omdiscd::info!("warm-up");
    let n = allocations_during(|| {
        // The kernel queues only 10 datagrams (net.unix.max_dgram_qlen) and we
        // read them afterwards: warm-up + 8 + 1 fits.
        for i in 0..8 {
            omdiscd::info!("syslog line {}", i);
        }
        omdiscd::error!("{}", big.as_str());
    });
    assert_eq!(n, 0, "syslog logging allocated {n} times");
    log::set_sink(Sink::Stdout);
    let mut dgram = [0u8; 2048];
    let mut got = 0;
    rx.set_nonblocking(true).unwrap();
    while let Ok(len) = rx.recv(&mut dgram) {
        assert!(len <= log::SYSLOG_MAX);
        got += 1;
    }
    assert_eq!(got, 10);
    let _ = std::fs::remove_dir_all(&dir);
}
