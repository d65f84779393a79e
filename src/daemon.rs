//! The daemon: the I/O shell around the protocol core ([`crate::node`]).
//!
//! One thread, one epoll loop over the UDP socket, a timerfd armed at the
//! core's [`Core::poll_at`], a signalfd and the netlink monitor. Readiness
//! becomes calls on the core; the core's [`Actions`] become syscalls
//! (sending, writing the map file, running setpe) and log lines.
//!
//! Everything is allocated in [`Daemon::new`]; the loop itself allocates
//! nothing (proved by `tests/noalloc.rs`).

use std::fmt::{self, Write as _};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrayvec::ArrayVec;

use crate::auth::{KeyFileError, Keyring};
use crate::child::{Ended, Environment, Program, CHILD_TIMEOUT_MS};
// MAX_INTERFACES moves into the core (issue 15); until then from `cli`.
use crate::cli::MAX_INTERFACES;
use crate::config::Config;
use crate::control::{self, Answer, Change, Chunk, Request, Server, Snapshot, Stats, StatsFormat};
use crate::counters::Sample;
use crate::log::{Level, Limit};
use crate::map::{ClusterMap, Collision, NodeId};
use crate::netlink::{self, Netlink};
use crate::node::{
    Actions, Core, Datagram, Dest, Event, Input, Link, Overload, Publish, Published, Received,
    Settings, OVERLOAD_LATE_MS,
};
use crate::notify::Notifier;
use crate::procfs::{self, AtomicFile, Backend, Kernel, KernelError};
use crate::rate::Bucket;
use crate::rng::Rng;
use crate::sys::{
    getrandom_u64, monotonic_ms, monotonic_us, AbstractClaim, Epoll, IoErr, LockError, PidLock,
    SignalFd, Starter, TimerFd,
};
use crate::udp::{McastSocket, RecvBatch};
use crate::wire::Label;
use crate::{info, mapfile, notice, warn};

/// The version shown by `--version` and logged at start.
pub const VERSION: &str = env!("OMDISCD_VERSION");

/// Receive buffer asked of the kernel: the default ~212 KB holds only ~256
/// small datagrams, and a cold boot of thousands of nodes announcing within
/// the same second overflows it. 4 MiB holds ~8,000 of our datagrams.
pub const RCVBUF_BYTES: usize = 4 << 20;

/// How often drop/error lines may be logged, per kind.
const LOG_LIMIT_MS: u64 = 10_000;
/// The change log lists the map this many times at once, then once a
/// minute; changes in between (a flapping node) get one rate-limited
/// summary line.
const CHANGE_LOG_BURST: u64 = 10;
/// A daemon reports itself running (to its starter, to systemd) at the
/// latest this long after start, even while a cold boot still delays its
/// first announcement.
const READY_AT_THE_LATEST_MS: u64 = 10_000;
/// SIGUSR1 logs the counters at most this often.
const COUNTERS_GAP_MS: u64 = 1_000;
/// The service manager's status line (the node count) changes at most
/// this often.
const STATUS_GAP_MS: u64 = 1_000;
/// A READY=1 the service manager did not take is sent again this much later.
const READY_RETRY_MS: u64 = 100;

/// Receive batches read per wake-up (of `udp::BATCH` datagrams each), so a
/// flood cannot starve the timers and signals; when all are full the core is
/// told it is behind.
const READS_PER_WAKEUP: usize = crate::node::READ_AT_ONCE / crate::udp::BATCH;

/// Interface names, as the kernel limits them (IFNAMSIZ with its NUL).
type IfName = heapless::String<16>;

const TOKEN_SOCKET: u64 = 1;
const TOKEN_TIMER: u64 = 2;
const TOKEN_SIGNAL: u64 = 3;
const TOKEN_NETLINK: u64 = 4;
const TOKEN_CONTROL: u64 = 5;
const TOKEN_CLAIM: u64 = 6;
/// Control socket clients: this and the next `control::MAX_CLIENTS - 1`.
const TOKEN_CLIENT: u64 = 16;

/// Why the daemon could not start. `main` prints it and exits with status 1.
#[derive(Debug)]
pub enum StartError {
    /// No `-i` and no default route: the original's two messages.
    NoDefaultRoute,
    /// An interface named with `-i` is unusable.
    Interface { name: IfName, reason: &'static str },
    /// A system call failed.
    Io(&'static str, io::Error),
    /// Reading interfaces, routes or addresses over netlink failed.
    Netlink(netlink::NlError),
    /// The key file is unusable.
    KeyFile(PathBuf, KeyFileError),
    /// Another omdiscd holds the lock file (its PID, if it says).
    AlreadyRunning(PathBuf, Option<u32>),
    /// Another omdiscd on this host announces this address on this group
    /// and port (its PID, if it says).
    SameNode {
        addr: Ipv4Addr,
        group: SocketAddrV4,
        pid: Option<u32>,
    },
    /// The lock file cannot be made or locked.
    PidFile(PathBuf, io::Error),
    /// The control socket cannot be made.
    Control(PathBuf, io::Error),
    /// `--static-map`: the map file found cannot be used, or setpe did
    /// not load it.
    StaticMap(PathBuf, String),
}

impl StartError {
    /// The exit status: [`EXIT_ALREADY_RUNNING`] when another daemon runs,
    /// else 1.
    pub fn exit_status(&self) -> u8 {
        match self {
            StartError::AlreadyRunning(..) | StartError::SameNode { .. } => EXIT_ALREADY_RUNNING,
            _ => 1,
        }
    }
}

/// Exit status when another omdiscd holds the lock file.
pub const EXIT_ALREADY_RUNNING: u8 = 3;

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoDefaultRoute => write!(
                f,
                "Unable to determine address of default interface.  This may happen because there is no default route configured.  Without a default route, an interface must be: Network is unreachable\nUnable to initialize network.  Exiting."
            ),
            StartError::Interface { name, reason } => {
                write!(f, "interface {name}: {reason}")
            }
            StartError::Io(what, e) => write!(f, "{what}: {}", IoErr(e)),
            StartError::Netlink(e) => write!(f, "reading interfaces over netlink: {e}"),
            StartError::KeyFile(path, e) => write!(f, "key file {}: {e}", path.display()),
            StartError::AlreadyRunning(path, pid) => {
                write!(f, "another omdiscd is running")?;
                if let Some(pid) = pid {
                    write!(f, " (PID {pid})")?;
                }
                write!(
                    f,
                    ": it holds {}; stop it first, or give this one another --map-file or --pid-file",
                    path.display()
                )
            }
            StartError::PidFile(path, e) => {
                write!(f, "lock file {}: {}", path.display(), IoErr(e))?;
                if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS)) {
                    write!(
                        f,
                        "; run omdiscd as root, or give --map-file a path this user can write (the lock file and the control socket go beside it)"
                    )?;
                }
                Ok(())
            }
            StartError::SameNode { addr, group, pid } => {
                write!(f, "another omdiscd is running")?;
                if let Some(pid) = pid {
                    write!(f, " (PID {pid})")?;
                }
                write!(
                    f,
                    " on this host as {addr} in group {group}: two would make every node see one address twice; stop it first, or give this one another --group or --port"
                )
            }
            StartError::Control(path, e) => {
                write!(f, "control socket {}: {}", path.display(), IoErr(e))
            }
            StartError::StaticMap(path, why) => {
                write!(f, "static map {}: {why}", path.display())
            }
        }
    }
}

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

