//! Applying what nodes say: ANNOUNCE, LEAVE and hearsay (SYNC entries),
//! with the freshness rules (sequence numbers, incarnations), the rules for
//! rivals (another incarnation of a known address: a restart, a replay or a
//! duplicate) and for collisions (two addresses claiming one id), and the
//! checks of a sender's membership.

use std::net::Ipv4Addr;

use super::expiry::probe_window;
use super::{node_id_of, same_aliases, set_aliases, ClusterMap, NodeId, Slot, Via};
use crate::wire::GOODBYES;

/// What a node says about itself, taken from an ANNOUNCE (or a LEAVE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement<'a> {
    pub addr: Ipv4Addr,
    pub aliases: &'a [Ipv4Addr],
    pub incarnation: u32,
    pub sequence: u32,
    pub hold_ms: u32,
    /// When the incarnation started (the trailer's `stamp`); 0: not known.
    pub started: u32,
    /// The sender's interval if it was heard directly: once its hold runs
    /// out it is probed for
    /// [`PROBE_WINDOW_PERCENT`](super::PROBE_WINDOW_PERCENT) of it; 0
    /// (through a relay): not probed.
    pub probe_ms: u32,
    /// The interface it was heard on.
    pub ifindex: u32,
    /// Its MAC was checked and is valid (`--auth permissive` or `enforce`).
    pub authentic: bool,
    /// It takes part in failure detection (the `WATCHER` flag): it may
    /// watch others and be asked to check them.
    pub watcher: bool,
}

/// A node id claimed by two live addresses. An authenticated claim wins
/// over an unauthenticated one (`--auth permissive`: an unsigned message
/// cannot take the id of a node heard signed); then the claim that started
/// first wins (at the same second, the lower address): every map names the
/// same holder, whatever the order it heard them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collision {
    pub id: NodeId,
    /// Holds the id in this map.
    pub winner: Ipv4Addr,
    /// Is not in this map.
    pub loser: Ipv4Addr,
    /// The winner took the id from the loser just now: the id moved.
    pub replaced: bool,
    /// The loser is this node: it lost its own id.
    pub own_lost: bool,
    /// To be logged: every move, and a refused claim the first time from
    /// this claimant; later claims are only counted.
    pub first_report: bool,
}

/// Two live incarnations announce one address (an IP conflict, or two
/// daemons on one host): the one that started later is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duplicate {
    pub addr: Ipv4Addr,
    /// When the kept and the refused incarnation started (0: not known).
    pub kept_started: u32,
    pub other_started: u32,
    /// The address is this node's own.
    pub own: bool,
    /// First report for this pair: the caller logs it.
    pub first_report: bool,
}

/// What applying an announcement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceOutcome {
    /// A node the map did not have.
    Joined,
    /// A known node, hold time renewed.
    Refreshed,
    /// A known node with a new incarnation: it restarted.
    Restarted,
    /// The incarnation that expired here less than a hold ago: it was alive
    /// all along (this node lost its messages, or a partition healed).
    Returned,
    /// An old or duplicate sequence number of a known incarnation (a
    /// relayed copy, or a replay): ignored.
    Stale,
    /// Another incarnation of a known address that did not start later than
    /// the one the map has (or had, until less than a hold ago): a replay of
    /// an earlier incarnation, or a node whose clock went back. Ignored.
    Outdated,
    /// Two live incarnations announce the address; the later-started one is kept.
    Duplicate(Duplicate),
    /// Hearsay about a known node that holds it longer than the map did.
    Extended,
    /// The id belongs to another live node: not added.
    Collision(Collision),
    /// Invalid id 0 or our own id from our own address: ignored.
    Ignored,
}

/// Whether a message comes from a member (see [`ClusterMap::check_member`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SenderCheck {
    /// A live member, this incarnation, a newer sequence number.
    Member,
    /// A live member, this incarnation, but not a newer sequence number.
    Stale,
    /// Not a live member with this address and incarnation.
    Stranger,
}

/// What applying a LEAVE did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveOutcome {
    Removed,
    /// Not new (see `docs/PROTOCOL.md`, "Freshness"): of the live
    /// incarnation but not newer than the last message heard from it, of an
    /// incarnation that left already (but for [`LeaveOutcome::Repeated`]),
    /// or of an incarnation that did not start later than the one the map
    /// has or remembers. A replay.
    Stale,
    /// A copy of the LEAVE that removed the node, within
    /// [`LEAVE_COPIES_MS`] of it: every LEAVE is sent several times.
    Repeated,
    /// New, but of no node in the map: a node that expired here, a claimant
    /// that does not hold its id, a restart that left at once, an address
    /// not remembered, or this node's own.
    Ignored,
}

/// A LEAVE of the incarnation that just left, with the sequence number of
/// the LEAVE that removed it, is one of its copies (a node sends each
/// LEAVE [`GOODBYES`] times, 5 ms apart) for this long after, and so are
/// the first [`GOODBYES`]` - 1` copies whenever they come; later ones, a
/// replay.
pub const LEAVE_COPIES_MS: u64 = 100;

impl ClusterMap {
    /// A claim to `id` by `addr` with `started` (`authentic`: in an
    /// authenticated message) comes before the claim of the node that
    /// holds it now (see [`Collision`]); a pinned node's id is never taken.
    pub(crate) fn claim_beats(
        &self,
        id: NodeId,
        authentic: bool,
        started: u32,
        addr: Ipv4Addr,
    ) -> bool {
        if self.pinned.contains(id) {
            return false;
        }
        let s = &self.slots[id as usize];
        claim_key(authentic, started, u32::from(addr)) < claim_key(s.authentic, s.started, s.addr)
    }

