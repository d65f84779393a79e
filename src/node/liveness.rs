//! Liveness: expiry of the nodes not heard for their hold, the probes of a
//! silent node before it is dropped, the replies to others' probes, and the
//! loneliness warning.

use core::net::Ipv4Addr;

use crate::rate::Bucket;
use crate::wire::{flags, MessageType};

use super::detect::AtHold;
use super::timers::Timer;
use super::{Actions, Core, Dest, Event};

/// Expiry runs at most this often: each run walks every known node
/// (~3 ns a node), and with thousands of nodes the earliest deadline moves on
/// with nearly every packet. A node leaves at most this late.
pub const EXPIRY_GRANULARITY_MS: u64 = 100;

/// Hearing no other node for this many intervals after start (or a link
/// coming up) earns one warning: a switch doing IGMP snooping without a
/// querier silently stops forwarding the group, the original's classic trap.
pub const LONELY_INTERVALS: u64 = 5;

/// Probe replies a node sends per second at most, and at once.
pub const PROBE_REPLIES_PER_S: u64 = 20;

/// A node that saw a node it had dropped come back (it loses messages)
/// probes every silent node for this long.
pub const LOSSY_MS: u64 = 3_600_000;

/// Probes a node sends per second at most, and at once (a mass death
/// costs no storm).
pub const PROBES_PER_S: u64 = 50;

/// When expiry last ran, and whether any other node was heard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Liveness {
    /// The last expiry run (it runs at most every [`EXPIRY_GRANULARITY_MS`]).
    pub(super) last_expiry_ms: u64,
    /// Another node was heard since the start or a link came up.
    pub(super) heard_other: bool,
}

/// The probes this node sends and answers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probing {
    /// Probes sent ([`PROBES_PER_S`]).
    pub(super) send_bucket: Bucket,
    /// Replies to probes ([`PROBE_REPLIES_PER_S`]).
    pub(super) reply_bucket: Bucket,
    /// Until then this node probes every silent node (see [`LOSSY_MS`]).
    pub(super) lossy_until_ms: u64,
}

impl Probing {
    pub(super) fn new() -> Probing {
        Probing {
            send_bucket: Bucket::full(PROBES_PER_S),
            reply_bucket: Bucket::full(PROBE_REPLIES_PER_S),
            lossy_until_ms: 0,
        }
    }
}

impl Core {
    pub(super) fn watch_loneliness(&mut self, now_ms: u64) {
        self.liveness.heard_other = false;
        let after = LONELY_INTERVALS * u64::from(self.settings.interval_ms);
        self.timers.set(Timer::Lonely, now_ms + after);
    }