/// One interface we announce on.
#[derive(Clone, Debug)]
struct Iface {
    name: IfName,
    index: u32,
    addr: Option<Ipv4Addr>,
    up: bool,
}

impl Iface {
    fn link(&self) -> Link {
        Link {
            index: self.index,
            addr: self.addr,
            up: self.up,
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

/// Takes the lock file (`--pid-file`): one daemon per map file.
pub(crate) fn take_lock(cfg: &Config) -> Result<PidLock, StartError> {
    let pid_path = cfg.pid_file();
    PidLock::take(&pid_path).map_err(|e| match e {
        LockError::Held(pid) => StartError::AlreadyRunning(pid_path.clone(), pid),
        LockError::NotRegular => {
            StartError::PidFile(pid_path.clone(), io::Error::from_raw_os_error(libc::EEXIST))
        }
        LockError::Io(e) => StartError::PidFile(pid_path.clone(), e),
    })
}

/// This host's IPv4 addresses on the `-i` interfaces (else the default
/// route's), for `--static-map` to find this node in its map; none when
/// they cannot be read (a static map needs no network).
pub(crate) fn local_addrs(cfg: &Config) -> ArrayVec<Ipv4Addr, 8> {
    let mut out = ArrayVec::new();
    let Ok(mut nl) = Netlink::open() else {
        return out;
    };
    let mut wanted = ArrayVec::<IfName, MAX_INTERFACES>::new();
    for name in &cfg.interfaces {
        let mut s = IfName::new();
        let _ = s.push_str(name);
        wanted.push(s);
    }
    let Ok(ifaces) = resolve(&mut nl, &wanted) else {
        return out;
    };
    let mut addrs = ArrayVec::new();
    for i in &ifaces {
        if nl.ipv4_addrs(i.index, &mut addrs).is_ok() {
            for &a in &addrs {
                let _ = out.try_push(a);
            }
        }
    }
    out
}

/// Addresses for the log: `a, b`, or `none`.
pub(crate) struct AddrList<'a>(pub(crate) &'a [Ipv4Addr]);

impl fmt::Display for AddrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none found");
        }
        for (i, a) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{a}")?;
        }
        Ok(())
    }
}

/// The core's view of the interfaces.
fn links_of(ifaces: &[Iface]) -> ArrayVec<Link, MAX_INTERFACES> {
    ifaces.iter().map(Iface::link).collect()
}

/// The I/O half: what the core's [`Actions`] turn into.
struct Shell {
    sock: McastSocket,
    group: SocketAddrV4,
    ifaces: ArrayVec<Iface, MAX_INTERFACES>,
    writer: AtomicFile,
    kernel: Kernel,
    map_file: PathBuf,
    /// Full change logs left (a flapping map is summarised).
    change_logs: Bucket,
    /// `--on-change`.
    hook: Option<Hook>,
    /// The control socket (`--dump`, `--stats`, `--watch`): in the shell,
    /// which gives its watchers the changes.
    control: Server,
}

/// Most bytes of `OMDISCD_JOINED` or `OMDISCD_LEFT` (a cold boot of
/// thousands of nodes): beyond, the list is cut and `OMDISCD_TRUNCATED=1`.
const HOOK_LIST_MAX: usize = 64 * 1024;

/// The `--on-change` program, run after each change of the map with what
/// changed since its previous run, one run at a time.
struct Hook {
    program: Program,
    env: Environment,
    map_file: PathBuf,
    /// Each node id's address at the previous run (0: absent).
    seen: Box<[u32]>,
    /// The map changed while a run was in progress: run again after it.
    pending: bool,
}

impl Hook {
    fn new(path: &Path, map_file: &Path) -> io::Result<Hook> {
        Ok(Hook {
            program: Program::new("on-change program", path, &[])?,
            env: Environment::new(2 * HOOK_LIST_MAX + 1024),
            map_file: map_file.to_path_buf(),
            seen: vec![0; crate::map::CAPACITY].into_boxed_slice(),
            pending: false,
        })
    }

    /// The map changed: run now, or after the run in progress.
    fn changed(&mut self, map: &ClusterMap, now_ms: u64) {
        self.pending = true;
        // SIGCHLD is the usual way to learn that a run ended, but a process
        // signal can go to another thread (tests) or coalesce: look anyway.
        self.poll(map, now_ms);
        if !self.program.busy() && std::mem::take(&mut self.pending) {
            self.start(map, now_ms);
        }
    }

    /// Collects a run that ended or ran out of time, and starts the next
    /// one if the map changed meanwhile.
    fn poll(&mut self, map: &ClusterMap, now_ms: u64) {
        let Some(ended) = self.program.poll(now_ms) else {
            return;
        };
        let why = match ended {
            Ended::Ok => None,
            Ended::Failed(status) => Some(Why::Status(status)),
            Ended::TimedOut => Some(Why::TimedOut),
        };
        if let Some(why) = why {
            crate::log::limited(
                Limit::ChildFailed,
                LOG_LIMIT_MS,
                Level::Warn,
                format_args!(
                    "--on-change program {}: {why}",
                    self.program.path().display()
                ),
            );
        }
        if std::mem::take(&mut self.pending) {
            self.start(map, now_ms);
        }
    }

