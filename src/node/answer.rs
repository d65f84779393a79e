//! Answering: a settled member answers a joining node's ask with its
//! ANNOUNCE and the map in SYNCs, by multicast on the asker's link, about
//! [`ANSWERERS`] members per ask (the first answer heard silences the
//! others), each answer rate-limited. An answer never goes to the address an
//! ask names, so a spoofed ask sends nothing to its victim.

use core::net::Ipv4Addr;

use arrayvec::ArrayVec;

use crate::rate::Bucket;
use crate::wire::{self, flags, MessageType, Repr, SyncEntry};

use super::timers::Timer;
use super::{Actions, Core, Dest};
use crate::map::NodeId;

/// A member answers an ask with probability ANSWERERS / (the members it
/// knows besides itself and the asker), so about this many answer it
/// whatever the size of the cluster.
pub const ANSWERERS: u32 = 3;

/// Askers waiting for this node's answer; a full list takes no more (one
/// multicast answers every asker on a link).
pub const MAX_PENDING_ANSWERS: usize = 64;

/// An answer waits at least this long ...
pub const ANSWER_MIN_DELAY_MS: u64 = 10;

/// ... plus a random part below min(interval / 4, this), so that a member
/// that hears another's multicast answer first can stay quiet.
pub const ANSWER_SPREAD_MS: u32 = 500;

/// Answers a node sends per second at most, in the long run ...
pub const ANSWERS_PER_S: u64 = 2;

/// ... and at once.
pub const ANSWER_BURST: u64 = 4;

/// The map of an answer (its SYNCs) goes out in groups of at most this
/// many SYNCs ...
pub const SYNCS_AT_ONCE: usize = 16;

/// ... one group this long after the answer's ANNOUNCE and after each
/// other: a receiver takes SYNCs only from a member it knows (the ANNOUNCE
/// must come first) and only within 64 sequence numbers of the newest it
/// has heard from it, so datagrams sent back to back and reordered on the
/// way would otherwise lose a map's first SYNCs.
pub const SYNC_GAP_MS: u64 = 2;

/// Links a node's answers went out on whose map is still to follow.
pub const MAX_MAPS_DUE: usize = 8;

/// An answer whose map is still (partly) to go: the link, and the last node
/// id sent (`None`: none yet).
#[derive(Clone, Copy, Debug)]
pub(super) struct MapDue {
    pub(super) ifindex: u32,
    pub(super) after: Option<NodeId>,
}

/// A node that asked for the map, waiting for this node's answer.
#[derive(Clone, Copy, Debug)]
pub(super) struct PendingAnswer {
    pub(super) to: Ipv4Addr,
    pub(super) ifindex: u32,
}

/// The answers this node owes and has given.
#[derive(Clone, Debug)]
pub(super) struct Answering {
    /// Askers waiting for this node's answer.
    pub(super) pending: heapless::Vec<PendingAnswer, MAX_PENDING_ANSWERS>,
    /// The total rate of answers ([`ANSWERS_PER_S`], [`ANSWER_BURST`]).
    pub(super) bucket: Bucket,
    /// Answers whose ANNOUNCE went out and whose SYNCs follow
    /// ([`SYNCS_AT_ONCE`], [`SYNC_GAP_MS`]).
    pub(super) maps_due: heapless::Vec<MapDue, MAX_MAPS_DUE>,
}

impl Answering {
    pub(super) fn new() -> Answering {
        Answering {
            pending: heapless::Vec::new(),
            bucket: Bucket::full(ANSWER_BURST),
            maps_due: heapless::Vec::new(),
        }
    }
}

impl Core {
    /// `to` asked for the map (a direct ANNOUNCE with `JOIN`) on `ifindex`.
    /// A settled member answers with probability [`ANSWERERS`] / (members it
    /// knows besides itself and the asker), after a random delay.
    pub(super) fn consider_answer(&mut self, now_ms: u64, to: Ipv4Addr, ifindex: u32) {
        let settled = self.pacing.burst_left == 0 && now_ms >= self.load.until_ms;
        if !settled || self.map.yielded() || self.answering.pending.iter().any(|a| a.to == to) {
            return;
        }
        let others = (self.map.len() as u32).saturating_sub(2).max(1);
        if self.rng.below(others) >= ANSWERERS {
            return;
        }
        if self.answering.pending.is_empty() {
            let spread = (self.settings.interval_ms / 4).clamp(1, ANSWER_SPREAD_MS);
            let due = now_ms + ANSWER_MIN_DELAY_MS + u64::from(self.rng.below(spread));
            self.timers.set(Timer::Answer, due);
        }
        // A full list: the multicast answer reaches this one too.
        let _ = self.answering.pending.push(PendingAnswer { to, ifindex });
    }

