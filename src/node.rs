//! The protocol core of one node: everything omdiscd decides, and no I/O.
//!
//! Modelled on smoltcp's `Interface::poll` / `poll_at`. A [`Core`] owns the
//! node's identity, the cluster map, every protocol timer (start-up burst,
//! announce interval and jitter, replies to newcomers, expiry, the loneliness
//! warning, publish coalescing and retries, the goodbye) and the counters.
//! It is driven by three calls:
//!
//! - [`Core::handle`] feeds it an [`Input`] (a datagram with its source,
//!   interface and arrival time; new interface state; a stop request ...);
//! - [`Core::poll`] runs whatever is due at `now`;
//! - [`Core::poll_at`] tells the next instant it needs to run.
//!
//! Both `handle` and `poll` act through an [`Actions`] implementation that the
//! caller passes in: datagrams to send (destination, interface, source
//! address, bytes), a map to publish, and log [`Event`]s as values. The core
//! reads no clock (time is a number of milliseconds it is given), opens no
//! socket, writes no file and takes its randomness from the seeded [`Rng`] it
//! is given, so the daemon (`crate::daemon`) wraps one core in syscalls and
//! the simulator (`crate::sim`) runs thousands of them in one process.
//!
//! Nothing here allocates after [`Core::new`].
#![forbid(unsafe_code)]

use core::net::{Ipv4Addr, SocketAddrV4};

use arrayvec::ArrayVec;

use crate::cli::MAX_INTERFACES;
use crate::map::{AnnounceOutcome, Announcement, ClusterMap, Collision, LeaveOutcome, NodeId};
use crate::rng::Rng;
use crate::wire::{self, flags, Label, MessageType, ParseError, Repr};

/// Changes within this window are published together (coalescing).
pub const PUBLISH_DELAY_MS: u64 = 100;

/// First announcement after a random delay of up to this (as mDNS probes).
pub const STARTUP_JITTER_MS: u32 = 250;

/// Announcements sent in the start-up burst (the first and two more).
pub const STARTUP_BURST: u8 = 3;

/// Largest gap of the start-up burst before doubling.
pub const BURST_GAP_MS: u32 = 500;

/// The periodic announcement is spread by this many percent either way, so
/// nodes booted together drift apart.
pub const ANNOUNCE_JITTER_PERCENT: u32 = 20;

/// Relays forward a message at most this many hops.
pub const MAX_HOPS: u8 = 4;

/// Replies to newcomers waiting for their random delay; more are dropped
/// (the newcomer still learns everyone from the periodic announcements).
pub const MAX_PENDING_REPLIES: usize = 64;

/// A reply to a newcomer waits at least this long ...
pub const REPLY_MIN_DELAY_MS: u64 = 10;

/// ... plus a random part below min(interval / 4, this), so the replies of a
/// large cluster do not arrive at once.
pub const REPLY_SPREAD_MS: u32 = 500;

/// Expiry runs at most this often: each run walks every known node
/// (~3 ns a node), and with thousands of nodes the earliest deadline moves on
/// with nearly every packet. A node leaves at most this late.
pub const EXPIRY_GRANULARITY_MS: u64 = 100;

/// Hearing no other node for this many intervals after start (or a link
/// coming up) earns one warning: a switch doing IGMP snooping without a
/// querier silently stops forwarding the group, the original's classic trap.
pub const LONELY_INTERVALS: u64 = 5;

/// A retry of a failed publish (map file or kernel) after this.
pub const PUBLISH_RETRY_MS: u64 = 5_000;

/// LEAVE is sent this many times when a node stops or changes its address ...
pub const GOODBYES: u8 = 3;

/// ... this far apart, so that one full receive buffer does not lose all.
pub const GOODBYE_GAP_MS: u64 = 5;

/// The protocol settings of a node (from the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Announce interval, `wire::MIN_INTERVAL_MS ..= wire::MAX_INTERVAL_MS`.
    pub interval_ms: u32,
    /// Hold time advertised to peers, `interval_ms ..= wire::MAX_HOLD_MS`.
    pub hold_ms: u32,
    /// Cluster label; messages with another label are ignored.
    pub label: Label,
    /// `-m` given (routed cluster): only the first interface sends and
    /// receives, and nothing is relayed.
    pub routed: bool,
}

