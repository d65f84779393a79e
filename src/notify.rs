//! systemd's readiness protocol (sd_notify), hand-rolled.
//!
//! A service started with `Type=notify` finds the service manager's socket in
//! `NOTIFY_SOCKET` (a path, or an abstract name written `@name`) and sends it
//! datagrams of `KEY=VALUE` lines: `READY=1` once it serves, `STATUS=` free
//! text for `systemctl status`, `RELOADING=1` with `MONOTONIC_USEC=` while it
//! re-reads its configuration (then `READY=1` again), `STOPPING=1` when it
//! shuts down, and `WATCHDOG=1` more often than every `WATCHDOG_USEC`
//! microseconds when `WatchdogSec=` is set (and `WATCHDOG_PID`, when present,
//! is ours).
//!
//! [`Notifier::from_env`] reads the variables once at start-up and opens the
//! socket; every message after that is formatted on the stack and sent with
//! one `sendto`, so the event loop allocates nothing. Errors are returned for
//! the caller to log (rate-limited) and otherwise ignored: the daemon runs
//! the same without a service manager listening. Sends never block: one
//! that would (the manager's queue is full) fails with `WouldBlock`, and the
//! caller may try again later (the daemon does, for READY=1). The programs
//! the daemon runs do not get the variables (see `crate::child`).

#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::sys::{UnixAddr, UnixDgram};

/// The variables systemd passes to the daemon alone.
pub const ENV_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The longest message: `READY=1` and a status line.
const MAX_MESSAGE: usize = 256;

type Message = heapless::String<MAX_MESSAGE>;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDgram,
    to: UnixAddr,
    /// `WATCHDOG_USEC`, when the watchdog is ours.
    watchdog_usec: Option<u64>,
}

impl Notifier {
    /// The notifier systemd asked for in the environment, or `None` when
    /// `NOTIFY_SOCKET` is unset or unusable (see [`Notifier::from_values`]).
    /// Called once at start-up.
    pub fn from_env() -> Option<Notifier> {
        let [socket, usec, pid] = ENV_VARS.map(std::env::var_os);
        Self::from_values(
            socket.as_deref(),
            usec.as_deref(),
            pid.as_deref(),
            crate::sys::getpid(),
        )
    }

    /// [`Notifier::from_env`] on given values: `NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`, `WATCHDOG_PID` and this process's PID.
    ///
    /// `None` without a socket, with one that is neither an absolute path
    /// nor `@name` (systemd's `vsock:` addresses are not supported), or
    /// when the socket cannot be made. The watchdog is on when
    /// `WATCHDOG_USEC` is a positive number and `WATCHDOG_PID` is absent or
    /// `own_pid`.
    pub fn from_values(
        socket: Option<&OsStr>,
        usec: Option<&OsStr>,
        pid: Option<&OsStr>,
        own_pid: u32,
    ) -> Option<Notifier> {
        let to = notify_addr(socket?.as_bytes())?;
        let sock = UnixDgram::new().ok()?;
        let number = |v: Option<&OsStr>| -> Option<u64> {
            crate::num::u64_of(std::str::from_utf8(v?.as_bytes()).ok()?)
        };
        let ours = match pid {
            None => true,
            Some(p) => number(Some(p)) == Some(u64::from(own_pid)),
        };
        let watchdog_usec = number(usec).filter(|&u| u > 0 && ours);
        Some(Notifier {
            sock,
            to,
            watchdog_usec,
        })
    }

    /// Where the messages go.
    pub fn addr(&self) -> &UnixAddr {
        &self.to
    }

    /// `READY=1` with the status line: start-up (or a reload) is done.
    pub fn ready(&self, nodes: usize) -> io::Result<()> {
        self.send(|m| {
            m.write_str("READY=1\n")?;
            status_line(m, nodes)
        })
    }

    /// `READY=1` with the status line of `--static-map`: N nodes loaded
    /// with setpe (`loaded`), or published to the map file only; no
    /// discovery.
    pub(crate) fn ready_static(&self, nodes: u32, loaded: bool) -> io::Result<()> {
        self.send(|m| {
            let s = if nodes == 1 { "" } else { "s" };
            let how = if loaded {
                "loaded with setpe"
            } else {
                "published to the map file only"
            };
            write!(
                m,
                "READY=1\nSTATUS=static map {how}, {nodes} node{s}; discovery not started"
            )
        })
    }

    /// `STATUS=announcing, N nodes in the map`.
    pub fn status(&self, nodes: usize) -> io::Result<()> {
        self.send(|m| status_line(m, nodes))
    }

    /// `RELOADING=1` and `MONOTONIC_USEC=` (CLOCK_MONOTONIC, microseconds:
    /// see [`crate::sys::monotonic_us`]), as `Type=notify-reload` wants;
    /// [`Notifier::ready`] ends the reload.
    pub fn reloading(&self, monotonic_usec: u64) -> io::Result<()> {
        self.send(|m| write!(m, "RELOADING=1\nMONOTONIC_USEC={monotonic_usec}"))
    }

    /// `STOPPING=1`: leaving the cluster.
    pub fn stopping(&self) -> io::Result<()> {
        self.send(|m| m.write_str("STOPPING=1"))
    }

