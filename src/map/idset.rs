//! Sets of node ids: one bit per possible id, iterated in ascending order.

use zerocopy::FromZeros;

use super::{NodeId, CAPACITY};

pub(super) const WORDS: usize = CAPACITY / 64;

/// A fixed bit per node id; iterates set ids in ascending order.
#[derive(FromZeros)]
#[repr(transparent)]
pub(super) struct IdSet(pub(super) [u64; WORDS]);

impl IdSet {
    pub(super) fn new_boxed() -> Box<IdSet> {
        IdSet::new_box_zeroed().expect("allocating an id set at start-up")
    }
    pub(super) fn contains(&self, id: NodeId) -> bool {
        self.0[id as usize / 64] & (1 << (id % 64)) != 0
    }
    pub(super) fn insert(&mut self, id: NodeId) {
        self.0[id as usize / 64] |= 1 << (id % 64);
    }
    pub(super) fn remove(&mut self, id: NodeId) {
        self.0[id as usize / 64] &= !(1 << (id % 64));
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.iter_after(None)
    }
    /// Set ids above `after` (all with `None`), ascending.
    pub(super) fn iter_after(&self, after: Option<NodeId>) -> impl Iterator<Item = NodeId> + '_ {
        let start = after.map_or(0, |a| usize::from(a) + 1);
        let first_word = start / 64;
        self.0
            .iter()
            .enumerate()
            .skip(first_word)
            .flat_map(move |(w, &word)| {
                let word = if w == first_word && start % 64 != 0 {
                    word & (!0u64 << (start % 64))
                } else {
                    word
                };
                ids_in_word(w, word)
            })
    }
    /// Ids in `self` but not in `other`, ascending.
    pub(super) fn difference<'a>(&'a self, other: &'a IdSet) -> impl Iterator<Item = NodeId> + 'a {
        self.0
            .iter()
            .zip(other.0.iter())
            .enumerate()
            .flat_map(|(w, (&a, &b))| ids_in_word(w, a & !b))
    }
    pub(super) fn copy_from(&mut self, other: &IdSet) {
        self.0.copy_from_slice(&other.0);
    }
}

/// The ids whose bits are set in word `w` of an id set, ascending.
pub(super) fn ids_in_word(w: usize, word: u64) -> impl Iterator<Item = NodeId> {
    let mut bits = word;
    std::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let b = bits.trailing_zeros();
        bits &= bits - 1;
        Some((w * 64 + b as usize) as NodeId)
    })
}
