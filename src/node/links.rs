//! Interfaces and identity: the links as the shell reports them, the
//! primary address (the node's identity) and the aliases, an address change
//! (a new incarnation), and taking back an id lost to another node.

use core::net::Ipv4Addr;

use arrayvec::ArrayVec;

use crate::map::Collision;
use crate::wire;

use super::{Actions, Core, Event, Link};

/// The original accepted one to six interfaces; we keep its limit.
pub const MAX_INTERFACES: usize = 6;

// Every link but the first gives one alias, and every alias must fit in an
// ANNOUNCE (`Repr::aliases`) and in the map's node (`ClusterMap::set_own`).
const _: () = assert!(MAX_INTERFACES <= wire::MAX_ALIASES + 1);

impl Core {
    /// The links that send announcements now.
    pub fn sending_links(&self) -> impl Iterator<Item = &Link> {
        (0..self.links.len())
            .filter(|&i| self.sends_on(i))
            .map(|i| &self.links[i])
    }

    pub(super) fn on_links(&mut self, now_ms: u64, fresh: &[Link], io: &mut impl Actions) {
        let fresh = &fresh[..fresh.len().min(MAX_INTERFACES)];
        let Some(new_primary) = fresh.iter().find_map(|l| l.addr) else {
            io.event(now_ms, Event::NoAddress);
            self.links = fresh.iter().copied().collect();
            return;
        };
        if wire::node_id_of(new_primary) == 0 {
            let keeping = self.primary;
            io.event(
                now_ms,
                Event::InvalidAddress {
                    new: new_primary,
                    keeping,
                },
            );
            return;
        }
        let came_up = fresh
            .iter()
            .any(|l| l.up && self.links.iter().any(|old| old.index == l.index && !old.up));
        // The fresh links first: the goodbye must leave from an address we
        // still have (the old one may be gone already).
        self.links = fresh.iter().copied().collect();
        let primary_changed = new_primary != self.primary;
        if primary_changed {
            let old = self.primary;
            io.event(
                now_ms,
                Event::AddressChanged {
                    old,
                    new: new_primary,
                },
            );
            // Sent from the new address (the old one may be gone already):
            // the LEAVE names it among the aliases, as the sender check asks.
            self.begin_goodbye(now_ms, Some(new_primary), io);
        }
        let aliases = alias_addrs(&self.links, new_primary);
        let aliases_changed = !self.map.own_node().aliases().eq(aliases.iter().copied());
        if primary_changed {
            // A new identity is a new incarnation, started now: a live node
            // that holds the new id already keeps it (see map::Collision).
            self.incarnation = self.rng.next_u32() | 1;
            let clock_s = u64::from(self.settings.clock_s) + (now_ms - self.created_ms) / 1000;
            let clock_s = u32::try_from(clock_s).unwrap_or(u32::MAX);
            self.started = clock_s.max(self.started.saturating_add(1));
        }
        // While another node holds this node's id, only a new address
        // matters (the aliases are taken when it comes back).
        let yielded_still = self.map.yielded() && !primary_changed;
        if (primary_changed || aliases_changed) && !yielded_still {
            self.primary = new_primary;
            let id = wire::node_id_of(new_primary);
            let holder = self.map.get(id).filter(|n| {
                (id != self.map.own_id() || self.map.yielded()) && n.addr != new_primary
            });
            match holder {
                Some(h)
                    if !self
                        .map
                        .claim_beats(id, self.signs(), self.started, new_primary) =>
                {
                    // Onto a live node's id, which it claimed first: a
                    // collision this node loses (the node stays in the map).
                    self.map.yield_own(id);
                    let c = Collision {
                        id,
                        winner: h.addr,
                        loser: new_primary,
                        replaced: false,
                        own_lost: true,
                        first_report: true,
                    };
                    io.event(now_ms, Event::Collision(c));
                }
                _ => {
                    self.map.set_own(new_primary, &aliases, self.incarnation);
                    self.map.set_own_claim(self.started, self.signs());
                    self.begin_burst(now_ms);
                }
            }
            self.schedule_publish(now_ms);
        }
        if came_up {
            self.begin_burst(now_ms);
            self.watch_loneliness(now_ms);
        }
    }

