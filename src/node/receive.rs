//! Receiving: a datagram is parsed, its sender checked (label, own loop,
//! source address, MAC), and an ANNOUNCE, LEAVE or SYNC applied to the map;
//! then an answer may be noted, the publish scheduled and the message
//! relayed.

use core::net::SocketAddrV4;

use crate::auth::{Mode, Verdict};
use crate::map::{suspect_after, AnnounceOutcome, Announcement, LeaveOutcome, SenderCheck};
use crate::wire::{flags, MessageType, ParseError, Repr};

use super::{Actions, Core, Event, Received, Refusal, LOSSY_MS};

impl Core {
    #[cold]
    pub(super) fn drop_packet(
        &mut self,
        now_ms: u64,
        error: ParseError,
        src: SocketAddrV4,
        io: &mut impl Actions,
    ) {
        self.counters.dropped[error.index()] += 1;
        io.event(now_ms, Event::Dropped { src, error });
    }

    #[cold]
    pub(super) fn refuse(
        &mut self,
        now_ms: u64,
        src: SocketAddrV4,
        why: Refusal,
        io: &mut impl Actions,
    ) {
        self.counters.refused(why);
        io.event(now_ms, Event::Refused { src, why });
    }

    /// Checks the MAC as `--auth` says: `Some(true)` authenticated,
    /// `Some(false)` accepted without (off, or unsigned in permissive),
    /// `None` refused.
    pub(super) fn authenticate(
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
    pub(super) fn sender_ok(&mut self, now_ms: u64, d: &Received<'_>, repr: &Repr) -> bool {
        let src = *d.src.ip();
        if repr.hops == 0 {
            return src == repr.addr
                || repr.aliases.contains(&src)
                || (matches!(repr.kind, MessageType::Sync | MessageType::Notice)
                    && self.map.has_address(repr.addr, src));
        }
        self.relayed_ok(now_ms, src, d, repr)
    }

    /// Counts a message that was not new as a replay, if it was
    /// authenticated and came from its sender itself (a copy through a relay
    /// or a second path is not a replay).
    pub(super) fn not_new(
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

    pub(super) fn on_datagram(&mut self, now_ms: u64, d: Received<'_>, io: &mut impl Actions) {
        self.counters.received += 1;
        // Borrowed where it was parsed: a `Repr` is ~500 bytes, and moving
        // it out of the `Result` copied all of them for every datagram.
        let parsed = Repr::parse(d.data);
        let repr = match &parsed {
            Ok(r) => r,
            Err(e) => return self.drop_packet(now_ms, *e, d.src, io),
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
        if !self.sender_ok(now_ms, &d, repr) {
            return self.refuse(now_ms, d.src, Refusal::Spoofed, io);
        }
        let Some(authentic) = self.authenticate(now_ms, &d, repr, io) else {
            return;
        };
        if matches!(repr.kind, MessageType::Sync | MessageType::Notice) {
            // Hearsay only from a member, in an answer, and new; notices
            // only from a member, and new.
            if repr.kind == MessageType::Sync && repr.flags & flags::REPLY == 0 {
                return self.refuse(now_ms, d.src, Refusal::NotMember, io);
            }
            let check = self
                .map
                .check_member(repr.addr, repr.incarnation, repr.sequence, now_ms);
            match check {
                SenderCheck::Member => {}
                SenderCheck::Stale => return self.not_new(now_ms, authentic, &d, repr, io),
                SenderCheck::Stranger => return self.refuse(now_ms, d.src, Refusal::NotMember, io),
            }
        }
        self.liveness.heard_other = true;
        if repr.kind == MessageType::Notice {
            return self.on_notice(now_ms, repr, &d, io);
        }
        let answer = repr.flags & flags::REPLY != 0;
        let accepted = match repr.kind {
            MessageType::Announce => {
                let outcome = self.on_announce(now_ms, repr, &d, authentic, io);
                if matches!(outcome, AnnounceOutcome::Stale | AnnounceOutcome::Outdated) {
                    self.not_new(now_ms, authentic, &d, repr, io);
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
                        self.not_new(now_ms, authentic, &d, repr, io);
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
            // Handled above.
            MessageType::Notice => false,
        };
        if answer && accepted {
            // An answer to this node, or to everyone asking on that link.
            if d.multicast {
                self.suppress_answers(d.ifindex);
            }
            if self.join.asks_left > 0 {
                self.join.answered = true;
                self.join.wanted = self.join.wanted.max(repr.members);
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

    pub(super) fn on_announce(
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
            watcher: repr.flags & flags::WATCHER != 0,
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
            self.probing.lossy_until_ms = now_ms + LOSSY_MS;
        }
        if live && direct && repr.interval_ms != 0 {
            // Its silence is noticed on time, also before the first expiry
            // run and when it was known only by hearsay until now.
            self.note_expiry(now_ms + suspect_after(repr.interval_ms));
        }
        if live && direct {
            if self.join.asks_left > 0 {
                self.join.wanted = self.join.wanted.max(repr.members);
            }
            let from = *d.src.ip();
            if repr.flags & flags::PROBE != 0 && !d.multicast {
                self.reply_probe(now_ms, from, d.ifindex, io);
            }
            if repr.flags & flags::JOIN != 0 {
                self.consider_answer(now_ms, from, d.ifindex);
            } else if !self.answering.pending.is_empty() {
                // It has what it asked for.
                self.answering.pending.retain(|p| p.to != from);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

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
