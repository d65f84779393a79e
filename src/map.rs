//! The cluster map: every node this daemon knows, indexed by openMosix node id.
//!
//! Capacity is fixed at creation for every possible id (1..=65535), so lookup is
//! O(1) and nothing is allocated while the daemon runs. The slot table is
//! allocated zeroed, so the kernel maps its pages lazily: a cluster of a few
//! hundred nodes touches a few pages, not the whole table.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use zerocopy::FromZeros;

/// The node-id rule and the alias limit are protocol facts: they live in
/// [`crate::wire`] and are re-exported here for the map's users.
pub use crate::wire::{node_id_of, MAX_ALIASES};

/// An openMosix node id: the last two octets of the node's IPv4 address.
pub type NodeId = u16;

/// Number of slots: one per possible id (id 0 is invalid and never used).
pub const CAPACITY: usize = 1 << 16;

const WORDS: usize = CAPACITY / 64;

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
    alias_count: u8,
    /// The sequence number is not known yet (entry learned from a SYNC).
    sequence_unknown: bool,
}

/// A fixed bit per node id; iterates set ids in ascending order.
#[derive(FromZeros)]
#[repr(transparent)]
struct IdSet([u64; WORDS]);

impl IdSet {
    fn new_boxed() -> Box<IdSet> {
        IdSet::new_box_zeroed().expect("allocating an id set at start-up")
    }
    fn contains(&self, id: NodeId) -> bool {
        self.0[id as usize / 64] & (1 << (id % 64)) != 0
    }
    fn insert(&mut self, id: NodeId) {
        self.0[id as usize / 64] |= 1 << (id % 64);
    }
    fn remove(&mut self, id: NodeId) {
        self.0[id as usize / 64] &= !(1 << (id % 64));
    }
    fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.iter_after(None)
    }
    /// Set ids above `after` (all with `None`), ascending.
    fn iter_after(&self, after: Option<NodeId>) -> impl Iterator<Item = NodeId> + '_ {
        let start = after.map_or(0, |a| usize::from(a) + 1);
        let first_word = start / 64;
        self.0
            .iter()
            .enumerate()
            .skip(first_word)
            .flat_map(move |(w, &word)| {
                let word = if w == first_word && start % 64 != 0 {
                    word & (!0u64 << (start % 64))
                } else {
                    word
                };
                ids_in_word(w, word)
            })
    }
    /// Ids in `self` but not in `other`, ascending.
    fn difference<'a>(&'a self, other: &'a IdSet) -> impl Iterator<Item = NodeId> + 'a {
        self.0
            .iter()
            .zip(other.0.iter())
            .enumerate()
            .flat_map(|(w, (&a, &b))| ids_in_word(w, a & !b))
    }
    fn copy_from(&mut self, other: &IdSet) {
        self.0.copy_from_slice(&other.0);
    }
}

/// The ids whose bits are set in word `w` of an id set, ascending.
fn ids_in_word(w: usize, word: u64) -> impl Iterator<Item = NodeId> {
    let mut bits = word;
    std::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let b = bits.trailing_zeros();
        bits &= bits - 1;
        Some((w * 64 + b as usize) as NodeId)
    })
}

/// What a node says about itself, taken from an ANNOUNCE (or a LEAVE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement<'a> {
    pub addr: Ipv4Addr,
    pub aliases: &'a [Ipv4Addr],
    pub incarnation: u32,
    pub sequence: u32,
    pub hold_ms: u32,
}

/// A node id claimed by a second address while its holder is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collision {
    pub id: NodeId,
    pub holder: Ipv4Addr,
    pub claimant: Ipv4Addr,
    /// First report for this claimant: the caller logs it; later ones are only counted.
    pub first_report: bool,
}

