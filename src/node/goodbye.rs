//! The goodbye: LEAVE sent [`GOODBYES`] times when the node stops or its
//! address changes (then from the new address, naming it).

use core::net::Ipv4Addr;

use crate::wire::{self, MessageType, Repr};

use super::timers::{Timer, Timers};
use super::{Actions, Core};

pub use crate::wire::GOODBYES;

/// The LEAVEs go this far apart, so that one full receive buffer does not
/// lose all.
pub const GOODBYE_GAP_MS: u64 = 5;

/// The LEAVE being sent, and whether the node is stopping.
#[derive(Clone, Debug)]
pub(super) struct Goodbye {
    /// Times left to send it ...
    pub(super) left: u8,
    /// ... the message (`buf[..len]`).
    pub(super) len: usize,
    pub(super) buf: [u8; wire::MAX_MESSAGE_LEN],
    /// [`Input::Stop`] was handled: nothing but the goodbyes from now on.
    pub(super) stopping: bool,
}

impl Goodbye {
    pub(super) fn new() -> Goodbye {
        Goodbye {
            left: 0,
            len: 0,
            buf: [0; wire::MAX_MESSAGE_LEN],
            stopping: false,
        }
    }
}

impl Core {
    /// LEAVE under the current identity, now and [`GOODBYES`]` - 1` more
    /// times [`GOODBYE_GAP_MS`] apart.
    pub(super) fn begin_goodbye(
        &mut self,
        now_ms: u64,
        moving_to: Option<Ipv4Addr>,
        io: &mut impl Actions,
    ) {
        if self.map.yielded() {
            // Not a member: nobody holds this node, so it has nothing to leave.
            self.goodbye.left = 0;
            return;
        }
        self.goodbye.len = self.emit_own(MessageType::Leave, 0, true);
        if let Some(new) = moving_to {
            self.goodbye.len = self.emit_leave_moving_to(new);
        }
        self.goodbye.left = GOODBYES;
        self.send_goodbye(now_ms, io);
    }

    pub(super) fn send_goodbye(&mut self, now_ms: u64, io: &mut impl Actions) {
        if self.goodbye.left == 0 || self.goodbye.len == 0 {
            self.goodbye.left = 0;
            return;
        }
        self.multicast(self.goodbye.len, None, true, io);
        self.goodbye.left -= 1;
        if self.goodbye.left > 0 {
            self.timers.set(Timer::Goodbye, now_ms + GOODBYE_GAP_MS);
        }
    }

    /// The LEAVE of an address change into the goodbye buffer: the old
    /// identity, with the new address last among the aliases (it is sent
    /// from there). Returns its length.
    pub(super) fn emit_leave_moving_to(&mut self, new: Ipv4Addr) -> usize {
        let Ok(mut repr) = Repr::parse(&self.goodbye.buf[..self.goodbye.len]) else {
            return 0;
        };
        if repr.aliases.is_full() {
            repr.aliases.pop();
        }
        repr.aliases.push(new);
        repr.auth = Some(self.trailer());
        let len = repr.emit(&mut self.goodbye.buf).unwrap_or(0);
        self.keys.sign(&mut self.goodbye.buf[..len]);
        len
    }

    /// Leave the cluster ([`Input::Stop`]): publish what is pending, stop
    /// every timer and say goodbye.
    pub(super) fn stop(&mut self, now_ms: u64, io: &mut impl Actions) {
        if self.map.is_dirty() || self.timers[Timer::Publish].is_some() {
            self.publish(now_ms, true, true, io);
        }
        self.timers = Timers::default();
        self.answering.pending.clear();
        self.answering.maps_due.clear();
        self.goodbye.stopping = true;
        self.begin_goodbye(now_ms, None, io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn stop_publishes_then_says_goodbye_three_times() {
        let mut c = core(1000, 12);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 3000);
        feed(
            &mut c,
            &mut rec,
            3000,
            &message(MessageType::Announce, peer(3), 1, 3000),
            IF0,
            true,
        );
        let publishes = rec.publishes.len();
        rec.now = 3001;
        c.handle(3001, Input::Stop, &mut rec);
        assert_eq!(rec.publishes.len(), publishes + 1, "the pending change");
        run(&mut c, &mut rec, 4000);
        let leaves: Vec<u64> = rec
            .sent
            .iter()
            .filter(|s| s.3.kind == MessageType::Leave)
            .map(|s| s.0)
            .collect();
        assert_eq!(
            leaves,
            vec![3001, 3001 + GOODBYE_GAP_MS, 3001 + 2 * GOODBYE_GAP_MS]
        );
        assert!(c.finished());
        assert_eq!(c.poll_at(), None);
        // Nothing is handled any more.
        feed(
            &mut c,
            &mut rec,
            5000,
            &message(MessageType::Announce, peer(4), 1, 3000),
            IF0,
            true,
        );
        assert_eq!(c.map().len(), 2);
    }
}
