//! Overload: a node that cannot keep up (kernel drops, late polls,
//! datagrams left waiting) holds everyone longer and announces and answers
//! less, instead of dropping the nodes it failed to hear.

use super::{Actions, Core, Event, Overload};

/// A node that cannot keep up stretches its own interval by up to this
/// factor (doubling with each overload, halving after each interval
/// without one).
pub const MAX_OVERLOAD_FACTOR: u32 = 4;

/// A poll this late after its instant counts as an overload: the node (or
/// its machine) was too busy or stopped, and what it failed to read must
/// not look like silence.
pub const OVERLOAD_LATE_MS: u64 = 1_000;

/// A caller reads up to this many datagrams at once (per wake-up) and
/// tells the core [`Input::Behind`](super::Input::Behind) when more were waiting.
pub const READ_AT_ONCE: usize = 512;

/// Datagrams left waiting after every read ([`Input::Behind`](super::Input::Behind)) for this
/// long count as an overload; a burst that is read within it does not.
pub const BEHIND_MS: u64 = 500;

/// Reads that leave datagrams waiting less than this apart are one spell.
const BEHIND_GAP_MS: u64 = 100;

/// How overloaded this node is, and since when it is behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Load {
    /// The own interval is stretched by this (1 ..= [`MAX_OVERLOAD_FACTOR`]) ...
    pub(super) factor: u32,
    /// ... and the node counts as overloaded until then.
    pub(super) until_ms: u64,
    /// Since when, and last when, reads left datagrams waiting.
    pub(super) behind_since_ms: u64,
    pub(super) behind_last_ms: Option<u64>,
}

impl Load {
    pub(super) fn new() -> Load {
        Load {
            factor: 1,
            until_ms: 0,
            behind_since_ms: 0,
            behind_last_ms: None,
        }
    }
}

impl Core {
    /// This node cannot keep up (see [`Event::Overloaded`]): nobody
    /// expires for what it failed to read, and it announces less often
    /// and answers nobody until an interval has passed without overload.
    pub(super) fn overloaded(&mut self, now_ms: u64, why: Overload, io: &mut impl Actions) {
        if now_ms >= self.load.until_ms {
            self.load.factor = (self.load.factor * 2).min(MAX_OVERLOAD_FACTOR);
            self.counters.overloads += 1;
        }
        self.map.postpone_expiry(now_ms);
        let interval_ms = self.interval_ms();
        self.load.until_ms = now_ms + u64::from(interval_ms);
        io.event(now_ms, Event::Overloaded { why, interval_ms });
    }

    /// A poll [`OVERLOAD_LATE_MS`] or more after its instant is an overload.
    pub(super) fn check_late(&mut self, now_ms: u64, io: &mut impl Actions) {
        let late_ms = self.poll_at().map_or(0, |at| now_ms.saturating_sub(at));
        self.note_lateness(now_ms, late_ms);
        self.map.late_poll(now_ms, late_ms);
        if late_ms >= OVERLOAD_LATE_MS {
            self.overloaded(now_ms, Overload::Late(late_ms), io);
        }
    }

    /// The kernel's running total of receive-buffer drops ([`Input::KernelDrops`]).
    pub(super) fn on_kernel_drops(&mut self, now_ms: u64, total: u32, io: &mut impl Actions) {
        if total > self.counters.kernel_overflows {
            let more = total - self.counters.kernel_overflows;
            self.counters.kernel_overflows = total;
            self.overloaded(now_ms, Overload::Dropped(more), io);
        }
    }

    /// Datagrams were left waiting after a read ([`Input::Behind`]).
    pub(super) fn on_behind(&mut self, now_ms: u64, io: &mut impl Actions) {
        let spell_goes_on = self
            .load
            .behind_last_ms
            .is_some_and(|last| now_ms <= last + BEHIND_GAP_MS);
        if !spell_goes_on {
            self.load.behind_since_ms = now_ms;
        }
        self.load.behind_last_ms = Some(now_ms);
        if now_ms >= self.load.behind_since_ms + BEHIND_MS {
            self.overloaded(now_ms, Overload::Behind, io);
        }
    }
}

#[cfg(test)]
mod tests {

    use crate::node::testing::*;

    #[test]
    fn an_overloaded_node_holds_everyone_longer_and_announces_less() {
        let (mut c, mut rec) = member(12, 1);
        // The peer, heard at 4000, would expire at 7000.
        c.handle(6500, Input::KernelDrops(40), &mut rec);
        let why = Overload::Dropped(40);
        let interval_ms = 2000;
        assert_eq!(
            rec.events.last(),
            Some(&Event::Overloaded { why, interval_ms })
        );
        run(&mut c, &mut rec, 10_200);
        assert!(c.map().get(wire::node_id_of(peer(1))).is_some(), "held");
        run(&mut c, &mut rec, 10_250 + EXPIRY_GRANULARITY_MS);
        assert!(
            c.map().get(wire::node_id_of(peer(1))).is_none(),
            "one hold after, and the peer's interval of probes"
        );
        assert_eq!(c.counters().overloads, 1);
        // Overloaded, it answers nobody.
        let (mut c, mut rec) = member(12, 1);
        c.handle(4000, Input::KernelDrops(1), &mut rec);
        ask(&mut c, &mut rec, 4001);
        run(&mut c, &mut rec, 5000);
        assert!(rec.replies().is_empty());
        // A poll a few seconds late is an overload too.
        let (mut c, mut rec) = member(12, 1);
        let at = c.poll_at().unwrap();
        c.poll(at + 3000, &mut rec);
        let late = Overload::Late(3000);
        assert!(rec
            .events
            .iter()
            .any(|e| matches!(e, Event::Overloaded { why, .. } if *why == late)));
        // So are reads that leave datagrams waiting for half a second, but
        // not a burst that is read at once.
        let (mut c, mut rec) = member(12, 1);
        c.handle(4500, Input::Behind, &mut rec);
        c.handle(4510, Input::Behind, &mut rec);
        assert_eq!(c.counters().overloads, 0);
        for t in (4500..=5000).step_by(50) {
            c.handle(t, Input::Behind, &mut rec);
        }
        assert_eq!(c.counters().overloads, 1);
    }

    #[test]
    fn an_overload_that_never_ends_still_drops_a_dead_node_after_two_holds_and_its_probes() {
        let (mut c, mut rec) = member(13, 1);
        // The peer, heard at 4000 with a hold of 3 s, dies; this node is
        // behind on every read from then on.
        let mut now = 4000;
        while now < 20_000 {
            now += 50;
            c.handle(now, Input::Behind, &mut rec);
            run(&mut c, &mut rec, now);
            let gone = c.map().get(wire::node_id_of(peer(1))).is_none();
            // Two holds, then one interval of probes.
            assert_eq!(gone, now >= 10_750, "at {now}");
            if gone {
                break;
            }
        }
        assert!(now < 20_000);
    }
}