/// What applying an announcement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceOutcome {
    /// A node the map did not have.
    Joined,
    /// A known node, hold time renewed.
    Refreshed,
    /// A known node with a new incarnation: it restarted.
    Restarted,
    /// An old or duplicate sequence number (e.g. a relayed copy): ignored.
    Stale,
    /// Hearsay about a known node that holds it longer than the map did.
    Extended,
    /// The id belongs to another live node: not added.
    Collision(Collision),
    /// Invalid id 0 or our own id from our own address: ignored.
    Ignored,
}

/// What applying a LEAVE did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveOutcome {
    Removed,
    /// Not in the map, from another address than the holder's, or an old incarnation.
    Ignored,
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
    /// When the map will drop it, unless heard from again.
    pub expires_ms: u64,
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
}

/// The cluster map. See the module documentation.
pub struct ClusterMap {
    slots: Box<[Slot]>,
    live: Box<IdSet>,
    /// `live` as it was at the last publish, to report joins and leaves.
    published: Box<IdSet>,
    /// Ids whose entry changed (address, aliases) since the last publish.
    modified: Box<IdSet>,
    len: usize,
    own: NodeId,
    dirty: bool,
    stats: MapStats,
    /// Nobody's hold runs from before this instant: set while this node
    /// could not read everything that arrived (see [`ClusterMap::postpone_expiry`]).
    grace_from_ms: u64,
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
            modified: IdSet::new_boxed(),
            len: 0,
            own: 0,
            dirty: true,
            stats: MapStats::default(),
            grace_from_ms: 0,
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
        if self.own != 0 && self.own != id {
            self.remove(self.own);
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

    /// Applies an ANNOUNCE heard at `now_ms`.
    pub fn apply_announce(&mut self, a: &Announcement<'_>, now_ms: u64) -> AnnounceOutcome {
        let id = node_id_of(a.addr);
        if id == 0 {
            return AnnounceOutcome::Ignored;
        }
        let claimant = u32::from(a.addr);
        if self.live.contains(id) {
            let is_own = id == self.own;
            let expires = self.expiry(id);
            let slot = &mut self.slots[id as usize];
            let holder_alive = is_own || now_ms < expires;
            if slot.addr != claimant {
                if holder_alive {
                    return self.collision(id, a.addr);
                }
                // The holder went silent past its hold time: the id is free.
                self.replace(id, a, now_ms);
                return AnnounceOutcome::Joined;
            }
            if is_own {
                return AnnounceOutcome::Ignored;
            }
            if slot.incarnation != a.incarnation {
                self.replace(id, a, now_ms);
                return AnnounceOutcome::Restarted;
            }
            if !slot.sequence_unknown && !serial_newer(a.sequence, slot.sequence) {
                self.stats.stale += 1;
                return AnnounceOutcome::Stale;
            }
            slot.sequence = a.sequence;
            slot.sequence_unknown = false;
            slot.last_seen_ms = now_ms;
            slot.hold_ms = a.hold_ms;
            if !same_aliases(slot, a.aliases) {
                set_aliases(slot, a.aliases);
                self.modified.insert(id);
                self.dirty = true;
            }
            return AnnounceOutcome::Refreshed;
        }
        self.replace(id, a, now_ms);
        self.live.insert(id);
        self.len += 1;
        AnnounceOutcome::Joined
    }

    /// Applies an entry of a SYNC: a node a peer knows, which it would drop
    /// `hold_ms` from now. A node the map lacks is added (without aliases:
    /// they come with its own announcement). A known node of the same
    /// incarnation is kept until then if that is later than its own expiry;
    /// nothing else of it changes (first-hand news wins). The deadline is
    /// never later than the peer's own, so hearsay cannot keep a dead node
    /// alive longer than the last node that heard it.
    pub fn apply_hearsay(
        &mut self,
        addr: Ipv4Addr,
        incarnation: u32,
        hold_ms: u32,
        now_ms: u64,
    ) -> AnnounceOutcome {
        let id = node_id_of(addr);
        if id == 0 || id == self.own {
            return AnnounceOutcome::Ignored;
        }
        if self.live.contains(id) {
            let expires = self.expiry(id);
            let slot = &mut self.slots[id as usize];
            if slot.addr != u32::from(addr) && now_ms < expires {
                return self.collision(id, addr);
            }
            let until = now_ms.saturating_add(u64::from(hold_ms));
            if slot.addr == u32::from(addr) && slot.incarnation == incarnation && until > expires {
                let from = slot.last_seen_ms.max(self.grace_from_ms);
                slot.hold_ms = u32::try_from(until - from).unwrap_or(u32::MAX);
                return AnnounceOutcome::Extended;
            }
            return AnnounceOutcome::Ignored;
        }
        let a = Announcement {
            addr,
            aliases: &[],
            incarnation,
            sequence: 0,
            hold_ms,
        };
        self.replace(id, &a, now_ms);
        self.slots[id as usize].sequence_unknown = true;
        self.live.insert(id);
        self.len += 1;
        AnnounceOutcome::Joined
    }

    /// Applies a LEAVE: the node is removed at once.
    pub fn apply_leave(&mut self, addr: Ipv4Addr, incarnation: u32) -> LeaveOutcome {
        let id = node_id_of(addr);
        if id == 0 || id == self.own || !self.live.contains(id) {
            return LeaveOutcome::Ignored;
        }
        let slot = &self.slots[id as usize];
        if slot.addr != u32::from(addr) || slot.incarnation != incarnation {
            return LeaveOutcome::Ignored;
        }
        self.remove(id);
        LeaveOutcome::Removed
    }

    /// Removes every node whose hold time has passed; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut removed = 0;
        for w in 0..WORDS {
            for id in ids_in_word(w, self.live.0[w]) {
                if id != self.own && now_ms >= self.expiry(id) {
                    self.remove(id);
                    removed += 1;
                }
            }
        }
        self.stats.expired += removed as u64;
        removed
    }

