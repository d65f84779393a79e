//! The daemon: the I/O shell around the protocol core ([`crate::node`]).
//!
//! One thread, one epoll loop over the UDP socket, a timerfd armed at the
//! core's [`Core::poll_at`], a signalfd and the netlink monitor. Readiness
//! becomes calls on the core; the core's [`Actions`](crate::node::Actions) become syscalls
//! (sending, writing the map file, running setpe) and log lines.
//!
//! Everything is allocated in [`Daemon::new`]; the loop itself allocates
//! nothing (proved by `tests/noalloc.rs`).
#![forbid(unsafe_code)]

mod children;
mod error;
mod links;
mod serving;
mod shell;
mod signals;
mod start;
mod static_nodes;

pub use error::StartError;
pub(crate) use links::{local_addrs, AddrList};
pub(crate) use signals::HANDLED as HANDLED_SIGNALS;
pub(crate) use start::take_lock;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use arrayvec::ArrayVec;

use crate::control::{Chunk, Server};
use crate::log::{Level, Limit};
use crate::netlink::Netlink;
use crate::node::MAX_INTERFACES;
use crate::node::{Core, Input, Received, OVERLOAD_LATE_MS};
use crate::notice;
use crate::notify::Notifier;
use crate::procfs::{AtomicFile, Kernel};
use crate::rate::Bucket;
use crate::sys::{monotonic_ms, AbstractClaim, Epoll, IoErr, PidLock, SignalFd, Starter, TimerFd};
use crate::udp::{McastSocket, RecvBatch};
use children::Hook;

/// The version shown by `--version` and logged at start.
pub const VERSION: &str = env!("OMDISCD_VERSION");

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
type IfName = heapless::String<{ crate::netlink::msg::IFNAMSIZ }>;

const TOKEN_SOCKET: u64 = 1;
const TOKEN_TIMER: u64 = 2;
const TOKEN_SIGNAL: u64 = 3;
const TOKEN_NETLINK: u64 = 4;
const TOKEN_CONTROL: u64 = 5;
const TOKEN_CLAIM: u64 = 6;
/// Control socket clients: this and the next `control::MAX_CLIENTS - 1`.
const TOKEN_CLIENT: u64 = 16;

/// One interface we announce on.
#[derive(Clone, Debug)]
struct Iface {
    name: IfName,
    index: u32,
    addr: Option<Ipv4Addr>,
    up: bool,
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

/// The real-time clock in whole seconds since 1970 (0 if it reads before
/// 1970; saturated after 2106).
fn realtime_s() -> u32 {
    u32::try_from(crate::sys::unix_time_s()).unwrap_or(u32::MAX)
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
}

/// Logs a failed sd_notify send (rate-limited); the daemon goes on. Cold
/// and out of line: one copy for its seven callers.
#[cold]
#[inline(never)]
pub(crate) fn notify_failed(e: &io::Error) {
    crate::log::limited(
        Limit::Notify,
        LOG_LIMIT_MS,
        Level::Warn,
        format_args!("telling the service manager: {}", IoErr(e)),
    );
}
