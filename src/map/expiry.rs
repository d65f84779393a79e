//! Expiry: when a node's hold runs out, the probes it then gets, when it
//! is dropped, and the deadlines the map's owner waits for.

use std::net::Ipv4Addr;

use super::idset::{ids_in_word, WORDS};
use super::{ClusterMap, NodeId, Slot};

/// Probes a node gets once its hold has run out, spread over part of one
/// of its intervals, before it is dropped ...
pub const PROBES: u8 = 5;
/// ... this part, so that a dead node is gone within its hold plus one
/// interval, publishing included.
pub const PROBE_WINDOW_PERCENT: u32 = 75;

pub(super) fn probe_window(interval_ms: u32) -> u32 {
    interval_ms / 100 * PROBE_WINDOW_PERCENT + interval_ms % 100 * PROBE_WINDOW_PERCENT / 100
}

/// See [`ClusterMap::next_deadlines`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    pub expiry: Option<u64>,
    pub probing: Option<u64>,
    /// The earliest instant at which a node's silence is noticed (see
    /// `ClusterMap::next_silent`).
    pub silence: Option<u64>,
}

/// A silent node to probe: its hold ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    pub id: NodeId,
    pub addr: Ipv4Addr,
    pub ifindex: u32,
    /// The first probe of this silence: the caller may decide not to probe
    /// at all ([`ClusterMap::skip_probes`]).
    pub first: bool,
}

impl ClusterMap {
    /// Removes every node whose hold time and probing window have passed;
    /// returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut removed = 0;
        for w in 0..WORDS {
            for id in ids_in_word(w, self.live.0[w]) {
                if !self.holds_own(id) && now_ms >= self.final_expiry(id) {
                    self.remove(id, now_ms);
                    removed += 1;
                }
            }
        }
        self.stats.expired += removed as u64;
        removed
    }

    /// The next node after `after` (all with `None`) whose hold has run out
    /// and that is due a probe at `now_ms`: [`PROBES`] of them, spread over
    /// its interval. Counts the probe.
    pub(crate) fn next_probe(&mut self, now_ms: u64, after: Option<NodeId>) -> Option<Probe> {
        let (grace, again) = (self.grace_from_ms, self.probes_from_ms);
        let own = self.own;
        for id in self.live.iter_after(after) {
            let s = &mut self.slots[id as usize];
            if id == own
                || self.pinned.contains(id)
                || s.probe_ms == 0
                || s.probes >= PROBES
                || now_ms < next_probe_of(s, grace, again)
            {
                continue;
            }
            s.probes += 1;
            return Some(Probe {
                id,
                addr: Ipv4Addr::from(s.addr),
                ifindex: s.ifindex,
                first: s.probes == 1,
            });
        }
        None
    }

    /// The node `id` is not probed in this silence: it is dropped at the end
    /// of the window all the same (its next announcement may still come).
    pub(crate) fn skip_probes(&mut self, id: NodeId) {
        self.slots[id as usize].probes = PROBES;
    }

    /// The node `id`, whose hold just ran out, is not probed in this
    /// silence but held one hold more: its window of (no) probes begins a
    /// hold later. For a node that knows it loses messages and may not
    /// probe: its silence alone is weak evidence. Once per silence: news of
    /// the node ends it.
    pub(crate) fn hold_on(&mut self, id: NodeId) {
        let s = &mut self.slots[id as usize];
        s.probes = PROBES;
        s.held_on = true;
    }

    /// When the map next needs its owner, in one pass over the nodes:
    /// `expiry`, the earliest time (ms) at which a node's hold runs out (its
    /// first probe) or it is dropped, and `probing`, the earliest at which a
    /// node already being probed is due its next probe or its drop (these
    /// come closer together than the expiry granularity allows when the
    /// interval is short), and `silence` (see [`Deadlines::silence`]).
    /// `None`s with no other node.
    pub fn next_deadlines(&self) -> Deadlines {
        let mut d = Deadlines::default();
        let earliest = |slot: &mut Option<u64>, t: u64| *slot = Some(slot.map_or(t, |s| s.min(t)));
        let timed = |&id: &NodeId| !self.holds_own(id) && !self.pinned.contains(id);
        for id in self.live.iter().filter(timed) {
            let s = &self.slots[id as usize];
            let last = self.final_expiry(id);
            let probing = id != self.own && s.probe_ms != 0 && s.probes < PROBES;
            let next = if probing {
                next_probe_of(s, self.grace_from_ms, self.probes_from_ms).min(last)
            } else {
                last
            };
            if id != self.own && s.probes > 0 {
                earliest(&mut d.probing, next);
            } else {
                earliest(&mut d.expiry, next);
            }
            if let Some(t) = self.silence_due(id).filter(|&t| t < last) {
                earliest(&mut d.silence, t);
            }
        }
        d
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

    /// When the node in slot `id` expires: its hold time after it was last
    /// heard, or after the grace began if that is later, but no later than
    /// two hold times after it was last heard.
    pub(super) fn expiry(&self, id: NodeId) -> u64 {
        if self.pinned.contains(id) {
            return u64::MAX;
        }
        expiry_of(&self.slots[id as usize], self.grace_from_ms)
    }

    /// When the node in slot `id` is dropped: the end of the window in
    /// which it is probed.
    pub(super) fn final_expiry(&self, id: NodeId) -> u64 {
        if self.pinned.contains(id) {
            return u64::MAX;
        }
        let s = &self.slots[id as usize];
        window_of(s, self.grace_from_ms, self.probes_from_ms).saturating_add(u64::from(s.probe_ms))
    }

    /// This node's poll ran `late_ms` after its instant, at `now_ms`: a
    /// probe window already begun starts again from now (at most one hold
    /// later), so that the probes still due go out spaced and the last has
    /// time for its answer. Otherwise a late wake-up would send one probe
    /// and drop the node at once.
    pub(crate) fn late_poll(&mut self, now_ms: u64, late_ms: u64) {
        if late_ms >= LATE_POLL_MS {
            self.probes_from_ms = self.probes_from_ms.max(now_ms);
        }
    }
}