    /// Applies an ANNOUNCE heard at `now_ms`.
    ///
    /// Freshness: a known incarnation counts only with a newer sequence
    /// number, also after it left; another incarnation of a known address
    /// replaces it only if it started later (see [`AnnounceOutcome::Outdated`]).
    /// Collisions: see [`Collision`].
    pub fn apply_announce(&mut self, a: &Announcement<'_>, now_ms: u64) -> AnnounceOutcome {
        let id = node_id_of(a.addr);
        if id == 0 {
            return AnnounceOutcome::Ignored;
        }
        let claimant = u32::from(a.addr);
        let live = self.live.contains(id);
        let own = self.holds_own(id);
        let slot = &self.slots[id as usize];
        let known = live || slot.departed_ms != 0;
        if known && slot.addr == claimant && slot.incarnation == a.incarnation {
            if own {
                return AnnounceOutcome::Ignored;
            }
            let fresh = if slot.left {
                None
            } else {
                accept_sequence(slot, a.sequence)
            };
            let Some(newest) = fresh else {
                self.stats.stale += 1;
                return AnnounceOutcome::Stale;
            };
            if !live {
                // Back after it expired here: a partition healed, or this
                // node lost what it sent.
                // (Not a sign of loss if a death notice removed it: it
                // refuted the notice; nor if it sent hardly anything
                // meanwhile: its host did not run it.)
                let recent = self.remembered(id, now_ms)
                    && slot.dead_by == 0
                    && sent_meanwhile(slot, a, now_ms);
                self.replace(id, a, now_ms);
                self.insert_live(id);
                return if recent {
                    AnnounceOutcome::Returned
                } else {
                    AnnounceOutcome::Joined
                };
            }
            let slot = &mut self.slots[id as usize];
            if newest && a.probe_ms != 0 && !slot.sequence_unknown {
                let gap = a.sequence.wrapping_sub(slot.sequence).wrapping_sub(1);
                self.stats.heard += 1;
                self.stats.missed += u64::from(gap.min(8));
            }
            note_sequence(slot, a.sequence);
            slot.last_seen_ms = now_ms;
            slot.probes = 0;
            slot.silent = false;
            slot.held_on = false;
            slot.earned = slot.earned.saturating_add(1);
            if !newest {
                // Late (a later message came first): it shows the node is
                // alive, but says nothing newer about it.
                return AnnounceOutcome::Refreshed;
            }
            slot.hold_ms = a.hold_ms;
            // An authenticated start replaces one nobody signed.
            if slot.started == 0 || (a.authentic && !slot.authentic) {
                slot.started = a.started;
            }
            slot.authentic |= a.authentic;
            slot.watcher = a.watcher;
            if a.probe_ms != 0 {
                slot.probe_ms = probe_window(a.probe_ms);
                slot.interval_ms = a.probe_ms;
                slot.ifindex = a.ifindex;
            }
            if !same_aliases(slot, a.aliases) {
                set_aliases(slot, a.aliases);
                self.modified.insert(id);
                self.dirty = true;
            }
            return AnnounceOutcome::Refreshed;
        }
        if slot.addr == claimant && (live || self.remembered(id, now_ms)) {
            // Another incarnation of a known address.
            if !own && started_later(a.started, slot.started) {
                self.replace(id, a, now_ms);
                if live {
                    return AnnounceOutcome::Restarted;
                }
                self.insert_live(id);
                return AnnounceOutcome::Joined;
            }
            return self.rival(id, a, own);
        }
        if live && self.pinned.contains(id) {
            // A permanent member keeps its id.
            return self.collision(id, a.addr, false);
        }
        if live {
            let holder_alive = own || now_ms < self.final_expiry(id);
            if holder_alive {
                let wins = self.claim_beats(id, a.authentic, a.started, a.addr);
                if !wins {
                    return self.collision(id, a.addr, false);
                }
                let loser = Ipv4Addr::from(slot.addr);
                self.replace(id, a, now_ms);
                if own {
                    self.yielded = true;
                }
                return self.collision(id, loser, true);
            }
            // The holder went silent past its hold time: the id is free.
            self.replace(id, a, now_ms);
            return AnnounceOutcome::Joined;
        }
        self.replace(id, a, now_ms);
        self.insert_live(id);
        AnnounceOutcome::Joined
    }

    /// A refused other incarnation of the address in slot `id`: if it keeps
    /// sending newer sequence numbers, it is alive, and the address is
    /// shared.
    fn rival(&mut self, id: NodeId, a: &Announcement<'_>, own: bool) -> AnnounceOutcome {
        let slot = &mut self.slots[id as usize];
        if slot.rival_incarnation != a.incarnation {
            slot.rival_incarnation = a.incarnation;
            slot.rival_sequence = a.sequence;
            slot.rival_reported = false;
            return AnnounceOutcome::Outdated;
        }
        if !serial_newer(a.sequence, slot.rival_sequence) {
            return AnnounceOutcome::Outdated;
        }
        slot.rival_sequence = a.sequence;
        let first_report = !slot.rival_reported;
        slot.rival_reported = true;
        self.stats.duplicates += 1;
        AnnounceOutcome::Duplicate(Duplicate {
            addr: a.addr,
            kept_started: slot.started,
            other_started: a.started,
            own,
            first_report,
        })
    }

    /// Reports that `loser` does not hold `id` (the slot's node does);
    /// `replaced`: it did until now.
    fn collision(&mut self, id: NodeId, loser: Ipv4Addr, replaced: bool) -> AnnounceOutcome {
        self.stats.collisions += 1;
        let own_lost = replaced && self.yielded && id == self.own;
        let slot = &mut self.slots[id as usize];
        // A move is news each time (it changes every map); a refused claim
        // is reported once per claimant.
        let first_report = replaced || slot.collision_claimant != u32::from(loser);
        slot.collision_claimant = loser.into();
        AnnounceOutcome::Collision(Collision {
            id,
            winner: Ipv4Addr::from(slot.addr),
            loser,
            replaced,
            own_lost,
            first_report,
        })
    }