    fn start(&mut self, map: &ClusterMap, now_ms: u64) {
        let seen = &self.seen;
        let env = &mut self.env;
        env.clear();
        let own = map.own_node();
        env.set("OMDISCD_NODE_ID", |w| {
            let _ = write!(w, "{}", own.id);
        });
        env.set("OMDISCD_NODES", |w| {
            let _ = write!(w, "{}", map.len());
        });
        env.set("OMDISCD_MAP_FILE", |w| {
            let _ = write!(w, "{}", self.map_file.display());
        });
        let mut cut = false;
        env.set("OMDISCD_JOINED", |w| {
            let joined = map
                .iter()
                .filter(|n| seen[n.id as usize] != u32::from(n.addr));
            cut |= list(w, joined.map(|n| (n.id, n.addr)));
        });
        env.set("OMDISCD_LEFT", |w| {
            let left = seen.iter().enumerate().filter_map(|(id, &addr)| {
                let id = id as NodeId;
                let gone = addr != 0 && map.get(id).is_none_or(|n| u32::from(n.addr) != addr);
                gone.then(|| (id, Ipv4Addr::from(addr)))
            });
            cut |= list(w, left);
        });
        if cut {
            env.set("OMDISCD_TRUNCATED", |w| {
                let _ = w.write_str("1");
            });
        }
        match self.program.start(now_ms, self.env.envp()) {
            Ok(()) => {
                self.seen.fill(0);
                for n in map.iter() {
                    self.seen[n.id as usize] = u32::from(n.addr);
                }
            }
            Err(e) => crate::log::limited(
                Limit::ChildFailed,
                LOG_LIMIT_MS,
                Level::Warn,
                format_args!(
                    "--on-change program {}: cannot start it: {}; the next change tries again",
                    self.program.path().display(),
                    IoErr(&e)
                ),
            ),
        }
    }
}

/// Writes `id=address` pairs separated by spaces, up to [`HOOK_LIST_MAX`]
/// bytes; true if the list was cut.
fn list(w: &mut dyn fmt::Write, nodes: impl Iterator<Item = (NodeId, Ipv4Addr)>) -> bool {
    let mut len = 0;
    for (i, (id, addr)) in nodes.enumerate() {
        // At most "65535=255.255.255.255 ": 22 bytes.
        if len + 22 > HOOK_LIST_MAX {
            return true;
        }
        let mut item = heapless::String::<24>::new();
        let sep = if i == 0 { "" } else { " " };
        let _ = write!(item, "{sep}{id}={addr}");
        len += item.len();
        let _ = w.write_str(&item);
    }
    false
}

/// Why a child program failed, for the log.
enum Why {
    Status(i32),
    TimedOut,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Status(s) => write!(f, "failed with status {s}"),
            Why::TimedOut => write!(
                f,
                "ran longer than {} s and was killed",
                CHILD_TIMEOUT_MS / 1000
            ),
        }
    }
}

impl Shell {
    fn kernel_failed(&mut self, e: KernelError) {
        crate::log::limited(
            Limit::KernelError,
            LOG_LIMIT_MS,
            Level::Error,
            format_args!("handing the map to the kernel: {e}; retrying"),
        );
    }

    /// Collects a setpe that ended or ran out of time; true if one failed.
    fn poll_setpe(&mut self, now_ms: u64) -> bool {
        match self.kernel.poll(now_ms) {
            Some(Err(e)) => {
                self.kernel_failed(e);
                true
            }
            _ => false,
        }
    }

