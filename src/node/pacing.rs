//! Pacing: the start-up burst, the announce interval under the cluster's
//! budget, reverse reconsideration when the cluster shrinks, and the hold
//! this node asks its peers for.

use crate::wire::{self, flags, MessageType};

use super::timers::Timer;
use super::{Actions, Core, Dest, Settings, MAX_ASKS, MAX_ASK_GAP_MS};

/// First announcement after a random delay of up to this (as mDNS probes),
/// or longer when a large cluster is expected (see [`STARTUP_RATE_FACTOR`]).
pub const STARTUP_JITTER_MS: u32 = 250;

/// When a cluster of N nodes is expected, the first announcements are
/// spread over N / (this x budget) seconds: a cold boot of the whole
/// cluster sends its first round at about this many times the budget.
pub const STARTUP_RATE_FACTOR: u64 = 4;

/// The start-up delay is at most this long, whatever the expected size.
pub const MAX_STARTUP_WINDOW_MS: u64 = 30_000;

/// Announcements sent in the start-up burst (the first and two more).
pub const STARTUP_BURST: u8 = 3;

/// Largest gap of the start-up burst before doubling.
pub const BURST_GAP_MS: u32 = 500;

/// The periodic announcement is spread by this many percent either way, so
/// nodes booted together drift apart.
pub const ANNOUNCE_JITTER_PERCENT: u32 = 20;

/// The announce interval grows at most this many times from one
/// announcement to the next, so that a sudden jump in the nodes known (a
/// large SYNC, a healed partition) slows the pace over a few announcements
/// rather than at once.
pub const MAX_STRETCH: u32 = 2;

/// A SIGHUP (or any rejoin) within this long of the last one starts no new
/// start-up burst: a storm of them costs no more than one.
pub const REJOIN_GAP_MS: u64 = 1_000;

/// When this node announces next, and what it advertised last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pacing {
    /// Announcements left in the start-up burst, and the next gap in it.
    pub(super) burst_left: u8,
    pub(super) burst_gap_ms: u32,
    /// The last announcement: when, and the interval it advertised.
    pub(super) last_announce_ms: u64,
    pub(super) advertised_ms: u32,
    /// The next periodic gap as drawn, and the interval it was drawn for
    /// (reconsideration scales it to the interval of the moment).
    pub(super) gap_ms: u64,
    pub(super) gap_interval_ms: u32,
    /// The last rejoin that started a burst (see [`REJOIN_GAP_MS`]).
    pub(super) last_rejoin_ms: Option<u64>,
}

impl Pacing {
    /// Before the first announcement, at `now_ms`.
    pub(super) fn new(settings: &Settings, now_ms: u64) -> Pacing {
        Pacing {
            burst_left: 0,
            burst_gap_ms: 0,
            last_announce_ms: now_ms,
            advertised_ms: settings.interval_ms,
            gap_ms: u64::from(settings.interval_ms),
            gap_interval_ms: settings.interval_ms,
            last_rejoin_ms: None,
        }
    }
}

impl Core {
    /// The interval this node announces at now: the configured one, longer
    /// when the cluster is large (the budget) or this node is overloaded.
    /// Never inlined: five callers (statistics, logs, pacing), none per packet.
    #[inline(never)]
    pub fn interval_ms(&self) -> u32 {
        let base = u64::from(self.settings.interval_ms);
        let budget = u64::from(self.settings.budget);
        let n = self.map.len() as u64;
        let by_budget = (n * 1000).checked_div(budget).unwrap_or(0);
        let t = base.max(by_budget) * u64::from(self.load.factor);
        let cap = u64::from(self.pacing.advertised_ms) * u64::from(MAX_STRETCH);
        t.min(cap).min(u64::from(wire::MAX_INTERVAL_MS)) as u32
    }

    /// The hold advertised with `interval_ms`: the configured hold, scaled
    /// as the interval is, and by [`hold_scale`] of the nodes known.
    pub(super) fn hold_for(&self, interval_ms: u32) -> u32 {
        let s = &self.settings;
        let hold = u64::from(s.hold_ms) * u64::from(interval_ms) / u64::from(s.interval_ms.max(1))
            * hold_scale_permille(self.map.len())
            / 1000;
        hold.clamp(u64::from(interval_ms), u64::from(wire::MAX_HOLD_MS)) as u32
    }