    /// Another member answered on `ifindex` by multicast: every asker there
    /// has it, so this node's answers there are dropped.
    pub(super) fn suppress_answers(&mut self, ifindex: u32) {
        let before = self.answering.pending.len();
        self.answering.pending.retain(|a| a.ifindex != ifindex);
        self.counters.suppressed += (before - self.answering.pending.len()) as u64;
        if self.answering.pending.is_empty() {
            self.timers[Timer::Answer] = None;
        }
    }

    /// The answers are due: one multicast answer per link with askers.
    pub(super) fn send_answers(&mut self, now_ms: u64, io: &mut impl Actions) {
        while let Some(first) = self.answering.pending.first().copied() {
            let ifindex = first.ifindex;
            self.answering.pending.retain(|a| a.ifindex != ifindex);
            if !self
                .answering
                .bucket
                .take(now_ms, ANSWERS_PER_S, ANSWER_BURST)
            {
                self.counters.answers_limited += 1;
                continue;
            }
            self.answer(now_ms, ifindex, io);
        }
    }

    /// One answer, to the group on `ifindex`: this node's ANNOUNCE with
    /// `REPLY` (it carries the size of this map) now, then the map in
    /// groups of SYNCs ([`Core::send_answer_maps`]).
    pub(super) fn answer(&mut self, now_ms: u64, ifindex: u32, io: &mut impl Actions) {
        self.counters.answers += 1;
        self.send_own(
            MessageType::Announce,
            Dest::Group,
            Some(ifindex),
            flags::REPLY,
            io,
        );
        if let Some(due) = self
            .answering
            .maps_due
            .iter_mut()
            .find(|m| m.ifindex == ifindex)
        {
            // A map to that link is under way: it starts again.
            due.after = None;
            return;
        }
        let due = MapDue {
            ifindex,
            after: None,
        };
        if self.answering.maps_due.push(due).is_err() {
            return; // (not with 8 links)
        }
        if self.timers[Timer::AnswerMap].is_none() {
            self.timers.set(Timer::AnswerMap, now_ms + SYNC_GAP_MS);
        }
    }

    /// The next group of SYNCs of every answer under way.
    pub(super) fn send_answer_maps(&mut self, now_ms: u64, io: &mut impl Actions) {
        let mut due = core::mem::take(&mut self.answering.maps_due);
        for m in &mut due {
            m.after = self.answer_map(now_ms, m.ifindex, m.after, io);
        }
        due.retain(|m| m.after.is_some());
        if !due.is_empty() {
            self.timers.set(Timer::AnswerMap, now_ms + SYNC_GAP_MS);
        }
        self.answering.maps_due = due;
    }