    /// While this node yields its id: if the node that won it is gone (it
    /// left or expired), take the id back.
    pub(super) fn take_back_id(&mut self, now_ms: u64, io: &mut impl Actions) {
        if self.map.yielded() && self.map.get(self.map.own_id()).is_none() {
            // The node that won this node's id is gone (it left or expired):
            // take the id back.
            let id = self.map.own_id();
            io.event(now_ms, Event::IdFree { id });
            let aliases = alias_addrs(&self.links, self.primary);
            self.map.set_own(self.primary, &aliases, self.incarnation);
            self.map.set_own_claim(self.started, self.signs());
            self.schedule_publish(now_ms);
            self.begin_burst(now_ms);
        }
    }
}

/// The other links' addresses: the node's openMosix aliases.
pub(super) fn alias_addrs(links: &[Link], primary: Ipv4Addr) -> ArrayVec<Ipv4Addr, MAX_INTERFACES> {
    let mut v = ArrayVec::new();
    for a in links.iter().filter_map(|l| l.addr) {
        if a != primary && !v.contains(&a) {
            v.push(a);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn a_new_address_leaves_under_the_old_identity_and_joins_under_the_new() {
        let mut c = core(1000, 13);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 3000);
        let new = Ipv4Addr::new(10, 0, 0, 2);
        rec.sent.clear();
        c.handle(3000, Input::Links(&[link(IF0, new)]), &mut rec);
        run(&mut c, &mut rec, 4000);
        let first = &rec.sent[0].3;
        assert_eq!((first.kind, first.addr), (MessageType::Leave, ME));
        let leaves = rec.sent.iter().filter(|s| s.3.kind == MessageType::Leave);
        assert_eq!(leaves.count(), usize::from(GOODBYES));
        let announce = rec.sent.iter().find(|s| s.3.kind == MessageType::Announce);
        assert_eq!(announce.unwrap().3.addr, new);
        assert_eq!(c.own_id(), wire::node_id_of(new));
        assert!(rec.events.contains(&Event::AddressChanged { old: ME, new }));
        // An address that gives node id 0 is refused: the identity stays.
        let zero = Ipv4Addr::new(10, 1, 0, 0);
        c.handle(4000, Input::Links(&[link(IF0, zero)]), &mut rec);
        assert_eq!(c.primary(), new);
    }

    #[test]
    fn an_address_change_onto_a_live_nodes_id_loses_to_it_until_it_leaves() {
        let mut c = core(1000, 21);
        let mut rec = Rec::default();
        let peer = Ipv4Addr::new(10, 0, 1, 5);
        let id = wire::node_id_of(peer);
        // The peer started long before this node (its trailer's stamp).
        let from_peer = |kind, seq| {
            let mut r = Repr::new(kind, peer, 7, Label::DEFAULT, 1000, 60_000);
            r.sequence = seq;
            r.auth = Some(Auth {
                key_id: 0,
                stamp: 500_000,
                mac: [0; wire::MAC_LEN],
            });
            let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
            let n = r.emit(&mut buf).unwrap();
            buf.truncate(n);
            buf
        };
        feed(
            &mut c,
            &mut rec,
            100,
            &from_peer(MessageType::Announce, 1),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 1000);
        // This node moves onto 10.9.1.5: the peer's id.
        let new = Ipv4Addr::new(10, 9, 1, 5);
        assert_eq!(wire::node_id_of(new), id);
        c.handle(1000, Input::Links(&[link(IF0, new)]), &mut rec);
        let lost = Collision {
            id,
            winner: peer,
            loser: new,
            replaced: false,
            own_lost: true,
            first_report: true,
        };
        assert!(
            rec.events.contains(&Event::Collision(lost)),
            "{:?}",
            rec.events
        );
        assert!(c.map().yielded());
        assert_eq!(c.map().get(id).unwrap().addr, peer, "the peer stays");
        // Silent while the peer holds the id: only the LEAVE of the old address.
        rec.sent.clear();
        run(&mut c, &mut rec, 5000);
        assert!(
            rec.sent.iter().all(|s| s.3.kind == MessageType::Leave),
            "{:?}",
            rec.sent
        );
        // The peer leaves: this node takes the id and announces.
        feed(
            &mut c,
            &mut rec,
            5000,
            &from_peer(MessageType::Leave, 2),
            IF0,
            true,
        );
        run(&mut c, &mut rec, 6000);
        assert!(!c.map().yielded());
        assert_eq!(c.map().get(id).unwrap().addr, new);
        assert!(rec.events.contains(&Event::IdFree { id }));
        assert!(rec.announces().len() >= 2, "back with a burst");
    }
}