    /// A new start-up burst, and a new join: the burst's announcements ask
    /// for the map.
    pub(super) fn begin_burst(&mut self, now_ms: u64) {
        self.pacing.burst_left = STARTUP_BURST;
        self.pacing.burst_gap_ms = BURST_GAP_MS.min(self.settings.interval_ms / 2).max(1);
        self.join.asks_left = MAX_ASKS;
        self.join.answered = false;
        self.join.wanted = 0;
        let window = self.startup_window_ms();
        let delay = self.rng.below(window + 1);
        self.timers.set(Timer::Announce, now_ms + u64::from(delay));
    }

    /// The first announcement waits a random part of this: long enough
    /// that a cold boot of the expected cluster starts at
    /// [`STARTUP_RATE_FACTOR`] times the budget.
    pub(super) fn startup_window_ms(&self) -> u32 {
        let expected = u64::from(self.settings.expected_nodes).max(self.map.len() as u64);
        let budget = u64::from(self.settings.budget);
        let spread = (expected * 1000)
            .checked_div(STARTUP_RATE_FACTOR * budget)
            .unwrap_or(0);
        spread.clamp(u64::from(STARTUP_JITTER_MS), MAX_STARTUP_WINDOW_MS) as u32
    }

    /// The periodic gap as drawn, scaled to `interval_ms` (RFC 3550's
    /// reverse reconsideration: the same random draw, the shorter interval).
    pub(super) fn scaled_gap(&self, interval_ms: u32) -> u64 {
        self.pacing.gap_ms * u64::from(interval_ms) / u64::from(self.pacing.gap_interval_ms.max(1))
    }

    pub(super) fn announce(&mut self, now_ms: u64, io: &mut impl Actions) {
        if now_ms >= self.load.until_ms && self.load.factor > 1 {
            self.load.factor /= 2;
        }
        // A grown cluster stretches the interval from this announcement on
        // (each advertises the interval before its successor, so a peer's
        // hold always covers the gap); a shrunk one is handled at once by
        // `reconsider`.
        self.pacing.advertised_ms = self.interval_ms();
        if self.map.yielded() {
            // Not a member while another node holds this id: listen only.
            let interval = u64::from(self.pacing.advertised_ms);
            let gap = self.rng.jitter_ms(interval, ANNOUNCE_JITTER_PERCENT);
            self.timers.set(Timer::Announce, now_ms + gap);
            return;
        }
        let ask = self.wants_map();
        let flag_bits = if ask {
            self.join.asks_left -= 1;
            self.counters.asks += 1;
            flags::JOIN
        } else {
            self.join.asks_left = 0;
            0
        };
        self.send_own(MessageType::Announce, Dest::Group, None, flag_bits, io);
        self.pacing.last_announce_ms = now_ms;
        // The burst; then, while the map is still short, asks with gaps
        // doubling up to MAX_ASK_GAP_MS as long as they come sooner than the
        // interval; then the interval, randomised.
        // The gaps double as a back-off while nobody answers; a node that
        // was answered and is still short asks again after the burst's
        // first gap (the answers come, they left holes).
        let factor = if ask && self.join.answered && self.wants_map() {
            self.pacing.burst_gap_ms = BURST_GAP_MS.min(self.settings.interval_ms / 2).max(1);
            1
        } else {
            2
        };
        let next = if self.pacing.burst_left > 1 {
            self.pacing.burst_left -= 1;
            let gap = self.pacing.burst_gap_ms;
            self.pacing.burst_gap_ms = gap.saturating_mul(factor);
            u64::from(gap)
        } else {
            self.pacing.burst_left = 0;
            self.pacing.gap_interval_ms = self.pacing.advertised_ms;
            self.pacing.gap_ms =
                if self.wants_map() && self.pacing.burst_gap_ms < self.pacing.advertised_ms {
                    let gap = self.pacing.burst_gap_ms;
                    self.pacing.burst_gap_ms = gap.saturating_mul(factor).min(MAX_ASK_GAP_MS);
                    u64::from(gap)
                } else {
                    let interval = u64::from(self.pacing.advertised_ms);
                    self.rng.jitter_ms(interval, ANNOUNCE_JITTER_PERCENT)
                };
            self.pacing.gap_ms
        };
        self.timers.set(Timer::Announce, now_ms + next);
    }

