//! Failure detection (`docs/PROTOCOL.md`, "Failure detection"): the
//! watchers of a silent node probe it, ask other members to check it
//! (SWIM's indirect probe), and tell everybody once it is confirmed dead;
//! a node told that it is dead refutes it; a node that loses much of what
//! it should hear (Lifeguard's local health) leaves all this to others.
//!
//! The per-node facts (silence, earned probes, death) live in the map's
//! `silence`; what is under way (checks, helps) and this node's health live
//! here.

use core::net::Ipv4Addr;

use crate::map::{serial_newer, suspect_after, DeadOutcome, MapStats, NodeId, Silent};
use crate::rate::Bucket;
use crate::wire::{self, flags, MessageType, Notice, Repr, What};

use super::timers::Timer;
use super::{Actions, Core, Dest, Event, Received, PROBES_PER_S};

/// The first this many live nodes after a node in the order of node ids
/// watch it: they check its silences, and probe it when its hold runs out.
pub const WATCHERS: usize = 3;

/// Members a watcher asks to check a silent node (SWIM's k).
pub const HELPERS: usize = 3;

/// A probe or an ask waits for its answer this part of the subject's
/// interval ...
pub const ANSWER_WAIT_DIVISOR: u32 = 8;
/// ... but at least and at most this long (ms): answers take a round trip,
/// not an interval.
pub const MIN_ANSWER_WAIT_MS: u32 = 50;
pub const MAX_ANSWER_WAIT_MS: u32 = 500;

/// A confirmed death is multicast this many times, an answer-wait apart:
/// at 5 % loss on every copy a receiver misses all four once in 160,000
/// (two would leave a node in 400 holding the dead one until its hold).
pub const DEAD_COPIES: u8 = 4;

/// Rounds of asks a watcher makes when no helper answers at all.
pub const ASK_ROUNDS: u8 = 2;

/// Silences checked at once, and asks of others being probed.
pub const MAX_CHECKS: usize = 32;
pub const MAX_HELPS: usize = 32;

/// Asks of others this node answers per second at most, and at once.
pub const ASKS_PER_S: u64 = 20;

/// Local health: over each window of this long ...
pub const HEALTH_WINDOW_MS: u64 = 10_000;
/// ... with at least this many announcements heard or missed ...
pub const HEALTH_MIN_SAMPLES: u64 = 20;
/// ... a node that missed more than this part (percent) of the
/// announcements of the nodes it hears (sequence gaps) is unhealthy until a
/// window says otherwise.
pub const UNHEALTHY_LOSS_PERCENT: u64 = 15;

/// A node whose own poll ran this late (ms) was not run by its host for a
/// while: for a health window it does not count as healthy (it may have
/// missed, or not yet read, what others sent).
pub const STALL_MS: u64 = 250;

/// A node told it is dead refutes at most once in this long.
pub const REFUTE_GAP_MS: u64 = 1000;

/// How long a probe or an ask waits for its answer (see
/// [`ANSWER_WAIT_DIVISOR`]).
pub fn answer_wait(interval_ms: u32) -> u64 {
    u64::from((interval_ms / ANSWER_WAIT_DIVISOR).clamp(MIN_ANSWER_WAIT_MS, MAX_ANSWER_WAIT_MS))
}

/// What a node does when the hold of another runs out (see
/// [`Core::at_hold`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AtHold {
    /// Probes it, spread over the window.
    Probe,
    /// Waits the window without probing, then drops it.
    Wait,
    /// Holds it one hold more, then waits the window without probing.
    HoldOn,
}

/// Where a check of a silent node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Probed directly; waiting for its answer.
    Probed,
    /// Helpers asked; waiting for theirs.
    Asked,
    /// Confirmed dead; copies of the notice left to send.
    Telling,
}

/// A silence this node checks as one of the node's watchers.
#[derive(Clone, Copy, Debug)]
struct Check {
    subject: Silent,
    stage: Stage,
    due_ms: u64,
    /// The helpers asked (their ids) and which of them answered.
    helpers: [NodeId; HELPERS],
    asked: u8,
    answered: u8,
    silent: u8,
    alive: bool,
    rounds: u8,
    /// It was probed directly (and did not answer): with no helper to ask
    /// (a cluster of two), that failed probe alone confirms.
    probed: bool,
    /// The last sequence number of the subject anybody heard: what the
    /// notice names.
    last_sequence: u32,
    copies_left: u8,
}

/// Another member's ask this node is checking by a probe.
#[derive(Clone, Copy, Debug)]
struct Help {
    subject: Ipv4Addr,
    incarnation: u32,
    /// The last sequence number heard of it when the probe went.
    sequence: u32,
    asker: Ipv4Addr,
    ifindex: u32,
    due_ms: u64,
}

/// This node's own loss (see [`UNHEALTHY_LOSS_PERCENT`]).
#[derive(Clone, Copy, Debug, Default)]
struct Health {
    window_from_ms: u64,
    heard: u64,
    missed: u64,
    lossy: bool,
    /// A window counted enough to say whether this node is lossy.
    judged: bool,
}

