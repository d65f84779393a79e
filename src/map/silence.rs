//! Silence: when a node heard directly has been quiet for about two of its
//! own intervals (the core's `detect` part then checks it), what this node
//! may spend on probing a node, which nodes watch which, and removal on a
//! death notice (see `docs/PROTOCOL.md`, "Failure detection").

use std::net::Ipv4Addr;

use super::idset::WORDS;
use super::{node_id_of, serial_newer, ClusterMap, NodeId};

/// A node heard directly is suspected once it has been silent for this
/// many thousandths of the interval it advertised: two of its gaps at
/// their longest (1.2 intervals each, the jitter) and a tenth for the way.
/// So a live node is suspected by a receiver only when two of its
/// announcements in a row were lost there ...
pub const SUSPECT_AFTER_PERMILLE: u64 = 2500;

/// ... and never before it has been silent this long (ms): a process that
/// the host did not run for a moment is not dead, and with sub-second
/// intervals such moments would pass for silences.
pub const MIN_SUSPECT_MS: u64 = 1000;

/// See [`SUSPECT_AFTER_PERMILLE`] and [`MIN_SUSPECT_MS`].
pub fn suspect_after(interval_ms: u32) -> u64 {
    (u64::from(interval_ms) * SUSPECT_AFTER_PERMILLE / 1000).max(MIN_SUSPECT_MS)
}

/// A node probes another only after hearing this many messages of its
/// incarnation since it last probed it, and each probe (or window of hold
/// probes) spends them all. Forged announcements therefore buy at most one
/// probe per this many from each node, and a silence costs the whole
/// cluster fewer probes than this (see `docs/DESIGN.md`).
pub const EARN_PROBE: u8 = 20;

/// A directly heard node whose silence has just reached
/// [`suspect_after`] its interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Silent {
    pub id: NodeId,
    pub addr: Ipv4Addr,
    pub incarnation: u32,
    /// The last sequence number heard of it.
    pub sequence: u32,
    pub interval_ms: u32,
}

/// What a death notice did (see [`ClusterMap::apply_dead`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeadOutcome {
    /// The node was removed.
    Removed,
    /// This node heard it after the sequence number the notice names: it
    /// stays.
    HeardLater,
    /// No such live node (another incarnation, gone already, permanent).
    Unknown,
}

impl ClusterMap {
    /// The next node after `after` (all with `None`), heard directly, whose
    /// silence reached [`suspect_after`] its interval at `now_ms` and was
    /// not noticed yet; it is marked noticed until news of it comes.
    pub(crate) fn next_silent(&mut self, now_ms: u64, after: Option<NodeId>) -> Option<Silent> {
        let own = self.own;
        for id in self.live.iter_after(after) {
            if id == own || self.pinned.contains(id) {
                continue;
            }
            let s = &mut self.slots[id as usize];
            if s.silent || s.interval_ms == 0 || s.sequence_unknown {
                continue;
            }
            if now_ms < s.last_seen_ms.saturating_add(suspect_after(s.interval_ms)) {
                continue;
            }
            s.silent = true;
            return Some(Silent {
                id,
                addr: Ipv4Addr::from(s.addr),
                incarnation: s.incarnation,
                sequence: s.sequence,
                interval_ms: s.interval_ms,
            });
        }
        None
    }

    /// When the silence of the node in slot `id` is noticed, if it is heard
    /// directly and its silence was not noticed yet.
    pub(super) fn silence_due(&self, id: NodeId) -> Option<u64> {
        let s = &self.slots[id as usize];
        if id == self.own || s.silent || s.interval_ms == 0 || s.sequence_unknown {
            return None;
        }
        Some(s.last_seen_ms.saturating_add(suspect_after(s.interval_ms)))
    }

    /// Spends a probe of the live node `id`: true if this node heard
    /// [`EARN_PROBE`] messages of it since it last probed it.
    pub(crate) fn spend_probe(&mut self, id: NodeId) -> bool {
        let s = &mut self.slots[id as usize];
        if !self.live.contains(id) || s.earned < EARN_PROBE {
            return false;
        }
        s.earned = 0;
        true
    }