/// One interface as the core sees it: no name, no socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Kernel interface index (0: the interface does not exist now).
    pub index: u32,
    /// Its primary IPv4 address, if it has one.
    pub addr: Option<Ipv4Addr>,
    /// Link state (IFF_UP and carrier as netlink reports it).
    pub up: bool,
}

/// A datagram as it was received.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    pub data: &'a [u8],
    pub src: SocketAddrV4,
    /// Interface it arrived on.
    pub ifindex: u32,
    /// Sent to the group (not a unicast reply).
    pub multicast: bool,
}

/// What the core is told.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A datagram from the network.
    Datagram(Received<'a>),
    /// A datagram longer than the receive buffer, cut by the kernel.
    Truncated { src: SocketAddrV4 },
    /// The kernel's running total of datagrams dropped on a full receive buffer.
    KernelDrops(u32),
    /// The interfaces as they are now (after a netlink event or SIGHUP), in
    /// the order given on the command line: the first one's address is the
    /// node's identity, the others are its aliases.
    Links(&'a [Link]),
    /// Start announcing afresh (SIGHUP): a new start-up burst.
    Rejoin,
    /// A kernel publish failed after [`Actions::publish`] returned (setpe's
    /// exit status arrives later): retry.
    KernelFailed,
    /// Leave the cluster: publish what is pending, send LEAVE
    /// [`GOODBYES`] times, then [`Core::finished`] is true.
    Stop,
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The cluster's multicast group and port.
    Group,
    /// One node, at the cluster's port.
    Node(Ipv4Addr),
}

/// A datagram the core wants sent.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub to: Dest,
    /// Interface to send it out of.
    pub ifindex: u32,
    /// Source address to pin (that interface's address), if it has one.
    pub src: Option<Ipv4Addr>,
    pub bytes: &'a [u8],
}

/// A map to publish, and which parts of the publishing to do.
#[derive(Clone, Copy)]
pub struct Publish<'a> {
    pub map: &'a ClusterMap,
    /// Write the map file.
    pub file: bool,
    /// Hand the map to the kernel.
    pub kernel: bool,
    /// A new map, not a retry: log the change lines (`map.joined()`, `left()`).
    pub changes: bool,
}

/// Which parts of a [`Publish`] failed (they are retried after
/// [`PUBLISH_RETRY_MS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub file_failed: bool,
    pub kernel_failed: bool,
}

/// Something worth a log line. The shell decides the words, the level and
/// the rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A datagram was dropped (counted in [`Counters::dropped`]).
    Dropped {
        src: SocketAddrV4,
        error: ParseError,
    },
    /// A node of another cluster (label) was heard.
    ForeignCluster { addr: Ipv4Addr },
    /// A node id is claimed by a second address while its holder lives.
    Collision(Collision),
    /// A node joined (or restarted).
    Joined { id: NodeId, addr: Ipv4Addr },
    /// No other node heard for [`LONELY_INTERVALS`] intervals.
    Lonely { intervals: u64 },
    /// The kernel dropped this many more datagrams (receive buffer full).
    KernelDrops { more: u32 },
    /// The primary address changed: a new identity.
    AddressChanged { old: Ipv4Addr, new: Ipv4Addr },
    /// No interface has an IPv4 address: not announcing until one returns.
    NoAddress,
    /// The new address gives node id 0: the old identity is kept.
    InvalidAddress { new: Ipv4Addr, keeping: Ipv4Addr },
}

