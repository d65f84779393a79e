//! The cluster map: every node this daemon knows, indexed by openMosix node id.
//!
//! Capacity is fixed at creation for every possible id (1..=65535), so lookup is
//! O(1) and nothing is allocated while the daemon runs. The slot table is
//! allocated zeroed, so the kernel maps its pages lazily: a cluster of a few
//! hundred nodes touches a few pages, not the whole table.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use zerocopy::FromZeros;

mod announce;
mod expiry;
mod idset;
mod silence;

pub(crate) use self::announce::SenderCheck;
pub use self::announce::{
    serial_newer, AnnounceOutcome, Announcement, Collision, Duplicate, LeaveOutcome,
    LEAVE_COPIES_MS,
};
pub use self::expiry::{Deadlines, PROBES, PROBE_WINDOW_PERCENT};
pub use self::silence::{suspect_after, EARN_PROBE, MIN_SUSPECT_MS, SUSPECT_AFTER_PERMILLE};
pub(crate) use self::silence::{DeadOutcome, Silent};

use self::expiry::probe_window;
use self::idset::IdSet;

/// The node-id rule and the alias limit are protocol facts: they live in
/// [`crate::wire`] and are re-exported here for the map's users.
pub use crate::wire::{node_id_of, MAX_ALIASES};

/// An openMosix node id: the last two octets of the node's IPv4 address.
pub type NodeId = u16;

/// Number of slots: one per possible id (id 0 is invalid and never used).
pub const CAPACITY: usize = 1 << 16;

/// One node as the map keeps it. Zero is "empty", so the table can be allocated
/// zeroed.
#[derive(Clone, Copy, Debug, FromZeros)]
#[repr(C)]
struct Slot {
    last_seen_ms: u64,
    addr: u32,
    aliases: [u32; MAX_ALIASES],
    incarnation: u32,
    sequence: u32,
    hold_ms: u32,
    /// Last claimant address reported as colliding with this slot, so a
    /// collision is logged once per claimant rather than once per packet.
    collision_claimant: u32,
    /// When this incarnation started, in seconds of the node's own clock
    /// (the trailer's `stamp`); 0: not known.
    started: u32,
    /// The node's interval, the window of probes once its hold has run
    /// out; 0: not probed (heard only through a relay or by hearsay).
    probe_ms: u32,
    /// The interface it was heard on directly: where probes go.
    ifindex: u32,
    /// When it left (LEAVE or expiry); 0 while live. The slot keeps what it
    /// knew of the departed incarnation, so replays of it are recognised.
    departed_ms: u64,
    /// Another incarnation of this address (refused, or replaced by this
    /// one), and its newest sequence number heard: if it keeps sending newer
    /// ones, two live nodes share the address; older ones are replays.
    rival_incarnation: u32,
    rival_sequence: u32,
    alias_count: u8,
    /// The sequence number is not known yet (entry learned from a SYNC).
    sequence_unknown: bool,
    /// An ANNOUNCE of this incarnation was authenticated (its MAC checked):
    /// an unauthenticated claim never takes its id (see [`claim_key`](announce::claim_key)).
    authentic: bool,
    /// Which of the 64 sequence numbers up to `sequence` have been heard
    /// (bit i: `sequence - i`): a message that arrives late, after a later
    /// one, counts once, a copy of it never (RFC 4303's anti-replay window).
    seen: u64,
    /// Probes sent since it was last heard.
    probes: u8,
    /// It left with a LEAVE: that incarnation never comes back.
    left: bool,
    /// A duplicate of this address was reported for `rival_incarnation`.
    rival_reported: bool,
    /// How this incarnation came into the map: a [`Via`] as a number (the
    /// table is allocated zeroed).
    via: u8,
    /// It left because its address changed, to this one (0: not known).
    moved_to: u32,
    /// The interval it advertised, heard directly; 0: heard only through a
    /// relay or by hearsay (see `silence`).
    interval_ms: u32,
    /// Messages heard from this incarnation since this node last probed it:
    /// a probe is spent from them (see [`EARN_PROBE`]).
    earned: u8,
    /// This silence of it was noticed (see [`ClusterMap::next_silent`]);
    /// cleared by news of it.
    silent: bool,
    /// It was removed on a death notice from this address (0: it was not).
    dead_by: u32,
    /// It takes part in failure detection (see [`Announcement::watcher`]).
    watcher: bool,
    /// Copies of the LEAVE that removed it heard since (see
    /// [`LEAVE_COPIES_MS`]).
    leave_copies: u8,
    /// This silence of it is held one hold longer, unprobed (see
    /// [`ClusterMap::hold_on`]); cleared by news of it.
    held_on: bool,
}