    /// Reverse reconsideration: the cluster shrank, so the next periodic
    /// announcement comes as early as the shorter interval says.
    pub(super) fn reconsider(&mut self, now_ms: u64) {
        let t = self.interval_ms();
        if self.pacing.burst_left > 0 || self.goodbye.stopping || t >= self.pacing.gap_interval_ms {
            return;
        }
        let due = (self.pacing.last_announce_ms + self.scaled_gap(t)).max(now_ms);
        let slot = &mut self.timers[Timer::Announce];
        if slot.is_some_and(|at| due < at) {
            *slot = Some(due);
        }
    }

    /// Start announcing afresh ([`Input::Rejoin`]): a new start-up burst, but
    /// a storm of SIGHUPs costs one burst.
    pub(super) fn rejoin(&mut self, now_ms: u64) {
        let recent = self
            .pacing
            .last_rejoin_ms
            .is_some_and(|last| now_ms < last + REJOIN_GAP_MS);
        if !recent && self.pacing.burst_left == 0 {
            self.pacing.last_rejoin_ms = Some(now_ms);
            self.begin_burst(now_ms);
        }
    }
}

/// How much longer than configured a node of a cluster of `nodes` asks its
/// peers to hold it, in thousandths: max(1, 0.8 + log10(nodes) / 4), so
/// 1 up to 6 nodes, 1.176 at 32, 1.402 at 256, 1.552 at 1,024, 1.703 at
/// 4,096. Integer arithmetic (no libm, the same on every machine).
///
/// A peer drops a node that it did not hear for a whole hold; among N nodes
/// there are N² pairs, so the chance that some pair loses that many
/// announcements in a row grows with N², and keeping it level takes one
/// more announcement per hold for about every fourfold of N (at 5 % loss;
/// SWIM's suspicion timeout grows with log N for the same reason).
pub fn hold_scale_permille(nodes: usize) -> u64 {
    // log10(n) = log2(n) x 0.30103; log2 in 1/1024 steps.
    let log10_milli = log2_q10(nodes.max(1) as u64) * 30_103 / 102_400;
    (800 + log10_milli / 4).max(1000)
}