/// What the core does to the world. The daemon implements it with syscalls,
/// the simulator with a simulated network.
pub trait Actions {
    /// Sends a datagram; false if sending failed (counted, never retried).
    fn send(&mut self, d: &Datagram<'_>) -> bool;
    /// Publishes the map.
    fn publish(&mut self, p: &Publish<'_>) -> Published;
    /// A loggable event at `now_ms`.
    fn event(&mut self, now_ms: u64, e: Event);
}

/// Packet and event counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub dropped: [u64; ParseError::COUNT],
    pub foreign_cluster: u64,
    pub own_looped: u64,
    pub relayed: u64,
    pub replies: u64,
    pub kernel_overflows: u32,
    pub publishes: u64,
}

/// The core's timers, one slot each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Announce,
    Expiry,
    Lonely,
    Publish,
    FileRetry,
    KernelRetry,
    Goodbye,
}

impl Timer {
    const COUNT: usize = 7;
}

#[derive(Clone, Copy, Debug)]
struct PendingReply {
    to: Ipv4Addr,
    ifindex: u32,
    due_ms: u64,
}

/// One node's protocol state. See the module documentation.
pub struct Core {
    settings: Settings,
    links: ArrayVec<Link, MAX_INTERFACES>,
    primary: Ipv4Addr,
    incarnation: u32,
    sequence: u32,
    rng: Rng,
    map: ClusterMap,
    timers: [Option<u64>; Timer::COUNT],
    burst_left: u8,
    burst_gap_ms: u32,
    heard_other: bool,
    last_expiry_ms: u64,
    replies: heapless::Vec<PendingReply, MAX_PENDING_REPLIES>,
    goodbyes_left: u8,
    goodbye_len: usize,
    stopping: bool,
    counters: Counters,
    buf: [u8; wire::MAX_MESSAGE_LEN],
    goodbye: [u8; wire::MAX_MESSAGE_LEN],
}

impl Core {
    /// A node whose identity is `primary` (the address of the first link;
    /// its node id must not be 0), starting at `now_ms`: the first
    /// announcement and publish are scheduled. Allocates the cluster map,
    /// the only allocation the core makes.
    pub fn new(
        settings: Settings,
        primary: Ipv4Addr,
        links: &[Link],
        mut rng: Rng,
        now_ms: u64,
    ) -> Core {
        let incarnation = rng.next_u32() | 1;
        let links: ArrayVec<Link, MAX_INTERFACES> =
            links.iter().copied().take(MAX_INTERFACES).collect();
        let aliases = alias_addrs(&links, primary);
        let mut core = Core {
            settings,
            primary,
            incarnation,
            sequence: 0,
            rng,
            map: ClusterMap::new(primary, &aliases, incarnation),
            links,
            timers: [None; Timer::COUNT],
            burst_left: 0,
            burst_gap_ms: 0,
            heard_other: false,
            last_expiry_ms: 0,
            replies: heapless::Vec::new(),
            goodbyes_left: 0,
            goodbye_len: 0,
            stopping: false,
            counters: Counters::default(),
            buf: [0; wire::MAX_MESSAGE_LEN],
            goodbye: [0; wire::MAX_MESSAGE_LEN],
        };
        core.begin_burst(now_ms);
        core.watch_loneliness(now_ms);
        core.set(Timer::Publish, now_ms);
        core
    }

    /// The map as it is now.
    pub fn map(&self) -> &ClusterMap {
        &self.map
    }

    /// This node's id.
    pub fn own_id(&self) -> NodeId {
        self.map.own_id()
    }

    /// This node's identity (primary address).
    pub fn primary(&self) -> Ipv4Addr {
        self.primary
    }

    /// This start's incarnation.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The links that send announcements now.
    pub fn sending_links(&self) -> impl Iterator<Item = &Link> {
        (0..self.links.len())
            .filter(|&i| self.sends_on(i))
            .map(|i| &self.links[i])
    }

    /// True once a [`Input::Stop`] has been handled and every goodbye sent.
    pub fn finished(&self) -> bool {
        self.stopping && self.goodbyes_left == 0
    }

    /// The next instant (ms) at which [`Core::poll`] has something to do;
    /// `None` once finished.
    pub fn poll_at(&self) -> Option<u64> {
        let timers = self.timers.iter().flatten().copied();
        let replies = self.replies.iter().map(|r| r.due_ms);
        timers.chain(replies).min()
    }

