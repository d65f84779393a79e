//! Relaying (the original's basic routing, without `-m`): a node on several
//! networks forwards what it heard on one to the others, and accepts a
//! relayed message only from a member.

use core::net::Ipv4Addr;

use crate::wire::{self, flags, MessageType, Repr};

use super::{Actions, Core, Received};

/// Relays forward a message at most this many hops.
pub const MAX_HOPS: u8 = 4;

/// Relay addresses remembered as members' (saves a search of the map).
const RELAY_MEMORY: usize = 8;

/// Relay source addresses found to be members'.
#[derive(Clone, Debug, Default)]
pub(super) struct Relays {
    /// (address, until), oldest first.
    pub(super) known: heapless::Deque<(Ipv4Addr, u64), RELAY_MEMORY>,
}

impl Core {
    /// Basic routing (the original's, without `-m`): a node on several
    /// networks forwards what it heard on one to the others.
    pub(super) fn relay(
        &mut self,
        data: &[u8],
        hops: u8,
        from_ifindex: u32,
        io: &mut impl Actions,
    ) {
        if self.settings.routed || self.links.len() < 2 || hops >= MAX_HOPS {
            return;
        }
        let Some(buf) = self.buf.get_mut(..data.len()) else {
            return;
        };
        buf.copy_from_slice(data);
        wire::set_hops(buf, hops + 1);
        self.multicast(data.len(), Some(from_ifindex), false, io);
    }

    /// The sender check of a relayed message (see `docs/PROTOCOL.md`,
    /// "Relaying"): only ANNOUNCE and LEAVE are relayed, by multicast, not
    /// too far, by a member (`src`).
    pub(super) fn relayed_ok(
        &mut self,
        now_ms: u64,
        src: Ipv4Addr,
        d: &Received<'_>,
        repr: &Repr,
    ) -> bool {
        let relayable = matches!(repr.kind, MessageType::Announce | MessageType::Leave)
            && repr.flags & (flags::REPLY | flags::PROBE) == 0
            && repr.hops <= MAX_HOPS
            && d.multicast;
        if !relayable {
            return false;
        }
        if self
            .relays
            .known
            .iter()
            .any(|&(a, until)| a == src && now_ms < until)
        {
            return true;
        }
        if !self.map.is_member_address(src) {
            return false;
        }
        if self.relays.known.is_full() {
            self.relays.known.pop_front();
        }
        let until = now_ms + u64::from(self.settings.interval_ms);
        let _ = self.relays.known.push_back((src, until));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn relaying_forwards_accepted_multicast_to_the_other_links_only() {
        let mut c = two_link_core(false);
        let mut rec = Rec::default();
        let m = message(MessageType::Announce, peer(6), 1, 3000);
        feed(&mut c, &mut rec, 10, &m, IF0, true);
        assert_eq!(relayed(&rec), vec![(IF1, 1)]);
        // The same message again is stale: not relayed twice (no loops).
        feed(&mut c, &mut rec, 11, &m, IF1, true);
        assert_eq!(relayed(&rec).len(), 1);
        // A unicast reply is not relayed.
        let m2 = message(MessageType::Announce, peer(7), 1, 3000);
        feed(&mut c, &mut rec, 12, &m2, IF0, false);
        assert_eq!(relayed(&rec).len(), 1);
        // A message at the hop limit is not relayed.
        let mut far = Repr::new(
            MessageType::Announce,
            peer(8),
            7,
            Label::DEFAULT,
            1000,
            3000,
        );
        far.hops = MAX_HOPS;
        let mut buf = [0u8; wire::MAX_MESSAGE_LEN];
        let n = far.emit(&mut buf).unwrap();
        feed(&mut c, &mut rec, 13, &buf[..n], IF0, true);
        assert_eq!(relayed(&rec).len(), 1);
        assert_eq!(c.counters().relayed, 1);
        // Routed clusters (-m) relay nothing.
        let mut c = two_link_core(true);
        let mut rec = Rec::default();
        feed(&mut c, &mut rec, 10, &m, IF0, true);
        assert!(relayed(&rec).is_empty());
    }
}