    /// Up to [`SYNCS_AT_ONCE`] SYNCs of an answer's map, to the group on
    /// `ifindex`: the nodes of the map after `after` but this node, up to
    /// [`wire::MAX_SYNC_ENTRIES`] in each SYNC with `REPLY`, each with the
    /// hold it has left here. Returns the last node sent if the map goes on.
    pub(super) fn answer_map(
        &mut self,
        now_ms: u64,
        ifindex: u32,
        mut after: Option<NodeId>,
        io: &mut impl Actions,
    ) -> Option<NodeId> {
        let to = Dest::Group;
        let own = self.map.own_id();
        for _ in 0..SYNCS_AT_ONCE {
            let mut entries = ArrayVec::<SyncEntry, { wire::MAX_SYNC_ENTRIES }>::new();
            for n in self.map.iter_after(after) {
                after = Some(n.id);
                // A permanent member is this node's setting, not news: the
                // asker hears it from the node itself, or pins it too.
                if n.id == own || n.pinned || n.expires_ms <= now_ms {
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
                return None;
            }
            let last = !entries.is_full();
            let len = self.emit_sync(&entries);
            self.send_buf(len, to, ifindex, io);
            self.counters.syncs += 1;
            if last {
                return None;
            }
        }
        after
    }

    /// Writes a SYNC answer with `entries` into `buf`; returns its length.
    pub(super) fn emit_sync(&mut self, entries: &[SyncEntry]) -> usize {
        self.sequence = self.sequence.wrapping_add(1);
        let mut repr = Repr::new(
            MessageType::Sync,
            self.primary,
            self.incarnation,
            self.settings.label,
            self.pacing.advertised_ms,
            self.hold_for(self.pacing.advertised_ms),
        );
        repr.flags = flags::REPLY;
        repr.sequence = self.sequence;
        repr.entries.extend(entries.iter().copied());
        repr.auth = Some(self.trailer());
        let len = repr.emit(&mut self.buf).unwrap_or(0);
        self.keys.sign(&mut self.buf[..len]);
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn about_three_members_answer_an_ask_by_multicast_with_their_announce_then_the_map_in_syncs() {
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
            // One multicast answer on the link the ask came on (never to
            // the address the ask names), after 10 ms plus a random part
            // below min(interval / 4, 500 ms).
            assert!(replies.iter().all(|r| (r.1, r.2) == (Dest::Group, IF0)));
            let at = replies[0].0;
            assert!((4010..4010 + 250).contains(&at), "answer at {at}");
            let (first, syncs) = replies.split_first().unwrap();
            assert_eq!(first.3.kind, MessageType::Announce);
            assert_eq!(
                first.3.members, 42,
                "it knows itself, 40 peers and the asker"
            );
            // Everyone but itself (the asker too: others on the link may
            // not know it yet), 36 to a SYNC, 2 ms after the ANNOUNCE, with
            // the hold each has left here (heard at 4000 for 3 s).
            assert!(syncs.iter().all(|s| s.0 == at + SYNC_GAP_MS));
            let sizes: Vec<usize> = syncs.iter().map(|s| s.3.entries.len()).collect();
            assert_eq!(sizes, vec![36, 5]);
            let entries: Vec<SyncEntry> = syncs.iter().flat_map(|s| s.3.entries.clone()).collect();
            let addrs: Vec<Ipv4Addr> = entries.iter().map(|e| e.addr).collect();
            let mut want: Vec<Ipv4Addr> = (1..=40).map(peer).collect();
            want.push(asker());
            assert_eq!(addrs, want);
            let left = 7000 - at - SYNC_GAP_MS;
            assert!(entries.iter().all(|e| u64::from(e.hold_ms) == left));
            assert!(syncs
                .iter()
                .all(|s| s.3.kind == MessageType::Sync && s.3.addr == ME));
            assert_eq!((c.counters().answers, c.counters().syncs), (1, 2));
        }
        // Each member answers with probability 3 / 40: about 22 of 300.
        assert!((8..=40).contains(&answered), "{answered} of 300 answered");
    }

    #[test]
    fn a_large_map_goes_in_groups_of_16_syncs_2_ms_apart() {
        // 700 peers and the asker: 20 SYNCs, 16 of them 2 ms after the
        // ANNOUNCE and 4 another 2 ms later (seeds until one is a candidate).
        for seed in 0..3000 {
            let mut c = core(1000, seed);
            let mut rec = Rec::default();
            run(&mut c, &mut rec, 4000);
            for i in 0..700u32 {
                let addr = Ipv4Addr::new(10, 0, 3 + (i / 200) as u8, 1 + (i % 200) as u8);
                let m = message(MessageType::Announce, addr, 1, 3000);
                feed(&mut c, &mut rec, 4000, &m, IF0, true);
            }
            rec.sent.clear();
            ask(&mut c, &mut rec, 4000);
            run(&mut c, &mut rec, 5000);
            let replies = rec.replies();
            if replies.is_empty() {
                continue;
            }
            let at = replies[0].0;
            let times: Vec<u64> = replies[1..].iter().map(|r| r.0 - at).collect();
            let mut want = vec![2; 16];
            want.extend([4; 4]);
            assert_eq!(times, want);
            let n: usize = replies[1..].iter().map(|r| r.3.entries.len()).sum();
            assert_eq!(n, 701);
            return;
        }
        panic!("no seed made this node a candidate");
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
        assert_eq!(c.counters().answers, 1);

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
}
