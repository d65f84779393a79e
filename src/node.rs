//! The protocol core of one node: everything omdiscd decides, and no I/O.
//!
//! Modelled on smoltcp's `Interface::poll` / `poll_at`. A [`Core`] owns the
//! node's identity, the cluster map, every protocol timer (start-up burst,
//! announce interval and its budget, asks for the map and answers to them,
//! expiry and overload, the loneliness warning, publish coalescing and
//! retries, the goodbye) and the counters.
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

use crate::auth::{Keyring, Mode, Verdict};
use crate::cli::MAX_INTERFACES;
use crate::counters::Counters;
use crate::map::{
    AnnounceOutcome, Announcement, ClusterMap, Collision, Duplicate, LeaveOutcome, NodeId,
    SenderCheck,
};
use crate::rate::Bucket;
use crate::rng::Rng;
use crate::wire::{self, flags, Auth, Label, MessageType, ParseError, Repr, SyncEntry};

/// Changes within this window are published together (coalescing).
pub const PUBLISH_DELAY_MS: u64 = 100;

/// First announcement after a random delay of up to this (as mDNS probes),
/// or longer when a large cluster is expected (see [`STARTUP_RATE_FACTOR`]).
pub const STARTUP_JITTER_MS: u32 = 250;

/// When a cluster of N nodes is expected, the first announcements are
/// spread over N / (this x budget) seconds: a cold boot of the whole
/// cluster sends its first round at about this many times the budget.
pub const STARTUP_RATE_FACTOR: u64 = 4;

/// The start-up delay is at most this long, whatever the expected size.
pub const MAX_STARTUP_WINDOW_MS: u64 = 30_000;

/// Announcements sent in the start-up burst (the first and two more).
pub const STARTUP_BURST: u8 = 3;

/// Largest gap of the start-up burst before doubling.
pub const BURST_GAP_MS: u32 = 500;

/// The periodic announcement is spread by this many percent either way, so
/// nodes booted together drift apart.
pub const ANNOUNCE_JITTER_PERCENT: u32 = 20;

/// The announce interval grows at most this many times from one
/// announcement to the next, so that a sudden jump in the nodes known (a
/// large SYNC, a healed partition) slows the pace over a few announcements
/// rather than at once.
pub const MAX_STRETCH: u32 = 2;

/// Relays forward a message at most this many hops.
pub const MAX_HOPS: u8 = 4;

/// A joining node asks for the map (ANNOUNCE with `JOIN`) in at most this
/// many announcements (its start-up burst, then more with back-off) until
/// it is answered and its map is as large as its peers say theirs are.
pub const MAX_ASKS: u8 = 6;

/// Asks after the burst come with doubling gaps up to this, as long as they
/// come sooner than the interval.
pub const MAX_ASK_GAP_MS: u32 = 2_000;

/// A member answers an ask with probability ANSWERERS / (the members it
/// knows besides itself and the asker), so about this many answer it
/// whatever the size of the cluster.
pub const ANSWERERS: u32 = 3;

/// Askers waiting for this node's answer. Two or more on one link are
/// answered by one multicast, so a full list loses nobody.
pub const MAX_PENDING_ANSWERS: usize = 64;

/// An answer waits at least this long ...
pub const ANSWER_MIN_DELAY_MS: u64 = 10;

/// ... plus a random part below min(interval / 4, this), so that a member
/// that hears another's multicast answer first can stay quiet.
pub const ANSWER_SPREAD_MS: u32 = 500;

/// A node that cannot keep up stretches its own interval by up to this
/// factor (doubling with each overload, halving after each interval
/// without one).
pub const MAX_OVERLOAD_FACTOR: u32 = 4;

/// A poll this late after its instant counts as an overload: the node (or
/// its machine) was too busy or stopped, and what it failed to read must
/// not look like silence.
pub const OVERLOAD_LATE_MS: u64 = 1_000;

/// A caller reads up to this many datagrams at once (per wake-up) and
/// tells the core [`Input::Behind`] when more were waiting.
pub const READ_AT_ONCE: usize = 512;

/// Datagrams left waiting after every read ([`Input::Behind`]) for this
/// long count as an overload; a burst that is read within it does not.
pub const BEHIND_MS: u64 = 500;

/// Reads that leave datagrams waiting less than this apart are one spell.
const BEHIND_GAP_MS: u64 = 100;

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

/// An asker gets at most one unicast answer from a node in this long, so a
/// spoofed source cannot have the cluster send its map to a victim again
/// and again.
pub const ANSWER_REPEAT_MS: u64 = 10_000;
/// Answers a node sends per second at most, in the long run ...
pub const ANSWERS_PER_S: u64 = 2;
/// ... and at once.
pub const ANSWER_BURST: u64 = 4;
/// Unicast answers remembered for [`ANSWER_REPEAT_MS`].
const ANSWERED_MEMORY: usize = 64;
/// Probe replies a node sends per second at most, and at once.
pub const PROBE_REPLIES_PER_S: u64 = 20;
/// Up to this many other nodes, every node probes a silent node; in a
/// larger cluster each does with probability PROBERS / (nodes - 1), so a
/// node that died costs about PROBERS x [`crate::map::PROBES`] unicasts
/// (and ARP resolutions), not one set per node.
pub const PROBERS: u32 = 32;
/// A node that saw a node it had dropped come back (it loses messages)
/// probes every silent node for this long.
pub const LOSSY_MS: u64 = 3_600_000;
/// Probes a node sends per second at most, and at once (a mass death
/// costs no storm).
pub const PROBES_PER_S: u64 = 50;
/// A SIGHUP (or any rejoin) within this long of the last one starts no new
/// start-up burst: a storm of them costs no more than one.
pub const REJOIN_GAP_MS: u64 = 1_000;
/// Relay addresses remembered as members' (saves a search of the map).
const RELAY_MEMORY: usize = 8;

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
    /// Announcements per second the whole cluster should send: the
    /// interval grows to (known nodes / budget) seconds when that is longer
    /// than `interval_ms`. 0: no budget.
    pub budget: u32,
    /// Nodes expected in the cluster (e.g. the map this node published
    /// before it restarted), to spread the first announcement of a cold
    /// boot; 0: not known.
    pub expected_nodes: u32,
    /// `--auth`: what this node signs and accepts (the keys come with
    /// [`Core::set_keys`]).
    pub auth: Mode,
    /// The real-time clock when the core is made, in seconds since 1970:
    /// this incarnation's `started` (the trailer's stamp), which orders
    /// incarnations and claims to a node id.
    pub clock_s: u32,
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
    /// Sent to the group (not unicast to this node).
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
    /// More datagrams are waiting than the caller reads at once
    /// ([`READ_AT_ONCE`]): this node is behind, and what it has read is not
    /// the latest news.
    Behind,
    /// The interfaces as they are now (after a netlink event or SIGHUP), in
    /// the order given on the command line: the first one's address is the
    /// node's identity, the others are its aliases.
    Links(&'a [Link]),
    /// Start announcing afresh (SIGHUP): a new start-up burst.
    Rejoin,
    /// A kernel publish failed after [`Actions::publish`] returned (setpe's
    /// exit status arrives later): retry.
    KernelFailed,
    /// The kernel's map interface appeared (procfs was mounted late): hand
    /// it the map now.
    KernelAppeared,
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
    /// A node id is claimed by two live addresses (see [`Collision`]).
    Collision(Collision),
    /// Two live incarnations announce one address (see [`Duplicate`]).
    Duplicate(Duplicate),
    /// A message was refused for what it is or where it came from (counted).
    Refused { src: SocketAddrV4, why: Refusal },
    /// An unsigned message was accepted (`--auth permissive`; counted).
    Unsigned { src: SocketAddrV4 },
    /// The winner of this node's id went away: this node takes it back.
    IdFree { id: NodeId },
    /// A node joined (or restarted).
    Joined { id: NodeId, addr: Ipv4Addr },
    /// No other node heard for [`LONELY_INTERVALS`] intervals.
    Lonely { intervals: u64 },
    /// This node cannot keep up (see [`Overload`]). Every node is held
    /// longer and the own interval is now `interval_ms`.
    Overloaded { why: Overload, interval_ms: u32 },
    /// The primary address changed: a new identity.
    AddressChanged { old: Ipv4Addr, new: Ipv4Addr },
    /// No interface has an IPv4 address: not announcing until one returns.
    NoAddress,
    /// The new address gives node id 0: the old identity is kept.
    InvalidAddress { new: Ipv4Addr, keeping: Ipv4Addr },
}

/// Why a message was refused; each has its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Signed with a key of ours, and the MAC is wrong.
    AuthFailed,
    /// Not signed, and `--auth enforce`.
    Unsigned,
    /// Signed with a key id this node does not have.
    UnknownKey,
    /// Authenticated, but not new: a replay of a message of a known
    /// incarnation, or of an incarnation that did not start later.
    Replayed,
    /// Its source address is not the sender's (a direct message), not a
    /// member's (a relayed one), or it may not be relayed at all.
    Spoofed,
    /// A SYNC from a node that is not a member (with that incarnation).
    NotMember,
}

impl Refusal {
    /// What the counters and logs call it.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::AuthFailed => "auth_failed",
            Refusal::Unsigned => "unsigned",
            Refusal::UnknownKey => "unknown_key",
            Refusal::Replayed => "replayed",
            Refusal::Spoofed => "spoofed",
            Refusal::NotMember => "not_member",
        }
    }
}

/// How a node found out that it cannot keep up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overload {
    /// The kernel dropped this many more datagrams (receive buffer full).
    Dropped(u32),
    /// A poll ran this many ms after its instant.
    Late(u64),
    /// Datagrams were left waiting after every read for [`BEHIND_MS`]
    /// ([`Input::Behind`]).
    Behind,
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

impl Counters {
    fn refused(&mut self, why: Refusal) {
        *match why {
            Refusal::AuthFailed => &mut self.auth_failed,
            Refusal::Unsigned => &mut self.unsigned,
            Refusal::UnknownKey => &mut self.unknown_key,
            Refusal::Replayed => &mut self.replayed,
            Refusal::Spoofed => &mut self.spoofed,
            Refusal::NotMember => &mut self.not_member,
        } += 1;
    }
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
    Answer,
}

impl Timer {
    const COUNT: usize = 8;
}

/// A node that asked for the map, waiting for this node's answer.
#[derive(Clone, Copy, Debug)]
struct PendingAnswer {
    to: Ipv4Addr,
    ifindex: u32,
}