    /// What this node knows of the live node `addr` with `incarnation`, heard
    /// directly: (the last sequence number, when last heard, its interval).
    pub(crate) fn heard_of(&self, addr: Ipv4Addr, incarnation: u32) -> Option<(u32, u64, u32)> {
        let id = node_id_of(addr);
        let s = &self.slots[id as usize];
        let known = id != 0
            && self.live.contains(id)
            && s.addr == u32::from(addr)
            && s.incarnation == incarnation
            && !s.sequence_unknown;
        known.then_some((s.sequence, s.last_seen_ms, s.interval_ms))
    }

    /// A member vouched for the live node `addr` with `incarnation` (an
    /// ALIVE): it is kept at least its hold from `now_ms`, as hearsay
    /// would keep it.
    pub(crate) fn vouched(&mut self, addr: Ipv4Addr, incarnation: u32, now_ms: u64) {
        if self.heard_of(addr, incarnation).is_some() {
            let hold_ms = self.slots[node_id_of(addr) as usize].hold_ms;
            self.apply_hearsay(addr, incarnation, hold_ms, now_ms);
        }
    }

    /// Where the live node `id` is probed: its address and the interface it
    /// was heard on; `None` unless heard directly.
    pub(crate) fn probe_route(&self, id: NodeId) -> Option<(Ipv4Addr, u32)> {
        let s = &self.slots[id as usize];
        (self.live.contains(id) && s.interval_ms != 0).then(|| (Ipv4Addr::from(s.addr), s.ifindex))
    }

    /// This node is one of the first `watchers` live watchers (nodes that
    /// take part in failure detection, this one included) after `subject` in
    /// the order of node ids (going round after 65535): the nodes that check
    /// its silences. Every map that holds the same nodes names the same.
    pub(crate) fn watches(&self, subject: NodeId, watchers: usize) -> bool {
        let own = self.own;
        self.live
            .iter_after(Some(subject))
            .chain(self.live.iter())
            .take_while(|&id| id != subject)
            .filter(|&id| id == own || self.is_watcher(id))
            .take(watchers)
            .any(|id| id == own)
    }

    /// The live node `id` takes part in failure detection.
    pub(crate) fn is_watcher(&self, id: NodeId) -> bool {
        self.live.contains(id) && self.slots[id as usize].watcher
    }

    /// The `n`-th live node (from 0, in id order), if there are that many.
    pub(crate) fn nth_live(&self, mut n: usize) -> Option<NodeId> {
        for w in 0..WORDS {
            let mut word = self.live.0[w];
            let ones = word.count_ones() as usize;
            if n >= ones {
                n -= ones;
                continue;
            }
            for _ in 0..n {
                word &= word - 1;
            }
            return Some((w * 64) as NodeId + word.trailing_zeros() as NodeId);
        }
        None
    }

    /// A death notice, from `by`: `addr` with `incarnation` is dead, and the
    /// last message heard of it was `sequence`. Removed unless this node
    /// heard it later; a message of it newer than `sequence` brings it back
    /// (see `docs/PROTOCOL.md`, "Freshness").
    pub(crate) fn apply_dead(
        &mut self,
        addr: Ipv4Addr,
        incarnation: u32,
        sequence: u32,
        by: Ipv4Addr,
        now_ms: u64,
    ) -> DeadOutcome {
        let id = node_id_of(addr);
        let s = &self.slots[id as usize];
        let known = id != 0
            && !self.holds_own(id)
            && self.live.contains(id)
            && !self.pinned.contains(id)
            && s.addr == u32::from(addr)
            && s.incarnation == incarnation;
        if !known {
            return DeadOutcome::Unknown;
        }
        if !s.sequence_unknown && serial_newer(s.sequence, sequence) {
            return DeadOutcome::HeardLater;
        }
        self.remove(id, now_ms);
        self.slots[id as usize].dead_by = u32::from(by);
        DeadOutcome::Removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::tests::{ann, OWN};
    use crate::map::AnnounceOutcome;

    fn direct(addr: Ipv4Addr, seq: u32) -> crate::map::Announcement<'static> {
        let mut a = ann(addr, 7, seq);
        a.probe_ms = 1000;
        a.ifindex = 2;
        a.watcher = true;
        a
    }