    /// Whether a message from `addr` (`incarnation`, `sequence`) comes from
    /// a live member and is new; if so, it counts as news from it (its
    /// sequence number and hold are renewed).
    pub(crate) fn check_member(
        &mut self,
        addr: Ipv4Addr,
        incarnation: u32,
        sequence: u32,
        now_ms: u64,
    ) -> SenderCheck {
        let id = node_id_of(addr);
        if id == 0 || self.holds_own(id) || !self.live.contains(id) {
            return SenderCheck::Stranger;
        }
        let s = &mut self.slots[id as usize];
        if s.addr != u32::from(addr) || s.incarnation != incarnation {
            return SenderCheck::Stranger;
        }
        if accept_sequence(s, sequence).is_none() {
            self.stats.stale += 1;
            return SenderCheck::Stale;
        }
        note_sequence(s, sequence);
        s.last_seen_ms = now_ms;
        s.probes = 0;
        s.silent = false;
        s.held_on = false;
        s.earned = s.earned.saturating_add(1);
        SenderCheck::Member
    }

    /// `src` is the address or an alias of the live node `addr`.
    pub(crate) fn has_address(&self, addr: Ipv4Addr, src: Ipv4Addr) -> bool {
        let id = node_id_of(addr);
        let s = &self.slots[id as usize];
        id != 0
            && self.live.contains(id)
            && s.addr == u32::from(addr)
            && (addr == src || s.aliases[..usize::from(s.alias_count)].contains(&u32::from(src)))
    }

    /// `addr` is the address or an alias of some live node (a relay). A
    /// search of the map unless it is a node's primary address.
    pub(crate) fn is_member_address(&self, addr: Ipv4Addr) -> bool {
        let id = node_id_of(addr);
        if id != 0 && self.live.contains(id) && self.slots[id as usize].addr == u32::from(addr) {
            return true;
        }
        let a = u32::from(addr);
        self.live.iter().any(|id| {
            let s = &self.slots[id as usize];
            s.aliases[..usize::from(s.alias_count)].contains(&a)
        })
    }

    /// Applies an entry of a SYNC: a node a peer knows, which it would drop
    /// `hold_ms` from now. A node the map lacks is added (without aliases:
    /// they come with its own announcement). A known node of the same
    /// incarnation is kept until then if that is later than its own expiry;
    /// nothing else of it changes (first-hand news wins). The deadline is
    /// never later than the peer's own, so hearsay cannot keep a dead node
    /// alive longer than the last node that heard it.
    pub fn apply_hearsay(
        &mut self,
        addr: Ipv4Addr,
        incarnation: u32,
        hold_ms: u32,
        now_ms: u64,
    ) -> AnnounceOutcome {
        let id = node_id_of(addr);
        if id == 0 || id == self.own || self.pinned.contains(id) {
            return AnnounceOutcome::Ignored;
        }
        let s = &self.slots[id as usize];
        let departed_here = !self.live.contains(id)
            && s.addr == u32::from(addr)
            && s.incarnation == incarnation
            && (s.left || self.remembered(id, now_ms));
        if departed_here {
            // It left, or expired here less than a hold ago: a member that
            // has not noticed yet does not bring it back.
            return AnnounceOutcome::Ignored;
        }
        if self.live.contains(id) {
            let expires = self.expiry(id);
            let slot = &mut self.slots[id as usize];
            if slot.addr != u32::from(addr) && now_ms < expires {
                return AnnounceOutcome::Ignored;
            }
            let until = now_ms.saturating_add(u64::from(hold_ms));
            if slot.addr == u32::from(addr) && slot.incarnation == incarnation && until > expires {
                let from = slot.last_seen_ms.max(self.grace_from_ms);
                slot.hold_ms = u32::try_from(until - from).unwrap_or(u32::MAX);
                return AnnounceOutcome::Extended;
            }
            return AnnounceOutcome::Ignored;
        }
        let a = Announcement {
            addr,
            aliases: &[],
            incarnation,
            sequence: 0,
            hold_ms,
            started: 0,
            probe_ms: 0,
            ifindex: 0,
            authentic: false,
            watcher: false,
        };
        self.replace(id, &a, now_ms);
        self.slots[id as usize].sequence_unknown = true;
        self.slots[id as usize].via = Via::Sync as u8;
        self.insert_live(id);
        AnnounceOutcome::Joined
    }

    /// Applies a LEAVE with `sequence` of the incarnation that started at
    /// `started` (0: not known), heard at `now_ms`: the node is removed at
    /// once if it is the incarnation the map has and the sequence number is
    /// newer than the last one heard from it. See [`LeaveOutcome`].
    pub fn apply_leave(
        &mut self,
        addr: Ipv4Addr,
        incarnation: u32,
        sequence: u32,
        started: u32,
        now_ms: u64,
    ) -> LeaveOutcome {
        match self.check_member(addr, incarnation, sequence, now_ms) {
            SenderCheck::Stranger => {
                self.leave_of_stranger(addr, incarnation, sequence, started, now_ms)
            }
            SenderCheck::Stale => LeaveOutcome::Stale,
            SenderCheck::Member if self.pinned.contains(node_id_of(addr)) => {
                // A permanent member stays, whatever it says.
                LeaveOutcome::Ignored
            }
            SenderCheck::Member => {
                let id = node_id_of(addr);
                self.slots[id as usize].left = true;
                self.slots[id as usize].leave_copies = 0;
                self.remove(id, now_ms);
                LeaveOutcome::Removed
            }
        }
    }

