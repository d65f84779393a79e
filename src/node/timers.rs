//! The core's timers: one slot per [`Timer`]; the earliest is
//! [`Core::poll_at`](super::Core::poll_at).

use core::ops::{Index, IndexMut};

/// The core's timers, one slot each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    Announce,
    Expiry,
    Lonely,
    Publish,
    FileRetry,
    KernelRetry,
    Goodbye,
    Answer,
    AnswerMap,
    Detect,
}

impl Timer {
    const COUNT: usize = 10;
}

/// When each [`Timer`] is due, if it is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Timers([Option<u64>; Timer::COUNT]);

impl Timers {
    pub(super) fn set(&mut self, t: Timer, at_ms: u64) {
        self[t] = Some(at_ms);
    }

    /// True (and the timer cleared) if `t` is due at `now_ms`.
    pub(super) fn due(&mut self, t: Timer, now_ms: u64) -> bool {
        let slot = &mut self[t];
        if slot.is_some_and(|at| now_ms >= at) {
            *slot = None;
            true
        } else {
            false
        }
    }

    /// The earliest instant a timer is set to.
    pub(super) fn next(&self) -> Option<u64> {
        self.0.iter().flatten().copied().min()
    }
}

impl Index<Timer> for Timers {
    type Output = Option<u64>;
    fn index(&self, t: Timer) -> &Option<u64> {
        &self.0[t as usize]
    }
}

impl IndexMut<Timer> for Timers {
    fn index_mut(&mut self, t: Timer) -> &mut Option<u64> {
        &mut self.0[t as usize]
    }
}
