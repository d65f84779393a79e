//! The daemon: one thread, one epoll loop over the UDP socket, a timerfd for
//! every deadline, a signalfd and the netlink monitor.
//!
//! Everything is allocated in [`Daemon::new`]; the loop itself allocates
//! nothing (proved by `tests/noalloc.rs`).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use arrayvec::ArrayVec;

use crate::cli::Config;
use crate::log::keys;
use crate::map::{AnnounceOutcome, ClusterMap, LeaveOutcome, NodeId};
use crate::netlink::{self, Netlink};
use crate::procfs::{Backend, Kernel, MapFileWriter};
use crate::rng::Rng;
use crate::sys::{getrandom_u64, monotonic_ms, Epoll, SignalFd, TimerFd};
use crate::udp::{McastSocket, RecvBatch};
use crate::wire::{self, flags, Label, MessageType, ParseError, Repr};
use crate::{error, info, mapfile, notice, warn};

/// The version shown by `--version` and logged at start.
pub const VERSION: &str = env!("OMDISCD_VERSION");

/// Receive buffer asked of the kernel: the default ~212 KB holds only ~256
/// small datagrams, and a cold boot of thousands of nodes announcing within
/// the same second overflows it. 4 MiB holds ~8,000 of our datagrams.
pub const RCVBUF_BYTES: usize = 4 << 20;

/// Changes within this window are published together (coalescing).
pub const PUBLISH_DELAY_MS: u64 = 100;

/// First announcement after a random delay of up to this (as mDNS probes).
pub const STARTUP_JITTER_MS: u32 = 250;

/// Announcements sent in the start-up burst (the first and two more).
pub const STARTUP_BURST: u8 = 3;

/// Largest gap of the start-up burst before doubling.
pub const BURST_GAP_MS: u32 = 500;

/// Relays forward a message at most this many hops.
pub const MAX_HOPS: u8 = 4;

/// Replies to newcomers waiting for their random delay; more are dropped
/// (the newcomer still learns everyone from the periodic announcements).
const MAX_PENDING_REPLIES: usize = 64;

/// Expiry runs at most this often: each run walks every known node
/// (~3 ns a node), and with thousands of nodes the earliest deadline moves on
/// with nearly every packet. A node leaves at most this late.
pub const EXPIRY_GRANULARITY_MS: u64 = 100;

/// Hearing no other node for this many intervals after start (or a link
/// coming up) earns one warning: a switch doing IGMP snooping without a
/// querier silently stops forwarding the group, the original's classic trap.
pub const LONELY_INTERVALS: u64 = 5;

/// A retry of a failed publish (map file or kernel) after this.
const PUBLISH_RETRY_MS: u64 = 5_000;

/// How often drop/error lines may be logged, per kind.
const LOG_LIMIT_MS: u64 = 10_000;

const TOKEN_SOCKET: u64 = 1;
const TOKEN_TIMER: u64 = 2;
const TOKEN_SIGNAL: u64 = 3;
const TOKEN_NETLINK: u64 = 4;

/// Why the daemon could not start. `main` prints it and exits with status 1.
#[derive(Debug)]
pub enum StartError {
    /// No `-i` and no default route: the original's two messages.
    NoDefaultRoute,
    /// An interface named with `-i` is unusable.
    Interface {
        name: heapless::String<16>,
        reason: &'static str,
    },
    /// A system call failed.
    Io(&'static str, io::Error),
    /// Reading interfaces, routes or addresses over netlink failed.
    Netlink(netlink::NlError),
}

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
            StartError::Io(what, e) => write!(f, "{what}: {e}"),
            StartError::Netlink(e) => write!(f, "reading interfaces over netlink: {e}"),
        }
    }
}

/// Packet and event counters, logged on SIGUSR1 and at exit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub received: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub dropped: [u64; ParseError::ALL.len()],
    pub foreign_cluster: u64,
    pub own_looped: u64,
    pub relayed: u64,
    pub replies: u64,
    pub kernel_overflows: u32,
    pub publishes: u64,
}

/// One interface we announce on.
#[derive(Clone, Debug)]
struct Iface {
    name: heapless::String<16>,
    index: u32,
    addr: Option<Ipv4Addr>,
    up: bool,
}

#[derive(Clone, Copy, Debug)]
struct PendingReply {
    to: SocketAddrV4,
    ifindex: u32,
    due_ms: u64,
}