    /// When a child program must be killed.
    fn child_deadline(&self) -> Option<u64> {
        let hook = self.hook.as_ref().and_then(|h| h.program.deadline());
        match (self.kernel.deadline(), hook) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Actions for Shell {
    fn send(&mut self, d: &Datagram<'_>) -> bool {
        let dst = match d.to {
            Dest::Group => self.group,
            Dest::Node(ip) => SocketAddrV4::new(ip, self.group.port()),
        };
        match send_from(&self.sock, d.bytes, dst, d.ifindex, d.src) {
            Ok(()) => true,
            Err(e) => {
                crate::log::limited(
                    Limit::SendError,
                    LOG_LIMIT_MS,
                    Level::Warn,
                    format_args!("sending to {dst} failed: {}", IoErr(&e)),
                );
                false
            }
        }
    }

    fn publish(&mut self, p: &Publish<'_>) -> Published {
        let mut r = Published::default();
        // The change lines first: a reader who sees the new map file (or
        // a watcher) finds them logged already.
        if p.changes && self.control.watched() {
            let (now, time_s) = (monotonic_ms(), u64::from(realtime_s()));
            let own = p.map.own_id();
            for n in p.map.joined().filter(|n| n.id != own) {
                self.control.broadcast(&Change::Joined(n), now, time_s);
            }
            for n in p.map.left() {
                self.control.broadcast(&Change::Left(n), now, time_s);
            }
        }
        if p.changes {
            let now = monotonic_ms();
            if self.change_logs.take_per(now, 1, CHANGE_LOG_BURST, 60_000) {
                mapfile::change_log(p.map, |line| notice!("{line}"));
            } else {
                let own = p.map.own_id();
                crate::log::limited(
                    Limit::Changes,
                    LOG_LIMIT_MS,
                    Level::Notice,
                    format_args!(
                        "openMosix configuration changed: This is openMosix #{own} (of {} configured); the map changes often, so not every change is listed",
                        p.map.len()
                    ),
                );
            }
        }
        if p.file {
            if let Err(e) = self.writer.write(p.map, VERSION) {
                crate::log::limited(
                    Limit::PublishError,
                    LOG_LIMIT_MS,
                    Level::Error,
                    format_args!("writing {}: {}", self.map_file.display(), IoErr(&e)),
                );
                r.file_failed = true;
            }
        }
        if p.kernel {
            // SIGCHLD is the usual way to learn that setpe ended, but a
            // process signal can go to another thread (tests) or coalesce:
            // look anyway. An earlier failure is superseded by this publish.
            let now = monotonic_ms();
            self.poll_setpe(now);
            if let Err(e) = self.kernel.publish(p.map.own_id(), now) {
                self.kernel_failed(e);
                r.kernel_failed = true;
            }
        }
        if p.changes {
            if let Some(hook) = &mut self.hook {
                hook.changed(p.map, monotonic_ms());
            }
        }
        r
    }

    fn event(&mut self, _now_ms: u64, e: Event) {
        let limited = |key, level, args: fmt::Arguments<'_>| {
            crate::log::limited(key, LOG_LIMIT_MS, level, args)
        };
        match e {
            Event::Dropped { src, error } => limited(
                Limit::BadPacket,
                Level::Warn,
                format_args!("dropped a packet from {src}: {error}"),
            ),
            Event::ForeignCluster { addr } => limited(
                Limit::Foreign,
                Level::Info,
                format_args!("ignoring node {addr} of another cluster"),
            ),
            Event::Collision(c) => {
                if self.control.watched() {
                    let time_s = u64::from(realtime_s());
                    self.control
                        .broadcast(&Change::Collision(c), monotonic_ms(), time_s);
                }
                let (limit, level) = collision_log(&c);
                limited(limit, level, format_args!("{}", mapfile::CollisionLine(c)));
            }
            Event::Duplicate(d) if d.own => limited(
                Limit::Collision,
                Level::Error,
                format_args!(
                    "another node announces this node's address {} (an address conflict, or a second omdiscd on this host); the cluster keeps the one that started later",
                    d.addr
                ),
            ),
            Event::Duplicate(d) => limited(
                Limit::Collision,
                Level::Warn,
                format_args!(
                    "two nodes announce {} (an address conflict, or two omdiscd on one host): keeping the one that started later",
                    d.addr
                ),
            ),
            Event::Refused { src, why } => limited(
                Limit::Refused,
                Level::Warn,
                format_args!("refused a message from {src}: {}", why.name()),
            ),
            Event::Unsigned { src } => limited(
                Limit::Unsigned,
                Level::Info,
                format_args!("accepted an unsigned message from {src} (--auth permissive)"),
            ),
            Event::IdFree { id } => limited(
                Limit::Collision,
                Level::Notice,
                format_args!("node id #{id} is free again: rejoining the cluster"),
            ),
            Event::Joined { id, addr } => limited(
                Limit::Joined,
                Level::Debug,
                format_args!("node #{id} ({addr}) joined"),
            ),
            Event::Lonely { intervals } => warn!(
                "no other node heard for {intervals} intervals on {}: if this is not the only node, check that multicast {} reaches this host (a switch with IGMP snooping and no querier drops it; so does a firewall)",
                self.ifaces.first().map_or("?", |i| i.name.as_str()),
                self.group,
            ),
            Event::Overloaded { why, interval_ms } => {
                let every = interval_ms as f64 / 1000.0;
                let then = "holding every node longer and announcing every";
                match why {
                    Overload::Dropped(n) => limited(
                        Limit::Overload,
                        Level::Warn,
                        format_args!("overloaded: the kernel dropped {n} datagrams (receive buffer full); {then} {every} s until it recovers"),
                    ),
                    Overload::Late(ms) => limited(
                        Limit::Overload,
                        Level::Warn,
                        format_args!("overloaded: ran {} s late; {then} {every} s until it recovers", ms as f64 / 1000.0),
                    ),
                    Overload::Behind => limited(
                        Limit::Overload,
                        Level::Warn,
                        format_args!("overloaded: datagrams arrive faster than they are read; {then} {every} s until it recovers"),
                    ),
                }
            }
            Event::AddressChanged { old, new } => notice!(
                "address changed from {old} to {new}: leaving as #{} and joining as #{}",
                crate::wire::node_id_of(old),
                crate::wire::node_id_of(new)
            ),
            Event::NoAddress => {
                warn!("no IPv4 address on any interface: not announcing until one returns")
            }
            Event::InvalidAddress { new, keeping } => warn!(
                "new address {new} gives the invalid openMosix node id 0: keeping {keeping} until that changes"
            ),
        }
    }
}

/// The real-time clock in whole seconds since 1970 (0 if it reads before
/// 1970; saturated after 2106).
fn realtime_s() -> u32 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// The running daemon: the core, the shell, and the descriptors the loop
/// waits on.
pub struct Daemon {
    core: Core,
    io: Shell,
    /// `-m` given: only the first interface sends and receives.
    routed: bool,
    /// Interfaces come from `-i` (else: the default route's).
    explicit: bool,
    wanted: ArrayVec<IfName, MAX_INTERFACES>,

    epoll: Epoll,
    timer: TimerFd,
    /// Made in [`Daemon::start`], after daemonizing: a signalfd registered
    /// with epoll before a fork never reports the child's signals.
    signals: Option<SignalFd>,
    batch: Box<RecvBatch>,
    nl: Netlink,
    monitor: Netlink,
    armed_ms: u64,
    resolve_pending: bool,
    /// `--key-file`, re-read on SIGHUP.
    key_file: Option<PathBuf>,
    /// SIGUSR1 logs the counters again no sooner than this.
    counters_at_ms: u64,
    /// `--pid-file`, locked for the daemon's life.
    lock: PidLock,
    /// This host's one daemon for the group, port and address.
    claim: AbstractClaim,
    /// When the daemon started (monotonic), for the uptime.
    started_ms: u64,
    /// `--metrics-file`.
    metrics: Option<Metrics>,
    /// procfs was not mounted at start (an initramfs): when to look again.
    proc_check_ms: Option<u64>,
    /// The service manager (systemd's `NOTIFY_SOCKET`), if any.
    notify: Option<Notifier>,
    /// When READY=1 is due: once the node announces, when a reload is
    /// done, and again after a send that failed.
    ready_at_ms: Option<u64>,
    /// The node has announced (see [`Daemon::announcing`]).
    announced: bool,
    /// The next WATCHDOG=1 (with `WatchdogSec=`).
    watchdog_at_ms: u64,
    /// The node count the status line last showed, and when it may next change.
    status_nodes: usize,
    status_at_ms: u64,
}

/// How often a daemon started without procfs looks whether it is mounted.
const PROC_CHECK_MS: u64 = 1_000;

/// `--metrics-file`: the statistics in the Prometheus text format, rewritten
/// every [`METRICS_EVERY_MS`].
struct Metrics {
    file: AtomicFile,
    path: PathBuf,
    chunk: Chunk,
    due_ms: u64,
}

/// How often `--metrics-file` is rewritten (node_exporter reads it when it
/// is scraped, typically every 15 s or more).
const METRICS_EVERY_MS: u64 = 10_000;

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
        // Every path checked before anything is created: a refused start
        // leaves no file behind.
        check_paths(cfg)?;
        // One daemon per map file: the lock before anything else is opened.
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
            crate::staticmap::pin_nodes(path, &mut core)?;
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
        let signals = SignalFd::new(&[
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGCHLD,
            libc::SIGUSR1,
        ])?;
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