/// One node's protocol state. See the module documentation.
pub struct Core {
    settings: Settings,
    keys: Keyring,
    links: ArrayVec<Link, MAX_INTERFACES>,
    primary: Ipv4Addr,
    incarnation: u32,
    /// When this incarnation started (seconds of the real-time clock).
    started: u32,
    /// When the core was made (the clock reading of `settings.clock_s`).
    created_ms: u64,
    sequence: u32,
    rng: Rng,
    map: ClusterMap,
    timers: [Option<u64>; Timer::COUNT],
    burst_left: u8,
    burst_gap_ms: u32,
    heard_other: bool,
    last_expiry_ms: u64,
    /// Asks left in this join; 0: not joining.
    asks_left: u8,
    /// An answer has come ...
    answered: bool,
    /// ... from a member that knew this many nodes.
    wanted: u16,
    answers: heapless::Vec<PendingAnswer, MAX_PENDING_ANSWERS>,
    /// Recent unicast answers (destination, when), oldest first.
    answered_to: heapless::Deque<(Ipv4Addr, u64), ANSWERED_MEMORY>,
    answer_bucket: Bucket,
    probe_bucket: Bucket,
    /// Relay source addresses found to be members' (address, until).
    relays: heapless::Deque<(Ipv4Addr, u64), RELAY_MEMORY>,
    last_rejoin_ms: Option<u64>,
    probe_send_bucket: Bucket,
    /// Until then this node probes every silent node (see [`LOSSY_MS`]).
    lossy_until_ms: u64,
    /// The last announcement: when, and the interval it advertised.
    last_announce_ms: u64,
    advertised_ms: u32,
    /// The next periodic gap as drawn, and the interval it was drawn for
    /// (reconsideration scales it to the interval of the moment).
    gap_ms: u64,
    gap_interval_ms: u32,
    overload_factor: u32,
    overload_until_ms: u64,
    /// Since when, and last when, reads left datagrams waiting.
    behind_since_ms: u64,
    behind_last_ms: Option<u64>,
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
        let started = settings.clock_s.max(1);
        let links: ArrayVec<Link, MAX_INTERFACES> =
            links.iter().copied().take(MAX_INTERFACES).collect();
        let aliases = alias_addrs(&links, primary);
        let mut core = Core {
            settings,
            keys: Keyring::default(),
            primary,
            incarnation,
            started,
            created_ms: now_ms,
            sequence: 0,
            rng,
            map: ClusterMap::new(primary, &aliases, incarnation),
            links,
            timers: [None; Timer::COUNT],
            burst_left: 0,
            burst_gap_ms: 0,
            heard_other: false,
            last_expiry_ms: 0,
            asks_left: 0,
            answered: false,
            wanted: 0,
            answers: heapless::Vec::new(),
            answered_to: heapless::Deque::new(),
            answer_bucket: Bucket::full(ANSWER_BURST),
            probe_bucket: Bucket::full(PROBE_REPLIES_PER_S),
            relays: heapless::Deque::new(),
            last_rejoin_ms: None,
            probe_send_bucket: Bucket::full(PROBES_PER_S),
            lossy_until_ms: 0,
            last_announce_ms: now_ms,
            advertised_ms: settings.interval_ms,
            gap_ms: u64::from(settings.interval_ms),
            gap_interval_ms: settings.interval_ms,
            overload_factor: 1,
            overload_until_ms: 0,
            behind_since_ms: 0,
            behind_last_ms: None,
            goodbyes_left: 0,
            goodbye_len: 0,
            stopping: false,
            counters: Counters::default(),
            buf: [0; wire::MAX_MESSAGE_LEN],
            goodbye: [0; wire::MAX_MESSAGE_LEN],
        };
        core.map.set_own_claim(started, core.signs());
        core.begin_burst(now_ms);
        core.watch_loneliness(now_ms);
        core.set(Timer::Publish, now_ms);
        core
    }

    /// The keys to sign with (the first) and to check with (all): from the
    /// key file, at start and on SIGHUP. Empty: messages go out unsigned.
    pub fn set_keys(&mut self, keys: Keyring) {
        self.keys = keys;
    }

    /// The id of the key this node signs with, if any.
    pub fn signing_key(&self) -> Option<u32> {
        self.keys.ids().next()
    }

    /// The keys it signs and checks with.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// When this incarnation started (seconds since 1970, its own clock).
    pub fn started(&self) -> u32 {
        self.started
    }

    /// Makes `addr` a permanent member of the map (`--static-nodes`; see
    /// [`ClusterMap::pin`]).
    pub(crate) fn pin(&mut self, addr: Ipv4Addr, aliases: &[Ipv4Addr]) -> Result<(), Ipv4Addr> {
        self.map.pin(addr, aliases)
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
        self.timers.iter().flatten().copied().min()
    }

    /// The interval this node announces at now: the configured one, longer
    /// when the cluster is large (the budget) or this node is overloaded.
    pub fn interval_ms(&self) -> u32 {
        let base = u64::from(self.settings.interval_ms);
        let budget = u64::from(self.settings.budget);
        let n = self.map.len() as u64;
        let by_budget = (n * 1000).checked_div(budget).unwrap_or(0);
        let t = base.max(by_budget) * u64::from(self.overload_factor);
        let cap = u64::from(self.advertised_ms) * u64::from(MAX_STRETCH);
        t.min(cap).min(u64::from(wire::MAX_INTERVAL_MS)) as u32
    }

    /// The hold advertised with `interval_ms`: the configured hold, scaled
    /// as the interval is, and by [`hold_scale`] of the nodes known.
    fn hold_for(&self, interval_ms: u32) -> u32 {
        let s = &self.settings;
        let hold = u64::from(s.hold_ms) * u64::from(interval_ms) / u64::from(s.interval_ms.max(1))
            * hold_scale_permille(self.map.len())
            / 1000;
        hold.clamp(u64::from(interval_ms), u64::from(wire::MAX_HOLD_MS)) as u32
    }

    /// Does whatever is due at `now_ms`.
    pub fn poll(&mut self, now_ms: u64, io: &mut impl Actions) {
        if self.due(Timer::Goodbye, now_ms) {
            self.send_goodbye(now_ms, io);
        }
        if self.stopping {
            return;
        }
        if let Some(late_ms) = self
            .poll_at()
            .map(|at| now_ms.saturating_sub(at))
            .filter(|&late| late >= OVERLOAD_LATE_MS)
        {
            self.overloaded(now_ms, Overload::Late(late_ms), io);
        }
        if self.due(Timer::Announce, now_ms) {
            self.announce(now_ms, io);
        }
        if self.due(Timer::Answer, now_ms) {
            self.send_answers(now_ms, io);
        }
        if self.due(Timer::Expiry, now_ms) {
            let mut after = None;
            // A node that lost its id to another probes nobody.
            let probing = !self.map.yielded();
            while let Some(p) = self.map.next_probe(now_ms, after).filter(|_| probing) {
                after = Some(p.id);
                if p.first && now_ms >= self.lossy_until_ms {
                    let others = (self.map.len() as u32).saturating_sub(1).max(1);
                    if self.rng.below(others) >= PROBERS {
                        self.map.skip_probes(p.id);
                        continue;
                    }
                }
                if !self
                    .probe_send_bucket
                    .take(now_ms, PROBES_PER_S, PROBES_PER_S)
                {
                    self.map.skip_probes(p.id);
                    continue;
                }
                self.counters.probes += 1;
                let len = self.emit_own(MessageType::Announce, flags::PROBE, false);
                self.send_buf(len, Dest::Node(p.addr), p.ifindex, io);
            }
            if self.map.expire(now_ms) > 0 {
                self.schedule_publish(now_ms);
                self.reconsider(now_ms);
            }
            self.last_expiry_ms = now_ms;
            let next = self.map.next_deadlines();
            let expiry = next.expiry.map(|t| t.max(now_ms + EXPIRY_GRANULARITY_MS));
            // Probes of a silent node keep their spacing, however short.
            let probe = next.probing.map(|t| t.max(now_ms + 1));
            self.timers[Timer::Expiry as usize] = match (expiry, probe) {
                (Some(e), Some(p)) => Some(e.min(p)),
                (e, p) => e.or(p),
            };
        }
        if self.map.yielded() && self.map.get(self.map.own_id()).is_none() {
            // The node that won this node's id is gone (it left or expired):
            // take the id back.
            let id = self.map.own_id();
            io.event(now_ms, Event::IdFree { id });
            let aliases = alias_addrs(&self.links, self.primary);
            self.map.set_own(self.primary, &aliases, self.incarnation);
            self.map.set_own_claim(self.started, self.signs());
            self.schedule_publish(now_ms);
            self.begin_burst(now_ms);
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
                    self.overloaded(now_ms, Overload::Dropped(more), io);
                }
            }
            Input::Behind => {
                let spell_goes_on = self
                    .behind_last_ms
                    .is_some_and(|last| now_ms <= last + BEHIND_GAP_MS);
                if !spell_goes_on {
                    self.behind_since_ms = now_ms;
                }
                self.behind_last_ms = Some(now_ms);
                if now_ms >= self.behind_since_ms + BEHIND_MS {
                    self.overloaded(now_ms, Overload::Behind, io);
                }
            }
            Input::Links(links) => self.on_links(now_ms, links, io),
            Input::Rejoin => {
                // A storm of SIGHUPs costs one burst.
                let recent = self
                    .last_rejoin_ms
                    .is_some_and(|last| now_ms < last + REJOIN_GAP_MS);
                if !recent && self.burst_left == 0 {
                    self.last_rejoin_ms = Some(now_ms);
                    self.begin_burst(now_ms);
                }
            }
            Input::KernelFailed => {
                self.set(Timer::KernelRetry, now_ms + PUBLISH_RETRY_MS);
            }
            Input::KernelAppeared => self.set(Timer::KernelRetry, now_ms),
            Input::Stop => {
                if self.map.is_dirty() || self.timers[Timer::Publish as usize].is_some() {
                    self.publish(now_ms, true, true, io);
                }
                self.timers = [None; Timer::COUNT];
                self.answers.clear();
                self.stopping = true;
                self.begin_goodbye(now_ms, None, io);
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

    /// A new start-up burst, and a new join: the burst's announcements ask
    /// for the map.
    fn begin_burst(&mut self, now_ms: u64) {
        self.burst_left = STARTUP_BURST;
        self.burst_gap_ms = BURST_GAP_MS.min(self.settings.interval_ms / 2).max(1);
        self.asks_left = MAX_ASKS;
        self.answered = false;
        self.wanted = 0;
        let window = self.startup_window_ms();
        let delay = self.rng.below(window + 1);
        self.set(Timer::Announce, now_ms + u64::from(delay));
    }

    /// The first announcement waits a random part of this: long enough
    /// that a cold boot of the expected cluster starts at
    /// [`STARTUP_RATE_FACTOR`] times the budget.
    fn startup_window_ms(&self) -> u32 {
        let expected = u64::from(self.settings.expected_nodes).max(self.map.len() as u64);
        let budget = u64::from(self.settings.budget);
        let spread = (expected * 1000)
            .checked_div(STARTUP_RATE_FACTOR * budget)
            .unwrap_or(0);
        spread.clamp(u64::from(STARTUP_JITTER_MS), MAX_STARTUP_WINDOW_MS) as u32
    }

    /// Still asking for the map: asks left, and no answer yet, or this map
    /// is smaller than a member said its own was (every ANNOUNCE says).
    fn wants_map(&self) -> bool {
        self.asks_left > 0 && !(self.answered && self.map.len() >= usize::from(self.wanted))
    }

    /// The periodic gap as drawn, scaled to `interval_ms` (RFC 3550's
    /// reverse reconsideration: the same random draw, the shorter interval).
    fn scaled_gap(&self, interval_ms: u32) -> u64 {
        self.gap_ms * u64::from(interval_ms) / u64::from(self.gap_interval_ms.max(1))
    }

    fn announce(&mut self, now_ms: u64, io: &mut impl Actions) {
        if now_ms >= self.overload_until_ms && self.overload_factor > 1 {
            self.overload_factor /= 2;
        }
        // A grown cluster stretches the interval from this announcement on
        // (each advertises the interval before its successor, so a peer's
        // hold always covers the gap); a shrunk one is handled at once by
        // `reconsider`.
        self.advertised_ms = self.interval_ms();
        if self.map.yielded() {
            // Not a member while another node holds this id: listen only.
            let interval = u64::from(self.advertised_ms);
            let gap = self.rng.jitter_ms(interval, ANNOUNCE_JITTER_PERCENT);
            self.set(Timer::Announce, now_ms + gap);
            return;
        }
        let ask = self.wants_map();
        let flag_bits = if ask {
            self.asks_left -= 1;
            self.counters.asks += 1;
            flags::JOIN
        } else {
            self.asks_left = 0;
            0
        };
        self.send_own(MessageType::Announce, Dest::Group, None, flag_bits, io);
        self.last_announce_ms = now_ms;
        // The burst; then, while the map is still short, asks with gaps
        // doubling up to MAX_ASK_GAP_MS as long as they come sooner than the
        // interval; then the interval, randomised.
        let next = if self.burst_left > 1 {
            self.burst_left -= 1;
            let gap = self.burst_gap_ms;
            self.burst_gap_ms = gap.saturating_mul(2);
            u64::from(gap)
        } else {
            self.burst_left = 0;
            self.gap_interval_ms = self.advertised_ms;
            self.gap_ms = if self.wants_map() && self.burst_gap_ms < self.advertised_ms {
                let gap = self.burst_gap_ms;
                self.burst_gap_ms = gap.saturating_mul(2).min(MAX_ASK_GAP_MS);
                u64::from(gap)
            } else {
                let interval = u64::from(self.advertised_ms);
                self.rng.jitter_ms(interval, ANNOUNCE_JITTER_PERCENT)
            };
            self.gap_ms
        };
        self.set(Timer::Announce, now_ms + next);
    }

    /// Reverse reconsideration: the cluster shrank, so the next periodic
    /// announcement comes as early as the shorter interval says.
    fn reconsider(&mut self, now_ms: u64) {
        let t = self.interval_ms();
        if self.burst_left > 0 || self.stopping || t >= self.gap_interval_ms {
            return;
        }
        let due = (self.last_announce_ms + self.scaled_gap(t)).max(now_ms);
        let slot = &mut self.timers[Timer::Announce as usize];
        if slot.is_some_and(|at| due < at) {
            *slot = Some(due);
        }
    }

    /// This node cannot keep up (see [`Event::Overloaded`]): nobody
    /// expires for what it failed to read, and it announces less often
    /// and answers nobody until an interval has passed without overload.
    fn overloaded(&mut self, now_ms: u64, why: Overload, io: &mut impl Actions) {
        if now_ms >= self.overload_until_ms {
            self.overload_factor = (self.overload_factor * 2).min(MAX_OVERLOAD_FACTOR);
            self.counters.overloads += 1;
        }
        self.map.postpone_expiry(now_ms);
        let interval_ms = self.interval_ms();
        self.overload_until_ms = now_ms + u64::from(interval_ms);
        io.event(now_ms, Event::Overloaded { why, interval_ms });
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
            self.advertised_ms,
            self.hold_for(self.advertised_ms),
        );
        repr.flags = flag_bits;
        repr.sequence = self.sequence;
        repr.members = u16::try_from(self.map.len()).unwrap_or(u16::MAX);
        repr.aliases.extend(own.aliases());
        repr.auth = Some(self.trailer());
        let buf = if buf_is_goodbye {
            &mut self.goodbye
        } else {
            &mut self.buf
        };
        // Our own identity and settings were validated when they were taken:
        // an invalid message here is a bug, and sending nothing is the answer.
        let len = repr.emit(buf).unwrap_or(0);
        self.keys.sign(&mut buf[..len]);
        len
    }

    /// The LEAVE of an address change into the goodbye buffer: the old
    /// identity, with the new address last among the aliases (it is sent
    /// from there). Returns its length.
    fn emit_leave_moving_to(&mut self, new: Ipv4Addr) -> usize {
        let Ok(mut repr) = Repr::parse(&self.goodbye[..self.goodbye_len]) else {
            return 0;
        };
        if repr.aliases.is_full() {
            repr.aliases.pop();
        }
        repr.aliases.push(new);
        repr.auth = Some(self.trailer());
        let len = repr.emit(&mut self.goodbye).unwrap_or(0);
        self.keys.sign(&mut self.goodbye[..len]);
        len
    }

    /// This node signs its messages (`--auth permissive` or `enforce`, which
    /// come with a key file): its peers that check them find them
    /// authenticated.
    fn signs(&self) -> bool {
        self.settings.auth != Mode::Off
    }

    /// The trailer of every message this node sends, before signing: the
    /// key id and MAC are filled in by [`Keyring::sign`].
    fn trailer(&self) -> Auth {
        Auth {
            key_id: crate::auth::UNSIGNED,
            stamp: self.started,
            mac: [0; wire::MAC_LEN],
        }
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
        match ifindex {
            Some(ifindex) => self.send_buf(len, to, ifindex, io),
            None => self.multicast(len, None, false, io),
        }
    }

    /// Sends `self.buf[..len]` to `to` out of `ifindex`.
    fn send_buf(&mut self, len: usize, to: Dest, ifindex: u32, io: &mut impl Actions) {
        if len == 0 {
            return;
        }
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

    /// Sends `self.buf[..len]` (or the goodbye) to the group out of every
    /// sending link but `except`.
    fn multicast(&mut self, len: usize, except: Option<u32>, goodbye: bool, io: &mut impl Actions) {
        // Nothing to send (our own message did not emit: a loopback address).
        if len == 0 {
            return;
        }
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

    // ---- answering asks ----------------------------------------------------

    /// `to` asked for the map (a direct ANNOUNCE with `JOIN`) on `ifindex`.
    /// A settled member answers with probability [`ANSWERERS`] / (members it
    /// knows besides itself and the asker), after a random delay.
    fn consider_answer(&mut self, now_ms: u64, to: Ipv4Addr, ifindex: u32) {
        let settled = self.burst_left == 0 && now_ms >= self.overload_until_ms;
        if !settled || self.map.yielded() || self.answers.iter().any(|a| a.to == to) {
            return;
        }
        if self
            .answered_to
            .iter()
            .any(|&(a, at)| a == to && now_ms < at + ANSWER_REPEAT_MS)
        {
            self.counters.answers_limited += 1;
            return;
        }
        let others = (self.map.len() as u32).saturating_sub(2).max(1);
        if self.rng.below(others) >= ANSWERERS {
            return;
        }
        if self.answers.is_empty() {
            let spread = (self.settings.interval_ms / 4).clamp(1, ANSWER_SPREAD_MS);
            let due = now_ms + ANSWER_MIN_DELAY_MS + u64::from(self.rng.below(spread));
            self.set(Timer::Answer, due);
        }
        // A full list is answered by multicast, which reaches this one too.
        let _ = self.answers.push(PendingAnswer { to, ifindex });
    }

    /// Another member answered on `ifindex` by multicast: every asker there
    /// has it, so this node's answers there are dropped.
    fn suppress_answers(&mut self, ifindex: u32) {
        let before = self.answers.len();
        self.answers.retain(|a| a.ifindex != ifindex);
        self.counters.suppressed += (before - self.answers.len()) as u64;
        if self.answers.is_empty() {
            self.timers[Timer::Answer as usize] = None;
        }
    }

    /// The answers are due: per link, one asker gets a unicast answer,
    /// several (or a full list) one multicast answer.
    fn send_answers(&mut self, now_ms: u64, io: &mut impl Actions) {
        while let Some(first) = self.answers.first().copied() {
            let ifindex = first.ifindex;
            let askers = self.answers.iter().filter(|a| a.ifindex == ifindex).count();
            let to = if askers == 1 && !self.answers.is_full() {
                Dest::Node(first.to)
            } else {
                self.counters.multicast_answers += 1;
                Dest::Group
            };
            self.answers.retain(|a| a.ifindex != ifindex);
            if !self.answer_bucket.take(now_ms, ANSWERS_PER_S, ANSWER_BURST) {
                self.counters.answers_limited += 1;
                continue;
            }
            if let Dest::Node(addr) = to {
                if self.answered_to.is_full() {
                    self.answered_to.pop_front();
                }
                let _ = self.answered_to.push_back((addr, now_ms));
            }
            self.answer(now_ms, to, ifindex, io);
        }
    }

    /// One answer: this node's ANNOUNCE with `REPLY` (it carries the size of
    /// this map), then every other node of the map in SYNCs of up to
    /// [`wire::MAX_SYNC_ENTRIES`] entries, each with the hold it has left
    /// here.
    fn answer(&mut self, now_ms: u64, to: Dest, ifindex: u32, io: &mut impl Actions) {
        self.counters.answers += 1;
        self.send_own(MessageType::Announce, to, Some(ifindex), flags::REPLY, io);
        let own = self.map.own_id();
        let asker = match to {
            Dest::Node(addr) => wire::node_id_of(addr),
            Dest::Group => 0,
        };
        let mut after = None;
        loop {
            let mut entries = ArrayVec::<SyncEntry, { wire::MAX_SYNC_ENTRIES }>::new();
            for n in self.map.iter_after(after) {
                after = Some(n.id);
                // A permanent member is this node's setting, not news: the
                // asker hears it from the node itself, or pins it too.
                if n.id == own || n.id == asker || n.pinned || n.expires_ms <= now_ms {
                    continue;
                }
                let hold_ms = u32::try_from(n.expires_ms - now_ms).unwrap_or(wire::MAX_HOLD_MS);
                entries.push(SyncEntry {
                    addr: n.addr,
                    incarnation: n.incarnation,
                    hold_ms: hold_ms.min(wire::MAX_HOLD_MS),
                });
                if entries.is_full() {
                    break;
                }
            }
            if entries.is_empty() {
                return;
            }
            let last = !entries.is_full();
            let len = self.emit_sync(&entries);
            self.send_buf(len, to, ifindex, io);
            self.counters.syncs += 1;
            if last {
                return;
            }
        }
    }

    /// Writes a SYNC answer with `entries` into `buf`; returns its length.
    fn emit_sync(&mut self, entries: &[SyncEntry]) -> usize {
        self.sequence = self.sequence.wrapping_add(1);
        let mut repr = Repr::new(
            MessageType::Sync,
            self.primary,
            self.incarnation,
            self.settings.label,
            self.advertised_ms,
            self.hold_for(self.advertised_ms),
        );
        repr.flags = flags::REPLY;
        repr.sequence = self.sequence;
        repr.entries.extend(entries.iter().copied());
        repr.auth = Some(self.trailer());
        let len = repr.emit(&mut self.buf).unwrap_or(0);
        self.keys.sign(&mut self.buf[..len]);
        len
    }

    /// LEAVE under the current identity, now and [`GOODBYES`]` - 1` more
    /// times [`GOODBYE_GAP_MS`] apart.
    fn begin_goodbye(&mut self, now_ms: u64, moving_to: Option<Ipv4Addr>, io: &mut impl Actions) {
        if self.map.yielded() {
            // Not a member: nobody holds this node, so it has nothing to leave.
            self.goodbyes_left = 0;
            return;
        }
        self.goodbye_len = self.emit_own(MessageType::Leave, 0, true);
        if let Some(new) = moving_to {
            self.goodbye_len = self.emit_leave_moving_to(new);
        }
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

    fn refuse(&mut self, now_ms: u64, src: SocketAddrV4, why: Refusal, io: &mut impl Actions) {
        self.counters.refused(why);
        io.event(now_ms, Event::Refused { src, why });
    }

    /// Checks the MAC as `--auth` says: `Some(true)` authenticated,
    /// `Some(false)` accepted without (off, or unsigned in permissive),
    /// `None` refused.
    fn authenticate(
        &mut self,
        now_ms: u64,
        d: &Received<'_>,
        repr: &Repr,
        io: &mut impl Actions,
    ) -> Option<bool> {
        let mode = self.settings.auth;
        if mode == Mode::Off {
            return Some(false);
        }
        let why = match self.keys.verify(d.data, repr.auth.is_some()) {
            Verdict::Valid => return Some(true),
            Verdict::Unsigned if mode == Mode::Permissive => {
                self.counters.unsigned += 1;
                io.event(now_ms, Event::Unsigned { src: d.src });
                return Some(false);
            }
            Verdict::Unsigned => Refusal::Unsigned,
            Verdict::UnknownKey => Refusal::UnknownKey,
            Verdict::Failed => Refusal::AuthFailed,
        };
        self.refuse(now_ms, d.src, why, io);
        None
    }

    /// The sender checks (see `docs/PROTOCOL.md`, "Relaying" and "Receiver
    /// rules"): a direct message comes from an address the sender
    /// announces; only ANNOUNCE and LEAVE are relayed, by multicast, not
    /// too far, by a member.
    fn sender_ok(&mut self, now_ms: u64, d: &Received<'_>, repr: &Repr) -> bool {
        let src = *d.src.ip();
        if repr.hops == 0 {
            return src == repr.addr
                || repr.aliases.contains(&src)
                || (repr.kind == MessageType::Sync && self.map.has_address(repr.addr, src));
        }
        let relayable = repr.kind != MessageType::Sync
            && repr.flags & (flags::REPLY | flags::PROBE) == 0
            && repr.hops <= MAX_HOPS
            && d.multicast;
        if !relayable {
            return false;
        }
        if self
            .relays
            .iter()
            .any(|&(a, until)| a == src && now_ms < until)
        {
            return true;
        }
        if !self.map.is_member_address(src) {
            return false;
        }
        if self.relays.is_full() {
            self.relays.pop_front();
        }
        let until = now_ms + u64::from(self.settings.interval_ms);
        let _ = self.relays.push_back((src, until));
        true
    }

    /// Counts a message that was not new as a replay, if it was
    /// authenticated and came from its sender itself (a copy through a relay
    /// or a second path is not a replay).
    fn not_new(
        &mut self,
        now_ms: u64,
        authentic: bool,
        d: &Received<'_>,
        repr: &Repr,
        io: &mut impl Actions,
    ) {
        if authentic && repr.hops == 0 {
            self.refuse(now_ms, d.src, Refusal::Replayed, io);
        }
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
        if !self.sender_ok(now_ms, &d, &repr) {
            return self.refuse(now_ms, d.src, Refusal::Spoofed, io);
        }
        let Some(authentic) = self.authenticate(now_ms, &d, &repr, io) else {
            return;
        };
        if repr.kind == MessageType::Sync {
            // Hearsay only from a member, in an answer, and new.
            if repr.flags & flags::REPLY == 0 {
                return self.refuse(now_ms, d.src, Refusal::NotMember, io);
            }
            let check = self
                .map
                .check_member(repr.addr, repr.incarnation, repr.sequence, now_ms);
            match check {
                SenderCheck::Member => {}
                SenderCheck::Stale => return self.not_new(now_ms, authentic, &d, &repr, io),
                SenderCheck::Stranger => return self.refuse(now_ms, d.src, Refusal::NotMember, io),
            }
        }
        self.heard_other = true;
        let answer = repr.flags & flags::REPLY != 0;
        let accepted = match repr.kind {
            MessageType::Announce => {
                let outcome = self.on_announce(now_ms, &repr, &d, authentic, io);
                if matches!(outcome, AnnounceOutcome::Stale | AnnounceOutcome::Outdated) {
                    self.not_new(now_ms, authentic, &d, &repr, io);
                }
                matches!(
                    outcome,
                    AnnounceOutcome::Joined
                        | AnnounceOutcome::Restarted
                        | AnnounceOutcome::Refreshed
                        | AnnounceOutcome::Returned
                )
            }
            MessageType::Leave => {
                let started = repr.auth.map_or(0, |t| t.stamp);
                let outcome = self.map.apply_leave(
                    repr.addr,
                    repr.incarnation,
                    repr.sequence,
                    started,
                    now_ms,
                );
                match outcome {
                    LeaveOutcome::Removed => {
                        // Sent from its new address, the last it lists: it
                        // moved (a relayed LEAVE does not tell).
                        let from = *d.src.ip();
                        if from != repr.addr && repr.aliases.last() == Some(&from) {
                            self.map.note_moved(repr.addr, from);
                        }
                        self.reconsider(now_ms);
                        true
                    }
                    LeaveOutcome::Stale => {
                        self.not_new(now_ms, authentic, &d, &repr, io);
                        false
                    }
                    LeaveOutcome::Repeated | LeaveOutcome::Ignored => false,
                }
            }
            MessageType::Sync => {
                // Hearsay: held no longer than the sender holds anyone.
                for e in &repr.entries {
                    let hold_ms = e.hold_ms.min(repr.hold_ms);
                    let out = self
                        .map
                        .apply_hearsay(e.addr, e.incarnation, hold_ms, now_ms);
                    if out == AnnounceOutcome::Joined {
                        self.note_expiry(now_ms + u64::from(hold_ms));
                    }
                }
                true
            }
        };
        if answer && accepted {
            // An answer to this node, or to everyone asking on that link.
            if d.multicast {
                self.suppress_answers(d.ifindex);
            }
            if self.asks_left > 0 {
                self.answered = true;
                self.wanted = self.wanted.max(repr.members);
            }
        }
        if self.map.is_dirty() {
            self.schedule_publish(now_ms);
        }
        // Answers are for the link they were sent on; the rest is relayed.
        if accepted && d.multicast && !answer {
            self.relay(d.data, repr.hops, d.ifindex, io);
        }
    }

    fn on_announce(
        &mut self,
        now_ms: u64,
        repr: &Repr,
        d: &Received<'_>,
        authentic: bool,
        io: &mut impl Actions,
    ) -> AnnounceOutcome {
        let direct = repr.hops == 0;
        let a = Announcement {
            addr: repr.addr,
            aliases: &repr.aliases,
            incarnation: repr.incarnation,
            sequence: repr.sequence,
            hold_ms: repr.hold_ms,
            started: repr.auth.map_or(0, |t| t.stamp),
            probe_ms: if direct { repr.interval_ms } else { 0 },
            ifindex: d.ifindex,
            authentic,
        };
        let outcome = self.map.apply_announce(&a, now_ms);
        let live = matches!(
            outcome,
            AnnounceOutcome::Joined
                | AnnounceOutcome::Restarted
                | AnnounceOutcome::Refreshed
                | AnnounceOutcome::Returned
        );
        if outcome == AnnounceOutcome::Returned {
            // This node dropped a live node: it loses messages; probe.
            self.lossy_until_ms = now_ms + LOSSY_MS;
        }
        if live && direct {
            if self.asks_left > 0 {
                self.wanted = self.wanted.max(repr.members);
            }
            let from = *d.src.ip();
            if repr.flags & flags::PROBE != 0 && !d.multicast {
                self.reply_probe(now_ms, from, d.ifindex, io);
            }
            if repr.flags & flags::JOIN != 0 {
                self.consider_answer(now_ms, from, d.ifindex);
            } else if !self.answers.is_empty() {
                // It has what it asked for.
                self.answers.retain(|p| p.to != from);
            }
        }
        match outcome {
            AnnounceOutcome::Joined | AnnounceOutcome::Restarted | AnnounceOutcome::Returned => {
                self.note_expiry(now_ms + u64::from(repr.hold_ms));
                let (id, addr) = (repr.node_id, repr.addr);
                io.event(now_ms, Event::Joined { id, addr });
            }
            AnnounceOutcome::Collision(c) => {
                if c.replaced {
                    self.note_expiry(now_ms + u64::from(repr.hold_ms));
                }
                if c.first_report {
                    io.event(now_ms, Event::Collision(c));
                }
            }
            AnnounceOutcome::Duplicate(dup) if dup.first_report => {
                io.event(now_ms, Event::Duplicate(dup));
            }
            _ => {}
        }
        outcome
    }

    /// A node probed this one (it had not heard it for a whole hold):
    /// answer with this node's ANNOUNCE, by unicast, within a total rate.
    fn reply_probe(&mut self, now_ms: u64, to: Ipv4Addr, ifindex: u32, io: &mut impl Actions) {
        let rate = PROBE_REPLIES_PER_S;
        if self.map.yielded() || !self.probe_bucket.take(now_ms, rate, rate) {
            return;
        }
        self.counters.probe_replies += 1;
        self.send_own(MessageType::Announce, Dest::Node(to), Some(ifindex), 0, io);
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
            // Sent from the new address (the old one may be gone already):
            // the LEAVE names it among the aliases, as the sender check asks.
            self.begin_goodbye(now_ms, Some(new_primary), io);
        }
        let aliases = alias_addrs(&self.links, new_primary);
        let aliases_changed = !self.map.own_node().aliases().eq(aliases.iter().copied());
        if primary_changed {
            // A new identity is a new incarnation, started now: a live node
            // that holds the new id already keeps it (see map::Collision).
            self.incarnation = self.rng.next_u32() | 1;
            let clock_s = u64::from(self.settings.clock_s) + (now_ms - self.created_ms) / 1000;
            let clock_s = u32::try_from(clock_s).unwrap_or(u32::MAX);
            self.started = clock_s.max(self.started.saturating_add(1));
        }
        // While another node holds this node's id, only a new address
        // matters (the aliases are taken when it comes back).
        let yielded_still = self.map.yielded() && !primary_changed;
        if (primary_changed || aliases_changed) && !yielded_still {
            self.primary = new_primary;
            let id = wire::node_id_of(new_primary);
            let holder = self.map.get(id).filter(|n| {
                (id != self.map.own_id() || self.map.yielded()) && n.addr != new_primary
            });
            match holder {
                Some(h)
                    if !self
                        .map
                        .claim_beats(id, self.signs(), self.started, new_primary) =>
                {
                    // Onto a live node's id, which it claimed first: a
                    // collision this node loses (the node stays in the map).
                    self.map.yield_own(id);
                    let c = Collision {
                        id,
                        winner: h.addr,
                        loser: new_primary,
                        replaced: false,
                        own_lost: true,
                        first_report: true,
                    };
                    io.event(now_ms, Event::Collision(c));
                }
                _ => {
                    self.map.set_own(new_primary, &aliases, self.incarnation);
                    self.map.set_own_claim(self.started, self.signs());
                    self.begin_burst(now_ms);
                }
            }
            self.schedule_publish(now_ms);
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

/// How much longer than configured a node of a cluster of `nodes` asks its
/// peers to hold it, in thousandths: max(1, 0.8 + log10(nodes) / 4), so
/// 1 up to 6 nodes, 1.176 at 32, 1.402 at 256, 1.552 at 1,024, 1.703 at
/// 4,096. Integer arithmetic (no libm, the same on every machine).
///
/// A peer drops a node that it did not hear for a whole hold; among N nodes
/// there are N² pairs, so the chance that some pair loses that many
/// announcements in a row grows with N², and keeping it level takes one
/// more announcement per hold for about every fourfold of N (at 5 % loss;
/// SWIM's suspicion timeout grows with log N for the same reason).
pub fn hold_scale_permille(nodes: usize) -> u64 {
    // log10(n) = log2(n) x 0.30103; log2 in 1/1024 steps.
    let log10_milli = log2_q10(nodes.max(1) as u64) * 30_103 / 102_400;
    (800 + log10_milli / 4).max(1000)
}

/// floor(log2(n) x 1024) for n >= 1, by repeated squaring of the mantissa.
fn log2_q10(n: u64) -> u64 {
    let int = u64::from(63 - n.leading_zeros());
    // The mantissa n / 2^int in [1, 2), as a 32.32 fixed-point number.
    let mut x = (u128::from(n) << 32) >> int;
    let mut frac = 0;
    for bit in (0..10).rev() {
        x = (x * x) >> 32;
        if x >= 2 << 32 {
            x >>= 1;
            frac |= 1 << bit;
        }
    }
    int * 1024 + frac
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SyncEntry;

    const IF0: u32 = 2;
    const IF1: u32 = 3;
    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    /// Records everything the core does.
    #[derive(Default)]
    struct Rec {
        sent: Vec<(u64, Dest, u32, Repr)>,
        publishes: Vec<(u64, bool, bool, bool, usize)>,
        events: Vec<Event>,
        now: u64,
        fail_file: bool,
    }

    impl Actions for Rec {
        fn send(&mut self, d: &Datagram<'_>) -> bool {
            let repr = Repr::parse(d.bytes).expect("the core sends valid messages");
            self.sent.push((self.now, d.to, d.ifindex, repr));
            true
        }
        fn publish(&mut self, p: &Publish<'_>) -> Published {
            let n = p.map.len();
            self.publishes
                .push((self.now, p.file, p.kernel, p.changes, n));
            Published {
                file_failed: self.fail_file,
                kernel_failed: false,
            }
        }
        fn event(&mut self, _now_ms: u64, e: Event) {
            self.events.push(e);
        }
    }

    impl Rec {
        fn announces(&self) -> Vec<u64> {
            let group = |s: &&(u64, Dest, u32, Repr)| {
                s.1 == Dest::Group && s.3.kind == MessageType::Announce
            };
            self.sent.iter().filter(group).map(|s| s.0).collect()
        }
        fn replies(&self) -> Vec<&(u64, Dest, u32, Repr)> {
            self.sent
                .iter()
                .filter(|s| s.3.flags & flags::REPLY != 0)
                .collect()
        }
        /// The JOIN flag of each group announcement, in order.
        fn asks(&self) -> Vec<bool> {
            self.sent
                .iter()
                .filter(|s| s.1 == Dest::Group && s.3.kind == MessageType::Announce)
                .map(|s| s.3.flags & flags::JOIN != 0)
                .collect()
        }
    }

    fn settings(interval_ms: u32) -> Settings {
        Settings {
            interval_ms,
            hold_ms: 3 * interval_ms,
            label: Label::DEFAULT,
            routed: false,
            budget: 1000,
            expected_nodes: 0,
            auth: Mode::Off,
            clock_s: 1_000_000,
        }
    }

    fn link(index: u32, addr: Ipv4Addr) -> Link {
        Link {
            index,
            addr: Some(addr),
            up: true,
        }
    }

    fn core(interval_ms: u32, seed: u64) -> Core {
        Core::new(
            settings(interval_ms),
            ME,
            &[link(IF0, ME)],
            Rng::from_seed(seed),
            0,
        )
    }

    #[test]
    fn a_node_on_a_loopback_address_sends_nothing_not_even_empty_datagrams() {
        let lo = Ipv4Addr::new(127, 0, 0, 1);
        let mut c = Core::new(settings(1000), lo, &[link(IF0, lo)], Rng::from_seed(1), 0);
        let mut rec = Rec::default();
        // Rec::send panics on a datagram that does not parse (an empty one).
        run(&mut c, &mut rec, 10_000);
        c.handle(10_000, Input::Stop, &mut rec);
        run(&mut c, &mut rec, 11_000);
        assert!(rec.sent.is_empty(), "{:?}", rec.sent);
        assert_eq!(c.counters().sent, 0);
        assert!(c.finished());
    }

    /// Polls at every instant the core asks for, up to `until`.
    fn run(c: &mut Core, rec: &mut Rec, until: u64) {
        while let Some(at) = c.poll_at().filter(|&at| at <= until) {
            rec.now = at;
            c.poll(at, rec);
        }
        rec.now = until;
    }

    fn peer(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 1, last)
    }

    fn message(kind: MessageType, addr: Ipv4Addr, seq: u32, hold_ms: u32) -> Vec<u8> {
        let mut r = Repr::new(kind, addr, 7, Label::DEFAULT, 1000, hold_ms);
        r.sequence = seq;
        if kind == MessageType::Sync {
            r.flags = flags::REPLY;
            r.entries.push(SyncEntry {
                addr: Ipv4Addr::new(10, 0, 9, 9),
                incarnation: 3,
                hold_ms,
            });
        }
        let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
        let n = r.emit(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn feed(c: &mut Core, rec: &mut Rec, now: u64, data: &[u8], ifindex: u32, multicast: bool) {
        let src = match Repr::parse(data) {
            Ok(r) => r.addr,
            Err(_) => Ipv4Addr::new(10, 0, 7, 7),
        };
        let d = Received {
            data,
            src: SocketAddrV4::new(src, 7742),
            ifindex,
            multicast,
        };
        rec.now = now;
        c.handle(now, Input::Datagram(d), rec);
    }

    #[test]
    fn start_up_burst_is_three_announcements_with_doubling_gaps() {
        for seed in 0..50 {
            let mut c = core(2000, seed);
            let mut rec = Rec::default();
            run(&mut c, &mut rec, 2000);
            let t = rec.announces();
            assert_eq!(t.len(), 3, "seed {seed}: {t:?}");
            assert!(t[0] <= u64::from(STARTUP_JITTER_MS), "first at {}", t[0]);
            assert_eq!(t[1] - t[0], 500);
            assert_eq!(t[2] - t[1], 1000);
        }
        // A short interval shortens the burst gaps to half of it.
        let mut c = core(200, 1);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 500);
        let t = rec.announces();
        assert_eq!((t[1] - t[0], t[2] - t[1]), (100, 200));
    }

    #[test]
    fn periodic_announcements_stay_within_the_jitter_bounds() {
        let mut c = core(1000, 42);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 2_000_000);
        let t = rec.announces();
        let gaps: Vec<u64> = t[3..].windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 1000);
        let (lo, hi) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
        assert!(
            (800..=1200).contains(lo) && (800..=1200).contains(hi),
            "{lo}..{hi}"
        );
        // The spread is used, not just allowed.
        assert!(*lo < 820 && *hi > 1180, "{lo}..{hi}");
    }

    /// An ANNOUNCE from `addr` with these flags and `members`.
    fn announce_with(addr: Ipv4Addr, seq: u32, flag_bits: u8, members: u16) -> Vec<u8> {
        let mut r = Repr::new(MessageType::Announce, addr, 7, Label::DEFAULT, 1000, 3000);
        r.sequence = seq;
        r.flags = flag_bits;
        r.members = members;
        let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
        let n = r.emit(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// A settled member (past its burst) that knows `peers` other nodes
    /// 10.0.1.1 ..= 10.0.1.peers, heard at 4000.
    fn member(seed: u64, peers: u8) -> (Core, Rec) {
        let mut c = core(1000, seed);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 4000);
        for i in 1..=peers {
            let m = message(MessageType::Announce, peer(i), 1, 3000);
            feed(&mut c, &mut rec, 4000, &m, IF0, true);
        }
        rec.sent.clear();
        (c, rec)
    }

    fn asker() -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 2, 1)
    }

    /// The asker's first ask, multicast on IF0.
    fn ask(c: &mut Core, rec: &mut Rec, now: u64) {
        let m = announce_with(asker(), 1, flags::JOIN, 1);
        feed(c, rec, now, &m, IF0, true);
    }

    #[test]
    fn about_three_members_answer_an_ask_with_their_announce_then_the_map_in_syncs() {
        let mut answered = 0;
        for seed in 0..300 {
            let (mut c, mut rec) = member(seed, 40);
            let ask = announce_with(asker(), 1, flags::JOIN, 1);
            feed(&mut c, &mut rec, 4000, &ask, IF0, true);
            run(&mut c, &mut rec, 5000);
            let replies = rec.replies();
            if replies.is_empty() {
                continue;
            }
            answered += 1;
            // One unicast answer out of the link the ask came on, after
            // 10 ms plus a random part below min(interval / 4, 500 ms).
            assert!(replies
                .iter()
                .all(|r| (r.1, r.2) == (Dest::Node(asker()), IF0)));
            let at = replies[0].0;
            assert!((4010..4010 + 250).contains(&at), "answer at {at}");
            let (first, syncs) = replies.split_first().unwrap();
            assert_eq!(first.3.kind, MessageType::Announce);
            assert_eq!(
                first.3.members, 42,
                "it knows itself, 40 peers and the asker"
            );
            // Everyone but itself and the asker, 36 to a SYNC, with the
            // hold each has left here (heard at 4000 for 3 s).
            let sizes: Vec<usize> = syncs.iter().map(|s| s.3.entries.len()).collect();
            assert_eq!(sizes, vec![36, 4]);
            let entries: Vec<SyncEntry> = syncs.iter().flat_map(|s| s.3.entries.clone()).collect();
            let addrs: Vec<Ipv4Addr> = entries.iter().map(|e| e.addr).collect();
            assert_eq!(addrs, (1..=40).map(peer).collect::<Vec<_>>());
            assert!(entries.iter().all(|e| u64::from(e.hold_ms) == 7000 - at));
            assert!(syncs
                .iter()
                .all(|s| s.3.kind == MessageType::Sync && s.3.addr == ME));
            assert_eq!((c.counters().answers, c.counters().syncs), (1, 2));
        }
        // Each member answers with probability 3 / 40: about 22 of 300.
        assert!((8..=40).contains(&answered), "{answered} of 300 answered");
    }

    #[test]
    fn several_askers_get_one_multicast_answer_and_one_heard_first_silences_this_one() {
        // Small clusters: every member is a candidate.
        let (mut c, mut rec) = member(1, 2);
        for (i, a) in [asker(), Ipv4Addr::new(10, 0, 2, 2)].iter().enumerate() {
            let ask = announce_with(*a, 1, flags::JOIN, 1);
            feed(&mut c, &mut rec, 4000 + i as u64, &ask, IF0, true);
        }
        run(&mut c, &mut rec, 5000);
        let replies = rec.replies();
        assert!(replies.iter().all(|r| (r.1, r.2) == (Dest::Group, IF0)));
        assert_eq!(replies.len(), 2, "announce, then one SYNC with 4 entries");
        assert_eq!(
            replies[1].3.entries.len(),
            4,
            "both askers are in a multicast map"
        );
        assert_eq!(c.counters().multicast_answers, 1);

        // Another member's multicast answer comes first: this one stays quiet.
        let (mut c, mut rec) = member(1, 2);
        ask(&mut c, &mut rec, 4000);
        let other = announce_with(peer(1), 2, flags::REPLY, 4);
        feed(&mut c, &mut rec, 4001, &other, IF0, true);
        run(&mut c, &mut rec, 5000);
        assert!(rec.replies().is_empty());
        assert_eq!(c.counters().suppressed, 1);
        // An asker that announces without JOIN needs nothing either.
        let (mut c, mut rec) = member(1, 2);
        ask(&mut c, &mut rec, 4000);
        feed(
            &mut c,
            &mut rec,
            4002,
            &announce_with(asker(), 2, 0, 4),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 5000);
        assert!(rec.replies().is_empty());
    }

    #[test]
    fn relayed_asks_asks_during_the_burst_and_answers_get_no_answer_and_no_relay() {
        // Relayed (hops 1): the asker is on another link, its members there answer.
        let (mut c, mut rec) = member(2, 2);
        let mut hop1 = Repr::parse(&announce_with(asker(), 1, flags::JOIN, 1)).unwrap();
        hop1.hops = 1;
        let mut buf = [0u8; wire::MAX_MESSAGE_LEN];
        let n = hop1.emit(&mut buf).unwrap();
        feed(&mut c, &mut rec, 4000, &buf[..n], IF0, true);
        run(&mut c, &mut rec, 5000);
        assert!(rec.replies().is_empty());
        // A node in its own start-up burst has no map worth sending.
        let mut c = core(1000, 2);
        let mut rec = Rec::default();
        ask(&mut c, &mut rec, 300);
        run(&mut c, &mut rec, 1000);
        assert!(rec.replies().is_empty());
        assert_eq!(c.map().len(), 2, "the asker joined all the same");
        // Answers stay on their link.
        let mut c = two_link_core(false);
        let mut rec = Rec::default();
        feed(
            &mut c,
            &mut rec,
            10,
            &announce_with(peer(6), 1, flags::REPLY, 2),
            IF0,
            true,
        );
        assert_eq!(c.map().len(), 2);
        assert!(relayed(&rec).is_empty());
    }

    #[test]
    fn a_joining_node_asks_until_its_map_is_as_large_as_a_member_says() {
        // Nobody answers: the burst asks, then asks again with gaps doubling
        // up to 2 s while they come sooner than the interval (4 s here).
        let mut c = core(4000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 60_000);
        let asks = rec.asks();
        let t = rec.announces();
        assert_eq!(&asks[..6], &[true; 6]);
        assert!(asks[6..].iter().all(|&a| !a), "at most {MAX_ASKS} asks");
        let gaps: Vec<u64> = t[..7].windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(&gaps[..5], &[500, 1000, 2000, 2000, 2000]);
        assert!(
            (3200..=4800).contains(&gaps[5]),
            "then the interval: {gaps:?}"
        );

        // An answer from a member of 3 that brings the map to 3: no more asks.
        let mut c = core(1000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 300);
        assert_eq!(rec.asks(), vec![true]);
        feed(
            &mut c,
            &mut rec,
            310,
            &announce_with(peer(1), 1, flags::REPLY, 3),
            IF0,
            false,
        );
        let sync = message(MessageType::Sync, peer(1), 2, 3000);
        feed(&mut c, &mut rec, 311, &sync, IF0, false);
        assert_eq!(c.map().len(), 3);
        run(&mut c, &mut rec, 3000);
        assert!(rec.asks()[1..].iter().all(|&a| !a), "{:?}", rec.asks());

        // A member that says it knows more than the answer brought: ask again.
        let mut c = core(1000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 300);
        feed(
            &mut c,
            &mut rec,
            310,
            &announce_with(peer(1), 1, flags::REPLY, 2),
            IF0,
            false,
        );
        feed(
            &mut c,
            &mut rec,
            320,
            &announce_with(peer(2), 1, 0, 5),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 1000);
        assert_eq!(rec.asks(), vec![true, true]);
        assert_eq!(c.counters().asks, 2);
    }

    #[test]
    fn the_interval_grows_with_the_cluster_to_keep_the_budget_and_shrinks_back() {
        let s = Settings {
            budget: 100,
            ..settings(1000)
        };
        let mut c = Core::new(s, ME, &[link(IF0, ME)], Rng::from_seed(11), 0);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 4000);
        // 499 more nodes: 500 / 100 per second = one announcement every 5 s.
        for i in 0..499u32 {
            let a = Ipv4Addr::new(10, 1, (i / 250 + 2) as u8, (i % 250 + 1) as u8);
            let m = message(MessageType::Announce, a, 1, 60_000);
            feed(&mut c, &mut rec, 4000, &m, IF0, true);
        }
        assert_eq!(c.map().len(), 500);
        rec.sent.clear();
        run(&mut c, &mut rec, 40_000);
        let sent: Vec<(u64, u32, u32)> = rec
            .sent
            .iter()
            .map(|s| (s.0, s.3.interval_ms, s.3.hold_ms))
            .collect();
        // At most doubling per announcement: 2 s, 4 s, then 5 s.
        let intervals: Vec<u32> = sent.iter().map(|s| s.1).collect();
        assert_eq!(&intervals[..3], &[2000, 4000, 5000]);
        assert!(intervals[3..].iter().all(|&i| i == 5000));
        // Each gap follows the interval its announcement advertised ...
        for w in sent.windows(2) {
            let gap = w[1].0 - w[0].0;
            let t = u64::from(w[0].1);
            assert!(gap * 10 >= t * 8 && gap * 10 <= t * 12, "{gap} after {t}");
        }
        // ... and the hold the interval, times 0.8 + log10(500) / 4.
        let (_, t, hold) = sent[4];
        assert_eq!(hold, 3 * t * 1474 / 1000);
        assert_eq!(hold_scale_permille(500), 1474);

        // 450 leave: the next announcement comes as early as 50 nodes allow.
        let last = rec.sent.last().unwrap().0;
        for i in 0..450u32 {
            let a = Ipv4Addr::new(10, 1, (i / 250 + 2) as u8, (i % 250 + 1) as u8);
            let m = message(MessageType::Leave, a, 2, 60_000);
            feed(&mut c, &mut rec, last + 100, &m, IF0, true);
        }
        rec.sent.clear();
        run(&mut c, &mut rec, last + 1300);
        assert_eq!(rec.sent.len(), 1, "reverse reconsideration");
        assert_eq!(rec.sent[0].3.interval_ms, 1000);
    }

    #[test]
    fn an_overloaded_node_holds_everyone_longer_and_announces_less() {
        let (mut c, mut rec) = member(12, 1);
        // The peer, heard at 4000, would expire at 7000.
        c.handle(6500, Input::KernelDrops(40), &mut rec);
        let why = Overload::Dropped(40);
        let interval_ms = 2000;
        assert_eq!(
            rec.events.last(),
            Some(&Event::Overloaded { why, interval_ms })
        );
        run(&mut c, &mut rec, 10_200);
        assert!(c.map().get(wire::node_id_of(peer(1))).is_some(), "held");
        run(&mut c, &mut rec, 10_250 + EXPIRY_GRANULARITY_MS);
        assert!(
            c.map().get(wire::node_id_of(peer(1))).is_none(),
            "one hold after, and the peer's interval of probes"
        );
        assert_eq!(c.counters().overloads, 1);
        // Overloaded, it answers nobody.
        let (mut c, mut rec) = member(12, 1);
        c.handle(4000, Input::KernelDrops(1), &mut rec);
        ask(&mut c, &mut rec, 4001);
        run(&mut c, &mut rec, 5000);
        assert!(rec.replies().is_empty());
        // A poll a few seconds late is an overload too.
        let (mut c, mut rec) = member(12, 1);
        let at = c.poll_at().unwrap();
        c.poll(at + 3000, &mut rec);
        let late = Overload::Late(3000);
        assert!(rec
            .events
            .iter()
            .any(|e| matches!(e, Event::Overloaded { why, .. } if *why == late)));
        // So are reads that leave datagrams waiting for half a second, but
        // not a burst that is read at once.
        let (mut c, mut rec) = member(12, 1);
        c.handle(4500, Input::Behind, &mut rec);
        c.handle(4510, Input::Behind, &mut rec);
        assert_eq!(c.counters().overloads, 0);
        for t in (4500..=5000).step_by(50) {
            c.handle(t, Input::Behind, &mut rec);
        }
        assert_eq!(c.counters().overloads, 1);
    }

    #[test]
    fn an_overload_that_never_ends_still_drops_a_dead_node_after_two_holds_and_its_probes() {
        let (mut c, mut rec) = member(13, 1);
        // The peer, heard at 4000 with a hold of 3 s, dies; this node is
        // behind on every read from then on.
        let mut now = 4000;
        while now < 20_000 {
            now += 50;
            c.handle(now, Input::Behind, &mut rec);
            run(&mut c, &mut rec, now);
            let gone = c.map().get(wire::node_id_of(peer(1))).is_none();
            // Two holds, then one interval of probes.
            assert_eq!(gone, now >= 10_750, "at {now}");
            if gone {
                break;
            }
        }
        assert!(now < 20_000);
    }

    #[test]
    fn the_hold_scale_is_0_8_plus_a_quarter_of_log10_and_at_least_1() {
        for n in [
            1usize, 2, 6, 7, 10, 32, 100, 256, 500, 1024, 4096, 16384, 65535,
        ] {
            let exact = (0.8 + (n as f64).log10() / 4.0).max(1.0);
            let got = hold_scale_permille(n) as f64 / 1000.0;
            assert!((got - exact).abs() < 0.002, "{n}: {got} for {exact}");
        }
        assert_eq!(hold_scale_permille(6), 1000);
        assert_eq!(hold_scale_permille(4096), 1703);
    }

    #[test]
    fn the_first_announcement_waits_longer_when_a_large_cluster_is_expected() {
        let s = Settings {
            expected_nodes: 8000,
            ..settings(1000)
        };
        // 8,000 nodes at 4 x 1,000 per second: spread over 2 s.
        let firsts: Vec<u64> = (0..200)
            .map(|seed| {
                let mut c = Core::new(s, ME, &[link(IF0, ME)], Rng::from_seed(seed), 0);
                let mut rec = Rec::default();
                run(&mut c, &mut rec, 2000);
                rec.announces()[0]
            })
            .collect();
        assert!(firsts.iter().all(|&t| t <= 2000));
        assert!(firsts.iter().any(|&t| t > 1500), "the window is used");
    }

    #[test]
    fn a_silent_node_expires_at_its_own_hold_time() {
        let mut c = core(1000, 5);
        let mut rec = Rec::default();
        // This node holds for 3 s, the peer asks for 7 s.
        feed(
            &mut c,
            &mut rec,
            1000,
            &message(MessageType::Announce, peer(3), 1, 7000),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 7999);
        assert_eq!(c.counters().probes, 0, "not probed before 8000");
        run(&mut c, &mut rec, 8749);
        assert!(
            c.map().get(wire::node_id_of(peer(3))).is_some(),
            "probed until 8750, its hold plus 3/4 of its interval"
        );
        let probes: Vec<_> = rec
            .sent
            .iter()
            .filter(|s| s.3.flags & flags::PROBE != 0)
            .map(|s| (s.0, s.1))
            .collect();
        let to = Dest::Node(peer(3));
        assert_eq!(
            probes,
            [(8000, to), (8150, to), (8300, to), (8450, to), (8600, to)]
        );
        run(&mut c, &mut rec, 8750 + EXPIRY_GRANULARITY_MS);
        assert!(
            c.map().get(wire::node_id_of(peer(3))).is_none(),
            "gone by 8850"
        );
        assert_eq!(c.map().stats().expired, 1);
    }

    #[test]
    fn a_short_interval_still_gets_five_probes_spread_over_three_quarters_of_it() {
        let mut c = core(200, 5);
        let mut rec = Rec::default();
        let mut r = Repr::new(MessageType::Announce, peer(3), 7, Label::DEFAULT, 200, 1000);
        r.sequence = 1;
        let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
        let n = r.emit(&mut buf).unwrap();
        feed(&mut c, &mut rec, 1000, &buf[..n], IF0, true);
        run(&mut c, &mut rec, 3000);
        let probes: Vec<u64> = rec
            .sent
            .iter()
            .filter(|s| s.3.flags & flags::PROBE != 0)
            .map(|s| s.0)
            .collect();
        // The hold ran out at 2000; 3/4 of 200 ms is 150 ms.
        assert_eq!(probes, [2000, 2030, 2060, 2090, 2120]);
        assert!(c.map().get(wire::node_id_of(peer(3))).is_none());
    }

    #[test]
    fn leave_removes_at_once_and_is_published() {
        let mut c = core(1000, 6);
        let mut rec = Rec::default();
        feed(
            &mut c,
            &mut rec,
            100,
            &message(MessageType::Announce, peer(4), 1, 3000),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 1000);
        let before = rec.publishes.len();
        feed(
            &mut c,
            &mut rec,
            1000,
            &message(MessageType::Leave, peer(4), 2, 3000),
            IF0,
            true,
        );
        assert_eq!(c.map().len(), 1);
        run(&mut c, &mut rec, 1000 + PUBLISH_DELAY_MS);
        assert_eq!(rec.publishes.len(), before + 1);
        assert_eq!(rec.publishes.last().unwrap().4, 1);
    }

    #[test]
    fn a_collision_keeps_the_holder_and_is_reported_once() {
        let mut c = core(1000, 7);
        let mut rec = Rec::default();
        let holder = Ipv4Addr::new(10, 0, 1, 5);
        let claimant = Ipv4Addr::new(10, 9, 1, 5);
        feed(
            &mut c,
            &mut rec,
            10,
            &message(MessageType::Announce, holder, 1, 3000),
            IF0,
            true,
        );
        for seq in 1..5 {
            let m = message(MessageType::Announce, claimant, seq, 3000);
            feed(&mut c, &mut rec, 20, &m, IF0, true);
        }
        let node = c.map().get(wire::node_id_of(holder)).unwrap();
        assert_eq!(node.addr, holder);
        let reports = rec
            .events
            .iter()
            .filter(|e| matches!(e, Event::Collision(x) if x.loser == claimant))
            .count();
        assert_eq!(reports, 1);
        assert_eq!(c.map().stats().collisions, 4);
    }

    /// A test key (not a secret).
    const KEY: &str = "1 0f1e2d3c4b5a69788796a5b4c3d2e1f000112233445566778899aabbccddeeff\n";

    /// A core with `KEY` in `mode`.
    fn keyed_core(mode: Mode, seed: u64) -> Core {
        let s = Settings {
            auth: mode,
            ..settings(1000)
        };
        let mut c = Core::new(s, ME, &[link(IF0, ME)], Rng::from_seed(seed), 0);
        c.set_keys(Keyring::parse(KEY.as_bytes()).unwrap());
        c
    }

    /// A message of `addr`'s incarnation `incarnation` that started at
    /// `stamp`: signed with `KEY`, or unsigned (key id 0).
    fn stamped(
        kind: MessageType,
        addr: Ipv4Addr,
        incarnation: u32,
        seq: u32,
        stamp: u32,
        signed: bool,
    ) -> Vec<u8> {
        let mut r = Repr::new(kind, addr, incarnation, Label::DEFAULT, 1000, 60_000);
        r.sequence = seq;
        r.auth = Some(Auth {
            key_id: 0,
            stamp,
            mac: [0; wire::MAC_LEN],
        });
        let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
        let n = r.emit(&mut buf).unwrap();
        buf.truncate(n);
        if signed {
            Keyring::parse(KEY.as_bytes()).unwrap().sign(&mut buf);
        }
        buf
    }

    #[test]
    fn a_replayed_leave_counts_replayed_and_the_copies_of_a_goodbye_do_not() {
        let mut c = keyed_core(Mode::Enforce, 30);
        let mut rec = Rec::default();
        let a = peer(40);
        let b = peer(41);
        let msg = |kind, addr, inc, seq, stamp| stamped(kind, addr, inc, seq, stamp, true);
        feed(
            &mut c,
            &mut rec,
            10,
            &msg(MessageType::Announce, a, 7, 1, 500),
            IF0,
            true,
        );
        let leave = msg(MessageType::Leave, a, 7, 2, 500);
        // The goodbye, three times 5 ms apart: removed, the copies ignored.
        for t in [100, 105, 110] {
            feed(&mut c, &mut rec, t, &leave, IF0, true);
        }
        assert!(c.map().get(wire::node_id_of(a)).is_none());
        assert_eq!(c.counters().replayed, 0);
        // The same LEAVE replayed later, and another LEAVE of it.
        feed(&mut c, &mut rec, 1000, &leave, IF0, true);
        feed(
            &mut c,
            &mut rec,
            100_000,
            &msg(MessageType::Leave, a, 7, 3, 500),
            IF0,
            true,
        );
        assert_eq!(c.counters().replayed, 2);
        // A LEAVE of the incarnation a restart replaced.
        feed(
            &mut c,
            &mut rec,
            200_000,
            &msg(MessageType::Announce, b, 7, 1, 500),
            IF0,
            true,
        );
        feed(
            &mut c,
            &mut rec,
            200_010,
            &msg(MessageType::Announce, b, 8, 1, 600),
            IF0,
            true,
        );
        feed(
            &mut c,
            &mut rec,
            200_020,
            &msg(MessageType::Leave, b, 7, 2, 500),
            IF0,
            true,
        );
        assert_eq!(c.counters().replayed, 3);
        assert_eq!(c.map().get(wire::node_id_of(b)).unwrap().incarnation, 8);
        // A LEAVE of a node never heard is no replay.
        feed(
            &mut c,
            &mut rec,
            200_030,
            &msg(MessageType::Leave, peer(42), 7, 2, 500),
            IF0,
            true,
        );
        assert_eq!(c.counters().replayed, 3);
    }

    #[test]
    fn an_id_that_moves_is_reported_once_and_the_node_that_lost_it_says_so() {
        // A witness: the holder, a later claim, then an earlier one.
        let mut c = core(1000, 31);
        let mut rec = Rec::default();
        let holder = Ipv4Addr::new(10, 0, 1, 5);
        let claimant = Ipv4Addr::new(10, 9, 1, 5);
        let msg =
            |addr, inc, seq, stamp| stamped(MessageType::Announce, addr, inc, seq, stamp, false);
        feed(&mut c, &mut rec, 10, &msg(holder, 7, 1, 500), IF0, true);
        for seq in 1..4 {
            feed(&mut c, &mut rec, 20, &msg(claimant, 9, seq, 600), IF0, true);
        }
        for seq in 1..4 {
            feed(
                &mut c,
                &mut rec,
                30,
                &msg(claimant, 11, seq, 400),
                IF0,
                true,
            );
            feed(
                &mut c,
                &mut rec,
                30,
                &msg(holder, 7, seq + 1, 500),
                IF0,
                true,
            );
        }
        let reports: Vec<(Ipv4Addr, Ipv4Addr, bool)> = rec
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Collision(x) => Some((x.winner, x.loser, x.replaced)),
                _ => None,
            })
            .collect();
        assert_eq!(
            reports,
            [(holder, claimant, false), (claimant, holder, true)],
            "the refused claim once, the move once"
        );
        assert_eq!(
            c.map().get(wire::node_id_of(holder)).unwrap().addr,
            claimant
        );

        // The holder itself: it says once that it lost its id, and falls silent.
        let mut c = core(1000, 32);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 2000);
        let own = Ipv4Addr::new(10, 9, 0, 1);
        assert_eq!(wire::node_id_of(own), c.own_id());
        let late = c.started() + 100;
        let early = c.started() - 100;
        feed(&mut c, &mut rec, 2000, &msg(own, 9, 1, late), IF0, true);
        for seq in 1..4 {
            feed(&mut c, &mut rec, 2100, &msg(own, 11, seq, early), IF0, true);
        }
        let lost: Vec<&Collision> = rec
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Collision(x) if x.own_lost => Some(x),
                _ => None,
            })
            .collect();
        assert_eq!(lost.len(), 1, "{:?}", rec.events);
        assert_eq!((lost[0].winner, lost[0].loser), (own, ME));
        assert!(lost[0].replaced && lost[0].first_report);
        assert!(c.map().yielded());
        rec.sent.clear();
        run(&mut c, &mut rec, 10_000);
        assert!(rec.announces().is_empty(), "silent: {:?}", rec.sent);
    }

    #[test]
    fn in_permissive_an_unsigned_stamp_of_1_does_not_take_a_signed_members_id() {
        let mut c = keyed_core(Mode::Permissive, 33);
        let mut rec = Rec::default();
        let member = Ipv4Addr::new(10, 0, 1, 5);
        let stranger = Ipv4Addr::new(10, 9, 1, 5);
        let id = wire::node_id_of(member);
        feed(
            &mut c,
            &mut rec,
            10,
            &stamped(MessageType::Announce, member, 7, 1, 500, true),
            IF0,
            true,
        );
        for seq in 1..4 {
            let m = stamped(MessageType::Announce, stranger, 9, seq, 1, false);
            feed(&mut c, &mut rec, 20, &m, IF0, true);
        }
        assert_eq!(c.map().get(id).unwrap().addr, member);
        assert_eq!(c.counters().unsigned, 3);
        // Nor this node's own id: it signs.
        let me_too = Ipv4Addr::new(10, 9, 0, 1);
        let m = stamped(MessageType::Announce, me_too, 9, 1, 1, false);
        feed(&mut c, &mut rec, 30, &m, IF0, true);
        assert!(!c.map().yielded());
        assert_eq!(c.map().own_node().addr, ME);
        // A signed earlier claim does win.
        let m = stamped(MessageType::Announce, stranger, 12, 1, 400, true);
        feed(&mut c, &mut rec, 40, &m, IF0, true);
        assert_eq!(c.map().get(id).unwrap().addr, stranger);
    }

    fn two_link_core(routed: bool) -> Core {
        let s = Settings {
            routed,
            ..settings(1000)
        };
        let links = [link(IF0, ME), link(IF1, Ipv4Addr::new(10, 5, 0, 1))];
        Core::new(s, ME, &links, Rng::from_seed(8), 0)
    }

    fn relayed(rec: &Rec) -> Vec<(u32, u8)> {
        rec.sent
            .iter()
            .filter(|s| s.3.addr != ME)
            .map(|s| (s.2, s.3.hops))
            .collect()
    }

    #[test]
    fn relaying_forwards_accepted_multicast_to_the_other_links_only() {
        let mut c = two_link_core(false);
        let mut rec = Rec::default();
        let m = message(MessageType::Announce, peer(6), 1, 3000);
        feed(&mut c, &mut rec, 10, &m, IF0, true);
        assert_eq!(relayed(&rec), vec![(IF1, 1)]);
        // The same message again is stale: not relayed twice (no loops).
        feed(&mut c, &mut rec, 11, &m, IF1, true);
        assert_eq!(relayed(&rec).len(), 1);
        // A unicast reply is not relayed.
        let m2 = message(MessageType::Announce, peer(7), 1, 3000);
        feed(&mut c, &mut rec, 12, &m2, IF0, false);
        assert_eq!(relayed(&rec).len(), 1);
        // A message at the hop limit is not relayed.
        let mut far = Repr::new(
            MessageType::Announce,
            peer(8),
            7,
            Label::DEFAULT,
            1000,
            3000,
        );
        far.hops = MAX_HOPS;
        let mut buf = [0u8; wire::MAX_MESSAGE_LEN];
        let n = far.emit(&mut buf).unwrap();
        feed(&mut c, &mut rec, 13, &buf[..n], IF0, true);
        assert_eq!(relayed(&rec).len(), 1);
        assert_eq!(c.counters().relayed, 1);
        // Routed clusters (-m) relay nothing.
        let mut c = two_link_core(true);
        let mut rec = Rec::default();
        feed(&mut c, &mut rec, 10, &m, IF0, true);
        assert!(relayed(&rec).is_empty());
    }

    #[test]
    fn a_burst_of_fifty_joins_is_published_once() {
        let mut c = core(1000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 1000);
        assert_eq!(rec.publishes.len(), 1, "the start-up publish");
        for i in 0..50u8 {
            let m = message(MessageType::Announce, peer(10 + i), 1, 3000);
            feed(&mut c, &mut rec, 1000 + u64::from(i), &m, IF0, true);
        }
        run(&mut c, &mut rec, 2000);
        assert_eq!(rec.publishes.len(), 2);
        let (at, file, kernel, changes, len) = rec.publishes[1];
        assert_eq!(
            (at, file, kernel, changes, len),
            (1100, true, true, true, 51)
        );
        assert_eq!(c.counters().publishes, 2);
    }

    #[test]
    fn a_failed_map_file_write_is_retried_alone() {
        let mut c = core(1000, 10);
        let mut rec = Rec {
            fail_file: true,
            ..Rec::default()
        };
        run(&mut c, &mut rec, 0);
        rec.fail_file = false;
        run(&mut c, &mut rec, PUBLISH_RETRY_MS);
        assert_eq!(
            rec.publishes,
            vec![
                (0, true, true, true, 1),
                (PUBLISH_RETRY_MS, true, false, false, 1)
            ]
        );
    }

    #[test]
    fn a_lonely_node_warns_once_and_a_heard_one_never() {
        let mut c = core(1000, 11);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 4999);
        assert!(rec.events.is_empty());
        run(&mut c, &mut rec, 60_000);
        assert_eq!(
            rec.events,
            vec![Event::Lonely {
                intervals: LONELY_INTERVALS
            }]
        );

        let mut c = core(1000, 11);
        let mut rec = Rec::default();
        feed(
            &mut c,
            &mut rec,
            4000,
            &message(MessageType::Announce, peer(3), 1, 3000),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 60_000);
        assert!(!rec.events.iter().any(|e| matches!(e, Event::Lonely { .. })));
    }

    #[test]
    fn stop_publishes_then_says_goodbye_three_times() {
        let mut c = core(1000, 12);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 3000);
        feed(
            &mut c,
            &mut rec,
            3000,
            &message(MessageType::Announce, peer(3), 1, 3000),
            IF0,
            true,
        );
        let publishes = rec.publishes.len();
        rec.now = 3001;
        c.handle(3001, Input::Stop, &mut rec);
        assert_eq!(rec.publishes.len(), publishes + 1, "the pending change");
        run(&mut c, &mut rec, 4000);
        let leaves: Vec<u64> = rec
            .sent
            .iter()
            .filter(|s| s.3.kind == MessageType::Leave)
            .map(|s| s.0)
            .collect();
        assert_eq!(
            leaves,
            vec![3001, 3001 + GOODBYE_GAP_MS, 3001 + 2 * GOODBYE_GAP_MS]
        );
        assert!(c.finished());
        assert_eq!(c.poll_at(), None);
        // Nothing is handled any more.
        feed(
            &mut c,
            &mut rec,
            5000,
            &message(MessageType::Announce, peer(4), 1, 3000),
            IF0,
            true,
        );
        assert_eq!(c.map().len(), 2);
    }

    #[test]
    fn a_new_address_leaves_under_the_old_identity_and_joins_under_the_new() {
        let mut c = core(1000, 13);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 3000);
        let new = Ipv4Addr::new(10, 0, 0, 2);
        rec.sent.clear();
        c.handle(3000, Input::Links(&[link(IF0, new)]), &mut rec);
        run(&mut c, &mut rec, 4000);
        let first = &rec.sent[0].3;
        assert_eq!((first.kind, first.addr), (MessageType::Leave, ME));
        let leaves = rec.sent.iter().filter(|s| s.3.kind == MessageType::Leave);
        assert_eq!(leaves.count(), usize::from(GOODBYES));
        let announce = rec.sent.iter().find(|s| s.3.kind == MessageType::Announce);
        assert_eq!(announce.unwrap().3.addr, new);
        assert_eq!(c.own_id(), wire::node_id_of(new));
        assert!(rec.events.contains(&Event::AddressChanged { old: ME, new }));
        // An address that gives node id 0 is refused: the identity stays.
        let zero = Ipv4Addr::new(10, 1, 0, 0);
        c.handle(4000, Input::Links(&[link(IF0, zero)]), &mut rec);
        assert_eq!(c.primary(), new);
    }

    #[test]
    fn bad_foreign_and_own_datagrams_are_counted_not_applied() {
        let mut c = core(1000, 14);
        let mut rec = Rec::default();
        feed(&mut c, &mut rec, 1, b"garbage", IF0, true);
        let mut foreign = Repr::new(
            MessageType::Announce,
            peer(5),
            7,
            Label::DEFAULT,
            1000,
            3000,
        );
        foreign.label = Label::from_str_checked("other").unwrap();
        let mut buf = [0u8; wire::MAX_MESSAGE_LEN];
        let n = foreign.emit(&mut buf).unwrap();
        feed(&mut c, &mut rec, 2, &buf[..n], IF0, true);
        // Our own multicast, looped back.
        run(&mut c, &mut rec, 300);
        let own = rec.sent[0].3.clone();
        let n = own.emit(&mut buf).unwrap();
        feed(&mut c, &mut rec, 300, &buf[..n], IF0, true);
        let k = c.counters();
        assert_eq!(k.received, 3);
        assert_eq!(k.dropped[ParseError::Truncated.index()], 1);
        assert_eq!((k.foreign_cluster, k.own_looped), (1, 1));
        assert_eq!(c.map().len(), 1);
    }

    #[test]
    fn an_address_change_onto_a_live_nodes_id_loses_to_it_until_it_leaves() {
        let mut c = core(1000, 21);
        let mut rec = Rec::default();
        let peer = Ipv4Addr::new(10, 0, 1, 5);
        let id = wire::node_id_of(peer);
        // The peer started long before this node (its trailer's stamp).
        let from_peer = |kind, seq| {
            let mut r = Repr::new(kind, peer, 7, Label::DEFAULT, 1000, 60_000);
            r.sequence = seq;
            r.auth = Some(Auth {
                key_id: 0,
                stamp: 500_000,
                mac: [0; wire::MAC_LEN],
            });
            let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
            let n = r.emit(&mut buf).unwrap();
            buf.truncate(n);
            buf
        };
        feed(
            &mut c,
            &mut rec,
            100,
            &from_peer(MessageType::Announce, 1),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 1000);
        // This node moves onto 10.9.1.5: the peer's id.
        let new = Ipv4Addr::new(10, 9, 1, 5);
        assert_eq!(wire::node_id_of(new), id);
        c.handle(1000, Input::Links(&[link(IF0, new)]), &mut rec);
        let lost = Collision {
            id,
            winner: peer,
            loser: new,
            replaced: false,
            own_lost: true,
            first_report: true,
        };
        assert!(
            rec.events.contains(&Event::Collision(lost)),
            "{:?}",
            rec.events
        );
        assert!(c.map().yielded());
        assert_eq!(c.map().get(id).unwrap().addr, peer, "the peer stays");
        // Silent while the peer holds the id: only the LEAVE of the old address.
        rec.sent.clear();
        run(&mut c, &mut rec, 5000);
        assert!(
            rec.sent.iter().all(|s| s.3.kind == MessageType::Leave),
            "{:?}",
            rec.sent
        );
        // The peer leaves: this node takes the id and announces.
        feed(
            &mut c,
            &mut rec,
            5000,
            &from_peer(MessageType::Leave, 2),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 6000);
        assert!(!c.map().yielded());
        assert_eq!(c.map().get(id).unwrap().addr, new);
        assert!(rec.events.contains(&Event::IdFree { id }));
        assert!(rec.announces().len() >= 2, "back with a burst");
    }

    #[test]
    fn sync_entries_join_as_hearsay_and_expire_at_their_hold() {
        let mut c = core(1000, 15);
        let mut rec = Rec::default();
        let sync = message(MessageType::Sync, peer(20), 2, 2000);
        let id = wire::node_id_of(Ipv4Addr::new(10, 0, 9, 9));
        // From a stranger: refused.
        feed(&mut c, &mut rec, 50, &sync, IF0, true);
        assert!(c.map().get(id).is_none());
        assert_eq!(c.counters().not_member, 1);
        // From a member, with REPLY, new: taken.
        let hello = message(MessageType::Announce, peer(20), 1, 60_000);
        feed(&mut c, &mut rec, 90, &hello, IF0, true);
        feed(&mut c, &mut rec, 100, &sync, IF0, true);
        assert!(c.map().get(id).is_some());
        run(&mut c, &mut rec, 2100 + EXPIRY_GRANULARITY_MS);
        assert!(c.map().get(id).is_none());
        // The same SYNC again (a replay) brings nothing back.
        feed(&mut c, &mut rec, 2300, &sync, IF0, true);
        assert!(c.map().get(id).is_none());
    }
}