    /// Does whatever is due at `now_ms`.
    pub fn poll(&mut self, now_ms: u64, io: &mut impl Actions) {
        if self.due(Timer::Goodbye, now_ms) {
            self.send_goodbye(now_ms, io);
        }
        if self.stopping {
            return;
        }
        if self.due(Timer::Announce, now_ms) {
            self.announce(now_ms, io);
        }
        if self.replies.iter().any(|r| r.due_ms <= now_ms) {
            self.send_due_replies(now_ms, io);
        }
        if self.due(Timer::Expiry, now_ms) {
            if self.map.expire(now_ms) > 0 {
                self.schedule_publish(now_ms);
            }
            self.last_expiry_ms = now_ms;
            self.timers[Timer::Expiry as usize] = self
                .map
                .next_expiry_ms()
                .map(|t| t.max(now_ms + EXPIRY_GRANULARITY_MS));
        }
        if self.due(Timer::Lonely, now_ms) {
            self.timers[Timer::Lonely as usize] = None;
            if !self.heard_other {
                let intervals = LONELY_INTERVALS;
                io.event(now_ms, Event::Lonely { intervals });
            }
        }
        if self.due(Timer::Publish, now_ms) {
            self.publish(now_ms, true, true, io);
        } else {
            let file = self.due(Timer::FileRetry, now_ms);
            let kernel = self.due(Timer::KernelRetry, now_ms);
            if file || kernel {
                self.publish(now_ms, file, kernel, io);
            }
        }
    }

    /// Feeds one input at `now_ms`.
    pub fn handle(&mut self, now_ms: u64, input: Input<'_>, io: &mut impl Actions) {
        if self.stopping {
            return;
        }
        match input {
            Input::Datagram(d) => self.on_datagram(now_ms, d, io),
            Input::Truncated { src } => {
                self.counters.received += 1;
                self.drop_packet(now_ms, ParseError::LengthMismatch, src, io);
            }
            Input::KernelDrops(total) => {
                if total > self.counters.kernel_overflows {
                    let more = total - self.counters.kernel_overflows;
                    self.counters.kernel_overflows = total;
                    io.event(now_ms, Event::KernelDrops { more });
                }
            }
            Input::Links(links) => self.on_links(now_ms, links, io),
            Input::Rejoin => self.begin_burst(now_ms),
            Input::KernelFailed => {
                self.set(Timer::KernelRetry, now_ms + PUBLISH_RETRY_MS);
            }
            Input::Stop => {
                if self.map.is_dirty() || self.timers[Timer::Publish as usize].is_some() {
                    self.publish(now_ms, true, true, io);
                }
                self.timers = [None; Timer::COUNT];
                self.replies.clear();
                self.stopping = true;
                self.begin_goodbye(now_ms, io);
            }
        }
    }

    // ---- timers ----------------------------------------------------------

    fn set(&mut self, t: Timer, at_ms: u64) {
        self.timers[t as usize] = Some(at_ms);
    }

    /// True (and the timer cleared) if `t` is due at `now_ms`.
    fn due(&mut self, t: Timer, now_ms: u64) -> bool {
        let slot = &mut self.timers[t as usize];
        if slot.is_some_and(|at| now_ms >= at) {
            *slot = None;
            true
        } else {
            false
        }
    }

    // ---- announcing ------------------------------------------------------

    fn watch_loneliness(&mut self, now_ms: u64) {
        self.heard_other = false;
        let after = LONELY_INTERVALS * u64::from(self.settings.interval_ms);
        self.set(Timer::Lonely, now_ms + after);
    }

    fn begin_burst(&mut self, now_ms: u64) {
        self.burst_left = STARTUP_BURST;
        self.burst_gap_ms = BURST_GAP_MS.min(self.settings.interval_ms / 2).max(1);
        let delay = self.rng.below(STARTUP_JITTER_MS + 1);
        self.set(Timer::Announce, now_ms + u64::from(delay));
    }

