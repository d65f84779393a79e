//! The core's boundary: its [`Settings`], what it is told ([`Input`]), what
//! it does through [`Actions`] ([`Datagram`], [`Publish`], [`Event`]) and
//! the values that cross with them.

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::auth::Mode;
use crate::map::{ClusterMap, Collision, Duplicate, NodeId};
use crate::wire::{Label, ParseError};

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
    /// [`Core::set_keys`](super::Core::set_keys)).
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
    /// ([`READ_AT_ONCE`](super::READ_AT_ONCE)): this node is behind, and what it has read is not
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
    /// [`GOODBYES`](super::GOODBYES) times, then [`Core::finished`](super::Core::finished) is true.
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
/// [`PUBLISH_RETRY_MS`](super::PUBLISH_RETRY_MS)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub file_failed: bool,
    pub kernel_failed: bool,
}

/// Something worth a log line. The shell decides the words, the level and
/// the rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A datagram was dropped (counted in [`Counters::dropped`](super::Counters::dropped)).
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
    /// No other node heard for [`LONELY_INTERVALS`](super::LONELY_INTERVALS) intervals.
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
    /// This node started (`lossy`) or stopped missing more than
    /// [`UNHEALTHY_LOSS_PERCENT`](super::UNHEALTHY_LOSS_PERCENT) of what
    /// it should hear: while it does, it leaves failure detection to others.
    LocalHealth { lossy: bool, loss_percent: u64 },
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
    /// Datagrams were left waiting after every read for [`BEHIND_MS`](super::BEHIND_MS)
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