/// How a node came into the map (shown by `--dump --format json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// This node.
    Own,
    /// Its own announcement, heard directly.
    Announce,
    /// A member's map (a SYNC answer).
    Sync,
    /// Its announcement, relayed by a gateway.
    Relay,
    /// A hand-written map (`--static-nodes`): a permanent member, not heard
    /// from (yet).
    Static,
}

impl Via {
    const ALL: [Via; 5] = [Via::Own, Via::Announce, Via::Sync, Via::Relay, Via::Static];

    /// The name `--dump --format json` prints.
    pub fn name(self) -> &'static str {
        match self {
            Via::Own => "self",
            Via::Announce => "announce",
            Via::Sync => "sync",
            Via::Relay => "relay",
            Via::Static => "static",
        }
    }
}

/// A read-only view of one node, for publishing and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub addr: Ipv4Addr,
    aliases: [u32; MAX_ALIASES],
    alias_count: u8,
    pub incarnation: u32,
    pub sequence: u32,
    pub last_seen_ms: u64,
    pub hold_ms: u32,
    /// When its hold runs out, unless heard from again ...
    pub expires_ms: u64,
    /// ... and how long it is then probed before it is dropped.
    pub probe_ms: u32,
    /// For a node that is gone: when it left, and whether with a goodbye
    /// (LEAVE) rather than by expiry.
    pub departed_ms: u64,
    pub said_goodbye: bool,
    /// For a node removed on a death notice: who sent it (this node's own
    /// address if it confirmed the death itself).
    pub dead_by: Option<Ipv4Addr>,
    /// How it came into the map.
    pub via: Via,
    /// It left because its address changed, to this one.
    pub moved_to: Option<Ipv4Addr>,
    /// A permanent member (`--static-nodes`): never expires, stays over a
    /// LEAVE, keeps its id against every other claimant.
    pub pinned: bool,
}

impl Node {
    /// The node's alias addresses.
    pub fn aliases(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.aliases[..self.alias_count as usize]
            .iter()
            .map(|&a| Ipv4Addr::from(a))
    }
}

/// Counters of what the map refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    pub collisions: u64,
    pub stale: u64,
    pub expired: u64,
    pub duplicates: u64,
    /// Direct announcements of known incarnations heard, and the messages
    /// of theirs this node missed before them (sequence gaps, at most 8 a
    /// message): the measure of this node's own loss (see `detect`).
    pub heard: u64,
    pub missed: u64,
}

/// The cluster map. See the module documentation.
pub struct ClusterMap {
    slots: Box<[Slot]>,
    live: Box<IdSet>,
    /// `live` as it was at the last publish, to report joins and leaves.
    published: Box<IdSet>,
    /// Permanent members (see [`ClusterMap::pin`]); always live.
    pinned: Box<IdSet>,
    /// Ids whose entry changed (address, aliases) since the last publish.
    modified: Box<IdSet>,
    len: usize,
    own: NodeId,
    dirty: bool,
    stats: MapStats,
    /// Nobody's hold runs from before this instant: set while this node
    /// could not read everything that arrived (see [`ClusterMap::postpone_expiry`]).
    grace_from_ms: u64,
    /// Probe windows that had begun by then start again from then (see
    /// [`ClusterMap::late_poll`]).
    probes_from_ms: u64,
    /// This node lost its own id to an earlier claim: the own slot holds the
    /// winner, like any other node, until the winner goes away.
    yielded: bool,
}

impl ClusterMap {
    /// Allocates the whole table (zeroed, so its pages are mapped lazily) and
    /// enters this node. This is the only allocation the map ever makes.
    pub fn new(own_addr: Ipv4Addr, own_aliases: &[Ipv4Addr], incarnation: u32) -> ClusterMap {
        let slots = <[Slot]>::new_box_zeroed_with_elems(CAPACITY)
            .expect("allocating the cluster map at start-up");
        let mut map = ClusterMap {
            slots,
            live: IdSet::new_boxed(),
            published: IdSet::new_boxed(),
            pinned: IdSet::new_boxed(),
            modified: IdSet::new_boxed(),
            len: 0,
            own: 0,
            dirty: true,
            stats: MapStats::default(),
            grace_from_ms: 0,
            probes_from_ms: 0,
            yielded: false,
        };
        map.set_own(own_addr, own_aliases, incarnation);
        map
    }