    fn announce(&mut self, now_ms: u64, io: &mut impl Actions) {
        self.send_own(MessageType::Announce, Dest::Group, None, 0, io);
        let next = if self.burst_left > 1 {
            self.burst_left -= 1;
            let gap = self.burst_gap_ms;
            self.burst_gap_ms = gap.saturating_mul(2);
            u64::from(gap)
        } else {
            self.burst_left = 0;
            let interval = u64::from(self.settings.interval_ms);
            self.rng.jitter_ms(interval, ANNOUNCE_JITTER_PERCENT)
        };
        self.set(Timer::Announce, now_ms + next);
    }

    /// Writes one of our own messages into `buf`; returns its length.
    fn emit_own(&mut self, kind: MessageType, flag_bits: u8, buf_is_goodbye: bool) -> usize {
        self.sequence = self.sequence.wrapping_add(1);
        let own = self.map.own_node();
        let mut repr = Repr::new(
            kind,
            own.addr,
            self.incarnation,
            self.settings.label,
            self.settings.interval_ms,
            self.settings.hold_ms,
        );
        repr.flags = flag_bits;
        repr.sequence = self.sequence;
        repr.aliases.extend(own.aliases());
        let buf = if buf_is_goodbye {
            &mut self.goodbye
        } else {
            &mut self.buf
        };
        // Our own identity and settings were validated when they were taken:
        // an invalid message here is a bug, and sending nothing is the answer.
        repr.emit(buf).unwrap_or(0)
    }

    /// Sends one of our own messages: to one node out of `ifindex`, or to
    /// the group out of every interface that sends.
    fn send_own(
        &mut self,
        kind: MessageType,
        to: Dest,
        ifindex: Option<u32>,
        flag_bits: u8,
        io: &mut impl Actions,
    ) {
        let len = self.emit_own(kind, flag_bits, false);
        if len == 0 {
            return;
        }
        match ifindex {
            Some(ifindex) => {
                let src = self
                    .links
                    .iter()
                    .find(|l| l.index == ifindex)
                    .and_then(|l| l.addr);
                let d = Datagram {
                    to,
                    ifindex,
                    src,
                    bytes: &self.buf[..len],
                };
                let ok = io.send(&d);
                self.count_send(ok);
            }
            None => self.multicast(len, None, false, io),
        }
    }

    /// Sends `self.buf[..len]` (or the goodbye) to the group out of every
    /// sending link but `except`.
    fn multicast(&mut self, len: usize, except: Option<u32>, goodbye: bool, io: &mut impl Actions) {
        for i in 0..self.links.len() {
            let link = self.links[i];
            if !self.sends_on(i) || Some(link.index) == except {
                continue;
            }
            let bytes = if goodbye {
                &self.goodbye[..len]
            } else {
                &self.buf[..len]
            };
            let d = Datagram {
                to: Dest::Group,
                ifindex: link.index,
                src: link.addr,
                bytes,
            };
            let ok = io.send(&d);
            self.count_send(ok);
            if ok && except.is_some() {
                self.counters.relayed += 1;
            }
        }
    }

    fn count_send(&mut self, ok: bool) {
        if ok {
            self.counters.sent += 1;
        } else {
            self.counters.send_errors += 1;
        }
    }

    fn sends_on(&self, i: usize) -> bool {
        let link = &self.links[i];
        link.up && link.addr.is_some() && (!self.settings.routed || i == 0)
    }

    fn send_due_replies(&mut self, now_ms: u64, io: &mut impl Actions) {
        let mut i = 0;
        while i < self.replies.len() {
            if self.replies[i].due_ms <= now_ms {
                let r = self.replies.swap_remove(i);
                self.counters.replies += 1;
                let to = Dest::Node(r.to);
                self.send_own(MessageType::Announce, to, Some(r.ifindex), flags::REPLY, io);
            } else {
                i += 1;
            }
        }
    }

    fn schedule_reply(&mut self, to: Ipv4Addr, ifindex: u32, now_ms: u64) {
        if self.replies.iter().any(|r| r.to == to) {
            return;
        }
        let spread = (self.settings.interval_ms / 4).clamp(1, REPLY_SPREAD_MS);
        let due_ms = now_ms + REPLY_MIN_DELAY_MS + u64::from(self.rng.below(spread));
        let _ = self.replies.push(PendingReply {
            to,
            ifindex,
            due_ms,
        });
    }

