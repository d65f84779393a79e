//! Joining: the asks for the map (ANNOUNCE with `JOIN`) of a node that
//! starts, and when it has what it asked for.

use super::Core;

/// A joining node asks for the map (ANNOUNCE with `JOIN`) in at most this
/// many announcements (its start-up burst, then more with back-off) until
/// it is answered and its map is as large as its peers say theirs are.
pub const MAX_ASKS: u8 = 6;

/// Asks after the burst come with doubling gaps up to this, as long as they
/// come sooner than the interval.
pub const MAX_ASK_GAP_MS: u32 = 2_000;

/// Where this node's join stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Join {
    /// Asks left in this join; 0: not joining.
    pub(super) asks_left: u8,
    /// An answer has come ...
    pub(super) answered: bool,
    /// ... from a member that knew this many nodes.
    pub(super) wanted: u16,
}

impl Core {
    /// Still asking for the map: asks left, and no answer yet, or this map
    /// is smaller than a member said its own was (every ANNOUNCE says).
    pub(super) fn wants_map(&self) -> bool {
        self.join.asks_left > 0
            && !(self.join.answered && self.map.len() >= usize::from(self.join.wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn a_joining_node_asks_until_its_map_is_as_large_as_a_member_says() {
        // Nobody answers: the burst asks, then asks again with gaps doubling
        // up to 2 s while they come sooner than the interval (4 s here).
        let mut c = core(4000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 60_000);
        let asks = rec.asks();
        let t = rec.announces();
        assert_eq!(&asks[..6], &[true; 6]);
        assert!(asks[6..].iter().all(|&a| !a), "at most {MAX_ASKS} asks");
        let gaps: Vec<u64> = t[..7].windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(&gaps[..5], &[500, 1000, 2000, 2000, 2000]);
        assert!(
            (3200..=4800).contains(&gaps[5]),
            "then the interval: {gaps:?}"
        );

        // An answer from a member of 3 that brings the map to 3: no more asks.
        let mut c = core(1000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 300);
        assert_eq!(rec.asks(), vec![true]);
        feed(
            &mut c,
            &mut rec,
            310,
            &announce_with(peer(1), 1, flags::REPLY, 3),
            IF0,
            false,
        );
        let sync = message(MessageType::Sync, peer(1), 2, 3000);
        feed(&mut c, &mut rec, 311, &sync, IF0, false);
        assert_eq!(c.map().len(), 3);
        run(&mut c, &mut rec, 3000);
        assert!(rec.asks()[1..].iter().all(|&a| !a), "{:?}", rec.asks());

        // A member that says it knows more than the answer brought: ask again.
        let mut c = core(1000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 300);
        feed(
            &mut c,
            &mut rec,
            310,
            &announce_with(peer(1), 1, flags::REPLY, 2),
            IF0,
            false,
        );
        feed(
            &mut c,
            &mut rec,
            320,
            &announce_with(peer(2), 1, 0, 5),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 1000);
        assert_eq!(rec.asks(), vec![true, true]);
        assert_eq!(c.counters().asks, 2);
    }

    #[test]
    fn a_node_answered_but_still_short_asks_again_without_backing_off() {
        // Answered by a member of 5 with a map of 2: the asks come after
        // the burst's first gap, 500 ms, until the six are used.
        let mut c = core(4000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 300);
        assert_eq!(rec.asks(), vec![true]);
        feed(
            &mut c,
            &mut rec,
            310,
            &announce_with(peer(1), 1, flags::REPLY, 5),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 10_000);
        let asks = rec.asks();
        assert_eq!(&asks[..6], &[true; 6]);
        assert!(asks[6..].iter().all(|&a| !a));
        let t = rec.announces();
        let gaps: Vec<u64> = t[..6].windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, vec![500; 5]);
    }
}