    /// The expiry timer is due: silences noticed (see `detect`), probes to
    /// the nodes whose hold ran out (by their watchers, with a probe earned,
    /// within [`PROBES_PER_S`]), the nodes whose probes went unanswered
    /// dropped, and the timer set again.
    pub(super) fn expire_and_probe(&mut self, now_ms: u64, io: &mut impl Actions) {
        self.notice_silences(now_ms, io);
        let mut after = None;
        // A node that lost its id to another probes nobody.
        let probing = !self.map.yielded();
        while let Some(p) = self.map.next_probe(now_ms, after).filter(|_| probing) {
            after = Some(p.id);
            if p.first {
                match self.at_hold(now_ms, p.id, io) {
                    AtHold::Probe => {}
                    AtHold::Wait => {
                        self.map.skip_probes(p.id);
                        continue;
                    }
                    AtHold::HoldOn => {
                        self.map.hold_on(p.id);
                        continue;
                    }
                }
            }
            if !self
                .probing
                .send_bucket
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
        self.liveness.last_expiry_ms = now_ms;
        let next = self.map.next_deadlines();
        let expiry = next.expiry.map(|t| t.max(now_ms + EXPIRY_GRANULARITY_MS));
        // Probes of a silent node keep their spacing, however short.
        let probe = next.probing.map(|t| t.max(now_ms + 1));
        let silence = next.silence.map(|t| t.max(now_ms + EXPIRY_GRANULARITY_MS));
        self.timers[Timer::Expiry] = [expiry, probe, silence].into_iter().flatten().min();
    }

    /// A node probed this one (it had not heard it for a whole hold):
    /// answer with this node's ANNOUNCE, by unicast, within a total rate.
    pub(super) fn reply_probe(
        &mut self,
        now_ms: u64,
        to: Ipv4Addr,
        ifindex: u32,
        io: &mut impl Actions,
    ) {
        let rate = PROBE_REPLIES_PER_S;
        if self.map.yielded() || !self.probing.reply_bucket.take(now_ms, rate, rate) {
            return;
        }
        self.counters.probe_replies += 1;
        self.send_own(MessageType::Announce, Dest::Node(to), Some(ifindex), 0, io);
    }

    pub(super) fn note_expiry(&mut self, at_ms: u64) {
        let at = at_ms.max(self.liveness.last_expiry_ms + EXPIRY_GRANULARITY_MS);
        let t = &mut self.timers[Timer::Expiry];
        *t = Some(t.map_or(at, |old| old.min(at)));
    }

    /// The loneliness timer is due: warn if no other node was heard.
    pub(super) fn check_lonely(&mut self, now_ms: u64, io: &mut impl Actions) {
        self.timers[Timer::Lonely] = None;
        if !self.liveness.heard_other {
            let intervals = LONELY_INTERVALS;
            io.event(now_ms, Event::Lonely { intervals });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn a_silent_node_that_earned_no_probe_expires_at_its_own_hold_time_unprobed() {
        let mut c = core(1000, 5);
        let mut rec = Rec::default();
        // This node holds for 3 s, the peer asks for 7 s; one message earns
        // it no probe (a forged node costs its victim nothing).
        feed(
            &mut c,
            &mut rec,
            1000,
            &message(MessageType::Announce, peer(3), 1, 7000),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 8749);
        assert!(
            c.map().get(wire::node_id_of(peer(3))).is_some(),
            "kept until 8750, its hold plus 3/4 of its interval"
        );
        run(&mut c, &mut rec, 8750 + EXPIRY_GRANULARITY_MS);
        assert!(
            c.map().get(wire::node_id_of(peer(3))).is_none(),
            "gone by 8850"
        );
        assert_eq!(c.map().stats().expired, 1);
        assert_eq!(c.counters().probes, 0);
        assert!(
            rec.sent.iter().all(|s| s.1 == Dest::Group),
            "{:?}",
            rec.sent
        );
    }

    /// Peer 3 announces every 200 ms (hold 1 s) and every other message is
    /// lost here, 60 heard until 24 s; returns when the last was heard.
    fn hear_half_of_a_peer(c: &mut Core, rec: &mut Rec) -> u64 {
        let mut last = 0;
        for k in 1..=60u32 {
            let t = 400 * u64::from(k);
            let mut r = Repr::new(MessageType::Announce, peer(3), 7, Label::DEFAULT, 200, 1000);
            r.sequence = 2 * k;
            let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
            let n = r.emit(&mut buf).unwrap();
            run(c, rec, t);
            feed(c, rec, t, &buf[..n], IF0, true);
            last = t;
        }
        last
    }

    #[test]
    fn a_node_that_loses_messages_probes_an_earned_silent_node_five_times_at_its_hold() {
        let mut c = core(200, 5);
        let mut rec = Rec::default();
        // Every other message of the peer (every 200 ms) is lost here
        // (50 %): over a health window this node finds itself lossy, leaves
        // the early checks to others, and probes at the hold instead.
        let last = hear_half_of_a_peer(&mut c, &mut rec);
        run(&mut c, &mut rec, last + 3000);
        let probes: Vec<u64> = rec
            .sent
            .iter()
            .filter(|s| s.3.flags & flags::PROBE != 0)
            .map(|s| s.0 - last)
            .collect();
        // The hold ran out 1000 ms after the last message; 3/4 of 200 ms
        // is 150 ms.
        assert_eq!(probes, [1000, 1030, 1060, 1090, 1120]);
        assert!(c.map().get(wire::node_id_of(peer(3))).is_none());
        assert_eq!(c.counters().suspected, 0);
    }

    #[test]
    fn a_late_wake_up_starts_the_probe_window_again_instead_of_dropping_at_once() {
        // As above (it finds itself lossy and probes at the hold), but after
        // the first probe this node wakes up 300 ms late: past the whole
        // window (150 ms).
        let mut c = core(200, 5);
        let mut rec = Rec::default();
        let last = hear_half_of_a_peer(&mut c, &mut rec);
        let id = wire::node_id_of(peer(3));
        run(&mut c, &mut rec, last + 999);
        let late = c.poll_at().unwrap().max(last + 1000) + 300;
        c.poll(late, &mut rec);
        assert!(c.map().get(id).is_some(), "not dropped in the late wake-up");
        run(&mut c, &mut rec, late + 400);
        let probes: Vec<i64> = rec
            .sent
            .iter()
            .filter(|s| s.3.flags & flags::PROBE != 0)
            .map(|s| s.0 as i64 - late as i64)
            .collect();
        // The first when the hold ran out, the other four spaced over a
        // window from the wake-up; then dropped.
        assert!(probes[0] < 0, "{probes:?}");
        assert_eq!(probes[1..], [30, 60, 90, 120]);
        assert!(c.map().get(id).is_none());
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
}