    /// LEAVE under the current identity, now and [`GOODBYES`]` - 1` more
    /// times [`GOODBYE_GAP_MS`] apart.
    fn begin_goodbye(&mut self, now_ms: u64, io: &mut impl Actions) {
        self.goodbye_len = self.emit_own(MessageType::Leave, 0, true);
        self.goodbyes_left = GOODBYES;
        self.send_goodbye(now_ms, io);
    }

    fn send_goodbye(&mut self, now_ms: u64, io: &mut impl Actions) {
        if self.goodbyes_left == 0 || self.goodbye_len == 0 {
            self.goodbyes_left = 0;
            return;
        }
        self.multicast(self.goodbye_len, None, true, io);
        self.goodbyes_left -= 1;
        if self.goodbyes_left > 0 {
            self.set(Timer::Goodbye, now_ms + GOODBYE_GAP_MS);
        }
    }

    // ---- receiving -------------------------------------------------------

    fn drop_packet(
        &mut self,
        now_ms: u64,
        error: ParseError,
        src: SocketAddrV4,
        io: &mut impl Actions,
    ) {
        self.counters.dropped[error.index()] += 1;
        io.event(now_ms, Event::Dropped { src, error });
    }

    fn on_datagram(&mut self, now_ms: u64, d: Received<'_>, io: &mut impl Actions) {
        self.counters.received += 1;
        let repr = match Repr::parse(d.data) {
            Ok(r) => r,
            Err(e) => return self.drop_packet(now_ms, e, d.src, io),
        };
        if repr.label != self.settings.label {
            self.counters.foreign_cluster += 1;
            io.event(now_ms, Event::ForeignCluster { addr: repr.addr });
            return;
        }
        if repr.node_id == self.map.own_id() && repr.incarnation == self.incarnation {
            self.counters.own_looped += 1;
            return;
        }
        self.heard_other = true;
        let accepted = match repr.kind {
            MessageType::Announce => self.on_announce(now_ms, &repr, d, io),
            MessageType::Leave => {
                self.map.apply_leave(repr.addr, repr.incarnation) == LeaveOutcome::Removed
            }
            MessageType::Sync => {
                for e in &repr.entries {
                    let out = self
                        .map
                        .apply_hearsay(e.addr, e.incarnation, e.hold_ms, now_ms);
                    if out == AnnounceOutcome::Joined {
                        self.note_expiry(now_ms + u64::from(e.hold_ms));
                    }
                }
                false
            }
        };
        if self.map.is_dirty() {
            self.schedule_publish(now_ms);
        }
        if accepted && d.multicast {
            self.relay(d.data, repr.hops, d.ifindex, io);
        }
    }

    fn on_announce(
        &mut self,
        now_ms: u64,
        repr: &Repr,
        d: Received<'_>,
        io: &mut impl Actions,
    ) -> bool {
        let a = Announcement {
            addr: repr.addr,
            aliases: &repr.aliases,
            incarnation: repr.incarnation,
            sequence: repr.sequence,
            hold_ms: repr.hold_ms,
        };
        match self.map.apply_announce(&a, now_ms) {
            AnnounceOutcome::Joined | AnnounceOutcome::Restarted => {
                self.note_expiry(now_ms + u64::from(repr.hold_ms));
                let direct = repr.hops == 0 && repr.flags & flags::REPLY == 0;
                if direct {
                    self.schedule_reply(*d.src.ip(), d.ifindex, now_ms);
                }
                let (id, addr) = (repr.node_id, repr.addr);
                io.event(now_ms, Event::Joined { id, addr });
                true
            }
            AnnounceOutcome::Refreshed => true,
            AnnounceOutcome::Collision(c) => {
                if c.first_report {
                    io.event(now_ms, Event::Collision(c));
                }
                false
            }
            AnnounceOutcome::Stale | AnnounceOutcome::Ignored => false,
        }
    }