    /// The earliest time (ms) at which a node expires, if any other node is known.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.live
            .iter()
            .filter(|&id| id != self.own)
            .map(|id| self.expiry(id))
            .min()
    }

    /// Holds every node at least until its hold time has passed from
    /// `now_ms`, but never longer than two hold times after it was last
    /// heard: called while this node cannot keep up with what arrives (its
    /// receive buffer overflowed, it ran late, datagrams are waiting), so
    /// that what it failed to read does not look like silence. A node that
    /// really died is dropped one hold time after the last such call, and
    /// at the latest two hold times after its last message.
    pub fn postpone_expiry(&mut self, now_ms: u64) {
        self.grace_from_ms = self.grace_from_ms.max(now_ms);
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

    fn collision(&mut self, id: NodeId, claimant: Ipv4Addr) -> AnnounceOutcome {
        self.stats.collisions += 1;
        let slot = &mut self.slots[id as usize];
        let first_report = slot.collision_claimant != u32::from(claimant);
        slot.collision_claimant = claimant.into();
        AnnounceOutcome::Collision(Collision {
            id,
            holder: Ipv4Addr::from(slot.addr),
            claimant,
            first_report,
        })
    }

    fn replace(&mut self, id: NodeId, a: &Announcement<'_>, now_ms: u64) {
        let slot = &mut self.slots[id as usize];
        if slot.addr != u32::from(a.addr) || !same_aliases(slot, a.aliases) {
            self.modified.insert(id);
        }
        slot.addr = a.addr.into();
        set_aliases(slot, a.aliases);
        slot.incarnation = a.incarnation;
        slot.sequence = a.sequence;
        slot.sequence_unknown = false;
        slot.hold_ms = a.hold_ms;
        slot.last_seen_ms = now_ms;
        slot.collision_claimant = 0;
        self.dirty = true;
    }

    fn remove(&mut self, id: NodeId) {
        if self.live.contains(id) {
            self.live.remove(id);
            self.len -= 1;
            self.dirty = true;
        }
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
        }
    }

    /// When the node in slot `id` expires: its hold time after it was last
    /// heard, or after the grace began if that is later, but no later than
    /// two hold times after it was last heard.
    fn expiry(&self, id: NodeId) -> u64 {
        let s = &self.slots[id as usize];
        let hold = u64::from(s.hold_ms);
        let graced = s.last_seen_ms.max(self.grace_from_ms).saturating_add(hold);
        graced.min(s.last_seen_ms.saturating_add(2 * hold))
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
        let a = Announcement {
            addr,
            aliases: &[],
            incarnation: 3,
            sequence: 1,
            hold_ms: 6000,
        };
        map.apply_announce(&a, 0);
    }
    map
}