    /// A LEAVE that is not of a live member: whether it is new, by the
    /// rules of [`ClusterMap::apply_announce`]. It removes nothing either way.
    fn leave_of_stranger(
        &mut self,
        addr: Ipv4Addr,
        incarnation: u32,
        sequence: u32,
        started: u32,
        now_ms: u64,
    ) -> LeaveOutcome {
        let id = node_id_of(addr);
        let live = self.live.contains(id);
        let s = &self.slots[id as usize];
        if id == 0 || s.addr != u32::from(addr) || !(live || s.departed_ms != 0) {
            return LeaveOutcome::Ignored;
        }
        if s.incarnation != incarnation {
            let recent = live || self.remembered(id, now_ms);
            if recent && !started_later(started, s.started) {
                return LeaveOutcome::Stale;
            }
            return LeaveOutcome::Ignored;
        }
        if live {
            // This node's own incarnation (looped back).
            return LeaveOutcome::Ignored;
        }
        if s.left {
            // Its own copies: within LEAVE_COPIES_MS, or the first
            // GOODBYES - 1 however late (a receiver the host did not run
            // for a moment reads them late).
            let copy = sequence == s.sequence
                && (now_ms < s.departed_ms.saturating_add(LEAVE_COPIES_MS)
                    || s.leave_copies + 1 < GOODBYES);
            if copy {
                let s = &mut self.slots[id as usize];
                s.leave_copies = s.leave_copies.saturating_add(1);
                return LeaveOutcome::Repeated;
            }
        } else if accept_sequence(s, sequence).is_some() {
            // Its goodbye, after it expired here.
            return LeaveOutcome::Ignored;
        }
        self.stats.stale += 1;
        LeaveOutcome::Stale
    }

    /// The node that just left with a LEAVE (`addr`) said so because its
    /// address changed, to `to` (see [`crate::node`]).
    pub fn note_moved(&mut self, addr: Ipv4Addr, to: Ipv4Addr) {
        let slot = &mut self.slots[node_id_of(addr) as usize];
        if slot.left && slot.addr == u32::from(addr) {
            slot.moved_to = u32::from(to);
        }
    }
}

/// Whether a message with `sequence` from the node in `s` (its known
/// incarnation) is new: `Some(true)` newer than any heard, `Some(false)`
/// older but within the window and not heard yet, `None` heard already or
/// too old (a copy or a replay).
fn accept_sequence(s: &Slot, sequence: u32) -> Option<bool> {
    if s.sequence_unknown || serial_newer(sequence, s.sequence) {
        return Some(true);
    }
    let back = s.sequence.wrapping_sub(sequence);
    (back < 64 && s.seen & (1 << back) == 0).then_some(false)
}

/// Whether the node of `s`, silent here until `a` came, sent meanwhile at
/// least half the messages its interval allows (at least 2): numbers this
/// node missed. A node that its host did not run skips only the few it
/// spent on unicasts (answers to probes). Unknown for a node never heard
/// directly: taken as sent.
fn sent_meanwhile(s: &Slot, a: &Announcement<'_>, now_ms: u64) -> bool {
    if s.sequence_unknown || s.interval_ms == 0 {
        return true;
    }
    let skipped = u64::from(a.sequence.wrapping_sub(s.sequence).wrapping_sub(1));
    let intervals = now_ms.saturating_sub(s.last_seen_ms) / u64::from(s.interval_ms);
    skipped >= (intervals / 2).max(2)
}

/// Records that `sequence` (accepted by [`accept_sequence`]) was heard.
fn note_sequence(s: &mut Slot, sequence: u32) {
    if s.sequence_unknown {
        s.sequence = sequence;
        s.sequence_unknown = false;
        s.seen = u64::MAX;
    } else if serial_newer(sequence, s.sequence) {
        let ahead = sequence.wrapping_sub(s.sequence);
        s.seen = if ahead < 64 { (s.seen << ahead) | 1 } else { 1 };
        // (A jump of 64 or more forgets the window: what is older than the
        // new number is then too old anyway.)
        s.sequence = sequence;
    } else {
        s.seen |= 1 << s.sequence.wrapping_sub(sequence);
    }
}

/// The order of claims to one node id: an authenticated claim first (in
/// `--auth permissive` an unsigned message's stamp is anyone's to choose),
/// then the earlier start (an unknown start counts as the latest), then the
/// lower address.
fn claim_key(authentic: bool, started: u32, addr: u32) -> (bool, u32, u32) {
    let started = if started == 0 { u32::MAX } else { started };
    (!authentic, started, addr)
}

/// `new` started later than `old` (an unknown `old` is older than anything
/// known; an unknown `new` is later only than an unknown `old`).
fn started_later(new: u32, old: u32) -> bool {
    old == 0 || new > old
}

#[cfg(any(test, feature = "fuzzing"))]
impl<'a> Announcement<'a> {
    /// `addr` with `aliases`, incarnation 3, sequence 1, a 6 s hold, heard
    /// through a relay (not probed): the maps of tests and fuzzing.
    pub(crate) fn test(addr: Ipv4Addr, aliases: &'a [Ipv4Addr]) -> Announcement<'a> {
        Announcement {
            addr,
            aliases,
            incarnation: 3,
            sequence: 1,
            hold_ms: 6000,
            started: 0,
            probe_ms: 0,
            ifindex: 0,
            authentic: false,
            watcher: false,
        }
    }
}

/// RFC 1982 serial-number comparison: `a` is newer than `b`.
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::tests::{ann, OWN};