/// See [`ClusterMap::expiry`].
fn expiry_of(s: &Slot, grace_from_ms: u64) -> u64 {
    let hold = u64::from(s.hold_ms);
    let graced = s.last_seen_ms.max(grace_from_ms).saturating_add(hold);
    graced.min(s.last_seen_ms.saturating_add(2 * hold))
}

/// A poll this late (ms) or more starts begun probe windows again.
const LATE_POLL_MS: u64 = 20;

/// When the probe window of the node in `s` begins: when its hold runs out
/// (a hold later if held on), or, if a late poll came after that, then, but
/// at most one hold later.
fn window_of(s: &Slot, grace_from_ms: u64, probes_from_ms: u64) -> u64 {
    let hold = u64::from(s.hold_ms);
    let expiry = expiry_of(s, grace_from_ms).saturating_add(if s.held_on { hold } else { 0 });
    if probes_from_ms > expiry {
        probes_from_ms.min(expiry.saturating_add(hold))
    } else {
        expiry
    }
}

/// When the next probe of a node whose hold ran out is due.
fn next_probe_of(s: &Slot, grace_from_ms: u64, probes_from_ms: u64) -> u64 {
    let spread = u64::from(s.probe_ms) * u64::from(s.probes) / u64::from(PROBES);
    window_of(s, grace_from_ms, probes_from_ms).saturating_add(spread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::tests::{ann, ids, OWN};
    use crate::map::{AnnounceOutcome, LeaveOutcome};

    #[test]
    fn a_silent_node_is_probed_five_times_in_its_interval_then_dropped() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        let mut x = ann(a, 7, 1);
        x.probe_ms = 2000;
        x.ifindex = 3;
        map.apply_announce(&x, 0);
        assert_eq!(map.next_deadlines().expiry, Some(6000));
        assert_eq!(map.next_probe(5999, None), None);
        let mut sent = Vec::new();
        for t in (6000..9000).step_by(100) {
            while let Some(p) = map.next_probe(t, None) {
                assert_eq!((p.addr, p.ifindex), (a, 3));
                sent.push(t);
            }
            map.expire(t);
        }
        assert_eq!(sent, [6000, 6300, 6600, 6900, 7200]);
        assert!(map.get(2638).is_none(), "dropped at hold + 3/4 interval");
        assert_eq!(map.stats().expired, 1);
        // Any news in the window keeps it, and the probes start over.
        let mut map = ClusterMap::new(OWN, &[], 1);
        map.apply_announce(&x, 0);
        assert!(map.next_probe(6000, None).is_some());
        x.sequence = 2;
        assert_eq!(map.apply_announce(&x, 6100), AnnounceOutcome::Refreshed);
        assert_eq!(map.expire(7499), 0);
        assert_eq!(map.next_deadlines().expiry, Some(12_100));
        // A node heard only through a relay is not probed.
        let b = Ipv4Addr::new(192, 168, 10, 79);
        map.apply_announce(&ann(b, 7, 1), 0);
        assert_eq!(map.next_probe(6000, None), None);
        assert_eq!(map.expire(6000), 1);
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
            map.apply_leave(a, 6, 2, 0, 10),
            LeaveOutcome::Ignored,
            "old incarnation"
        );
        assert_eq!(map.apply_leave(a, 7, 2, 0, 10), LeaveOutcome::Removed);
        assert_eq!(map.apply_leave(a, 7, 3, 0, 10), LeaveOutcome::Stale);
        assert_eq!(map.next_deadlines().expiry, Some(7000));
        assert_eq!(map.expire(6999), 0);
        assert_eq!(map.expire(7000), 1);
        assert_eq!(ids(&map), vec![2780]);
        assert_eq!(map.next_deadlines().expiry, None);
        assert_eq!(map.expire(u64::MAX), 0, "own node never expires");
        assert_eq!(map.apply_leave(OWN, 1, 9, 0, 10), LeaveOutcome::Ignored);
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
}