    /// This node's id.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    /// This node's entry.
    pub fn own_node(&self) -> Node {
        self.view(self.own)
    }

    /// Changes this node's identity (new primary address or aliases). The old
    /// own entry leaves the map.
    pub fn set_own(&mut self, addr: Ipv4Addr, aliases: &[Ipv4Addr], incarnation: u32) {
        let id = node_id_of(addr);
        if self.own != 0 && self.own != id && !self.yielded {
            self.remove(self.own, 0);
        }
        self.own = id;
        if id == 0 {
            return;
        }
        if !self.live.contains(id) {
            self.live.insert(id);
            self.len += 1;
        }
        let slot = &mut self.slots[id as usize];
        let changed = slot.addr != u32::from(addr) || !same_aliases(slot, aliases);
        slot.addr = addr.into();
        set_aliases(slot, aliases);
        slot.incarnation = incarnation;
        slot.sequence = 0;
        slot.sequence_unknown = false;
        slot.hold_ms = u32::MAX;
        slot.last_seen_ms = 0;
        slot.collision_claimant = 0;
        slot.departed_ms = 0;
        slot.left = false;
        self.yielded = false;
        if changed {
            self.modified.insert(id);
        }
        self.dirty = true;
    }

    /// Number of nodes, this one included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: the map always holds this node once created with a valid address.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The node with this id, if it is in the map.
    pub fn get(&self, id: NodeId) -> Option<Node> {
        (id != 0 && self.live.contains(id)).then(|| self.view(id))
    }

    /// Counters of refused input.
    pub fn stats(&self) -> MapStats {
        self.stats
    }

    /// Sets when this node's incarnation started (seconds of its real-time
    /// clock) and whether it signs its messages, for collisions.
    pub(crate) fn set_own_claim(&mut self, started: u32, authentic: bool) {
        let slot = &mut self.slots[self.own as usize];
        slot.started = started;
        slot.authentic = authentic;
    }

    /// This node's new identity has the id `id`, which a live node claimed
    /// first: the old own entry leaves the map, and this node yields `id`
    /// to that node (see [`ClusterMap::yielded`]) until it is gone.
    pub(crate) fn yield_own(&mut self, id: NodeId) {
        if self.own != 0 && self.own != id && !self.yielded {
            self.remove(self.own, 0);
        }
        self.own = id;
        self.yielded = true;
        self.dirty = true;
    }

    /// This node lost its own id to an earlier claim (see [`Collision`]);
    /// it is back once the winner has left the map.
    pub fn yielded(&self) -> bool {
        self.yielded
    }

    /// The live id `id` is this node's own, and this node holds it.
    fn holds_own(&self, id: NodeId) -> bool {
        id == self.own && !self.yielded
    }

    /// The departed node in slot `id` left less than its hold ago.
    fn remembered(&self, id: NodeId, now_ms: u64) -> bool {
        let s = &self.slots[id as usize];
        s.departed_ms != 0 && now_ms < s.departed_ms.saturating_add(u64::from(s.hold_ms))
    }

    /// Makes `addr` (with `aliases`) a permanent member (`--static-nodes`):
    /// it is in the map from now on, never expires, stays over a LEAVE, is
    /// never passed on as hearsay, and keeps its id against every other
    /// claimant. Its own announcements still refresh what the map knows of
    /// it. `Err` with the holder's address when the id is this node's, at
    /// another address; this node's own address is nothing to pin.
    pub(crate) fn pin(&mut self, addr: Ipv4Addr, aliases: &[Ipv4Addr]) -> Result<(), Ipv4Addr> {
        let id = node_id_of(addr);
        if id == self.own {
            let own = Ipv4Addr::from(self.slots[id as usize].addr);
            return if own == addr { Ok(()) } else { Err(own) };
        }
        if id == 0 {
            return Err(addr);
        }
        let a = Announcement {
            addr,
            aliases,
            incarnation: 0,
            sequence: 0,
            hold_ms: 0,
            started: 0,
            probe_ms: 0,
            ifindex: 0,
            authentic: false,
            watcher: false,
        };
        self.replace(id, &a, 0);
        let slot = &mut self.slots[id as usize];
        slot.sequence_unknown = true;
        slot.via = Via::Static as u8;
        self.pinned.insert(id);
        self.insert_live(id);
        Ok(())
    }

