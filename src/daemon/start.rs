//! Start-up: [`Daemon::new`] checks the paths, takes the locks, resolves
//! the interfaces, opens every descriptor and allocates everything the loop
//! will use; [`Daemon::start`] finishes after daemonizing.
#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::Path;

use arrayvec::ArrayVec;

use crate::auth::Keyring;
use crate::config::Config;
use crate::control::{self, Chunk, Server};
use crate::netlink::Netlink;
use crate::node::{Core, Settings};
use crate::notify::Notifier;
use crate::procfs::{self, AtomicFile, Backend, Kernel};
use crate::rate::Bucket;
use crate::rng::Rng;
use crate::sys::{
    getrandom_u64, monotonic_ms, AbstractClaim, Epoll, LockError, PidLock, SignalFd, TimerFd,
};
use crate::udp::{McastSocket, RecvBatch};
use crate::wire::Label;
use crate::{info, warn};

use super::children::Hook;
use super::error::StartError;
use super::links::{links_of, resolve};
use super::{
    realtime_s, Daemon, IfName, Metrics, Shell, CHANGE_LOG_BURST, TOKEN_CLAIM, TOKEN_CLIENT,
    TOKEN_CONTROL, TOKEN_NETLINK, TOKEN_SIGNAL, TOKEN_SOCKET, TOKEN_TIMER, VERSION,
};

/// Receive buffer asked of the kernel: the default ~212 KB holds only ~256
/// small datagrams, and a cold boot of thousands of nodes announcing within
/// the same second overflows it. 4 MiB holds ~8,000 of our datagrams.
const RCVBUF_BYTES: usize = 4 << 20;

/// Refuses, before anything is created, a map file, metrics file, lock
/// file or control socket path the daemon could not use.
fn check_paths(cfg: &Config) -> Result<(), StartError> {
    let io = |what| move |e| StartError::Io(what, e);
    procfs::check_file_path(&cfg.map_file).map_err(io("preparing the map file"))?;
    if let Some(path) = &cfg.metrics_file {
        procfs::check_file_path(path).map_err(io("preparing --metrics-file"))?;
    }
    let pid_path = cfg.pid_file();
    procfs::check_file_path(&pid_path).map_err(|e| StartError::PidFile(pid_path, e))?;
    let control_path = cfg.control_socket();
    control::check_path(&control_path).map_err(|e| StartError::Control(control_path, e))?;
    Ok(())
}

/// The `--cluster` label for the log: `"lab-A"`, or `(no label)`.
struct ClusterName(Label);

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Label::DEFAULT {
            f.write_str("(no label)")
        } else {
            write!(f, "\"{}\"", self.0)
        }
    }
}

/// Nodes in the map a previous run left at `path` (read as `--dump` reads
/// it), to size the start-up delay of a cold boot; 0 if there is none.
fn previous_map_size(path: &Path) -> u32 {
    let Ok(bytes) = crate::procfs::read_map_file(path) else {
        return 0;
    };
    match crate::mapfile::parse(&bytes) {
        Ok(m) => m
            .ranges
            .iter()
            .map(|r| r.count)
            .fold(0u32, u32::saturating_add),
        Err(_) => 0,
    }
}

/// Takes the lock file (`--pid-file`): one daemon per map file. Every
/// path is checked first, so a refused start leaves no file behind.
pub(crate) fn take_lock(cfg: &Config) -> Result<PidLock, StartError> {
    check_paths(cfg)?;
    let pid_path = cfg.pid_file();
    PidLock::take(&pid_path).map_err(|e| match e {
        LockError::Held(pid) => StartError::AlreadyRunning(pid_path.clone(), pid),
        LockError::NotRegular => {
            StartError::PidFile(pid_path.clone(), io::Error::from_raw_os_error(libc::EEXIST))
        }
        LockError::Io(e) => StartError::PidFile(pid_path.clone(), e),
    })
}