impl Health {
    /// Before any window counted enough: what was counted so far says this
    /// node loses much (with as many samples as a window needs).
    fn lossy_so_far(&self, stats: &MapStats) -> bool {
        let heard = stats.heard - self.heard;
        let missed = stats.missed - self.missed;
        !self.judged
            && heard + missed >= HEALTH_MIN_SAMPLES
            && missed * 100 > UNHEALTHY_LOSS_PERCENT * (heard + missed)
    }
}

/// What failure detection has under way.
#[derive(Clone, Debug)]
pub(super) struct Detect {
    checks: heapless::Vec<Check, MAX_CHECKS>,
    helps: heapless::Vec<Help, MAX_HELPS>,
    health: Health,
    asks_bucket: Bucket,
    refuted_ms: Option<u64>,
    /// Until then this node counts as unhealthy: it stalled (see
    /// [`STALL_MS`]).
    stalled_until_ms: u64,
}

impl Detect {
    pub(super) fn new() -> Detect {
        Detect {
            checks: heapless::Vec::new(),
            helps: heapless::Vec::new(),
            health: Health::default(),
            asks_bucket: Bucket::full(ASKS_PER_S),
            refuted_ms: None,
            stalled_until_ms: 0,
        }
    }
}

impl Core {
    /// This node may watch others and tell deaths: it does not lose much of
    /// what it should hear, is not overloaded and did not stall lately
    /// (Lifeguard's local health).
    pub(super) fn healthy(&mut self, now_ms: u64, io: &mut impl Actions) -> bool {
        !self.loses_much(now_ms, io)
            && now_ms >= self.load.until_ms
            && now_ms >= self.detect.stalled_until_ms
    }

    /// This node measured that it misses over [`UNHEALTHY_LOSS_PERCENT`] of
    /// its peers' announcements (the last health window decides).
    fn loses_much(&mut self, now_ms: u64, io: &mut impl Actions) -> bool {
        let h = &mut self.detect.health;
        if now_ms >= h.window_from_ms + HEALTH_WINDOW_MS {
            let stats = self.map.stats();
            let heard = stats.heard - h.heard;
            let missed = stats.missed - h.missed;
            if heard + missed >= HEALTH_MIN_SAMPLES {
                h.judged = true;
                let lossy = missed * 100 > UNHEALTHY_LOSS_PERCENT * (heard + missed);
                if lossy != h.lossy {
                    h.lossy = lossy;
                    let loss_percent = missed * 100 / (heard + missed);
                    io.event(
                        now_ms,
                        Event::LocalHealth {
                            lossy,
                            loss_percent,
                        },
                    );
                }
            }
            (h.heard, h.missed, h.window_from_ms) = (stats.heard, stats.missed, now_ms);
        }
        self.detect.health.lossy
    }

    /// A poll ran `late_ms` after its instant (see [`STALL_MS`]).
    pub(super) fn note_lateness(&mut self, now_ms: u64, late_ms: u64) {
        if late_ms >= STALL_MS {
            self.detect.stalled_until_ms = now_ms + HEALTH_WINDOW_MS;
        }
    }

    /// What this node does when the hold of `id` runs out: a watcher, or a
    /// node that knows it loses messages (before its first health verdict:
    /// that counted so far), probes it if it earned a probe; the latter
    /// holds it one hold more without one (a young node, or one probed a
    /// moment ago: a lossy node's silence alone is weak evidence). Others
    /// wait the window. (Not a node that is only overloaded or stalled: on a
    /// host too busy for every daemon all of them are, and all probing every
    /// silence would be a storm; an overloaded node holds everyone longer
    /// instead.)
    pub(super) fn at_hold(&mut self, now_ms: u64, id: NodeId, io: &mut impl Actions) -> AtHold {
        let lossy = now_ms < self.probing.lossy_until_ms
            || self.loses_much(now_ms, io)
            || self.detect.health.lossy_so_far(&self.map.stats());
        if !lossy && !self.map.watches(id, WATCHERS) {
            AtHold::Wait
        } else if self.map.spend_probe(id) {
            AtHold::Probe
        } else if lossy {
            AtHold::HoldOn
        } else {
            AtHold::Wait
        }
    }

    /// Begins checking the nodes whose silence was just noticed, if this
    /// node watches them and is healthy. Called by expiry.
    pub(super) fn notice_silences(&mut self, now_ms: u64, io: &mut impl Actions) {
        let healthy = self.healthy(now_ms, io) && !self.map.yielded();
        let mut after = None;
        while let Some(s) = self.map.next_silent(now_ms, after) {
            after = Some(s.id);
            let busy = self.detect.checks.is_full()
                || self.detect.checks.iter().any(|c| c.subject.id == s.id);
            if !healthy || busy || !self.map.watches(s.id, WATCHERS) {
                continue;
            }
            self.counters.suspected += 1;
            let mut check = Check {
                subject: s,
                stage: Stage::Probed,
                due_ms: now_ms + answer_wait(s.interval_ms),
                helpers: [0; HELPERS],
                asked: 0,
                answered: 0,
                silent: 0,
                alive: false,
                rounds: 0,
                probed: false,
                last_sequence: s.sequence,
                copies_left: DEAD_COPIES,
            };
            check.probed = self.probe(now_ms, s.id, io);
            if !check.probed {
                self.ask_helpers(now_ms, &mut check, io);
                if check.asked == 0 {
                    // Nobody to ask and nothing probed: the hold decides.
                    continue;
                }
            }
            // (Not full: see `busy`.)
            let _ = self.detect.checks.push(check);
            self.schedule_detect(check.due_ms);
        }
    }