    /// The node is running: it has sent its first announcement, or has
    /// nothing to announce (a loopback address), or the start-up delay of a
    /// cold boot has gone on for [`READY_AT_THE_LATEST_MS`].
    fn announcing(&self, now_ms: u64) -> bool {
        self.core.counters().sent > 0
            || !crate::wire::is_valid_node_addr(self.core.primary())
            || now_ms >= self.started_ms + READY_AT_THE_LATEST_MS
    }

    /// The protocol core (its map, counters and identity).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Runs until SIGTERM or SIGINT, says goodbye and returns. `starter`
    /// (the waiting parent of a daemon) is told once the node announces.
    pub fn run(&mut self, mut starter: Option<Starter>) -> io::Result<()> {
        while !self.core.finished() {
            self.step(None)?;
            if self.announced {
                if let Some(s) = starter.take() {
                    s.ready();
                }
            }
        }
        // No child outlives the daemon.
        let _ = self.io.kernel.finish(2_000);
        if let Some(hook) = &mut self.io.hook {
            hook.program.finish(1_000);
        }
        self.log_counters();
        Ok(())
    }

    /// One round of the loop: what is due, one epoll wait (at most
    /// `max_wait`, for tests), the events it returned.
    pub fn step(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        // Back from a stall (SIGSTOP, a starved machine): what arrived
        // meanwhile is read before anything expires for want of it.
        let late = self
            .core
            .poll_at()
            .is_some_and(|at| monotonic_ms() >= at + OVERLOAD_LATE_MS);
        if late {
            self.on_readable();
        }
        self.core.poll(monotonic_ms(), &mut self.io);
        if !self.announced && self.announcing(monotonic_ms()) {
            // Running: the starter and the service manager are told.
            self.announced = true;
            self.ready_at_ms = Some(0);
        }
        let Some(deadline) = self.core.poll_at() else {
            return Ok(());
        };
        let metrics_due = self.metrics.as_ref().map(|m| m.due_ms);
        let deadline = [
            self.io.control.next_deadline(),
            self.io.child_deadline(),
            metrics_due,
            self.proc_check_ms,
            self.notify_due(monotonic_ms()),
        ]
        .into_iter()
        .flatten()
        .fold(deadline, u64::min);
        // Whole milliseconds, never 0 (which would disarm the timer).
        let deadline = deadline.max(1);
        if deadline != self.armed_ms {
            self.timer.arm_at_ms(deadline)?;
            self.armed_ms = deadline;
        }
        // What changed since the last wait reaches the watchers first.
        self.io.control.flush(&self.epoll);
        let mut events = [crate::sys::EMPTY_EVENT; 8];
        let n = self.epoll.wait(&mut events, max_wait)?;
        for ev in &events[..n] {
            match crate::sys::event_token(ev) {
                TOKEN_SOCKET => self.on_readable(),
                TOKEN_TIMER => {
                    let _ = self.timer.drain();
                    self.armed_ms = 0;
                }
                TOKEN_SIGNAL => self.on_signals(),
                TOKEN_NETLINK => self.on_netlink(),
                TOKEN_CONTROL => self.io.control.accept(monotonic_ms(), &self.epoll),
                TOKEN_CLAIM => self.claim.drain(),
                token => {
                    if let Some(i) = self.io.control.client_of(token) {
                        let hangup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
                        self.serve(i, { ev.events } & hangup != 0);
                    }
                }
            }
        }
        let now = monotonic_ms();
        self.io.control.expire(now, &self.epoll);
        if self.io.child_deadline().is_some_and(|d| now >= d) {
            self.poll_children(now);
        }
        if self.metrics.as_ref().is_some_and(|m| now >= m.due_ms) {
            self.write_metrics(now);
        }
        if self.proc_check_ms.is_some_and(|at| now >= at) {
            self.proc_check_ms = if self.io.kernel.proc_mounted() {
                self.redetect_kernel(now);
                None
            } else {
                Some(now + PROC_CHECK_MS)
            };
        }
        if self.resolve_pending {
            self.resolve_pending = false;
            self.reresolve();
        }
        Ok(())
    }

    // ---- the service manager (sd_notify) ---------------------------------

    /// Sends what the service manager is due (READY=1, the status line when
    /// the node count changed, WATCHDOG=1); the next instant something will
    /// be due, if any.
    fn notify_due(&mut self, now: u64) -> Option<u64> {
        let n = self.notify.as_ref()?;
        let nodes = self.core.map().len();
        let mut sent = Ok(());
        match self.ready_at_ms {
            Some(at) if now >= at => match n.ready(nodes) {
                Ok(()) => {
                    self.ready_at_ms = None;
                    self.status_nodes = nodes;
                    self.status_at_ms = now + STATUS_GAP_MS;
                }
                // Without READY=1 the start (or reload) would time out.
                Err(e) => {
                    self.ready_at_ms = Some(now + READY_RETRY_MS);
                    sent = Err(e);
                }
            },
            // READY=1 carries the status line.
            Some(_) => {}
            // The status line follows READY=1, never comes before it.
            None if self.announced && nodes != self.status_nodes && now >= self.status_at_ms => {
                self.status_at_ms = now + STATUS_GAP_MS;
                sent = n.status(nodes);
                if sent.is_ok() {
                    self.status_nodes = nodes;
                }
            }
            None => {}
        }
        let status_at = (self.announced && nodes != self.status_nodes).then_some(self.status_at_ms);
        let mut next = self.ready_at_ms.or(status_at);
        if let Some(every) = n.watchdog_every_ms() {
            if now >= self.watchdog_at_ms {
                sent = sent.and(n.watchdog());
                self.watchdog_at_ms = now + every;
            }
            next = Some(next.map_or(self.watchdog_at_ms, |t| t.min(self.watchdog_at_ms)));
        }
        if let Err(e) = sent {
            notify_failed(&e);
        }
        next
    }