impl Daemon {
    /// Finds our interfaces and address, opens every descriptor, allocates
    /// everything the loop will use and creates the core (which schedules
    /// the first announcement and publish).
    pub fn new(cfg: &Config) -> Result<Daemon, StartError> {
        // The key file first: a bad one stops start-up before any socket.
        let keys = match &cfg.key_file {
            Some(path) => Keyring::load(path).map_err(|e| StartError::KeyFile(path.clone(), e))?,
            None => Keyring::default(),
        };
        // One daemon per map file: the lock before anything else is opened
        // (and every path checked before that).
        let lock = take_lock(cfg)?;
        let io = |what| move |e| StartError::Io(what, e);
        let mut nl = Netlink::open().map_err(io("opening netlink"))?;
        let mut wanted = ArrayVec::new();
        for name in &cfg.interfaces {
            let mut s = IfName::new();
            let _ = s.push_str(name);
            wanted.push(s);
        }
        let explicit = !wanted.is_empty();
        let ifaces = resolve(&mut nl, &wanted)?;
        let primary = ifaces[0]
            .addr
            .expect("resolve returns addressed interfaces");

        // One daemon per group, port and address on a host (per network
        // namespace): a name in the abstract socket namespace, which the
        // kernel frees when the daemon dies.
        let group = SocketAddrV4::new(cfg.group, cfg.port);
        let mut claim_name = heapless::String::<64>::new();
        let _ = write!(claim_name, "omdiscd/{group}/{primary}");
        let claim = AbstractClaim::take(claim_name.as_bytes()).map_err(|e| {
            if e.raw_os_error() == Some(libc::EADDRINUSE) {
                let pid = AbstractClaim::holder(claim_name.as_bytes());
                StartError::SameNode {
                    addr: primary,
                    group,
                    pid,
                }
            } else {
                StartError::Io("claiming the node's address", e)
            }
        })?;
        let sock =
            McastSocket::open(cfg.port, RCVBUF_BYTES).map_err(io("opening the UDP socket"))?;
        sock.set_multicast_ttl(cfg.multicast_ttl.unwrap_or(1))
            .map_err(io("setting the multicast TTL"))?;
        sock.set_default_interface(ifaces[0].index)
            .map_err(io("setting the multicast interface"))?;
        let monitor = Netlink::open_monitor().map_err(io("opening the netlink monitor"))?;
        let epoll = Epoll::new().map_err(io("creating epoll"))?;
        let timer = TimerFd::new().map_err(io("creating the timerfd"))?;

        let map_file = cfg.map_file.clone();
        let writer = AtomicFile::new(&map_file).map_err(io("preparing the map file"))?;
        let control_path = cfg.control_socket();
        let control = Server::bind(&control_path, TOKEN_CLIENT)
            .map_err(|e| StartError::Control(control_path.clone(), e))?;
        for (fd, token) in [
            (sock.as_raw_fd(), TOKEN_SOCKET),
            (timer.as_raw_fd(), TOKEN_TIMER),
            (monitor.as_raw_fd(), TOKEN_NETLINK),
            (control.listener_fd(), TOKEN_CONTROL),
            (claim.as_raw_fd(), TOKEN_CLAIM),
        ] {
            epoll
                .add(fd, token, libc::EPOLLIN as u32)
                .map_err(io("epoll"))?;
        }
        let metrics = match &cfg.metrics_file {
            Some(path) => Some(Metrics {
                file: AtomicFile::new(path).map_err(io("preparing --metrics-file"))?,
                path: path.clone(),
                chunk: Chunk::new(),
                due_ms: 0,
            }),
            None => None,
        };
        let hook = match &cfg.on_change {
            Some(path) => Some(Hook::new(path, &map_file).map_err(io("preparing --on-change"))?),
            None => None,
        };
        let backend = Backend::detect(&cfg.proc_root);
        let kernel = Kernel::new(backend, &cfg.proc_root, &cfg.setpe, &map_file)
            .map_err(io("preparing the kernel interface"))?;
        let proc_check_ms = (!kernel.proc_mounted()).then_some(0);

        let settings = Settings {
            interval_ms: cfg.interval_ms,
            hold_ms: cfg.hold_ms(),
            label: Label(cfg.label),
            routed: cfg.multicast_ttl.is_some(),
            budget: cfg.budget,
            expected_nodes: previous_map_size(&map_file),
            auth: cfg.auth,
            clock_s: realtime_s(),
        };
        let rng = Rng::from_seed(getrandom_u64());
        let mut core = Core::new(settings, primary, &links_of(&ifaces), rng, monotonic_ms());
        core.set_keys(keys);
        if let Some(path) = &cfg.static_nodes {
            super::static_nodes::pin_nodes(path, &mut core)?;
        }
        let mut daemon = Daemon {
            core,
            io: Shell {
                sock,
                group,
                ifaces,
                writer,
                kernel,
                map_file,
                change_logs: Bucket::full(CHANGE_LOG_BURST),
                hook,
                control,
            },
            key_file: cfg.key_file.clone(),
            counters_at_ms: 0,
            lock,
            claim,
            started_ms: monotonic_ms(),
            metrics,
            proc_check_ms,
            routed: settings.routed,
            explicit,
            wanted,
            epoll,
            timer,
            signals: None,
            batch: Box::new(RecvBatch::new()),
            nl,
            monitor,
            armed_ms: 0,
            resolve_pending: false,
            notify: Notifier::from_env(),
            ready_at_ms: None,
            announced: false,
            watchdog_at_ms: 0,
            status_nodes: 0,
            status_at_ms: 0,
        };
        daemon.join_groups();
        Ok(daemon)
    }