/// RFC 1982 serial-number comparison: `a` is newer than `b`.
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 220);

    fn ann(addr: Ipv4Addr, incarnation: u32, sequence: u32) -> Announcement<'static> {
        Announcement {
            addr,
            aliases: &[],
            incarnation,
            sequence,
            hold_ms: 6000,
        }
    }

    fn ids(map: &ClusterMap) -> Vec<NodeId> {
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
    fn refresh_stale_and_restart() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        assert_eq!(
            map.apply_announce(&ann(a, 7, 10), 0),
            AnnounceOutcome::Joined
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 11), 100),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 11), 200),
            AnnounceOutcome::Stale
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 3), 200),
            AnnounceOutcome::Stale
        );
        assert_eq!(map.get(2638).unwrap().last_seen_ms, 100);
        assert_eq!(
            map.apply_announce(&ann(a, 8, 1), 300),
            AnnounceOutcome::Restarted
        );
        assert_eq!(map.get(2638).unwrap().incarnation, 8);
        assert_eq!(map.stats().stale, 2);
    }

    #[test]
    fn sequence_wraps() {
        assert!(serial_newer(0, u32::MAX));
        assert!(serial_newer(5, 4));
        assert!(!serial_newer(4, 5));
        assert!(!serial_newer(4, 4));
    }

    #[test]
    fn collision_keeps_the_holder_and_reports_once_per_claimant() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let holder = Ipv4Addr::new(192, 168, 10, 78);
        let claimant = Ipv4Addr::new(10, 1, 10, 78);
        let other = Ipv4Addr::new(172, 16, 10, 78);
        map.apply_announce(&ann(holder, 7, 1), 0);
        let first = map.apply_announce(&ann(claimant, 9, 1), 10);
        assert_eq!(
            first,
            AnnounceOutcome::Collision(Collision {
                id: 2638,
                holder,
                claimant,
                first_report: true
            })
        );
        let again = map.apply_announce(&ann(claimant, 9, 2), 20);
        assert!(matches!(again, AnnounceOutcome::Collision(c) if !c.first_report));
        let third = map.apply_announce(&ann(other, 9, 2), 20);
        assert!(matches!(third, AnnounceOutcome::Collision(c) if c.first_report));
        assert_eq!(map.get(2638).unwrap().addr, holder);
        assert_eq!(map.stats().collisions, 3);
        // A claimant's LEAVE does not remove the holder.
        assert_eq!(map.apply_leave(claimant, 9), LeaveOutcome::Ignored);
        assert!(map.get(2638).is_some());
    }

    #[test]
    fn nobody_takes_our_own_id() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let claimant = Ipv4Addr::new(10, 9, 10, 220);
        let out = map.apply_announce(&ann(claimant, 9, 1), 1_000_000_000);
        assert!(matches!(out, AnnounceOutcome::Collision(c) if c.holder == OWN));
        assert_eq!(map.own_node().addr, OWN);
        // Our own looped-back announcement is ignored.
        assert_eq!(
            map.apply_announce(&ann(OWN, 1, 5), 0),
            AnnounceOutcome::Ignored
        );
    }

    #[test]
    fn a_silent_holder_past_its_hold_loses_the_id() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let holder = Ipv4Addr::new(192, 168, 10, 78);
        let newcomer = Ipv4Addr::new(10, 1, 10, 78);
        map.apply_announce(&ann(holder, 7, 1), 0);
        let out = map.apply_announce(&ann(newcomer, 9, 1), 6000);
        assert_eq!(out, AnnounceOutcome::Joined);
        assert_eq!(map.get(2638).unwrap().addr, newcomer);
    }

    #[test]
    fn leave_removes_at_once_and_expiry_after_hold() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        let b = Ipv4Addr::new(192, 168, 10, 86);
        map.apply_announce(&ann(a, 7, 1), 0);
        map.apply_announce(&ann(b, 7, 1), 1000);
        assert_eq!(
            map.apply_leave(a, 6),
            LeaveOutcome::Ignored,
            "old incarnation"
        );
        assert_eq!(map.apply_leave(a, 7), LeaveOutcome::Removed);
        assert_eq!(map.apply_leave(a, 7), LeaveOutcome::Ignored);
        assert_eq!(map.next_expiry_ms(), Some(7000));
        assert_eq!(map.expire(6999), 0);
        assert_eq!(map.expire(7000), 1);
        assert_eq!(ids(&map), vec![2780]);
        assert_eq!(map.next_expiry_ms(), None);
        assert_eq!(map.expire(u64::MAX), 0, "own node never expires");
        assert_eq!(map.apply_leave(OWN, 1), LeaveOutcome::Ignored);
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
        map.apply_leave(a, 7);
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
    fn hearsay_adds_unknown_nodes_only() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        assert_eq!(map.apply_hearsay(a, 7, 3000, 0), AnnounceOutcome::Joined);
        // The first real announcement is accepted whatever its sequence.
        assert_eq!(
            map.apply_announce(&ann(a, 7, 0), 10),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(map.apply_hearsay(a, 9, 3000, 20), AnnounceOutcome::Ignored);
        assert_eq!(map.get(2638).unwrap().incarnation, 7);
    }

    #[test]
    fn hearsay_extends_a_known_node_but_never_shortens_it() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&ann(a, 7, 1), 1000); // expires at 7000
        let expires = |m: &ClusterMap| m.get(2638).unwrap().expires_ms;
        assert_eq!(
            map.apply_hearsay(a, 7, 1000, 2000),
            AnnounceOutcome::Ignored
        );
        assert_eq!(expires(&map), 7000, "an earlier deadline changes nothing");
        assert_eq!(
            map.apply_hearsay(a, 7, 9000, 2000),
            AnnounceOutcome::Extended
        );
        assert_eq!(expires(&map), 11_000);
        assert_eq!(
            map.get(2638).unwrap().last_seen_ms,
            1000,
            "still heard at 1000"
        );
        assert_eq!(
            map.apply_hearsay(a, 8, 60_000, 2000),
            AnnounceOutcome::Ignored
        );
        assert_eq!(
            expires(&map),
            11_000,
            "another incarnation: first-hand wins"
        );
        // Its own next announcement sets its own hold again.
        map.apply_announce(&ann(a, 7, 2), 3000);
        assert_eq!(expires(&map), 9000);
    }

    #[test]
    fn postponed_expiry_waits_one_hold_after_the_overload_but_at_most_two_holds() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&ann(a, 7, 1), 1000); // hold 6 s: expires at 7000
        map.postpone_expiry(4000);
        assert_eq!(map.get(2638).unwrap().expires_ms, 10_000);
        map.postpone_expiry(9000);
        assert_eq!(
            map.get(2638).unwrap().expires_ms,
            13_000,
            "capped at 2 holds"
        );
        assert_eq!(map.expire(12_999), 0);
        assert_eq!(map.expire(13_000), 1);
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