    fn insert_live(&mut self, id: NodeId) {
        if !self.live.contains(id) {
            self.live.insert(id);
            self.len += 1;
        }
        self.dirty = true;
    }

    /// Nodes with ids above `after` (all with `None`), ascending; this node
    /// included if its id comes.
    pub fn iter_after(&self, after: Option<NodeId>) -> impl Iterator<Item = Node> + '_ {
        self.live.iter_after(after).map(|id| self.view(id))
    }

    /// Every node in the order users see: this node first, then ascending id.
    pub fn iter(&self) -> impl Iterator<Item = Node> + '_ {
        let own = self.own;
        let first = self.get(own);
        first.into_iter().chain(
            self.live
                .iter()
                .filter(move |&id| id != own)
                .map(|id| self.view(id)),
        )
    }

    /// The map changed since the last [`ClusterMap::mark_published`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Nodes in the map now that were not at the last publish.
    pub fn joined(&self) -> impl Iterator<Item = Node> + '_ {
        self.live
            .difference(&self.published)
            .map(|id| self.view(id))
    }

    /// Nodes at the last publish that are gone now (their last known address).
    pub fn left(&self) -> impl Iterator<Item = Node> + '_ {
        self.published
            .difference(&self.live)
            .map(|id| self.view(id))
    }

    /// Records that the current map has been published.
    pub fn mark_published(&mut self) {
        self.published.copy_from(&self.live);
        self.modified.0.fill(0);
        self.dirty = false;
    }

    fn replace(&mut self, id: NodeId, a: &Announcement<'_>, now_ms: u64) {
        let slot = &mut self.slots[id as usize];
        if slot.addr != u32::from(a.addr) || !same_aliases(slot, a.aliases) {
            self.modified.insert(id);
        }
        let same_addr = slot.addr == u32::from(a.addr);
        let collision_claimant = if same_addr {
            0
        } else {
            slot.collision_claimant
        };
        // A restart: what was heard of the incarnation it replaces stays
        // known, so a recording of it is told from a live duplicate.
        let (rival_incarnation, rival_sequence) =
            if same_addr && slot.incarnation != a.incarnation && !slot.sequence_unknown {
                (slot.incarnation, slot.sequence)
            } else {
                (0, 0)
            };
        *slot = Slot {
            last_seen_ms: now_ms,
            addr: a.addr.into(),
            incarnation: a.incarnation,
            sequence: a.sequence,
            hold_ms: a.hold_ms,
            collision_claimant,
            started: a.started,
            authentic: a.authentic,
            probe_ms: probe_window(a.probe_ms),
            interval_ms: a.probe_ms,
            earned: 1,
            watcher: a.watcher,
            ifindex: a.ifindex,
            // What the node sent before the first message heard from it
            // does not count.
            seen: u64::MAX,
            rival_incarnation,
            rival_sequence,
            // Heard through a relay, a node comes without its interval.
            via: if a.probe_ms == 0 {
                Via::Relay
            } else {
                Via::Announce
            } as u8,
            ..Slot::new_zeroed()
        };
        set_aliases(slot, a.aliases);
        self.dirty = true;
    }

    /// Takes `id` out of the map at `now_ms`; its slot is kept (see
    /// [`Slot::departed_ms`]).
    fn remove(&mut self, id: NodeId, now_ms: u64) {
        // A permanent member never leaves (this node may have had its
        // address for a while, and moved on).
        if self.live.contains(id) && !self.pinned.contains(id) {
            self.live.remove(id);
            self.len -= 1;
            self.dirty = true;
            self.slots[id as usize].departed_ms = now_ms.max(1);
        }
    }

    /// What the map keeps of slot `id`, live or departed.
    #[cfg(test)]
    pub(crate) fn view_of(&self, id: NodeId) -> Node {
        self.view(id)
    }

    fn view(&self, id: NodeId) -> Node {
        let s = &self.slots[id as usize];
        Node {
            id,
            addr: Ipv4Addr::from(s.addr),
            aliases: s.aliases,
            alias_count: s.alias_count,
            incarnation: s.incarnation,
            sequence: s.sequence,
            last_seen_ms: s.last_seen_ms,
            hold_ms: s.hold_ms,
            expires_ms: self.expiry(id),
            probe_ms: s.probe_ms,
            departed_ms: s.departed_ms,
            said_goodbye: s.left,
            dead_by: (s.dead_by != 0).then(|| Ipv4Addr::from(s.dead_by)),
            moved_to: (s.moved_to != 0).then(|| Ipv4Addr::from(s.moved_to)),
            pinned: self.pinned.contains(id),
            via: if id == self.own {
                Via::Own
            } else {
                Via::ALL[usize::from(s.via) % Via::ALL.len()]
            },
        }
    }
}