    /// `WATCHDOG=1`: the loop is alive.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send(|m| m.write_str("WATCHDOG=1"))
    }

    /// How often to send [`Notifier::watchdog`]: half of `WATCHDOG_USEC`
    /// (as sd_watchdog_enabled(3) advises), at least 1 ms; `None` without a
    /// watchdog.
    pub fn watchdog_every_ms(&self) -> Option<u64> {
        self.watchdog_usec.map(|u| (u / 2000).max(1))
    }

    fn send(&self, fill: impl FnOnce(&mut Message) -> std::fmt::Result) -> io::Result<()> {
        let mut m = Message::new();
        // Every message fits; a status that did not would be a bug here.
        fill(&mut m).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.sock.send_to(m.as_bytes(), &self.to)?;
        Ok(())
    }
}

/// `STATUS=announcing, N nodes in the map` (`1 node`).
fn status_line(m: &mut Message, nodes: usize) -> std::fmt::Result {
    let s = if nodes == 1 { "" } else { "s" };
    write!(m, "STATUS=announcing, {nodes} node{s} in the map")
}

/// `NOTIFY_SOCKET`'s value as an address: `/path` or `@abstract`.
fn notify_addr(v: &[u8]) -> Option<UnixAddr> {
    match v.split_first()? {
        (b'/', _) => UnixAddr::path(v),
        (b'@', name) if !name.is_empty() => UnixAddr::abstract_name(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::path::PathBuf;
    use std::time::Duration;

    /// A receiving socket bound to a fresh path in the temporary directory;
    /// the directory goes when the guard drops.
    struct Listener {
        sock: UnixDatagram,
        dir: PathBuf,
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn listener(tag: &str) -> (Listener, PathBuf) {
        let dir = std::env::temp_dir().join(format!("omd-notify-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (Listener { sock, dir }, path)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn every_message_arrives_as_one_datagram_with_the_exact_bytes() {
        let (l, path) = listener("path");
        let n = Notifier::from_values(Some(path.as_os_str()), None, None, 1).unwrap();
        assert_eq!(n.watchdog_every_ms(), None);
        n.ready(1).unwrap();
        assert_eq!(
            recv(&l.sock),
            "READY=1\nSTATUS=announcing, 1 node in the map"
        );
        n.ready(7).unwrap();
        assert_eq!(
            recv(&l.sock),
            "READY=1\nSTATUS=announcing, 7 nodes in the map"
        );
        n.status(4096).unwrap();
        assert_eq!(recv(&l.sock), "STATUS=announcing, 4096 nodes in the map");
        n.reloading(123_456_789_012).unwrap();
        assert_eq!(recv(&l.sock), "RELOADING=1\nMONOTONIC_USEC=123456789012");
        n.reloading(u64::MAX).unwrap();
        assert_eq!(
            recv(&l.sock),
            "RELOADING=1\nMONOTONIC_USEC=18446744073709551615"
        );
        n.watchdog().unwrap();
        assert_eq!(recv(&l.sock), "WATCHDOG=1");
        n.stopping().unwrap();
        assert_eq!(recv(&l.sock), "STOPPING=1");
        n.status(usize::MAX).unwrap();
        assert_eq!(
            recv(&l.sock),
            format!("STATUS=announcing, {} nodes in the map", usize::MAX)
        );
    }

    #[test]
    fn an_abstract_socket_is_written_with_an_at_sign() {
        let name = format!("omd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let var = format!("@{name}");
        let n = Notifier::from_values(Some(os(&var)), Some(os("30000000")), None, 1).unwrap();
        assert_eq!(n.addr().as_bytes(), format!("\0{name}").as_bytes());
        n.watchdog().unwrap();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        assert_eq!(n.watchdog_every_ms(), Some(15_000));
    }

    #[test]
    fn no_or_unusable_socket_means_no_notifier() {
        assert!(Notifier::from_values(None, Some(os("1000000")), None, 1).is_none());
        for bad in ["", "@", "relative/path", "vsock:2:1234"] {
            assert!(
                Notifier::from_values(Some(os(bad)), None, None, 1).is_none(),
                "{bad:?}"
            );
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(Notifier::from_values(Some(os(&long)), None, None, 1).is_none());
    }

    #[test]
    fn the_watchdog_is_ours_only_for_our_pid() {
        let sock = Some(os("/run/systemd/notify"));
        let usec = Some(os("200000"));
        let every = |pid: Option<&str>| {
            Notifier::from_values(sock, usec, pid.map(os), 4242)
                .unwrap()
                .watchdog_every_ms()
        };
        assert_eq!(every(None), Some(100));
        assert_eq!(every(Some("4242")), Some(100));
        assert_eq!(every(Some("4243")), None, "another process's watchdog");
        assert_eq!(every(Some("")), None);
        assert_eq!(every(Some("abc")), None);
        let with_usec = |u: &str| {
            Notifier::from_values(sock, Some(os(u)), None, 1)
                .unwrap()
                .watchdog_every_ms()
        };
        assert_eq!(with_usec("0"), None, "0 means no watchdog");
        assert_eq!(with_usec("-5"), None);
        assert_eq!(with_usec("1"), Some(1), "never 0 ms");
        assert_eq!(with_usec("30000000"), Some(15_000));
    }

    #[test]
    fn a_full_queue_is_an_error_not_a_wait() {
        let (l, path) = listener("full");
        let n = Notifier::from_values(Some(path.as_os_str()), None, None, 1).unwrap();
        let mut sent = 0;
        let err = loop {
            match n.watchdog() {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 1_000_000, "never full");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "after {sent}");
        assert_eq!(recv(&l.sock), "WATCHDOG=1");
    }

    #[test]
    fn a_missing_listener_is_an_error_not_a_panic() {
        let (l, path) = listener("gone");
        let n = Notifier::from_values(Some(path.as_os_str()), None, None, 1).unwrap();
        drop(l);
        assert!(n.watchdog().is_err());
    }
}