/// The running daemon.
pub struct Daemon {
    group: Ipv4Addr,
    port: u16,
    interval_ms: u32,
    hold_ms: u32,
    label: Label,
    /// `-m` given: only the first interface sends and receives.
    routed: bool,
    /// Interfaces come from `-i` (else: the default route's).
    explicit: bool,
    wanted: ArrayVec<heapless::String<16>, 6>,
    ifaces: ArrayVec<Iface, 6>,
    primary: Ipv4Addr,
    incarnation: u32,
    sequence: u32,

    epoll: Epoll,
    timer: TimerFd,
    /// Made in [`Daemon::start`], after daemonizing: a signalfd registered
    /// with epoll before a fork never reports the child's signals.
    signals: Option<SignalFd>,
    sock: McastSocket,
    batch: Option<Box<RecvBatch>>,
    nl: Netlink,
    monitor: Netlink,
    rng: Rng,

    map: ClusterMap,
    writer: MapFileWriter,
    kernel: Kernel,
    map_file: PathBuf,

    next_announce_ms: u64,
    burst_left: u8,
    burst_gap_ms: u32,
    publish_at_ms: Option<u64>,
    file_retry_ms: Option<u64>,
    kernel_retry_ms: Option<u64>,
    expiry_check_ms: Option<u64>,
    lonely_check_ms: Option<u64>,
    heard_other: bool,
    last_expiry_ms: u64,
    armed_ms: u64,
    replies: heapless::Vec<PendingReply, MAX_PENDING_REPLIES>,
    resolve_pending: bool,
    stopping: bool,
    counters: Counters,
    send_buf: [u8; wire::MAX_MESSAGE_LEN],
    relay_buf: [u8; wire::MAX_MESSAGE_LEN],
}

impl Daemon {
    /// Finds our interfaces and address, opens every descriptor and allocates
    /// everything the loop will use.
    pub fn new(cfg: &Config) -> Result<Daemon, StartError> {
        let io = |what| move |e| StartError::Io(what, e);
        let mut nl = Netlink::open().map_err(io("opening netlink"))?;
        let mut wanted = ArrayVec::new();
        for name in &cfg.interfaces {
            let mut s = heapless::String::new();
            let _ = s.push_str(name);
            wanted.push(s);
        }
        let explicit = !wanted.is_empty();
        let ifaces = resolve(&mut nl, &wanted)?;
        let primary = ifaces[0]
            .addr
            .expect("resolve returns addressed interfaces");
        let aliases = alias_addrs(&ifaces, primary);

        let sock =
            McastSocket::open(cfg.port, RCVBUF_BYTES).map_err(io("opening the UDP socket"))?;
        sock.set_multicast_ttl(cfg.multicast_ttl.unwrap_or(1))
            .map_err(io("setting the multicast TTL"))?;
        sock.set_default_interface(ifaces[0].index)
            .map_err(io("setting the multicast interface"))?;
        let monitor = Netlink::open_monitor().map_err(io("opening the netlink monitor"))?;
        let epoll = Epoll::new().map_err(io("creating epoll"))?;
        let timer = TimerFd::new().map_err(io("creating the timerfd"))?;
        let readable = libc::EPOLLIN as u32;
        epoll
            .add(sock.as_raw_fd(), TOKEN_SOCKET, readable)
            .map_err(io("epoll"))?;
        epoll
            .add(timer.as_raw_fd(), TOKEN_TIMER, readable)
            .map_err(io("epoll"))?;
        epoll
            .add(monitor.as_raw_fd(), TOKEN_NETLINK, readable)
            .map_err(io("epoll"))?;

        let mut rng = Rng::from_seed(getrandom_u64());
        let incarnation = rng.next_u32() | 1;
        let map = ClusterMap::new(primary, &aliases, incarnation);
        let map_file = cfg.map_file.clone();
        let writer = MapFileWriter::new(&map_file).map_err(io("preparing the map file"))?;
        let backend = Backend::detect(&cfg.proc_root);
        let kernel = Kernel::new(backend, &cfg.proc_root, &cfg.setpe, &map_file)
            .map_err(io("preparing the kernel interface"))?;

        let mut daemon = Daemon {
            group: cfg.group,
            port: cfg.port,
            interval_ms: cfg.interval_ms,
            hold_ms: cfg.hold_ms(),
            label: Label(cfg.label),
            routed: cfg.multicast_ttl.is_some(),
            explicit,
            wanted,
            ifaces,
            primary,
            incarnation,
            sequence: 0,
            epoll,
            timer,
            signals: None,
            sock,
            batch: Some(Box::new(RecvBatch::new())),
            nl,
            monitor,
            rng,
            map,
            writer,
            kernel,
            map_file,
            next_announce_ms: 0,
            burst_left: 0,
            burst_gap_ms: 0,
            publish_at_ms: None,
            file_retry_ms: None,
            kernel_retry_ms: None,
            expiry_check_ms: None,
            lonely_check_ms: None,
            heard_other: false,
            last_expiry_ms: 0,
            armed_ms: 0,
            replies: heapless::Vec::new(),
            resolve_pending: false,
            stopping: false,
            counters: Counters::default(),
            send_buf: [0; wire::MAX_MESSAGE_LEN],
            relay_buf: [0; wire::MAX_MESSAGE_LEN],
        };
        daemon.join_groups();
        Ok(daemon)
    }