    #[test]
    fn refresh_stale_and_restart() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        assert_eq!(
            map.apply_announce(&ann(a, 7, 10), 0),
            AnnounceOutcome::Joined
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 11), 100),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 11), 200),
            AnnounceOutcome::Stale
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 3), 200),
            AnnounceOutcome::Stale
        );
        assert_eq!(map.get(2638).unwrap().last_seen_ms, 100);
        assert_eq!(
            map.apply_announce(&ann(a, 8, 1), 300),
            AnnounceOutcome::Restarted
        );
        assert_eq!(map.get(2638).unwrap().incarnation, 8);
        assert_eq!(map.stats().stale, 2);
    }

    #[test]
    fn a_message_that_arrives_after_a_later_one_counts_once_and_its_copies_never() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&ann(a, 7, 10), 0);
        assert_eq!(map.check_member(a, 7, 13, 1), SenderCheck::Member);
        // 11 and 12 were overtaken by 13: each counts once.
        assert_eq!(
            map.apply_announce(&ann(a, 7, 12), 2),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 12), 3),
            AnnounceOutcome::Stale
        );
        assert_eq!(map.check_member(a, 7, 11, 4), SenderCheck::Member);
        assert_eq!(map.check_member(a, 7, 11, 5), SenderCheck::Stale);
        assert_eq!(
            map.apply_announce(&ann(a, 7, 10), 6),
            AnnounceOutcome::Stale
        );
        assert_eq!(map.get(2638).unwrap().sequence, 13, "the newest stays");
        // 64 behind is too old; a jump of more than 64 starts a new window.
        assert_eq!(
            map.apply_announce(&ann(a, 7, 13 + 64), 7),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 13), 8),
            AnnounceOutcome::Stale
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 14), 9),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 200), 10),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 199), 11),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(
            map.apply_announce(&ann(a, 7, 199), 12),
            AnnounceOutcome::Stale
        );
    }

    #[test]
    fn sequence_wraps() {
        assert!(serial_newer(0, u32::MAX));
        assert!(serial_newer(5, 4));
        assert!(!serial_newer(4, 5));
        assert!(!serial_newer(4, 4));
    }

    fn started(mut a: Announcement<'static>, started: u32) -> Announcement<'static> {
        a.started = started;
        a
    }

    #[test]
    fn a_later_claim_to_a_held_id_is_refused_and_reported_once_per_claimant() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let holder = Ipv4Addr::new(192, 168, 10, 78);
        let claimant = Ipv4Addr::new(10, 1, 10, 78);
        let other = Ipv4Addr::new(172, 16, 10, 78);
        map.apply_announce(&started(ann(holder, 7, 1), 100), 0);
        let first = map.apply_announce(&started(ann(claimant, 9, 1), 200), 10);
        assert_eq!(
            first,
            AnnounceOutcome::Collision(Collision {
                id: 2638,
                winner: holder,
                loser: claimant,
                replaced: false,
                own_lost: false,
                first_report: true
            })
        );
        let again = map.apply_announce(&started(ann(claimant, 9, 2), 200), 20);
        assert!(matches!(again, AnnounceOutcome::Collision(c) if !c.first_report));
        let third = map.apply_announce(&started(ann(other, 9, 2), 300), 20);
        assert!(matches!(third, AnnounceOutcome::Collision(c) if c.first_report));
        assert_eq!(map.get(2638).unwrap().addr, holder);
        assert_eq!(map.stats().collisions, 3);
        // A claimant's LEAVE does not remove the holder.
        assert_eq!(
            map.apply_leave(claimant, 9, 3, 0, 30),
            LeaveOutcome::Ignored
        );
        assert!(map.get(2638).is_some());
    }

    #[test]
    fn every_map_names_the_claim_that_started_first_whatever_the_order_heard() {
        let early = Ipv4Addr::new(172, 16, 10, 78);
        let late = Ipv4Addr::new(10, 1, 10, 78);
        let tie = Ipv4Addr::new(10, 0, 10, 78);
        let orders: [[(Ipv4Addr, u32); 3]; 3] = [
            [(early, 100), (late, 200), (tie, 200)],
            [(late, 200), (tie, 200), (early, 100)],
            [(tie, 200), (early, 100), (late, 200)],
        ];
        for order in orders {
            let mut map = ClusterMap::new(OWN, &[], 1);
            for (i, &(addr, s)) in order.iter().enumerate() {
                map.apply_announce(&started(ann(addr, 9, 1), s), i as u64);
            }
            assert_eq!(map.get(2638).unwrap().addr, early, "{order:?}");
        }
        // At the same second the lower address wins; an unknown start loses.
        let mut map = ClusterMap::new(OWN, &[], 1);
        map.apply_announce(&started(ann(late, 9, 1), 200), 0);
        let out = map.apply_announce(&started(ann(tie, 9, 1), 200), 1);
        assert!(
            matches!(out, AnnounceOutcome::Collision(c) if c.replaced && c.winner == tie && c.loser == late)
        );
        let out = map.apply_announce(&ann(Ipv4Addr::new(1, 1, 10, 78), 9, 1), 2);
        assert!(matches!(out, AnnounceOutcome::Collision(c) if !c.replaced && c.winner == tie));
    }

    #[test]
    fn a_move_of_an_id_is_reported_every_time_and_the_refused_claims_after_it_once() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let holder = Ipv4Addr::new(192, 168, 10, 78);
        let claimant = Ipv4Addr::new(10, 1, 10, 78);
        let report = |out| match out {
            AnnounceOutcome::Collision(c) => (c.winner, c.replaced, c.first_report),
            other => panic!("{other:?}"),
        };
        map.apply_announce(&started(ann(holder, 7, 1), 100), 0);
        // A later claim: refused, reported once.
        let out = map.apply_announce(&started(ann(claimant, 9, 1), 200), 10);
        assert_eq!(report(out), (holder, false, true));
        let out = map.apply_announce(&started(ann(claimant, 9, 2), 200), 20);
        assert_eq!(report(out), (holder, false, false));
        // The same claimant again, an incarnation that started earlier: the
        // id moves, and that is reported, though the pair was reported.
        let out = map.apply_announce(&started(ann(claimant, 10, 1), 50), 30);
        assert_eq!(report(out), (claimant, true, true));
        assert_eq!(map.get(2638).unwrap().addr, claimant);
        // The old holder's claims are refused now, and not reported again.
        let out = map.apply_announce(&started(ann(holder, 7, 2), 100), 40);
        assert_eq!(report(out), (claimant, false, false));
        // The winner leaves, the holder takes the id back, the winner
        // returns: it moves again, reported again.
        assert_eq!(
            map.apply_leave(claimant, 10, 2, 50, 50),
            LeaveOutcome::Removed
        );
        let out = map.apply_announce(&started(ann(holder, 7, 3), 100), 60);
        assert_eq!(out, AnnounceOutcome::Joined);
        let out = map.apply_announce(&started(ann(claimant, 11, 1), 60), 70);
        assert_eq!(report(out), (claimant, true, true));
        let out = map.apply_announce(&started(ann(holder, 7, 4), 100), 80);
        assert_eq!(report(out), (claimant, false, false));
        assert_eq!(map.stats().collisions, 6);
    }

    #[test]
    fn an_unauthenticated_claim_never_takes_the_id_of_an_authenticated_holder() {
        let signed = |mut a: Announcement<'static>| {
            a.authentic = true;
            a
        };
        let member = Ipv4Addr::new(192, 168, 10, 78);
        let stranger = Ipv4Addr::new(10, 1, 10, 78);
        // Whatever the order heard, the signed member holds the id against
        // an unsigned stamp of 1.
        for member_first in [true, false] {
            let mut map = ClusterMap::new(OWN, &[], 1);
            let m = signed(started(ann(member, 7, 1), 1000));
            let s = started(ann(stranger, 9, 1), 1);
            if member_first {
                map.apply_announce(&m, 0);
                let out = map.apply_announce(&s, 10);
                assert!(
                    matches!(out, AnnounceOutcome::Collision(c) if !c.replaced && c.winner == member)
                );
            } else {
                map.apply_announce(&s, 0);
                let out = map.apply_announce(&m, 10);
                assert!(
                    matches!(out, AnnounceOutcome::Collision(c) if c.replaced && c.winner == member)
                );
            }
            assert_eq!(map.get(2638).unwrap().addr, member);
        }
        // Heard signed once, the incarnation stays authenticated: an unsigned
        // refresh of it (a forgery from its address) does not open the id.
        let mut map = ClusterMap::new(OWN, &[], 1);
        map.apply_announce(&signed(started(ann(member, 7, 1), 1000)), 0);
        let out = map.apply_announce(&started(ann(member, 7, 2), 1), 10);
        assert_eq!(out, AnnounceOutcome::Refreshed);
        let out = map.apply_announce(&started(ann(stranger, 9, 1), 1), 20);
        assert!(matches!(out, AnnounceOutcome::Collision(c) if !c.replaced));
        // Between signed claims (or unsigned ones) the earlier start wins.
        let out = map.apply_announce(&signed(started(ann(stranger, 9, 2), 999)), 30);
        assert!(matches!(out, AnnounceOutcome::Collision(c) if c.replaced && c.winner == stranger));
        // A node learnt by hearsay, then heard first-hand: an unsigned stamp
        // does not stick once a signed one comes.
        let mut map = ClusterMap::new(OWN, &[], 1);
        map.apply_hearsay(member, 7, 6000, 0);
        map.apply_announce(&started(ann(member, 7, 1), 1), 10);
        map.apply_announce(&signed(started(ann(member, 7, 2), 1000)), 20);
        let out = map.apply_announce(&signed(started(ann(stranger, 9, 1), 500)), 30);
        assert!(matches!(out, AnnounceOutcome::Collision(c) if c.replaced && c.winner == stranger));
        // This node signs: an unsigned claim does not take its id either.
        let mut map = ClusterMap::new(OWN, &[], 1);
        map.set_own_claim(1000, true);
        let early = Ipv4Addr::new(10, 9, 10, 220);
        let out = map.apply_announce(&started(ann(early, 4, 1), 1), 10);
        assert!(matches!(out, AnnounceOutcome::Collision(c) if c.winner == OWN && !c.own_lost));
        assert!(!map.yielded());
        assert!(!map.claim_beats(2780, false, 1, early));
        assert!(map.claim_beats(2780, true, 999, early));
    }

    #[test]
    fn this_node_keeps_its_id_against_a_later_claim_and_yields_to_an_earlier_one() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        map.set_own_claim(500, false);
        let later = Ipv4Addr::new(10, 9, 10, 220);
        let out = map.apply_announce(&started(ann(later, 9, 1), 600), 1_000_000_000);
        assert!(matches!(out, AnnounceOutcome::Collision(c) if c.winner == OWN && !c.own_lost));
        assert_eq!(map.own_node().addr, OWN);
        // Our own looped-back announcement is ignored.
        assert_eq!(
            map.apply_announce(&ann(OWN, 1, 5), 0),
            AnnounceOutcome::Ignored
        );
        let earlier = Ipv4Addr::new(10, 8, 10, 220);
        let out = map.apply_announce(&started(ann(earlier, 4, 1), 400), 10);
        assert!(
            matches!(out, AnnounceOutcome::Collision(c) if c.own_lost && c.winner == earlier && c.loser == OWN)
        );
        assert!(map.yielded());
        assert_eq!(
            map.get(2780).unwrap().addr,
            earlier,
            "the map names the winner"
        );
        // The winner expires like any node; then the id is free again.
        assert_eq!(map.expire(6009), 0);
        assert_eq!(map.expire(6010), 1);
        assert!(map.get(2780).is_none());
        map.set_own(OWN, &[], 1);
        assert!(!map.yielded());
        assert_eq!(map.own_node().addr, OWN);
    }

    #[test]
    fn a_replayed_message_of_a_known_incarnation_changes_nothing_even_after_it_left() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&started(ann(a, 7, 5), 100), 0);
        assert_eq!(
            map.apply_leave(a, 7, 5, 0, 10),
            LeaveOutcome::Stale,
            "a replayed LEAVE"
        );
        assert_eq!(map.apply_leave(a, 7, 6, 0, 20), LeaveOutcome::Removed);
        for seq in [4, 5, 6, 7] {
            assert_eq!(
                map.apply_announce(&started(ann(a, 7, seq), 100), 30),
                AnnounceOutcome::Stale,
                "after its LEAVE, seq {seq}"
            );
        }
        assert!(map.get(2638).is_none());
        // An earlier incarnation, or one of the same second, while it is
        // remembered (a hold after it left): refused.
        let out = map.apply_announce(&started(ann(a, 3, 9), 99), 40);
        assert_eq!(out, AnnounceOutcome::Outdated);
        let out = map.apply_announce(&started(ann(a, 4, 9), 100), 40);
        assert_eq!(out, AnnounceOutcome::Outdated);
        // A later one is a restart, at once.
        let out = map.apply_announce(&started(ann(a, 8, 1), 101), 50);
        assert_eq!(out, AnnounceOutcome::Joined);
    }

    #[test]
    fn the_two_copies_of_a_goodbye_read_late_are_copies_and_the_next_a_replay() {
        // A receiver its host did not run for a while reads the copies
        // seconds after the LEAVE that removed the node.
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&started(ann(a, 7, 1), 100), 0);
        assert_eq!(map.apply_leave(a, 7, 2, 100, 1000), LeaveOutcome::Removed);
        for t in [3000, 3001] {
            assert_eq!(map.apply_leave(a, 7, 2, 100, t), LeaveOutcome::Repeated);
        }
        assert_eq!(map.apply_leave(a, 7, 2, 100, 3002), LeaveOutcome::Stale);
    }

    #[test]
    fn a_replayed_leave_is_stale_but_the_copies_of_a_goodbye_and_news_of_no_node_are_not() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&started(ann(a, 7, 1), 100), 0);
        assert_eq!(map.apply_leave(a, 7, 2, 100, 1000), LeaveOutcome::Removed);
        // The goodbye's own copies (the same LEAVE, sent three times) ...
        assert_eq!(map.apply_leave(a, 7, 2, 100, 1005), LeaveOutcome::Repeated);
        assert_eq!(
            map.apply_leave(a, 7, 2, 100, 1000 + LEAVE_COPIES_MS - 1),
            LeaveOutcome::Repeated
        );
        // ... but later, or another LEAVE of an incarnation that left: replays,
        // also long after it was forgotten as an id holder.
        assert_eq!(
            map.apply_leave(a, 7, 2, 100, 1000 + LEAVE_COPIES_MS),
            LeaveOutcome::Stale
        );
        assert_eq!(map.apply_leave(a, 7, 1, 100, 1200), LeaveOutcome::Stale);
        assert_eq!(
            map.apply_leave(a, 7, 9, 100, 1_000_000),
            LeaveOutcome::Stale
        );
        // A restart: a LEAVE of the incarnation it replaced (or of any that
        // did not start later, unsigned ones included) is a replay; one of an
        // incarnation that started later removes nothing and is no replay.
        let b = Ipv4Addr::new(192, 168, 10, 86);
        map.apply_announce(&started(ann(b, 7, 5), 100), 0);
        let out = map.apply_announce(&started(ann(b, 8, 1), 200), 10);
        assert_eq!(out, AnnounceOutcome::Restarted);
        assert_eq!(map.apply_leave(b, 7, 6, 100, 20), LeaveOutcome::Stale);
        assert_eq!(map.apply_leave(b, 6, 1, 0, 20), LeaveOutcome::Stale);
        assert_eq!(map.apply_leave(b, 9, 1, 300, 20), LeaveOutcome::Ignored);
        assert_eq!(map.get(2646).unwrap().incarnation, 8);
        // A node that expired here: its goodbye is news of no node; an older
        // message of it as a LEAVE is not new.
        let c = Ipv4Addr::new(192, 168, 10, 90);
        map.apply_announce(&started(ann(c, 7, 5), 100), 0);
        assert_eq!(map.expire(6000), 1);
        assert_eq!(map.apply_leave(c, 7, 5, 100, 6100), LeaveOutcome::Stale);
        assert_eq!(map.apply_leave(c, 7, 6, 100, 6100), LeaveOutcome::Ignored);
        // A claimant that does not hold its id, and this node's own id.
        let claimant = Ipv4Addr::new(10, 1, 10, 86);
        assert_eq!(
            map.apply_leave(claimant, 3, 2, 50, 30),
            LeaveOutcome::Ignored
        );
        assert_eq!(map.apply_leave(OWN, 1, 9, 0, 30), LeaveOutcome::Ignored);
        assert_eq!(
            map.stats().stale,
            4,
            "the replays of the incarnation the map knew"
        );
    }

    #[test]
    fn another_incarnation_replaces_a_live_one_only_if_it_started_later() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&started(ann(a, 7, 1), 100), 0);
        let out = map.apply_announce(&started(ann(a, 6, 50), 90), 10);
        assert_eq!(out, AnnounceOutcome::Outdated);
        assert_eq!(map.get(2638).unwrap().incarnation, 7);
        let out = map.apply_announce(&started(ann(a, 8, 1), 120), 20);
        assert_eq!(out, AnnounceOutcome::Restarted);
        // A node whose clock went back is taken once it has been gone a hold.
        assert_eq!(map.expire(6020), 1);
        let back = started(ann(a, 9, 1), 80);
        assert_eq!(map.apply_announce(&back, 6030), AnnounceOutcome::Outdated);
        assert_eq!(map.apply_announce(&back, 12_020), AnnounceOutcome::Joined);
    }

    #[test]
    fn two_live_incarnations_of_one_address_are_reported_and_the_map_stays() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&started(ann(a, 7, 1), 100), 0);
        assert_eq!(
            map.apply_announce(&started(ann(a, 8, 1), 200), 1),
            AnnounceOutcome::Restarted
        );
        map.mark_published();
        // The earlier one goes on, newer than anything heard of it: a duplicate.
        let out = map.apply_announce(&started(ann(a, 7, 1), 100), 2);
        assert_eq!(out, AnnounceOutcome::Outdated, "heard already");
        let out = map.apply_announce(&started(ann(a, 7, 3), 100), 3);
        let dup = Duplicate {
            addr: a,
            kept_started: 200,
            other_started: 100,
            own: false,
            first_report: true,
        };
        assert_eq!(out, AnnounceOutcome::Duplicate(dup));
        let out = map.apply_announce(&started(ann(a, 7, 4), 100), 4);
        assert!(matches!(out, AnnounceOutcome::Duplicate(d) if !d.first_report));
        assert_eq!(
            map.apply_announce(&started(ann(a, 8, 2), 200), 5),
            AnnounceOutcome::Refreshed
        );
        assert!(!map.is_dirty(), "no republish");
        assert_eq!(map.get(2638).unwrap().incarnation, 8);
        // Our own address from another incarnation.
        map.apply_announce(&started(ann(OWN, 5, 1), 7), 6);
        let out = map.apply_announce(&started(ann(OWN, 5, 2), 7), 7);
        assert!(matches!(out, AnnounceOutcome::Duplicate(d) if d.own && d.first_report));
        assert_eq!(map.own_node().incarnation, 1);
    }

    #[test]
    fn a_recording_of_the_incarnation_a_restart_replaced_is_a_replay_not_a_duplicate() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&started(ann(a, 7, 1), 100), 0);
        map.apply_announce(&started(ann(a, 7, 2), 100), 1);
        let out = map.apply_announce(&started(ann(a, 8, 1), 200), 2);
        assert_eq!(out, AnnounceOutcome::Restarted);
        for seq in [1, 2, 1, 2] {
            let out = map.apply_announce(&started(ann(a, 7, seq), 100), 3);
            assert_eq!(out, AnnounceOutcome::Outdated, "recorded seq {seq}");
        }
        assert_eq!(map.stats().duplicates, 0);
        // The old incarnation sending something new: it is alive.
        let out = map.apply_announce(&started(ann(a, 7, 3), 100), 4);
        assert!(matches!(out, AnnounceOutcome::Duplicate(d) if d.first_report));
    }

    #[test]
    fn members_and_their_addresses() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        let alias = Ipv4Addr::new(10, 0, 3, 78);
        let mut x = ann(a, 7, 5);
        x.aliases = std::slice::from_ref(&alias);
        let x = Announcement {
            aliases: &[Ipv4Addr::new(10, 0, 3, 78)],
            ..x
        };
        map.apply_announce(&x, 0);
        assert!(map.is_member_address(a) && map.is_member_address(alias));
        assert!(!map.is_member_address(Ipv4Addr::new(10, 0, 3, 79)));
        assert!(map.has_address(a, alias) && map.has_address(a, a));
        assert!(!map.has_address(a, Ipv4Addr::new(10, 0, 3, 79)));
        assert_eq!(map.check_member(a, 6, 9, 1), SenderCheck::Stranger);
        assert_eq!(
            map.check_member(Ipv4Addr::new(10, 0, 0, 1), 7, 9, 1),
            SenderCheck::Stranger
        );
        assert_eq!(map.check_member(a, 7, 5, 1), SenderCheck::Stale);
        assert_eq!(map.check_member(a, 7, 6, 1), SenderCheck::Member);
        assert_eq!(map.check_member(a, 7, 6, 1), SenderCheck::Stale);
    }

    #[test]
    fn hearsay_does_not_bring_back_a_node_that_left() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&ann(a, 7, 1), 0);
        map.apply_leave(a, 7, 2, 0, 10);
        assert_eq!(map.apply_hearsay(a, 7, 5000, 20), AnnounceOutcome::Ignored);
        assert_eq!(
            map.apply_hearsay(a, 7, 5000, 100_000),
            AnnounceOutcome::Ignored
        );
        assert!(map.get(2638).is_none());
    }

    #[test]
    fn hearsay_adds_unknown_nodes_only() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        assert_eq!(map.apply_hearsay(a, 7, 3000, 0), AnnounceOutcome::Joined);
        // The first real announcement is accepted whatever its sequence.
        assert_eq!(
            map.apply_announce(&ann(a, 7, 0), 10),
            AnnounceOutcome::Refreshed
        );
        assert_eq!(map.apply_hearsay(a, 9, 3000, 20), AnnounceOutcome::Ignored);
        assert_eq!(map.get(2638).unwrap().incarnation, 7);
    }

    #[test]
    fn hearsay_extends_a_known_node_but_never_shortens_it() {
        let mut map = ClusterMap::new(OWN, &[], 1);
        let a = Ipv4Addr::new(192, 168, 10, 78);
        map.apply_announce(&ann(a, 7, 1), 1000); // expires at 7000
        let expires = |m: &ClusterMap| m.get(2638).unwrap().expires_ms;
        assert_eq!(
            map.apply_hearsay(a, 7, 1000, 2000),
            AnnounceOutcome::Ignored
        );
        assert_eq!(expires(&map), 7000, "an earlier deadline changes nothing");
        assert_eq!(
            map.apply_hearsay(a, 7, 9000, 2000),
            AnnounceOutcome::Extended
        );
        assert_eq!(expires(&map), 11_000);
        assert_eq!(
            map.get(2638).unwrap().last_seen_ms,
            1000,
            "still heard at 1000"
        );
        assert_eq!(
            map.apply_hearsay(a, 8, 60_000, 2000),
            AnnounceOutcome::Ignored
        );
        assert_eq!(
            expires(&map),
            11_000,
            "another incarnation: first-hand wins"
        );
        // Its own next announcement sets its own hold again.
        map.apply_announce(&ann(a, 7, 2), 3000);
        assert_eq!(expires(&map), 9000);
    }
}
