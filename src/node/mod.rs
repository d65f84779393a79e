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
//!
//! The core is in parts, each in a file named for what it decides, with its
//! own state in a small struct ([`Core`] holds what they share: identity,
//! links, map, timers, randomness, counters, settings, the send buffer):
//! `pacing` (start-up burst, interval and budget), `join` (asks for the
//! map), `answer` (answers to asks: SYNC), `receive` (parsing, sender
//! checks, applying a message), `relay`, `liveness` (expiry, probes,
//! loneliness), `overload`, `links` (interfaces and identity), `emit`
//! (writing and sending own messages), `publish` and `goodbye`. The
//! boundary types are in `api`, the timers in `timers`. `docs/DESIGN.md`
//! draws them and the way of one datagram through them.
#![forbid(unsafe_code)]

use core::net::Ipv4Addr;

use arrayvec::ArrayVec;

use crate::auth::Keyring;
use crate::counters::Counters;
use crate::map::{ClusterMap, NodeId};
use crate::rng::Rng;
use crate::wire::{self, ParseError};

mod answer;
mod api;
mod detect;
mod emit;
mod goodbye;
mod join;
mod links;
mod liveness;
mod overload;
mod pacing;
mod publish;
mod receive;
mod relay;
#[cfg(test)]
mod testing;
mod timers;

pub use self::answer::{
    ANSWERERS, ANSWERS_PER_S, ANSWER_BURST, ANSWER_MIN_DELAY_MS, ANSWER_SPREAD_MS,
    MAX_PENDING_ANSWERS,
};
pub use self::api::{
    Actions, Datagram, Dest, Event, Input, Link, Overload, Publish, Published, Received, Refusal,
    Settings,
};
pub use self::detect::{
    answer_wait, ANSWER_WAIT_DIVISOR, ASKS_PER_S, ASK_ROUNDS, DEAD_COPIES, HEALTH_MIN_SAMPLES,
    HEALTH_WINDOW_MS, HELPERS, MAX_ANSWER_WAIT_MS, MAX_CHECKS, MAX_HELPS, MIN_ANSWER_WAIT_MS,
    REFUTE_GAP_MS, STALL_MS, UNHEALTHY_LOSS_PERCENT, WATCHERS,
};
pub use self::goodbye::{GOODBYES, GOODBYE_GAP_MS};
pub use self::join::{MAX_ASKS, MAX_ASK_GAP_MS};
pub use self::links::MAX_INTERFACES;
pub use self::liveness::{
    EXPIRY_GRANULARITY_MS, LONELY_INTERVALS, LOSSY_MS, PROBES_PER_S, PROBE_REPLIES_PER_S,
};
pub use self::overload::{BEHIND_MS, MAX_OVERLOAD_FACTOR, OVERLOAD_LATE_MS, READ_AT_ONCE};
pub use self::pacing::{
    hold_scale_permille, ANNOUNCE_JITTER_PERCENT, BURST_GAP_MS, MAX_STARTUP_WINDOW_MS, MAX_STRETCH,
    REJOIN_GAP_MS, STARTUP_BURST, STARTUP_JITTER_MS, STARTUP_RATE_FACTOR,
};
pub use self::publish::{PUBLISH_DELAY_MS, PUBLISH_RETRY_MS};
pub use self::relay::MAX_HOPS;

use self::answer::Answering;
use self::detect::Detect;
use self::goodbye::Goodbye;
use self::join::Join;
use self::links::alias_addrs;
use self::liveness::{Liveness, Probing};
use self::overload::Load;
use self::pacing::Pacing;
use self::relay::Relays;
use self::timers::{Timer, Timers};

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