    /// Sends one probe to the live node `id`, if it earned one and the rate
    /// allows: true if sent.
    fn probe(&mut self, now_ms: u64, id: NodeId, io: &mut impl Actions) -> bool {
        let Some((addr, ifindex)) = self.map.probe_route(id) else {
            return false;
        };
        let rate = PROBES_PER_S;
        if !self.map.spend_probe(id) || !self.probing.send_bucket.take(now_ms, rate, rate) {
            return false;
        }
        self.counters.probes += 1;
        let len = self.emit_own(MessageType::Announce, flags::PROBE, false);
        self.send_buf(len, Dest::Node(addr), ifindex, io);
        true
    }

    /// Asks [`HELPERS`] random members heard directly (not the subject, not
    /// this node) to check the subject of `check`.
    fn ask_helpers(&mut self, now_ms: u64, check: &mut Check, io: &mut impl Actions) {
        let s = check.subject;
        check.stage = Stage::Asked;
        check.rounds += 1;
        check.asked = 0;
        check.answered = 0;
        let own = self.map.own_id();
        let n = self.map.len();
        let mut tries = 0;
        while usize::from(check.asked) < HELPERS && tries < 4 * HELPERS && n > 2 {
            tries += 1;
            let Some(id) = self.map.nth_live(self.rng.below(n as u32) as usize) else {
                continue;
            };
            let chosen = &check.helpers[..usize::from(check.asked)];
            if id == own || id == s.id || chosen.contains(&id) || !self.map.is_watcher(id) {
                continue;
            }
            let Some((addr, ifindex)) = self.map.probe_route(id) else {
                continue;
            };
            check.helpers[usize::from(check.asked)] = id;
            check.asked += 1;
            self.counters.indirect_asks += 1;
            let notice = Notice {
                what: What::Ask,
                addr: s.addr,
                incarnation: s.incarnation,
                sequence: check.last_sequence,
            };
            let len = self.emit_notice(notice);
            self.send_buf(len, Dest::Node(addr), ifindex, io);
        }
        check.due_ms = now_ms + 2 * answer_wait(s.interval_ms);
    }

    /// The detection timer is due: checks and helps move on.
    pub(super) fn detect_due(&mut self, now_ms: u64, io: &mut impl Actions) {
        let mut i = 0;
        while i < self.detect.helps.len() {
            let h = self.detect.helps[i];
            if now_ms < h.due_ms {
                i += 1;
                continue;
            }
            self.detect.helps.swap_remove(i);
            let heard = self.map.heard_of(h.subject, h.incarnation);
            let alive = heard.is_some_and(|(seq, _, _)| seq != h.sequence);
            let healthy = self.healthy(now_ms, io);
            if alive || healthy {
                let what = if alive { What::Alive } else { What::Silent };
                let sequence = heard.map_or(h.sequence, |(seq, _, _)| seq);
                self.answer_ask(
                    what,
                    h.subject,
                    h.incarnation,
                    sequence,
                    h.asker,
                    h.ifindex,
                    io,
                );
            }
        }
        let mut i = 0;
        while i < self.detect.checks.len() {
            let mut c = self.detect.checks[i];
            if now_ms < c.due_ms {
                i += 1;
                continue;
            }
            let keep = self.advance(now_ms, &mut c, io);
            if keep {
                self.detect.checks[i] = c;
                i += 1;
            } else {
                self.detect.checks.swap_remove(i);
            }
        }
        self.timers[Timer::Detect] = None;
        let next = self.detect.checks.iter().map(|c| c.due_ms);
        let next = next.chain(self.detect.helps.iter().map(|h| h.due_ms)).min();
        if let Some(at) = next {
            self.schedule_detect(at);
        }
    }

    fn schedule_detect(&mut self, at_ms: u64) {
        let t = &mut self.timers[Timer::Detect];
        *t = Some(t.map_or(at_ms, |old| old.min(at_ms)));
    }