    fn note_expiry(&mut self, at_ms: u64) {
        let at = at_ms.max(self.last_expiry_ms + EXPIRY_GRANULARITY_MS);
        let t = &mut self.timers[Timer::Expiry as usize];
        *t = Some(t.map_or(at, |old| old.min(at)));
    }

    /// Basic routing (the original's, without `-m`): a node on several
    /// networks forwards what it heard on one to the others.
    fn relay(&mut self, data: &[u8], hops: u8, from_ifindex: u32, io: &mut impl Actions) {
        if self.settings.routed || self.links.len() < 2 || hops >= MAX_HOPS {
            return;
        }
        let Some(buf) = self.buf.get_mut(..data.len()) else {
            return;
        };
        buf.copy_from_slice(data);
        wire::set_hops(buf, hops + 1);
        self.multicast(data.len(), Some(from_ifindex), false, io);
    }

    // ---- interfaces and identity -------------------------------------------

    fn on_links(&mut self, now_ms: u64, fresh: &[Link], io: &mut impl Actions) {
        let fresh = &fresh[..fresh.len().min(MAX_INTERFACES)];
        let Some(new_primary) = fresh.iter().find_map(|l| l.addr) else {
            io.event(now_ms, Event::NoAddress);
            self.links = fresh.iter().copied().collect();
            return;
        };
        if wire::node_id_of(new_primary) == 0 {
            let keeping = self.primary;
            io.event(
                now_ms,
                Event::InvalidAddress {
                    new: new_primary,
                    keeping,
                },
            );
            return;
        }
        let came_up = fresh
            .iter()
            .any(|l| l.up && self.links.iter().any(|old| old.index == l.index && !old.up));
        // The fresh links first: the goodbye must leave from an address we
        // still have (the old one may be gone already).
        self.links = fresh.iter().copied().collect();
        let primary_changed = new_primary != self.primary;
        if primary_changed {
            let old = self.primary;
            io.event(
                now_ms,
                Event::AddressChanged {
                    old,
                    new: new_primary,
                },
            );
            self.begin_goodbye(now_ms, io);
        }
        let aliases = alias_addrs(&self.links, new_primary);
        let aliases_changed = !self.map.own_node().aliases().eq(aliases.iter().copied());
        if primary_changed || aliases_changed {
            self.primary = new_primary;
            self.map.set_own(new_primary, &aliases, self.incarnation);
            self.schedule_publish(now_ms);
            self.begin_burst(now_ms);
        }
        if came_up {
            self.begin_burst(now_ms);
            self.watch_loneliness(now_ms);
        }
    }

    // ---- publishing ------------------------------------------------------

    fn schedule_publish(&mut self, now_ms: u64) {
        let t = &mut self.timers[Timer::Publish as usize];
        if t.is_none() {
            *t = Some(now_ms + PUBLISH_DELAY_MS);
        }
    }

    fn publish(&mut self, now_ms: u64, file: bool, kernel: bool, io: &mut impl Actions) {
        let changes = file && kernel;
        if changes {
            self.timers[Timer::Publish as usize] = None;
            self.counters.publishes += 1;
        }
        let p = Publish {
            map: &self.map,
            file,
            kernel,
            changes,
        };
        let r = io.publish(&p);
        if changes {
            self.map.mark_published();
        }
        if file {
            self.timers[Timer::FileRetry as usize] =
                r.file_failed.then_some(now_ms + PUBLISH_RETRY_MS);
        }
        if kernel {
            self.timers[Timer::KernelRetry as usize] =
                r.kernel_failed.then_some(now_ms + PUBLISH_RETRY_MS);
        }
    }
}

/// The other links' addresses: the node's openMosix aliases.
fn alias_addrs(links: &[Link], primary: Ipv4Addr) -> ArrayVec<Ipv4Addr, MAX_INTERFACES> {
    let mut v = ArrayVec::new();
    for a in links.iter().filter_map(|l| l.addr) {
        if a != primary && !v.contains(&a) {
            v.push(a);
        }
    }
    v
}