    /// Sends one message to the service manager, if there is one.
    fn notify(&self, send: impl FnOnce(&Notifier) -> io::Result<()>) {
        if let Some(n) = &self.notify {
            if let Err(e) = send(n) {
                notify_failed(&e);
            }
        }
    }

    fn on_readable(&mut self) {
        // Bounded so a flood cannot starve the timers and signals.
        for _ in 0..READS_PER_WAKEUP {
            let n = match self.io.sock.recv_batch(&mut self.batch) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    crate::log::limited(
                        Limit::RecvError,
                        LOG_LIMIT_MS,
                        Level::Warn,
                        format_args!("receiving failed: {}", IoErr(&e)),
                    );
                    break;
                }
            };
            let now = monotonic_ms();
            for d in self.batch.iter() {
                let input = if d.truncated {
                    Input::Truncated { src: d.src }
                } else {
                    Input::Datagram(Received {
                        data: d.data,
                        src: d.src,
                        ifindex: d.ifindex,
                        multicast: d.dst.is_multicast(),
                    })
                };
                self.core.handle(now, input, &mut self.io);
            }
            let drops = Input::KernelDrops(self.batch.dropped_total());
            self.core.handle(now, drops, &mut self.io);
            if n < crate::udp::BATCH {
                return;
            }
        }
        // Every read was full: more is waiting than the loop takes at once.
        self.core
            .handle(monotonic_ms(), Input::Behind, &mut self.io);
    }

    // ---- signals --------------------------------------------------------

    fn on_signals(&mut self) {
        loop {
            let Some(signals) = &self.signals else {
                return;
            };
            let info = match signals.read() {
                Ok(Some(info)) => info,
                Ok(None) | Err(_) => break,
            };
            let now = monotonic_ms();
            match info.signo {
                libc::SIGTERM | libc::SIGINT => {
                    notice!("signal {}: leaving the cluster", info.signo);
                    self.notify(Notifier::stopping);
                    self.core.handle(now, Input::Stop, &mut self.io);
                    return;
                }
                libc::SIGHUP => {
                    crate::log::limited(
                        Limit::Signal,
                        LOG_LIMIT_MS,
                        Level::Info,
                        format_args!("SIGHUP: re-reading interfaces, addresses and keys"),
                    );
                    self.notify(|n| n.reloading(monotonic_us()));
                    self.resolve_pending = true;
                    self.reload_keys();
                    self.redetect_kernel(now);
                    self.core.handle(now, Input::Rejoin, &mut self.io);
                    // Ready again once the interfaces are re-read (the end
                    // of this step) and the next step has run the core.
                    self.ready_at_ms = Some(0);
                }
                libc::SIGCHLD => self.poll_children(now),
                libc::SIGUSR1 if now >= self.counters_at_ms => {
                    self.counters_at_ms = now + COUNTERS_GAP_MS;
                    self.log_counters();
                }
                _ => {}
            }
        }
    }

    /// Looks for the kernel's map interface again (procfs mounted late,
    /// SIGHUP); one that appears gets the map at once.
    fn redetect_kernel(&mut self, now_ms: u64) {
        if !self.io.kernel.redetect() {
            return;
        }
        notice!(
            "kernel interface found again: publishing to {} and {}",
            self.io.map_file.display(),
            self.io.kernel.backend().describe()
        );
        self.core
            .handle(now_ms, Input::KernelAppeared, &mut self.io);
    }

    /// Collects child programs that ended, kills those out of time.
    fn poll_children(&mut self, now_ms: u64) {
        if self.io.poll_setpe(now_ms) {
            self.core.handle(now_ms, Input::KernelFailed, &mut self.io);
        }
        if let Some(hook) = &mut self.io.hook {
            hook.poll(self.core.map(), now_ms);
        }
    }

    /// Re-reads `--key-file` (SIGHUP); a file that is now unusable keeps
    /// the keys in use.
    fn reload_keys(&mut self) {
        let Some(path) = &self.key_file else {
            return;
        };
        match Keyring::load(path) {
            Ok(keys) => {
                // Said when the key ids change (each step of a rotation);
                // a storm of SIGHUPs over the same file says nothing more.
                if keys != *self.core.keys() {
                    if let Some(signing) = keys.ids().next() {
                        info!(
                            "keys re-read: signing with key id {signing}, accepting ids {keys:?}"
                        );
                    }
                }
                self.core.set_keys(keys);
            }
            Err(e) => crate::log::limited(
                Limit::Keys,
                LOG_LIMIT_MS,
                Level::Error,
                format_args!("key file {}: {e}; keeping the keys in use", path.display()),
            ),
        }
    }

    /// Answers control socket client `i` (`hangup`: see [`Server::serve`]).
    fn serve(&mut self, i: usize, hangup: bool) {
        let now = monotonic_ms();
        let stats = self.stats(now);
        let snapshot = Snapshot {
            map: self.core.map(),
            now_ms: now,
            time_s: u64::from(realtime_s()),
            pid: std::process::id(),
            version: VERSION,
            stats: &stats,
        };
        self.io.control.serve(i, &snapshot, &self.epoll, hangup);
    }

    /// Rewrites `--metrics-file`.
    fn write_metrics(&mut self, now_ms: u64) {
        let stats = self.stats(now_ms);
        let Some(m) = &mut self.metrics else {
            return;
        };
        m.due_ms = now_ms + METRICS_EVERY_MS;
        let snapshot = Snapshot {
            map: self.core.map(),
            now_ms,
            time_s: u64::from(realtime_s()),
            pid: std::process::id(),
            version: VERSION,
            stats: &stats,
        };
        let chunk = &mut m.chunk;
        let written = m.file.write_with(|w| {
            let mut answer = Answer::new(Request::Stats(StatsFormat::Prometheus));
            while !answer.done() {
                chunk.clear();
                answer.fill(&snapshot, chunk);
                w.write_str(std::str::from_utf8(chunk.bytes()).map_err(|_| fmt::Error)?)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            crate::log::limited(
                Limit::Status,
                LOG_LIMIT_MS,
                Level::Error,
                format_args!("writing {}: {}", m.path.display(), IoErr(&e)),
            );
        }
    }

    /// Every statistic, for `--stats` and `--metrics-file` (named in
    /// [`crate::counters::TABLE`]).
    pub fn stats(&self, now_ms: u64) -> Stats {
        self.with_sample(now_ms, |s| s.stats())
    }

    /// Logs the counters (SIGUSR1, and at exit).
    pub fn log_counters(&self) {
        // The uptime is not logged.
        self.with_sample(self.started_ms, |s| {
            info!("counters: {}", s.first_line());
            info!("counters: {}", s.second_line());
            for (name, reason, value) in s.reasons() {
                info!("{name} {reason}: {value}");
            }
        });
    }

    /// Calls `f` with what the statistics are read from.
    fn with_sample<T>(&self, now_ms: u64, f: impl FnOnce(&Sample<'_>) -> T) -> T {
        let c = self.core.counters();
        let map = self.core.map();
        let hook = self.io.hook.as_ref();
        f(&Sample {
            core: &c,
            map: &map.stats(),
            setpe: self.io.kernel.runs(),
            hook: hook.map(|h| h.program.runs).unwrap_or_default(),
            watchers_dropped: self.io.control.watchers_dropped,
            nodes: map.len() as u64,
            interval_ms: self.core.interval_ms(),
            uptime_s: now_ms.saturating_sub(self.started_ms) / 1000,
        })
    }

    // ---- interfaces, addresses, netlink ----------------------------------

    fn join_groups(&mut self) {
        let group = *self.io.group.ip();
        for (i, iface) in self.io.ifaces.iter().enumerate() {
            if (self.routed && i > 0) || !iface.up {
                continue;
            }
            if let Err(e) = self.io.sock.join(group, iface.index) {
                crate::log::limited(
                    Limit::NetlinkError,
                    LOG_LIMIT_MS,
                    Level::Warn,
                    format_args!("joining {group} on {}: {}", iface.name, IoErr(&e)),
                );
            }
        }
    }

    fn on_netlink(&mut self) {
        let mut relevant = false;
        let ours: ArrayVec<u32, MAX_INTERFACES> = self.io.ifaces.iter().map(|i| i.index).collect();
        let explicit = self.explicit;
        // A named interface that is gone may come back under a new index:
        // then any new link or address may be it.
        let missing = explicit && self.io.ifaces.iter().any(|i| i.index == 0);
        let mut link_changes: ArrayVec<(u32, bool), 16> = ArrayVec::new();
        let r = self.monitor.read_events(|ev| match ev {
            netlink::Event::Link { ifindex, up, .. } => {
                if ours.contains(&ifindex) {
                    let _ = link_changes.try_push((ifindex, up));
                } else if missing {
                    relevant = true;
                }
            }
            netlink::Event::LinkRemoved { ifindex } => {
                if ours.contains(&ifindex) {
                    let _ = link_changes.try_push((ifindex, false));
                    // Gone, not just down: its index is no longer ours.
                    relevant = true;
                }
            }
            netlink::Event::AddrAdded { ifindex, .. }
            | netlink::Event::AddrRemoved { ifindex, .. } => {
                if ours.contains(&ifindex) || missing {
                    relevant = true;
                }
            }
            netlink::Event::DefaultRouteAdded { .. }
            | netlink::Event::DefaultRouteRemoved { .. } => {
                if !explicit {
                    relevant = true;
                }
            }
            netlink::Event::Overrun => relevant = true,
        });
        if let Err(e) = r {
            crate::log::limited(
                Limit::NetlinkError,
                LOG_LIMIT_MS,
                Level::Warn,
                format_args!("reading netlink events: {e}"),
            );
            relevant = true;
        }
        for (ifindex, up) in link_changes {
            self.on_link(ifindex, up);
        }
        if relevant {
            self.resolve_pending = true;
        }
    }

    fn on_link(&mut self, ifindex: u32, up: bool) {
        let Some(pos) = self.io.ifaces.iter().position(|i| i.index == ifindex) else {
            return;
        };
        if self.io.ifaces[pos].up == up {
            return;
        }
        self.io.ifaces[pos].up = up;
        let name = self.io.ifaces[pos].name.clone();
        if up {
            notice!("link {name} is up: re-joining and announcing");
            self.join_groups();
            // An address may have come or gone while the link was down.
            self.resolve_pending = true;
        } else {
            warn!("link {name} is down: not announcing on it");
        }
        let links = links_of(&self.io.ifaces);
        self.core
            .handle(monotonic_ms(), Input::Links(&links), &mut self.io);
    }

    /// Re-reads interfaces and addresses (SIGHUP, netlink changes) and hands
    /// them to the core, which decides what a new address means.
    fn reresolve(&mut self) {
        let fresh = if self.explicit {
            resolve_lenient(&mut self.nl, &self.wanted)
        } else {
            match resolve(&mut self.nl, &self.wanted) {
                Ok(f) => Some(f),
                Err(StartError::NoDefaultRoute) => {
                    crate::log::limited(
                        Limit::Route,
                        LOG_LIMIT_MS,
                        Level::Warn,
                        format_args!(
                            "no default route any more; staying on {}",
                            self.io.ifaces[0].name
                        ),
                    );
                    // Keep the interface but re-read its address.
                    let wanted: ArrayVec<IfName, MAX_INTERFACES> =
                        self.io.ifaces.iter().map(|i| i.name.clone()).collect();
                    resolve_lenient(&mut self.nl, &wanted)
                }
                Err(e) => {
                    crate::log::limited(
                        Limit::Route,
                        LOG_LIMIT_MS,
                        Level::Warn,
                        format_args!("re-reading the default interface: {e}"),
                    );
                    None
                }
            }
        };
        let Some(fresh) = fresh else { return };
        // Named interfaces keep their places in the list.
        let named = self.explicit.then_some(self.io.ifaces.iter().zip(&fresh));
        for (old, new) in named.into_iter().flatten() {
            if old.index == new.index {
                continue;
            }
            if new.index == 0 {
                warn!(
                    "interface {} was removed: not announcing on it until it is back",
                    old.name
                );
            } else {
                notice!(
                    "interface {} is back (index {}): re-joining and announcing",
                    new.name,
                    new.index
                );
            }
        }
        let group = *self.io.group.ip();
        for old in &self.io.ifaces {
            if !fresh.iter().any(|f| f.index == old.index) {
                let _ = self.io.sock.leave(group, old.index);
            }
        }
        self.io.ifaces = fresh;
        if let Some(first) = self.io.ifaces.first() {
            let _ = self.io.sock.set_default_interface(first.index);
        }
        self.join_groups();
        let links = links_of(&self.io.ifaces);
        self.core
            .handle(monotonic_ms(), Input::Links(&links), &mut self.io);
    }
}

/// Finds the interfaces (named, or the default route's) with their
/// addresses. Any problem is an error: used at start-up.
fn resolve(
    nl: &mut Netlink,
    wanted: &ArrayVec<IfName, MAX_INTERFACES>,
) -> Result<ArrayVec<Iface, MAX_INTERFACES>, StartError> {
    let nl_err = StartError::Netlink;
    let mut out = ArrayVec::new();
    if wanted.is_empty() {
        let route = nl.default_route().map_err(nl_err)?;
        let Some(route) = route else {
            return Err(StartError::NoDefaultRoute);
        };
        let link = nl.link(route.ifindex).map_err(nl_err)?;
        let Some(link) = link else {
            return Err(StartError::NoDefaultRoute);
        };
        let addr = nl.primary_ipv4(link.ifindex).map_err(nl_err)?;
        if addr.is_none() || !link.up {
            return Err(StartError::NoDefaultRoute);
        }
        out.push(Iface {
            name: link.name.clone(),
            index: link.ifindex,
            addr,
            up: link.up,
        });
        return Ok(out);
    }
    for name in wanted {
        let fail = |reason| StartError::Interface {
            name: name.clone(),
            reason,
        };
        let link = nl
            .link_by_name(name)
            .map_err(nl_err)?
            .ok_or(fail("no such interface"))?;
        if !link.up {
            return Err(fail("link is down"));
        }
        let addr = nl
            .primary_ipv4(link.ifindex)
            .map_err(nl_err)?
            .ok_or(fail("has no IPv4 address"))?;
        if crate::wire::node_id_of(addr) == 0 && out.is_empty() {
            return Err(fail(
                "its address ends in .0.0, which gives the invalid node id 0",
            ));
        }
        out.push(Iface {
            name: link.name.clone(),
            index: link.ifindex,
            addr: Some(addr),
            up: true,
        });
    }
    Ok(out)
}

/// Like [`resolve`] for named interfaces, but keeps going: a missing, down
/// or address-less interface stays in the list, marked so. Used while running.
fn resolve_lenient(
    nl: &mut Netlink,
    wanted: &ArrayVec<IfName, MAX_INTERFACES>,
) -> Option<ArrayVec<Iface, MAX_INTERFACES>> {
    let mut out = ArrayVec::new();
    for name in wanted {
        let link = match nl.link_by_name(name) {
            Ok(l) => l,
            Err(_) => return None,
        };
        let (index, up, addr) = match link {
            Some(l) => (l.ifindex, l.up, nl.primary_ipv4(l.ifindex).ok().flatten()),
            None => (0, false, None),
        };
        out.push(Iface {
            name: name.clone(),
            index,
            addr,
            up,
        });
    }
    Some(out)
}

/// Sends with `src` pinned as the source address, so peers see (and reply
/// to) the address on that link, also on `lo`.
fn send_from(
    sock: &McastSocket,
    buf: &[u8],
    dst: SocketAddrV4,
    ifindex: u32,
    src: Option<Ipv4Addr>,
) -> io::Result<()> {
    let Some(src) = src else {
        return sock.send(buf, dst, Some(ifindex));
    };
    match sock.send_from(buf, dst, ifindex, src) {
        // The address went away under us (netlink will tell us soon): let
        // the kernel pick a source rather than lose the datagram.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EADDRNOTAVAIL | libc::ENETUNREACH | libc::EINVAL)
            ) =>
        {
            sock.send(buf, dst, Some(ifindex))
        }
        r => r,
    }
}

/// Logs a failed sd_notify send (rate-limited); the daemon goes on.
pub(crate) fn notify_failed(e: &io::Error) {
    crate::log::limited(
        Limit::Notify,
        LOG_LIMIT_MS,
        Level::Warn,
        format_args!("telling the service manager: {}", IoErr(e)),
    );
}

/// The rate-limit slot and level of a node-id collision's log line
/// ([`mapfile::CollisionLine`]). The node that lost its own id says so as
/// an error; a move and a refused claim have slots of their own, so that a
/// refused claim logged just before does not hide the move that follows it
/// (an earlier claim after a later one).
fn collision_log(c: &Collision) -> (Limit, Level) {
    match c {
        c if c.own_lost => (Limit::IdLost, Level::Error),
        c if c.replaced => (Limit::IdMoved, Level::Warn),
        _ => (Limit::Collision, Level::Warn),
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
    fn a_lost_own_id_is_an_error_and_a_move_says_where_the_id_went() {
        let (a, b) = (Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 9, 1, 5));
        let refused = Collision {
            id: 261,
            winner: a,
            loser: b,
            replaced: false,
            own_lost: false,
            first_report: true,
        };
        let line = mapfile::CollisionLine(refused);
        assert_eq!(collision_log(&refused), (Limit::Collision, Level::Warn));
        assert!(line
            .to_string()
            .starts_with("node id collision: #261 (0x0105) is claimed by 10.0.1.5 and 10.9.1.5; 10.0.1.5 keeps it"));
        let moved = Collision {
            winner: b,
            loser: a,
            replaced: true,
            ..refused
        };
        let line = mapfile::CollisionLine(moved);
        assert_eq!(collision_log(&moved), (Limit::IdMoved, Level::Warn));
        assert!(line.to_string().starts_with(
            "node id collision: #261 (0x0105) moves from 10.0.1.5 to 10.9.1.5, which started first"
        ));
        let lost = Collision {
            own_lost: true,
            ..moved
        };
        let line = mapfile::CollisionLine(lost);
        assert_eq!(collision_log(&lost), (Limit::IdLost, Level::Error));
        assert!(line
            .to_string()
            .starts_with("lost node id #261 (0x0105) to 10.9.1.5, which started first: this node (10.0.1.5) is out of the cluster"));
    }

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