    /// A check whose time came: the next stage; false when it is over.
    fn advance(&mut self, now_ms: u64, c: &mut Check, io: &mut impl Actions) -> bool {
        let s = c.subject;
        if c.stage == Stage::Telling {
            self.tell_dead(c, io);
            c.copies_left -= 1;
            c.due_ms = now_ms + answer_wait(s.interval_ms);
            return c.copies_left > 0;
        }
        // News of it since: it lives (or it is gone already).
        match self.map.heard_of(s.addr, s.incarnation) {
            Some((seq, _, _)) if seq == s.sequence => {}
            _ => return false,
        }
        match c.stage {
            Stage::Probed => {
                self.ask_helpers(now_ms, c, io);
                c.asked > 0 || self.confirm(now_ms, c, io)
            }
            _ if c.alive => false,
            _ if c.silent > 0 => self.confirm(now_ms, c, io),
            _ if c.rounds < ASK_ROUNDS => {
                self.ask_helpers(now_ms, c, io);
                c.asked > 0 || (c.probed && self.confirm(now_ms, c, io))
            }
            // Nobody answered twice: the hold decides.
            _ => false,
        }
    }

    /// The subject of `c` is dead: removed here, and the first copy of the
    /// notice multicast (if this node is still healthy).
    fn confirm(&mut self, now_ms: u64, c: &mut Check, io: &mut impl Actions) -> bool {
        if !self.healthy(now_ms, io) {
            return false;
        }
        let s = c.subject;
        let by = self.primary;
        if self
            .map
            .apply_dead(s.addr, s.incarnation, c.last_sequence, by, now_ms)
            != DeadOutcome::Removed
        {
            return false;
        }
        self.counters.deaths_confirmed += 1;
        self.removed(now_ms);
        self.tell_dead(c, io);
        c.stage = Stage::Telling;
        c.copies_left -= 1;
        c.due_ms = now_ms + answer_wait(s.interval_ms);
        c.copies_left > 0
    }

    fn tell_dead(&mut self, c: &Check, io: &mut impl Actions) {
        let s = c.subject;
        let notice = Notice {
            what: What::Dead,
            addr: s.addr,
            incarnation: s.incarnation,
            sequence: c.last_sequence,
        };
        let len = self.emit_notice(notice);
        self.multicast(len, None, false, io);
    }

    fn removed(&mut self, now_ms: u64) {
        self.schedule_publish(now_ms);
        self.reconsider(now_ms);
    }

    /// A NOTICE from the member `repr` (checked: direct, from its address,
    /// new, authenticated as the mode asks).
    pub(super) fn on_notice(
        &mut self,
        now_ms: u64,
        repr: &Repr,
        d: &Received<'_>,
        io: &mut impl Actions,
    ) {
        let Some(n) = repr.notice else { return };
        // A node that lost its own id to another answers nobody.
        if self.map.yielded() && n.what == What::Ask {
            return;
        }
        let from = *d.src.ip();
        match n.what {
            What::Ask if !d.multicast => self.on_ask(now_ms, n, from, d.ifindex, io),
            What::Alive | What::Silent if !d.multicast => self.on_answer(now_ms, repr.addr, n),
            What::Dead if d.multicast => self.on_dead(now_ms, n, repr.addr, io),
            // Sent the wrong way: ignored.
            _ => {}
        }
    }

    /// A member asks this node to check `n`'s subject.
    fn on_ask(
        &mut self,
        now_ms: u64,
        n: Notice,
        asker: Ipv4Addr,
        ifindex: u32,
        io: &mut impl Actions,
    ) {
        if !self.detect.asks_bucket.take(now_ms, ASKS_PER_S, ASKS_PER_S) {
            return;
        }
        let healthy = self.healthy(now_ms, io);
        let Some((seq, last_ms, interval_ms)) = self.map.heard_of(n.addr, n.incarnation) else {
            if healthy {
                self.answer_ask(
                    What::Silent,
                    n.addr,
                    n.incarnation,
                    n.sequence,
                    asker,
                    ifindex,
                    io,
                );
            }
            return;
        };
        // News the asker lacks: a message newer than its last, not long
        // ago. (Its last, heard here a few ms later than there, is none: both
        // sides would be racing the same threshold.)
        if now_ms < last_ms + suspect_after(interval_ms) && serial_newer(seq, n.sequence) {
            self.answer_ask(What::Alive, n.addr, n.incarnation, seq, asker, ifindex, io);
            return;
        }
        if !healthy {
            return;
        }
        let id = wire::node_id_of(n.addr);
        let helping = self.detect.helps.iter().any(|h| h.subject == n.addr);
        if !helping && !self.detect.helps.is_full() && self.probe(now_ms, id, io) {
            let due_ms = now_ms + answer_wait(interval_ms);
            let help = Help {
                subject: n.addr,
                incarnation: n.incarnation,
                sequence: seq,
                asker,
                ifindex,
                due_ms,
            };
            let _ = self.detect.helps.push(help);
            self.schedule_detect(due_ms);
            return;
        }
        self.answer_ask(What::Silent, n.addr, n.incarnation, seq, asker, ifindex, io);
    }

    #[allow(clippy::too_many_arguments)]
    fn answer_ask(
        &mut self,
        what: What,
        addr: Ipv4Addr,
        incarnation: u32,
        sequence: u32,
        to: Ipv4Addr,
        ifindex: u32,
        io: &mut impl Actions,
    ) {
        self.counters.asks_answered += 1;
        let notice = Notice {
            what,
            addr,
            incarnation,
            sequence,
        };
        let len = self.emit_notice(notice);
        self.send_buf(len, Dest::Node(to), ifindex, io);
    }