    /// Takes over the signals, logs the start-up lines and schedules the
    /// first announcement and publish. Called once the process is in its
    /// final form (after daemonizing).
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
        let now = monotonic_ms();
        let own = self.map.own_id();
        info!(
            "omdiscd {VERSION} starting: address {}, node id #{own} (0x{own:04x}), group {}:{}, interval {} ms, hold {} ms",
            self.primary, self.group, self.port, self.interval_ms, self.hold_ms
        );
        for i in self.sending_ifaces() {
            info!(
                "announcing on {} (index {}, address {})",
                i.name,
                i.index,
                Addr(i.addr)
            );
        }
        info!(
            "receive buffer {} bytes; publishing to {} and {}",
            self.sock.granted_rcvbuf(),
            self.map_file.display(),
            self.kernel.backend().describe()
        );
        self.begin_burst(now);
        self.watch_loneliness(now);
        self.publish_at_ms = Some(now);
        Ok(())
    }

    /// This node's id.
    pub fn own_id(&self) -> NodeId {
        self.map.own_id()
    }

    /// The map as it is now.
    pub fn map(&self) -> &ClusterMap {
        &self.map
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// True once SIGTERM/SIGINT was handled.
    pub fn stopped(&self) -> bool {
        self.stopping
    }

    /// Runs until SIGTERM or SIGINT, then says goodbye and returns.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.stopping {
            self.step(None)?;
        }
        Ok(())
    }

    /// One round of the loop: due deadlines, one epoll wait (at most
    /// `max_wait`, for tests), the events it returned.
    pub fn step(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let now = monotonic_ms();
        self.on_deadlines(now);
        if self.stopping {
            return Ok(());
        }
        let deadline = self.next_deadline_ms();
        if deadline != self.armed_ms {
            self.timer.arm_at_ms(deadline)?;
            self.armed_ms = deadline;
        }
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
                _ => {}
            }
        }
        if self.resolve_pending {
            self.resolve_pending = false;
            self.reresolve(monotonic_ms());
        }
        Ok(())
    }

    fn next_deadline_ms(&self) -> u64 {
        let mut d = self.next_announce_ms;
        for t in [
            self.publish_at_ms,
            self.file_retry_ms,
            self.kernel_retry_ms,
            self.expiry_check_ms,
            self.lonely_check_ms,
        ]
        .into_iter()
        .flatten()
        {
            d = d.min(t);
        }
        if let Some(r) = self.replies.iter().map(|r| r.due_ms).min() {
            d = d.min(r);
        }
        d.max(1)
    }

    fn on_deadlines(&mut self, now: u64) {
        if now >= self.next_announce_ms {
            self.announce(now);
        }
        if self.replies.iter().any(|r| r.due_ms <= now) {
            self.send_due_replies(now);
        }
        if self.expiry_check_ms.is_some_and(|t| now >= t) {
            if self.map.expire(now) > 0 {
                self.schedule_publish(now);
            }
            self.last_expiry_ms = now;
            self.expiry_check_ms = self
                .map
                .next_expiry_ms()
                .map(|t| t.max(now + EXPIRY_GRANULARITY_MS));
        }
        if self.lonely_check_ms.is_some_and(|t| now >= t) {
            self.check_loneliness();
        }
        let publish_due = self.publish_at_ms.is_some_and(|t| now >= t);
        if publish_due {
            self.publish(now);
        } else {
            if self.file_retry_ms.is_some_and(|t| now >= t) {
                self.write_map_file(now);
            }
            if self.kernel_retry_ms.is_some_and(|t| now >= t) {
                self.publish_kernel(now);
            }
        }
    }

    // ---- announcing ---------------------------------------------------

    fn watch_loneliness(&mut self, now: u64) {
        self.heard_other = false;
        self.lonely_check_ms = Some(now + LONELY_INTERVALS * self.interval_ms as u64);
    }

    fn check_loneliness(&mut self) {
        self.lonely_check_ms = None;
        if self.heard_other {
            return;
        }
        warn!(
            "no other node heard for {} intervals on {}: if this is not the only node, check that multicast {}:{} reaches this host (a switch with IGMP snooping and no querier drops it; so does a firewall)",
            LONELY_INTERVALS,
            self.ifaces[0].name,
            self.group,
            self.port
        );
    }

    fn begin_burst(&mut self, now: u64) {
        self.burst_left = STARTUP_BURST;
        self.burst_gap_ms = BURST_GAP_MS.min(self.interval_ms / 2).max(1);
        self.next_announce_ms = now + self.rng.below(STARTUP_JITTER_MS + 1) as u64;
    }

    fn announce(&mut self, now: u64) {
        self.send_own(MessageType::Announce, None, 0);
        if self.burst_left > 1 {
            self.burst_left -= 1;
            self.next_announce_ms = now + self.burst_gap_ms as u64;
            self.burst_gap_ms = self.burst_gap_ms.saturating_mul(2);
        } else {
            self.burst_left = 0;
            self.next_announce_ms = now + self.rng.jitter_ms(self.interval_ms as u64, 20);
        }
    }

    fn own_repr(&mut self, kind: MessageType, flag_bits: u8) -> Repr {
        self.sequence = self.sequence.wrapping_add(1);
        let own = self.map.own_node();
        let mut aliases = ArrayVec::new();
        for a in own.aliases() {
            aliases.push(a);
        }
        Repr {
            kind,
            flags: flag_bits,
            hops: 0,
            node_id: own.id,
            incarnation: self.incarnation,
            sequence: self.sequence,
            interval_ms: self.interval_ms,
            hold_ms: self.hold_ms,
            label: self.label,
            addr: own.addr,
            aliases,
            entries: ArrayVec::new(),
            auth: None,
        }
    }

    /// Sends one of our own messages: to `to` (unicast) or to the group on
    /// every interface that sends.
    fn send_own(&mut self, kind: MessageType, to: Option<(SocketAddrV4, u32)>, flag_bits: u8) {
        let repr = self.own_repr(kind, flag_bits);
        let Ok(len) = repr.emit(&mut self.send_buf) else {
            error!("internal error: refusing to send an invalid message");
            return;
        };
        match to {
            Some((dst, ifindex)) => {
                let r = match self.ifaces.iter().find(|i| i.index == ifindex) {
                    Some(iface) => send_via(&self.sock, iface, &self.send_buf[..len], dst),
                    None => self.sock.send(&self.send_buf[..len], dst, Some(ifindex)),
                };
                self.count_send(r);
            }
            None => {
                let dst = SocketAddrV4::new(self.group, self.port);
                for i in 0..self.ifaces.len() {
                    if !self.sends_on(i) {
                        continue;
                    }
                    let r = send_via(&self.sock, &self.ifaces[i], &self.send_buf[..len], dst);
                    self.count_send(r);
                }
            }
        }
    }

    fn count_send(&mut self, r: io::Result<()>) {
        match r {
            Ok(()) => self.counters.sent += 1,
            Err(e) => {
                self.counters.send_errors += 1;
                crate::log::limited(
                    keys::SEND_ERROR,
                    LOG_LIMIT_MS,
                    crate::log::Level::Warn,
                    format_args!("sending an announcement failed: {e}"),
                );
            }
        }
    }

    fn sends_on(&self, i: usize) -> bool {
        let iface = &self.ifaces[i];
        iface.up && iface.addr.is_some() && (!self.routed || i == 0)
    }

    fn sending_ifaces(&self) -> impl Iterator<Item = &Iface> {
        self.ifaces
            .iter()
            .enumerate()
            .filter(|(i, _)| self.sends_on(*i))
            .map(|(_, f)| f)
    }

    fn send_due_replies(&mut self, now: u64) {
        let mut i = 0;
        while i < self.replies.len() {
            if self.replies[i].due_ms <= now {
                let r = self.replies.swap_remove(i);
                self.counters.replies += 1;
                self.send_own(MessageType::Announce, Some((r.to, r.ifindex)), flags::REPLY);
            } else {
                i += 1;
            }
        }
    }

    fn schedule_reply(&mut self, to: SocketAddrV4, ifindex: u32, now: u64) {
        if self.replies.iter().any(|r| r.to == to) {
            return;
        }
        let spread = (self.interval_ms / 4).clamp(1, 500);
        let due_ms = now + 10 + self.rng.below(spread) as u64;
        let _ = self.replies.push(PendingReply {
            to,
            ifindex,
            due_ms,
        });
    }

    // ---- receiving ----------------------------------------------------

    fn on_readable(&mut self) {
        // Bounded so a flood cannot starve the timers and signals.
        for _ in 0..64 {
            let Some(batch) = self.batch.as_mut() else {
                return;
            };
            let n = match self.sock.recv_batch(batch) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    crate::log::limited(
                        keys::RECV_ERROR,
                        LOG_LIMIT_MS,
                        crate::log::Level::Warn,
                        format_args!("receiving failed: {e}"),
                    );
                    break;
                }
            };
            let now = monotonic_ms();
            // Moved out for the loop so each datagram is handled in place,
            // without a copy; moving the Box back is a pointer move.
            let batch = self.batch.take().expect("batch is put back after use");
            for d in batch.iter() {
                if d.truncated {
                    self.drop_packet(ParseError::LengthMismatch, d.src);
                    continue;
                }
                self.on_datagram(d.data, d.src, d.ifindex, d.dst.is_multicast(), now);
            }
            let overflows = batch.dropped_total();
            self.batch = Some(batch);
            if overflows > self.counters.kernel_overflows {
                crate::log::limited(
                    keys::RECV_ERROR,
                    LOG_LIMIT_MS,
                    crate::log::Level::Warn,
                    format_args!(
                        "the kernel dropped {} datagrams: receive buffer full",
                        overflows - self.counters.kernel_overflows
                    ),
                );
                self.counters.kernel_overflows = overflows;
            }
            if n < crate::udp::BATCH {
                break;
            }
        }
    }

    fn drop_packet(&mut self, e: ParseError, src: SocketAddrV4) {
        self.counters.dropped[e.index()] += 1;
        crate::log::limited(
            keys::BAD_PACKET,
            LOG_LIMIT_MS,
            crate::log::Level::Warn,
            format_args!("dropped a packet from {src}: {e}"),
        );
    }

    /// Handles one datagram. Public so tests and benches can feed the daemon
    /// without a network.
    pub fn on_datagram(
        &mut self,
        data: &[u8],
        src: SocketAddrV4,
        ifindex: u32,
        multicast: bool,
        now: u64,
    ) {
        self.counters.received += 1;
        let repr = match Repr::parse(data) {
            Ok(r) => r,
            Err(e) => return self.drop_packet(e, src),
        };
        if repr.label != self.label {
            self.counters.foreign_cluster += 1;
            crate::log::limited(
                keys::FOREIGN,
                LOG_LIMIT_MS,
                crate::log::Level::Info,
                format_args!("ignoring node {} of another cluster", repr.addr),
            );
            return;
        }
        if repr.node_id == self.map.own_id() && repr.incarnation == self.incarnation {
            self.counters.own_looped += 1;
            return;
        }
        self.heard_other = true;
        let accepted = match repr.kind {
            MessageType::Announce => self.on_announce(&repr, src, ifindex, now),
            MessageType::Leave => {
                self.map.apply_leave(repr.addr, repr.incarnation) == LeaveOutcome::Removed
            }
            MessageType::Sync => {
                for e in &repr.entries {
                    if let AnnounceOutcome::Joined =
                        self.map
                            .apply_hearsay(e.addr, e.incarnation, e.hold_ms, now)
                    {
                        self.note_expiry(now + e.hold_ms as u64);
                    }
                }
                false
            }
        };
        if self.map.is_dirty() {
            self.schedule_publish(now);
        }
        if accepted && multicast {
            self.relay(data, ifindex);
        }
    }

    fn on_announce(&mut self, repr: &Repr, src: SocketAddrV4, ifindex: u32, now: u64) -> bool {
        let a = crate::map::Announcement {
            addr: repr.addr,
            aliases: &repr.aliases,
            incarnation: repr.incarnation,
            sequence: repr.sequence,
            hold_ms: repr.hold_ms,
        };
        match self.map.apply_announce(&a, now) {
            out @ (AnnounceOutcome::Joined | AnnounceOutcome::Restarted) => {
                self.note_expiry(now + repr.hold_ms as u64);
                let direct = repr.hops == 0 && repr.flags & flags::REPLY == 0;
                if direct {
                    let to = SocketAddrV4::new(*src.ip(), self.port);
                    self.schedule_reply(to, ifindex, now);
                }
                if out == AnnounceOutcome::Joined {
                    crate::debug!("node #{} ({}) joined", repr.node_id, repr.addr);
                }
                true
            }
            AnnounceOutcome::Refreshed => true,
            AnnounceOutcome::Collision(c) => {
                if c.first_report {
                    warn!(
                        "node id collision: #{} (0x{:04x}) is held by {} and also claimed by {}; {} keeps it, {} is not added",
                        c.id, c.id, c.holder, c.claimant, c.holder, c.claimant
                    );
                }
                false
            }
            AnnounceOutcome::Stale | AnnounceOutcome::Ignored => false,
        }
    }

    fn note_expiry(&mut self, at: u64) {
        let at = at.max(self.last_expiry_ms + EXPIRY_GRANULARITY_MS);
        self.expiry_check_ms = Some(self.expiry_check_ms.map_or(at, |t| t.min(at)));
    }

    /// Basic routing (the original's, without `-m`): a node on several
    /// networks forwards what it heard on one to the others.
    fn relay(&mut self, data: &[u8], from_ifindex: u32) {
        if self.routed || self.ifaces.len() < 2 || data.len() < wire::HEADER_LEN {
            return;
        }
        let hops = data[wire::field::HOPS];
        if hops >= MAX_HOPS {
            return;
        }
        let len = data.len();
        self.relay_buf[..len].copy_from_slice(data);
        wire::set_hops(&mut self.relay_buf[..len], hops + 1);
        let dst = SocketAddrV4::new(self.group, self.port);
        for i in 0..self.ifaces.len() {
            if self.ifaces[i].index == from_ifindex || !self.sends_on(i) {
                continue;
            }
            let r = send_via(&self.sock, &self.ifaces[i], &self.relay_buf[..len], dst);
            if r.is_ok() {
                self.counters.relayed += 1;
            }
            self.count_send(r);
        }
    }

    // ---- publishing ---------------------------------------------------

    fn schedule_publish(&mut self, now: u64) {
        if self.publish_at_ms.is_none() {
            self.publish_at_ms = Some(now + PUBLISH_DELAY_MS);
        }
    }

    fn publish(&mut self, now: u64) {
        self.publish_at_ms = None;
        self.counters.publishes += 1;
        self.write_map_file(now);
        mapfile::change_log(&self.map, |line| notice!("{line}"));
        self.map.mark_published();
        self.publish_kernel(now);
    }

    fn write_map_file(&mut self, now: u64) {
        match self.writer.write(&self.map, VERSION) {
            Ok(()) => self.file_retry_ms = None,
            Err(e) => {
                crate::log::limited(
                    keys::PUBLISH_ERROR,
                    LOG_LIMIT_MS,
                    crate::log::Level::Error,
                    format_args!("writing {}: {e}", self.map_file.display()),
                );
                self.file_retry_ms = Some(now + PUBLISH_RETRY_MS);
            }
        }
    }

    fn publish_kernel(&mut self, now: u64) {
        self.kernel_retry_ms = None;
        // SIGCHLD is the usual way to learn that setpe ended, but a process
        // signal can go to another thread (tests) or coalesce: look anyway.
        self.reap_setpe(now);
        if let Err(e) = self.kernel.publish(self.map.own_id()) {
            self.kernel_failed(e, now);
        }
    }

    fn reap_setpe(&mut self, now: u64) {
        while let Some(r) = self.kernel.reap() {
            if let Err(e) = r {
                self.kernel_failed(e, now);
            }
            if !self.kernel.busy() {
                break;
            }
        }
    }

    fn kernel_failed(&mut self, e: crate::procfs::KernelError, now: u64) {
        crate::log::limited(
            keys::KERNEL_ERROR,
            LOG_LIMIT_MS,
            crate::log::Level::Error,
            format_args!("handing the map to the kernel: {e}; retrying"),
        );
        self.kernel_retry_ms = Some(now + PUBLISH_RETRY_MS);
    }

    // ---- signals --------------------------------------------------------

    fn on_signals(&mut self) {
        loop {
            let Some(signals) = &self.signals else {
                return;
            };
            let info = match signals.read() {
                Ok(Some(info)) => info,
                Ok(None) => break,
                Err(_) => break,
            };
            match info.signo {
                libc::SIGTERM | libc::SIGINT => {
                    self.shutdown(info.signo);
                    return;
                }
                libc::SIGHUP => {
                    info!("SIGHUP: re-reading interfaces and addresses");
                    self.resolve_pending = true;
                    let now = monotonic_ms();
                    self.begin_burst(now);
                }
                libc::SIGCHLD => self.reap_setpe(monotonic_ms()),
                libc::SIGUSR1 => self.log_counters(),
                _ => {}
            }
        }
    }

    /// Logs the counters (SIGUSR1, and at exit).
    pub fn log_counters(&self) {
        let c = &self.counters;
        info!(
            "counters: {} nodes, received {}, sent {}, send errors {}, relayed {}, replies {}, foreign cluster {}, kernel drops {}, publishes {}, collisions {}, expired {}",
            self.map.len(),
            c.received,
            c.sent,
            c.send_errors,
            c.relayed,
            c.replies,
            c.foreign_cluster,
            c.kernel_overflows,
            c.publishes,
            self.map.stats().collisions,
            self.map.stats().expired
        );
        for e in ParseError::ALL {
            if c.dropped[e.index()] > 0 {
                info!("dropped {}: {}", e.name(), c.dropped[e.index()]);
            }
        }
    }

    /// Says goodbye (LEAVE three times, a few ms apart), publishes what is
    /// pending and marks the daemon stopped.
    pub fn shutdown(&mut self, signo: i32) {
        notice!("signal {signo}: leaving the cluster");
        self.say_goodbye();
        let now = monotonic_ms();
        if self.map.is_dirty() || self.publish_at_ms.is_some() {
            self.publish(now);
        }
        let _ = self.kernel.finish(2_000);
        self.log_counters();
        self.stopping = true;
    }

    fn say_goodbye(&mut self) {
        for n in 0..3 {
            if n > 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.send_own(MessageType::Leave, None, 0);
        }
    }

    // ---- interfaces, addresses, netlink ----------------------------------

    fn join_groups(&mut self) {
        for i in 0..self.ifaces.len() {
            if self.routed && i > 0 {
                continue;
            }
            if !self.ifaces[i].up {
                continue;
            }
            if let Err(e) = self.sock.join(self.group, self.ifaces[i].index) {
                crate::log::limited(
                    keys::NETLINK_ERROR,
                    LOG_LIMIT_MS,
                    crate::log::Level::Warn,
                    format_args!("joining {} on {}: {e}", self.group, self.ifaces[i].name),
                );
            }
        }
    }

    fn on_netlink(&mut self) {
        let mut relevant = false;
        let ours: ArrayVec<u32, 6> = self.ifaces.iter().map(|i| i.index).collect();
        let explicit = self.explicit;
        let mut link_changes: ArrayVec<(u32, bool), 16> = ArrayVec::new();
        let r = self.monitor.read_events(|ev| match ev {
            netlink::Event::Link { ifindex, up, .. } => {
                if ours.contains(&ifindex) {
                    let _ = link_changes.try_push((ifindex, up));
                }
            }
            netlink::Event::LinkRemoved { ifindex } => {
                if ours.contains(&ifindex) {
                    let _ = link_changes.try_push((ifindex, false));
                }
            }
            netlink::Event::AddrAdded { ifindex, .. }
            | netlink::Event::AddrRemoved { ifindex, .. } => {
                if ours.contains(&ifindex) {
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
                keys::NETLINK_ERROR,
                LOG_LIMIT_MS,
                crate::log::Level::Warn,
                format_args!("reading netlink events: {e}"),
            );
            relevant = true;
        }
        let now = monotonic_ms();
        for (ifindex, up) in link_changes {
            self.on_link(ifindex, up, now);
        }
        if relevant {
            self.resolve_pending = true;
        }
    }

    fn on_link(&mut self, ifindex: u32, up: bool, now: u64) {
        let Some(pos) = self.ifaces.iter().position(|i| i.index == ifindex) else {
            return;
        };
        if self.ifaces[pos].up == up {
            return;
        }
        self.ifaces[pos].up = up;
        if up {
            notice!(
                "link {} is up: re-joining and announcing",
                self.ifaces[pos].name
            );
            self.join_groups();
            self.begin_burst(now);
            self.watch_loneliness(now);
            // An address may have come or gone while the link was down.
            self.resolve_pending = true;
        } else {
            warn!(
                "link {} is down: not announcing on it",
                self.ifaces[pos].name
            );
        }
    }

    /// Re-reads interfaces and addresses (SIGHUP, netlink changes). A new
    /// primary address is a new identity: LEAVE under the old one, announce
    /// under the new one, republish.
    fn reresolve(&mut self, now: u64) {
        let fresh = if self.explicit {
            resolve_lenient(&mut self.nl, &self.wanted)
        } else {
            match resolve(&mut self.nl, &self.wanted) {
                Ok(f) => Some(f),
                Err(StartError::NoDefaultRoute) => {
                    crate::log::limited(
                        keys::ROUTE,
                        LOG_LIMIT_MS,
                        crate::log::Level::Warn,
                        format_args!(
                            "no default route any more; staying on {}",
                            self.ifaces[0].name
                        ),
                    );
                    // Keep the interface but re-read its address.
                    let wanted: ArrayVec<heapless::String<16>, 6> =
                        self.ifaces.iter().map(|i| i.name.clone()).collect();
                    resolve_lenient(&mut self.nl, &wanted)
                }
                Err(e) => {
                    crate::log::limited(
                        keys::ROUTE,
                        LOG_LIMIT_MS,
                        crate::log::Level::Warn,
                        format_args!("re-reading the default interface: {e}"),
                    );
                    None
                }
            }
        };
        let Some(fresh) = fresh else { return };
        let new_primary = fresh.iter().find_map(|i| i.addr);
        let old_indexes: ArrayVec<u32, 6> = self.ifaces.iter().map(|i| i.index).collect();
        let new_indexes: ArrayVec<u32, 6> = fresh.iter().map(|i| i.index).collect();
        if old_indexes != new_indexes {
            for i in &self.ifaces {
                if !new_indexes.contains(&i.index) {
                    let _ = self.sock.leave(self.group, i.index);
                }
            }
        }
        let Some(new_primary) = new_primary else {
            warn!("no IPv4 address on any interface: not announcing until one returns");
            self.ifaces = fresh;
            return;
        };
        if crate::map::node_id_of(new_primary) == 0 {
            warn!(
                "new address {new_primary} gives the invalid openMosix node id 0: keeping {} until that changes",
                self.primary
            );
            return;
        }
        let primary_changed = new_primary != self.primary;
        // The fresh interfaces first: the goodbye must leave from an address
        // we still have (the old one may be gone already).
        self.ifaces = fresh;
        if let Some(first) = self.ifaces.first() {
            let _ = self.sock.set_default_interface(first.index);
        }
        self.join_groups();
        if primary_changed {
            notice!(
                "address changed from {} to {}: leaving as #{} and joining as #{}",
                self.primary,
                new_primary,
                self.map.own_id(),
                crate::map::node_id_of(new_primary)
            );
            self.say_goodbye();
        }
        let aliases = alias_addrs(&self.ifaces, new_primary);
        let own = self.map.own_node();
        let aliases_changed = !own.aliases().eq(aliases.iter().copied());
        if primary_changed || aliases_changed {
            self.primary = new_primary;
            self.map.set_own(new_primary, &aliases, self.incarnation);
            self.schedule_publish(now);
            self.begin_burst(now);
        }
    }
}

/// Finds the interfaces (named, or the default route's) with their
/// addresses. Any problem is an error: used at start-up.
fn resolve(
    nl: &mut Netlink,
    wanted: &ArrayVec<heapless::String<16>, 6>,
) -> Result<ArrayVec<Iface, 6>, StartError> {
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
        if crate::map::node_id_of(addr) == 0 && out.is_empty() {
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
    wanted: &ArrayVec<heapless::String<16>, 6>,
) -> Option<ArrayVec<Iface, 6>> {
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

/// Sends out of `iface` with its address as the source, so peers see (and
/// reply to) the address on that link, also on `lo`.
fn send_via(sock: &McastSocket, iface: &Iface, buf: &[u8], dst: SocketAddrV4) -> io::Result<()> {
    let Some(src) = iface.addr else {
        return sock.send(buf, dst, Some(iface.index));
    };
    match sock.send_from(buf, dst, iface.index, src) {
        // The address went away under us (netlink will tell us soon): let
        // the kernel pick a source rather than lose the datagram.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EADDRNOTAVAIL | libc::ENETUNREACH | libc::EINVAL)
            ) =>
        {
            sock.send(buf, dst, Some(iface.index))
        }
        r => r,
    }
}

fn alias_addrs(ifaces: &[Iface], primary: Ipv4Addr) -> ArrayVec<Ipv4Addr, 6> {
    let mut v = ArrayVec::new();
    for a in ifaces.iter().filter_map(|i| i.addr) {
        if a != primary && !v.contains(&a) {
            v.push(a);
        }
    }
    v
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

/// Keeps the paths usable after daemonizing (which changes to `/`).
pub fn absolutize(cfg: &mut Config) -> io::Result<()> {
    let cwd = std::env::current_dir()?;
    for p in [&mut cfg.map_file, &mut cfg.proc_root, &mut cfg.setpe] {
        if p.is_relative() {
            *p = cwd.join(&*p);
        }
    }
    Ok(())
}