    /// Takes over the signals and logs the start-up lines. Called once the
    /// process is in its final form (after daemonizing).
    pub fn start(&mut self) -> io::Result<()> {
        let signals = SignalFd::new(&super::signals::HANDLED)?;
        self.epoll
            .add(signals.as_raw_fd(), TOKEN_SIGNAL, libc::EPOLLIN as u32)?;
        self.signals = Some(signals);
        let own = self.core.own_id();
        let s = self.core.settings();
        info!(
            "omdiscd {VERSION} starting: address {}, node id #{own} (0x{own:04x}), group {}, cluster {}, interval {} ms, hold {} ms",
            self.core.primary(),
            self.io.group,
            ClusterName(s.label),
            s.interval_ms,
            s.hold_ms
        );
        for l in self.core.sending_links() {
            if let Some(i) = self.io.ifaces.iter().find(|i| i.index == l.index) {
                info!(
                    "announcing on {} (index {}, address {})",
                    i.name,
                    i.index,
                    Addr(i.addr)
                );
            }
        }
        if !crate::wire::is_valid_node_addr(self.core.primary()) {
            warn!(
                "{} is a loopback address, which no other node accepts: this node stays alone and announces nothing (a single-machine try); on a cluster node use the interface of the cluster's network",
                self.core.primary()
            );
        }
        let mode = self.core.settings().auth;
        match self.key_file.as_ref().zip(self.core.signing_key()) {
            Some((path, id)) => info!(
                "authentication {}: signing with key id {id} of {}",
                mode.name(),
                path.display()
            ),
            None => info!("authentication off: messages are not signed and not checked"),
        }
        info!(
            "receive buffer {} bytes; publishing to {} and {}",
            self.io.sock.granted_rcvbuf(),
            self.io.map_file.display(),
            self.io.kernel.backend().describe()
        );
        Ok(())
    }

    /// Writes this process's PID into the lock file again (after
    /// daemonizing, the PID is the grandchild's).
    pub fn rewrite_pid(&self) -> io::Result<()> {
        self.lock.write_pid()
    }
}

/// Prints an optional address, `-` when none.
struct Addr(Option<Ipv4Addr>);
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::test_map;

    #[test]
    fn the_previous_map_file_gives_the_expected_cluster_size() {
        let dir = std::env::temp_dir().join(format!("omd-prev-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("openmosix.map");
        assert_eq!(previous_map_size(&path), 0, "no file: unknown");
        let peers = (2..=40).map(|i| Ipv4Addr::new(10, 0, 0, i));
        let map = test_map(Ipv4Addr::new(10, 0, 0, 1), peers);
        let mut text = String::new();
        crate::mapfile::render(&map, "test", None, &mut text).unwrap();
        std::fs::write(&path, text).unwrap();
        assert_eq!(previous_map_size(&path), 40);
        std::fs::write(&path, "not a map\n").unwrap();
        assert_eq!(previous_map_size(&path), 0, "unreadable: unknown");
        assert_eq!(previous_map_size(&dir), 0, "not a regular file: not read");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