    /// A helper (`from`, a member's address) answered an ask of this node.
    fn on_answer(&mut self, now_ms: u64, from: Ipv4Addr, n: Notice) {
        let helper = wire::node_id_of(from);
        let Some(c) = self.detect.checks.iter_mut().find(|c| {
            c.stage == Stage::Asked
                && c.subject.addr == n.addr
                && c.subject.incarnation == n.incarnation
        }) else {
            return;
        };
        let Some(k) = c.helpers[..usize::from(c.asked)]
            .iter()
            .position(|&h| h == helper)
        else {
            return;
        };
        if c.answered & (1 << k) != 0 {
            return;
        }
        c.answered |= 1 << k;
        if n.what == What::Alive {
            c.alive = true;
            self.map.vouched(n.addr, n.incarnation, now_ms);
        } else {
            c.silent += 1;
            if serial_newer(n.sequence, c.last_sequence) {
                c.last_sequence = n.sequence;
            }
        }
        // Everyone answered: no need to wait.
        if c.answered.count_ones() == u32::from(c.asked) {
            c.due_ms = now_ms;
            self.schedule_detect(now_ms);
        }
    }

    /// A member says `n`'s subject is dead.
    fn on_dead(&mut self, now_ms: u64, n: Notice, by: Ipv4Addr, io: &mut impl Actions) {
        if n.addr == self.primary && n.incarnation == self.incarnation {
            // Not dead: a fresh announcement says so (its sequence number
            // is newer than the notice's).
            if self
                .detect
                .refuted_ms
                .is_none_or(|t| now_ms >= t + REFUTE_GAP_MS)
            {
                self.detect.refuted_ms = Some(now_ms);
                self.counters.refutations += 1;
                self.send_own(MessageType::Announce, Dest::Group, None, 0, io);
            }
            return;
        }
        let out = self
            .map
            .apply_dead(n.addr, n.incarnation, n.sequence, by, now_ms);
        if out != DeadOutcome::Removed {
            return;
        }
        self.counters.death_notices += 1;
        self.removed(now_ms);
        // A watcher checking it has nothing left to do: the confirmer's
        // copies tell everybody (suppression).
        if let Some(k) = self
            .detect
            .checks
            .iter()
            .position(|c| c.subject.addr == n.addr && c.subject.incarnation == n.incarnation)
        {
            self.detect.checks.swap_remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;
    use crate::wire::Label;

    /// A NOTICE from `from` (incarnation 7) about `subject` (incarnation 7).
    fn notice(from: Ipv4Addr, seq: u32, what: What, subject: Ipv4Addr, about: u32) -> Vec<u8> {
        let mut r = Repr::new(MessageType::Notice, from, 7, Label::DEFAULT, 1000, 3000);
        r.sequence = seq;
        r.notice = Some(Notice {
            what,
            addr: subject,
            incarnation: 7,
            sequence: about,
        });
        let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
        let n = r.emit(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// A settled node that heard peers 1..=4 announce every second, 25
    /// times, from 1000 to 25000; peer 2 then falls silent, the others go
    /// on until `until`.
    fn cluster_where_peer_2_dies(until: u64) -> (Core, Rec) {
        cluster_where_peer_2_dies_after(25, until)
    }

    /// Peers 1..=4 announce every second from 1000 (hold 5 s); peer 2 falls
    /// silent after `last` messages, the others go on until `until`.
    fn cluster_where_peer_2_dies_after(last: u32, until: u64) -> (Core, Rec) {
        let mut c = core(1000, 3);
        let mut rec = Rec::default();
        for seq in 1..=(until / 1000) as u32 {
            let t = u64::from(seq) * 1000;
            run(&mut c, &mut rec, t);
            for i in 1..=4u8 {
                if i != 2 || seq <= last {
                    let m = message(MessageType::Announce, peer(i), seq, 5000);
                    feed(&mut c, &mut rec, t, &m, IF0, true);
                }
            }
        }
        (c, rec)
    }

    fn notices(rec: &Rec, what: What) -> Vec<(u64, Dest, Notice)> {
        rec.sent
            .iter()
            .filter_map(|s| Some((s.0, s.1, s.3.notice.filter(|n| n.what == what)?)))
            .collect()
    }

    #[test]
    fn a_watcher_probes_a_silent_node_asks_helpers_and_tells_its_death() {
        // This node (id 1) is the third watcher of peer 2 (id 258): 259,
        // 260, then round to 1.
        let (mut c, mut rec) = cluster_where_peer_2_dies(27_000);
        let dead = peer(2);
        run(&mut c, &mut rec, 27_600);
        let probes: Vec<u64> = rec
            .sent
            .iter()
            .filter(|s| s.3.flags & flags::PROBE != 0 && s.1 == Dest::Node(dead))
            .map(|s| s.0)
            .collect();
        // Suspected 2.5 intervals after its last message (expiry runs
        // every 100 ms): probed once.
        assert_eq!(probes.len(), 1, "{probes:?}");
        assert!((27_500..=27_600).contains(&probes[0]), "{probes:?}");
        run(&mut c, &mut rec, 27_800);
        let asks = notices(&rec, What::Ask);
        assert_eq!(asks.len(), 3, "the three other peers are asked: {asks:?}");
        assert!(asks.iter().all(|a| a.2.addr == dead && a.2.sequence == 25));
        assert_eq!(c.counters().suspected, 1);
        // All say it is silent there too: confirmed, removed, told twice.
        for (k, (_, to, _)) in asks.iter().enumerate() {
            let Dest::Node(helper) = *to else { panic!() };
            let m = notice(helper, 100 + k as u32, What::Silent, dead, 25);
            feed(&mut c, &mut rec, 27_710, &m, IF0, false);
        }
        run(&mut c, &mut rec, 28_500);
        assert!(c.map().get(wire::node_id_of(dead)).is_none());
        let told = notices(&rec, What::Dead);
        assert_eq!(told.len(), usize::from(DEAD_COPIES), "{told:?}");
        // An answer-wait (interval / 8) apart.
        let at: Vec<u64> = told.iter().map(|t| t.0).collect();
        assert_eq!(at, [27_710, 27_835, 27_960, 28_085]);
        assert!(told.iter().all(|t| t.1 == Dest::Group && t.2.addr == dead));
        assert_eq!(c.counters().deaths_confirmed, 1);
        assert_eq!(c.map().view_of(wire::node_id_of(dead)).dead_by, Some(ME));
    }

    #[test]
    fn a_node_that_dies_before_any_hold_ran_out_is_suspected_after_its_silence_not_its_hold() {
        // Peers 1..=4 join at 1 s (hold 5 s); peer 2 falls silent after 2 s.
        // Nothing has expired yet: the silence is still noticed at 4.5 s.
        let (mut c, mut rec) = cluster_where_peer_2_dies_after(2, 4000);
        run(&mut c, &mut rec, 4700);
        assert_eq!(c.counters().suspected, 1);
        let asks = notices(&rec, What::Ask);
        assert!(!asks.is_empty() && asks.iter().all(|a| a.2.addr == peer(2) && a.0 <= 4600));
    }

    #[test]
    fn an_alive_answer_keeps_the_node_and_a_helper_answers_from_what_it_heard() {
        let (mut c, mut rec) = cluster_where_peer_2_dies(27_000);
        run(&mut c, &mut rec, 27_700);
        let asks = notices(&rec, What::Ask);
        let Dest::Node(helper) = asks[0].1 else {
            panic!()
        };
        let m = notice(helper, 100, What::Alive, peer(2), 26);
        feed(&mut c, &mut rec, 27_710, &m, IF0, false);
        run(&mut c, &mut rec, 29_000);
        assert!(c.map().get(wire::node_id_of(peer(2))).is_some());
        assert!(notices(&rec, What::Dead).is_empty());
        // Vouched for: kept a hold (5 s) from the answer, past its own
        // hold from its last message (30 s).
        let kept = c.map().get(wire::node_id_of(peer(2))).unwrap();
        assert_eq!(kept.expires_ms, 27_710 + 5000);

        // As a helper: peer 3 was heard within 2.5 intervals. An asker whose
        // last message of it is older lacks news: alive, with the newer.
        let (seq, _, _) = c.map().heard_of(peer(3), 7).unwrap();
        let ask = notice(peer(4), 200, What::Ask, peer(3), seq - 1);
        feed(&mut c, &mut rec, 29_000, &ask, IF0, false);
        let said = notices(&rec, What::Alive);
        assert_eq!(
            said.last().map(|s| (s.1, s.2.addr, s.2.sequence)),
            Some((Dest::Node(peer(4)), peer(3), seq))
        );
        // One that heard the same last message has heard all this node has
        // (a moment earlier or later): no ALIVE, but a probe, and SILENT
        // when it goes unanswered.
        let ask = notice(peer(1), 200, What::Ask, peer(3), seq);
        feed(&mut c, &mut rec, 29_000, &ask, IF0, false);
        assert_eq!(notices(&rec, What::Alive).len(), said.len());
        assert!(rec
            .sent
            .last()
            .is_some_and(|s| s.3.flags & flags::PROBE != 0 && s.1 == Dest::Node(peer(3))));
        run(&mut c, &mut rec, 29_200);
        let silent = notices(&rec, What::Silent);
        assert_eq!(
            silent.last().map(|s| (s.0, s.1, s.2.addr)),
            Some((29_125, Dest::Node(peer(1)), peer(3)))
        );
        // An ask by multicast, or from a non-member, is not answered.
        let before = rec.sent.len();
        let ask = notice(peer(4), 201, What::Ask, peer(3), 27);
        feed(&mut c, &mut rec, 29_001, &ask, IF0, true);
        let stranger = notice(Ipv4Addr::new(10, 0, 5, 5), 1, What::Ask, peer(3), 27);
        feed(&mut c, &mut rec, 29_002, &stranger, IF0, false);
        assert_eq!(rec.sent.len(), before);
        assert_eq!(c.counters().not_member, 1);
    }

    #[test]
    fn a_death_notice_removes_at_once_unless_heard_later_and_the_dead_node_refutes_it() {
        let (mut c, mut rec) = member(1, 3);
        let dead = notice(peer(1), 2, What::Dead, peer(2), 1);
        feed(&mut c, &mut rec, 4100, &dead, IF0, true);
        assert!(c.map().get(wire::node_id_of(peer(2))).is_none());
        assert_eq!(c.counters().death_notices, 1);
        // Heard later than the notice says: kept.
        let m = message(MessageType::Announce, peer(3), 5, 3000);
        feed(&mut c, &mut rec, 4200, &m, IF0, true);
        let stale = notice(peer(1), 3, What::Dead, peer(3), 4);
        feed(&mut c, &mut rec, 4300, &stale, IF0, true);
        assert!(c.map().get(wire::node_id_of(peer(3))).is_some());
        // The node itself hears it: a fresh announcement, once a second.
        let own_inc = c.map().own_node().incarnation;
        let about_me = |seq| {
            let mut r = Repr::parse(&notice(peer(1), seq, What::Dead, ME, 1)).unwrap();
            r.notice.as_mut().unwrap().incarnation = own_inc;
            let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
            let n = r.emit(&mut buf).unwrap();
            buf.truncate(n);
            buf
        };
        rec.sent.clear();
        feed(&mut c, &mut rec, 4400, &about_me(4), IF0, true);
        feed(&mut c, &mut rec, 4500, &about_me(5), IF0, true);
        assert_eq!(rec.announces(), [4400]);
        assert_eq!(c.counters().refutations, 1);
        // The dead node refutes: back, and no sign of loss here.
        let back = message(MessageType::Announce, peer(2), 3, 3000);
        feed(&mut c, &mut rec, 4600, &back, IF0, true);
        assert!(c.map().get(wire::node_id_of(peer(2))).is_some());
    }

    /// Peers 1..=4 announce every second from 1000 (every other one is
    /// lost here if `lossy`); peer 1 (id 257, watched by 258, 259 and 260,
    /// not by this node) falls silent after 40 s; at 41 s this node's timer
    /// fires 400 ms late if `stall`. The probes this node sent to peer 1
    /// until 48 s, when its hold (5 s) and probes are over.
    fn hold_probes_of_an_unwatched_silence(stall: bool, lossy: bool) -> usize {
        let mut c = core(1000, 3);
        let mut rec = Rec::default();
        for seq in 1..=48u32 {
            let t = u64::from(seq) * 1000;
            run(&mut c, &mut rec, t);
            if stall && seq == 41 {
                let at = c.poll_at().unwrap();
                c.poll(at + 400, &mut rec);
            }
            for i in 1..=4u8 {
                if (i != 1 || seq <= 40) && !(lossy && seq % 2 == 1) {
                    let m = message(MessageType::Announce, peer(i), seq, 5000);
                    feed(&mut c, &mut rec, t, &m, IF0, true);
                }
            }
        }
        assert!(c.map().get(wire::node_id_of(peer(1))).is_none(), "dropped");
        let to_it = |s: &&(u64, Dest, u32, Repr)| {
            s.3.flags & flags::PROBE != 0 && s.1 == Dest::Node(peer(1))
        };
        rec.sent.iter().filter(to_it).count()
    }

    /// Peers 1..=4 announce every second; peer 3 is silent from 21 s to
    /// 29 s (dropped here at its hold), then announces again, `skipped`
    /// sequence numbers after its last. Whether this node then takes itself
    /// for lossy (it probes every silence at the hold for an hour).
    fn lossy_after_a_return(skipped: u32) -> bool {
        let mut c = core(1000, 3);
        let mut rec = Rec::default();
        for k in 1..=30u32 {
            let t = u64::from(k) * 1000;
            run(&mut c, &mut rec, t);
            for i in 1..=4u8 {
                let seq = match (i, k) {
                    (3, 21..=29) => continue,
                    (3, 30..) => 20 + 1 + skipped,
                    _ => k,
                };
                if (i, k) == (3, 30) {
                    assert!(c.map().get(wire::node_id_of(peer(3))).is_none(), "dropped");
                }
                let m = message(MessageType::Announce, peer(i), seq, 5000);
                feed(&mut c, &mut rec, t, &m, IF0, true);
            }
        }
        assert!(c.map().get(wire::node_id_of(peer(3))).is_some(), "back");
        c.probing.lossy_until_ms > 30_000
    }

    #[test]
    fn a_node_back_after_sending_nothing_was_not_run_by_its_host_not_lost_here() {
        // It sent nothing, or only answers to two probes: not a loss here.
        assert!(!lossy_after_a_return(0));
        assert!(!lossy_after_a_return(2));
        // It sent about one message a second, and none arrived here.
        assert!(lossy_after_a_return(8));
    }

    #[test]
    fn a_node_that_stalled_holds_on_but_probes_no_silence_it_does_not_watch() {
        // Stalled: unhealthy for a while, and on a host too busy for every
        // daemon all would be; it leaves the probes to the watchers.
        assert_eq!(hold_probes_of_an_unwatched_silence(false, false), 0);
        assert_eq!(hold_probes_of_an_unwatched_silence(true, false), 0);
        // A node that measured its own loss probes before it drops.
        assert!(hold_probes_of_an_unwatched_silence(false, true) > 0);
    }

    /// What this node, hearing only every other message, does with a young
    /// peer that falls silent: peers 1..=`peers` send message `k` at `k`
    /// steps of `step_ms` (`k` up to `last`, hold `hold_ms`), the last of
    /// them only while `k` is in `young`. Whether it is listed at
    /// `check_ms` and at the end, how many probes it got, and whether this
    /// node said it is lossy.
    fn a_young_peer_falls_silent_at_half_loss(
        step_ms: u64,
        peers: u8,
        young: core::ops::RangeInclusive<u32>,
        last: u32,
        hold_ms: u32,
        check_ms: u64,
    ) -> (Option<bool>, bool, usize, bool) {
        let mut c = core(1000, 3);
        let mut rec = Rec::default();
        let listed = |c: &Core| c.map().get(wire::node_id_of(peer(peers))).is_some();
        let mut at_check = None;
        for k in 1..=last {
            let t = u64::from(k) * step_ms;
            run(&mut c, &mut rec, t);
            if t == check_ms {
                at_check = Some(listed(&c));
            }
            for i in 1..=peers {
                if (i != peers || young.contains(&k)) && k % 2 == 0 {
                    let m = message(MessageType::Announce, peer(i), k, hold_ms);
                    feed(&mut c, &mut rec, t, &m, IF0, true);
                }
            }
        }
        let probes = rec
            .sent
            .iter()
            .filter(|s| s.3.flags & flags::PROBE != 0 && s.1 == Dest::Node(peer(peers)))
            .count();
        let said_lossy = rec
            .events
            .iter()
            .any(|e| matches!(e, Event::LocalHealth { lossy: true, .. }));
        (at_check, listed(&c), probes, said_lossy)
    }

    #[test]
    fn a_lossy_node_holds_a_young_silent_node_a_hold_more_instead_of_dropping_it_unprobed() {
        // Peers 1..=5 announce every second; this node measured its loss.
        // Peer 5 starts at 21 s: 10 of its messages heard by 40 s, too few
        // to earn a probe, then it is silent (hold 5 s, interval 1 s). Its
        // hold and probe window ran out at 45.75 s: still held at 47 s,
        // dropped a hold later (50.75 s), never probed.
        let (at_47, at_end, probes, lossy) =
            a_young_peer_falls_silent_at_half_loss(1000, 5, 21..=40, 53, 5000, 47_000);
        assert!(lossy);
        assert_eq!(at_47, Some(true), "held one hold more");
        assert!(!at_end, "dropped after the second hold");
        assert_eq!(probes, 0);
    }

    #[test]
    fn before_its_first_health_window_a_node_that_missed_much_so_far_holds_a_young_silent_node() {
        // Peers 1..=7 send every 100 ms; peer 7 is heard 10 times up to 3 s,
        // then falls silent (hold 3 s). The first health window ends at 10
        // s, but when its hold ran out, at 6 s, this node had counted half
        // its peers' messages missed: held to 9 s, dropped at 9.75 s,
        // unprobed.
        let (at_8s, at_end, probes, _) =
            a_young_peer_falls_silent_at_half_loss(100, 7, 11..=30, 99, 3000, 8000);
        assert_eq!(at_8s, Some(true), "held one hold more");
        assert!(!at_end, "dropped after the second hold");
        assert_eq!(probes, 0);
    }

    #[test]
    fn a_node_that_misses_much_neither_watches_nor_tells() {
        // Peers 1..=4 announce every second, and every other announcement
        // is lost here: 50 % loss, measured over a health window.
        let mut c = core(1000, 3);
        let mut rec = Rec::default();
        for seq in 1..=27u32 {
            let t = u64::from(seq) * 1000;
            run(&mut c, &mut rec, t);
            for i in 1..=4u8 {
                if (i != 2 || seq <= 25) && seq % 2 == 0 {
                    let m = message(MessageType::Announce, peer(i), seq, 5000);
                    feed(&mut c, &mut rec, t, &m, IF0, true);
                }
            }
        }
        run(&mut c, &mut rec, 29_000);
        assert!(rec
            .events
            .iter()
            .any(|e| matches!(e, Event::LocalHealth { lossy: true, .. })));
        assert_eq!(c.counters().suspected, 0);
        assert!(notices(&rec, What::Ask).is_empty());
        assert!(notices(&rec, What::Dead).is_empty());
        // It still takes others' word.
        let dead = notice(peer(1), 100, What::Dead, peer(2), 50);
        feed(&mut c, &mut rec, 29_100, &dead, IF0, true);
        assert!(c.map().get(wire::node_id_of(peer(2))).is_none());
    }
}