fn same_aliases(slot: &Slot, aliases: &[Ipv4Addr]) -> bool {
    let n = aliases.len().min(MAX_ALIASES);
    slot.alias_count as usize == n
        && slot.aliases[..n]
            .iter()
            .zip(aliases)
            .all(|(&a, &b)| a == u32::from(b))
}

fn set_aliases(slot: &mut Slot, aliases: &[Ipv4Addr]) {
    let n = aliases.len().min(MAX_ALIASES);
    slot.aliases = [0; MAX_ALIASES];
    for (dst, src) in slot.aliases.iter_mut().zip(&aliases[..n]) {
        *dst = (*src).into();
    }
    slot.alias_count = n as u8;
}

/// A map of `own` plus `peers` all heard at time 0 (tests of the modules
/// that publish the map).
#[cfg(test)]
pub(crate) fn test_map(own: Ipv4Addr, peers: impl IntoIterator<Item = Ipv4Addr>) -> ClusterMap {
    let mut map = ClusterMap::new(own, &[], 1);
    for addr in peers {
        map.apply_announce(&Announcement::test(addr, &[]), 0);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const OWN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 220);

    pub(super) fn ann(addr: Ipv4Addr, incarnation: u32, sequence: u32) -> Announcement<'static> {
        Announcement {
            addr,
            aliases: &[],
            incarnation,
            sequence,
            hold_ms: 6000,
            started: 0,
            probe_ms: 0,
            ifindex: 0,
            authentic: false,
            watcher: false,
        }
    }

    pub(super) fn ids(map: &ClusterMap) -> Vec<NodeId> {
        map.iter().map(|n| n.id).collect()
    }

    #[test]
    fn node_id_rule_matches_the_howto() {
        assert_eq!(node_id_of(Ipv4Addr::new(192, 168, 10, 220)), 2780);
        assert_eq!(node_id_of(Ipv4Addr::new(192, 168, 10, 78)), 0x0a4e);
        assert_eq!(node_id_of(Ipv4Addr::new(10, 0, 0, 99)), 99);
        assert_eq!(node_id_of(Ipv4Addr::new(10, 1, 0, 0)), 0);
    }

    #[test]
    fn a_pinned_node_never_expires_stays_over_a_leave_and_keeps_its_id() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let pinned = Ipv4Addr::new(192, 168, 10, 78);
        let alias = Ipv4Addr::new(10, 0, 10, 78);
        let other = Ipv4Addr::new(192, 168, 10, 86);
        assert_eq!(map.pin(pinned, &[alias]), Ok(()));
        // This node's own address is nothing to pin; its id at another
        // address is refused, naming this node.
        assert_eq!(map.pin(OWN, &[]), Ok(()));
        assert_eq!(map.pin(Ipv4Addr::new(10, 9, 10, 220), &[]), Err(OWN));
        assert_eq!(map.len(), 2);
        let n = map.get(2638).unwrap();
        assert!(n.pinned && n.via == Via::Static && n.expires_ms == u64::MAX);
        assert_eq!(n.aliases().collect::<Vec<_>>(), vec![alias]);
        map.apply_announce(&ann(other, 7, 1), 0);
        // Days later: the discovered node is gone, the pinned one is not,
        // and nothing is due for it.
        let later = 40 * 24 * 3600 * 1000;
        assert_eq!(map.expire(later), 1);
        assert_eq!(ids(&map), vec![2780, 2638]);
        assert_eq!(map.next_deadlines(), Deadlines::default());
        assert_eq!(map.next_probe(later, None), None);
        // Hearsay changes nothing of it.
        assert_eq!(
            map.apply_hearsay(pinned, 9, 6000, later),
            AnnounceOutcome::Ignored
        );
        // Its own announcements refresh it, and it stays pinned.
        assert_eq!(
            map.apply_announce(&ann(pinned, 7, 1), later),
            AnnounceOutcome::Restarted
        );
        let n = map.get(2638).unwrap();
        assert!(n.pinned && n.via == Via::Relay && n.incarnation == 7);
        assert_eq!(map.expire(later * 2), 0);
        // Its goodbye is ignored.
        assert_eq!(
            map.apply_leave(pinned, 7, 2, 0, later),
            LeaveOutcome::Ignored
        );
        assert!(map.get(2638).is_some());
        // Another address claiming its id loses, however early it started.
        let rival = Announcement {
            started: 1,
            ..ann(Ipv4Addr::new(10, 1, 10, 78), 5, 1)
        };
        match map.apply_announce(&rival, later) {
            AnnounceOutcome::Collision(c) => assert!(!c.replaced && c.winner == pinned),
            other => panic!("{other:?}"),
        }
        assert!(!map.claim_beats(2638, true, 1, Ipv4Addr::new(10, 1, 10, 78)));
        assert_eq!(map.get(2638).unwrap().addr, pinned);
        // This node takes the pinned address for a while, then moves on:
        // the pinned node stays.
        map.set_own(pinned, &[], 4);
        map.set_own(OWN, &[], 5);
        assert_eq!(ids(&map), vec![2780, 2638]);
        assert!(map.get(2638).unwrap().pinned);
    }

    #[test]
    fn own_node_first_then_ascending() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        for last in [86, 78, 67, 74] {
            let out = map.apply_announce(&ann(Ipv4Addr::new(192, 168, 10, last), 7, 1), 0);
            assert_eq!(out, AnnounceOutcome::Joined);
        }
        assert_eq!(ids(&map), vec![2780, 2627, 2634, 2638, 2646]);
        assert_eq!(map.len(), 5);
    }

    #[test]
    fn joined_and_left_since_last_publish() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        let b = Ipv4Addr::new(192, 168, 10, 86);
        assert!(map.is_dirty());
        map.apply_announce(&ann(a, 7, 1), 0);
        let joined: Vec<_> = map.joined().map(|n| n.id).collect();
        assert_eq!(joined, vec![2638, 2780]);
        map.mark_published();
        assert!(!map.is_dirty());
        map.apply_announce(&ann(a, 7, 2), 10);
        assert!(!map.is_dirty(), "a refresh is not a change");
        map.apply_announce(&ann(b, 7, 1), 10);
        map.apply_leave(a, 7, 3, 0, 10);
        assert!(map.is_dirty());
        assert_eq!(map.joined().map(|n| n.id).collect::<Vec<_>>(), vec![2646]);
        let left: Vec<_> = map.left().map(|n| (n.id, n.addr)).collect();
        assert_eq!(left, vec![(2638, a)]);
    }

    #[test]
    fn aliases_are_kept_and_changes_mark_dirty() {
        let mut map = ClusterMap::new(OWN, &[Ipv4Addr::new(10, 0, 0, 1)], 1);
        assert_eq!(
            map.own_node().aliases().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 0, 0, 1)]
        );
        let a = Ipv4Addr::new(192, 168, 10, 78);
        let al = [Ipv4Addr::new(10, 0, 1, 78), Ipv4Addr::new(10, 0, 2, 78)];
        let mut x = ann(a, 7, 1);
        x.aliases = &al;
        map.apply_announce(&x, 0);
        map.mark_published();
        x.sequence = 2;
        x.aliases = &al[..1];
        map.apply_announce(&x, 1);
        assert!(map.is_dirty());
        assert_eq!(map.get(2638).unwrap().aliases().count(), 1);
    }

    #[test]
    fn own_identity_change_moves_the_own_entry() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        map.mark_published();
        let new = Ipv4Addr::new(192, 168, 11, 5);
        map.set_own(new, &[], 2);
        assert_eq!(ids(&map), vec![node_id_of(new)]);
        assert_eq!(map.left().map(|n| n.id).collect::<Vec<_>>(), vec![2780]);
    }

    #[test]
    fn full_id_space_fits() {
        let mut map = ClusterMap::new(Ipv4Addr::new(10, 0, 0, 1), &[], 1);
        for id in 2..=u16::MAX {
            let [hi, lo] = id.to_be_bytes();
            map.apply_announce(&ann(Ipv4Addr::new(10, 0, hi, lo), 1, 1), 0);
        }
        assert_eq!(map.len(), 65535);
        assert_eq!(map.iter().count(), 65535);
        assert_eq!(map.expire(6000), 65534);
        assert_eq!(map.len(), 1);
    }
}