    #[test]
    fn a_direct_node_is_noticed_silent_once_after_two_and_a_half_intervals() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&direct(a, 1), 0);
        assert_eq!(map.next_silent(2499, None), None);
        assert_eq!(map.next_deadlines().silence, Some(2500));
        let s = map.next_silent(2500, None).unwrap();
        assert_eq!((s.addr, s.sequence, s.interval_ms), (a, 1, 1000));
        assert_eq!(map.next_silent(3000, None), None, "noticed once");
        assert_eq!(map.next_deadlines().silence, None);
        // News clears it: the next silence is noticed again.
        map.apply_announce(&direct(a, 2), 3000);
        assert_eq!(map.next_silent(5499, None), None);
        assert!(map.next_silent(5500, None).is_some());
        // A relayed node is not watched (its interval is not known).
        let b = Ipv4Addr::new(192, 168, 10, 79);
        map.apply_announce(&ann(b, 7, 1), 0);
        assert_eq!(map.next_silent(9000, None), None);
    }

    #[test]
    fn a_probe_is_spent_from_twenty_messages_heard_since_the_last() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        let id = node_id_of(a);
        for seq in 1..u32::from(EARN_PROBE) {
            map.apply_announce(&direct(a, seq), u64::from(seq));
        }
        assert!(!map.spend_probe(id), "19 messages");
        map.apply_announce(&direct(a, 20), 20);
        assert!(map.spend_probe(id));
        assert!(!map.spend_probe(id), "spent");
    }

    #[test]
    fn the_watchers_of_a_node_are_the_next_three_ids_round_the_ring() {
        // OWN is 192.168.10.220 (id 2780).
        let mut map = ClusterMap::new(OWN, &[], 1);
        for last in [10u8, 20, 30, 40] {
            map.apply_announce(&direct(Ipv4Addr::new(192, 168, 10, last), 1), 0);
        }
        let id = |last: u8| node_id_of(Ipv4Addr::new(192, 168, 10, last));
        assert!(!map.watches(id(10), 3), "20, 30, 40 watch 10");
        assert!(map.watches(id(30), 3), "40, this node, 10");
        assert!(map.watches(id(40), 3));
        assert!(map.watches(id(20), 3), "30, 40, this node");
        assert_eq!(map.nth_live(0), Some(id(10)));
        assert_eq!(map.nth_live(4), Some(2780));
        assert_eq!(map.nth_live(5), None);
        // A node of an older version (no WATCHER flag) watches nobody: the
        // next watcher takes its place.
        map.apply_announce(&ann(Ipv4Addr::new(192, 168, 10, 35), 7, 1), 0);
        assert!(map.watches(id(20), 3), "30, 40, this node; not 35");
        assert!(!map.is_watcher(id(35)));
    }

    #[test]
    fn a_death_notice_removes_unless_heard_later_and_newer_news_brings_it_back() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        let by = Ipv4Addr::new(192, 168, 10, 79);
        map.apply_announce(&direct(a, 5), 0);
        assert_eq!(map.apply_dead(a, 7, 4, by, 10), DeadOutcome::HeardLater);
        assert_eq!(map.apply_dead(a, 8, 5, by, 10), DeadOutcome::Unknown);
        assert_eq!(map.apply_dead(a, 7, 5, by, 10), DeadOutcome::Removed);
        assert!(map.get(node_id_of(a)).is_none());
        assert_eq!(map.view(node_id_of(a)).dead_by, Some(by));
        assert_eq!(map.apply_dead(a, 7, 5, by, 11), DeadOutcome::Unknown);
        // Its own next message refutes the notice: back, as a join (not a
        // sign that this node loses messages).
        let out = map.apply_announce(&direct(a, 6), 20);
        assert_eq!(out, AnnounceOutcome::Joined);
        assert!(map.get(node_id_of(a)).is_some());
    }
}