/// floor(log2(n) x 1024) for n >= 1, by repeated squaring of the mantissa.
pub(super) fn log2_q10(n: u64) -> u64 {
    let int = u64::from(63 - n.leading_zeros());
    // The mantissa n / 2^int in [1, 2), as a 32.32 fixed-point number.
    let mut x = (u128::from(n) << 32) >> int;
    let mut frac = 0;
    for bit in (0..10).rev() {
        x = (x * x) >> 32;
        if x >= 2 << 32 {
            x >>= 1;
            frac |= 1 << bit;
        }
    }
    int * 1024 + frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn start_up_burst_is_three_announcements_with_doubling_gaps() {
        for seed in 0..50 {
            let mut c = core(2000, seed);
            let mut rec = Rec::default();
            run(&mut c, &mut rec, 2000);
            let t = rec.announces();
            assert_eq!(t.len(), 3, "seed {seed}: {t:?}");
            assert!(t[0] <= u64::from(STARTUP_JITTER_MS), "first at {}", t[0]);
            assert_eq!(t[1] - t[0], 500);
            assert_eq!(t[2] - t[1], 1000);
        }
        // A short interval shortens the burst gaps to half of it.
        let mut c = core(200, 1);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 500);
        let t = rec.announces();
        assert_eq!((t[1] - t[0], t[2] - t[1]), (100, 200));
    }

    #[test]
    fn periodic_announcements_stay_within_the_jitter_bounds() {
        let mut c = core(1000, 42);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 2_000_000);
        let t = rec.announces();
        let gaps: Vec<u64> = t[3..].windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 1000);
        let (lo, hi) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
        assert!(
            (800..=1200).contains(lo) && (800..=1200).contains(hi),
            "{lo}..{hi}"
        );
        // The spread is used, not just allowed.
        assert!(*lo < 820 && *hi > 1180, "{lo}..{hi}");
    }

    #[test]
    fn the_interval_grows_with_the_cluster_to_keep_the_budget_and_shrinks_back() {
        let s = Settings {
            budget: 100,
            ..settings(1000)
        };
        let mut c = Core::new(s, ME, &[link(IF0, ME)], Rng::from_seed(11), 0);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 4000);
        // 499 more nodes: 500 / 100 per second = one announcement every 5 s.
        for i in 0..499u32 {
            let a = Ipv4Addr::new(10, 1, (i / 250 + 2) as u8, (i % 250 + 1) as u8);
            let m = message(MessageType::Announce, a, 1, 60_000);
            feed(&mut c, &mut rec, 4000, &m, IF0, true);
        }
        assert_eq!(c.map().len(), 500);
        rec.sent.clear();
        run(&mut c, &mut rec, 40_000);
        // (Its announcements: the silent nodes it watches are checked too.)
        let sent: Vec<(u64, u32, u32)> = rec
            .sent
            .iter()
            .filter(|s| s.3.kind == MessageType::Announce && s.1 == Dest::Group)
            .map(|s| (s.0, s.3.interval_ms, s.3.hold_ms))
            .collect();
        // At most doubling per announcement: 2 s, 4 s, then 5 s.
        let intervals: Vec<u32> = sent.iter().map(|s| s.1).collect();
        assert_eq!(&intervals[..3], &[2000, 4000, 5000]);
        assert!(intervals[3..].iter().all(|&i| i == 5000));
        // Each gap follows the interval its announcement advertised ...
        for w in sent.windows(2) {
            let gap = w[1].0 - w[0].0;
            let t = u64::from(w[0].1);
            assert!(gap * 10 >= t * 8 && gap * 10 <= t * 12, "{gap} after {t}");
        }
        // ... and the hold the interval, times 0.8 + log10(500) / 4.
        let (_, t, hold) = sent[4];
        assert_eq!(hold, 3 * t * 1474 / 1000);
        assert_eq!(hold_scale_permille(500), 1474);

        // 450 leave: the next announcement comes as early as 50 nodes allow.
        let last = rec.sent.last().unwrap().0;
        for i in 0..450u32 {
            let a = Ipv4Addr::new(10, 1, (i / 250 + 2) as u8, (i % 250 + 1) as u8);
            let m = message(MessageType::Leave, a, 2, 60_000);
            feed(&mut c, &mut rec, last + 100, &m, IF0, true);
        }
        rec.sent.clear();
        run(&mut c, &mut rec, last + 1300);
        assert_eq!(rec.sent.len(), 1, "reverse reconsideration");
        assert_eq!(rec.sent[0].3.interval_ms, 1000);
    }

    #[test]
    fn the_hold_scale_is_0_8_plus_a_quarter_of_log10_and_at_least_1() {
        for n in [
            1usize, 2, 6, 7, 10, 32, 100, 256, 500, 1024, 4096, 16384, 65535,
        ] {
            let exact = (0.8 + (n as f64).log10() / 4.0).max(1.0);
            let got = hold_scale_permille(n) as f64 / 1000.0;
            assert!((got - exact).abs() < 0.002, "{n}: {got} for {exact}");
        }
        assert_eq!(hold_scale_permille(6), 1000);
        assert_eq!(hold_scale_permille(4096), 1703);
    }

    #[test]
    fn the_first_announcement_waits_longer_when_a_large_cluster_is_expected() {
        let s = Settings {
            expected_nodes: 8000,
            ..settings(1000)
        };
        // 8,000 nodes at 4 x 1,000 per second: spread over 2 s.
        let firsts: Vec<u64> = (0..200)
            .map(|seed| {
                let mut c = Core::new(s, ME, &[link(IF0, ME)], Rng::from_seed(seed), 0);
                let mut rec = Rec::default();
                run(&mut c, &mut rec, 2000);
                rec.announces()[0]
            })
            .collect();
        assert!(firsts.iter().all(|&t| t <= 2000));
        assert!(firsts.iter().any(|&t| t > 1500), "the window is used");
    }
}