/// One node's protocol state. See the module documentation.
pub struct Core {
    settings: Settings,
    keys: Keyring,
    /// The interfaces, in command-line order: the first address is the
    /// identity, the others its aliases (see `links`).
    links: ArrayVec<Link, MAX_INTERFACES>,
    primary: Ipv4Addr,
    incarnation: u32,
    /// When this incarnation started (seconds of the real-time clock).
    started: u32,
    /// When the core was made (the clock reading of `settings.clock_s`).
    created_ms: u64,
    /// The sequence number of the last message sent.
    sequence: u32,
    rng: Rng,
    map: ClusterMap,
    timers: Timers,
    counters: Counters,
    /// The datagram being sent: own, SYNC or relayed (see `emit`).
    buf: [u8; wire::MAX_MESSAGE_LEN],
    pacing: Pacing,
    join: Join,
    answering: Answering,
    liveness: Liveness,
    probing: Probing,
    detect: Detect,
    load: Load,
    relays: Relays,
    goodbye: Goodbye,
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
            links,
            primary,
            incarnation,
            started,
            created_ms: now_ms,
            sequence: 0,
            rng,
            map: ClusterMap::new(primary, &aliases, incarnation),
            timers: Timers::default(),
            counters: Counters::default(),
            buf: [0; wire::MAX_MESSAGE_LEN],
            pacing: Pacing::new(&settings, now_ms),
            join: Join::default(),
            answering: Answering::new(),
            liveness: Liveness::default(),
            probing: Probing::new(),
            detect: Detect::new(),
            load: Load::new(),
            relays: Relays::default(),
            goodbye: Goodbye::new(),
        };
        core.map.set_own_claim(started, core.signs());
        core.begin_burst(now_ms);
        core.watch_loneliness(now_ms);
        core.timers.set(Timer::Publish, now_ms);
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

    /// True once a [`Input::Stop`] has been handled and every goodbye sent.
    pub fn finished(&self) -> bool {
        self.goodbye.stopping && self.goodbye.left == 0
    }

    /// The next instant (ms) at which [`Core::poll`] has something to do;
    /// `None` once finished.
    pub fn poll_at(&self) -> Option<u64> {
        self.timers.next()
    }

    /// Does whatever is due at `now_ms`.
    pub fn poll(&mut self, now_ms: u64, io: &mut impl Actions) {
        if self.timers.due(Timer::Goodbye, now_ms) {
            self.send_goodbye(now_ms, io);
        }
        if self.goodbye.stopping {
            return;
        }
        self.check_late(now_ms, io);
        if self.timers.due(Timer::Announce, now_ms) {
            self.announce(now_ms, io);
        }
        if self.timers.due(Timer::Answer, now_ms) {
            self.send_answers(now_ms, io);
        }
        if self.timers.due(Timer::AnswerMap, now_ms) {
            self.send_answer_maps(now_ms, io);
        }
        if self.timers.due(Timer::Expiry, now_ms) {
            self.expire_and_probe(now_ms, io);
        }
        if self.timers.due(Timer::Detect, now_ms) {
            self.detect_due(now_ms, io);
        }
        self.take_back_id(now_ms, io);
        if self.timers.due(Timer::Lonely, now_ms) {
            self.check_lonely(now_ms, io);
        }
        self.publish_due(now_ms, io);
    }

    /// Feeds one input at `now_ms`.
    pub fn handle(&mut self, now_ms: u64, input: Input<'_>, io: &mut impl Actions) {
        if self.goodbye.stopping {
            return;
        }
        match input {
            Input::Datagram(d) => self.on_datagram(now_ms, d, io),
            Input::Truncated { src } => {
                self.counters.received += 1;
                self.drop_packet(now_ms, ParseError::LengthMismatch, src, io);
            }
            Input::KernelDrops(total) => self.on_kernel_drops(now_ms, total, io),
            Input::Behind => self.on_behind(now_ms, io),
            Input::Links(links) => self.on_links(now_ms, links, io),
            Input::Rejoin => self.rejoin(now_ms),
            Input::KernelFailed => {
                self.timers
                    .set(Timer::KernelRetry, now_ms + PUBLISH_RETRY_MS);
            }
            Input::KernelAppeared => self.timers.set(Timer::KernelRetry, now_ms),
            Input::Stop => self.stop(now_ms, io),
        }
    }
}
