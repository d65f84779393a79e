//! Publishing: map changes coalesced over [`PUBLISH_DELAY_MS`], handed to
//! [`Actions::publish`], and the part that failed (file or kernel) retried
//! alone after [`PUBLISH_RETRY_MS`].

use super::timers::Timer;
use super::{Actions, Core, Publish};

/// Changes within this window are published together (coalescing).
pub const PUBLISH_DELAY_MS: u64 = 100;

/// A retry of a failed publish (map file or kernel) after this.
pub const PUBLISH_RETRY_MS: u64 = 5_000;

impl Core {
    pub(super) fn schedule_publish(&mut self, now_ms: u64) {
        let t = &mut self.timers[Timer::Publish];
        if t.is_none() {
            *t = Some(now_ms + PUBLISH_DELAY_MS);
        }
    }

    pub(super) fn publish(&mut self, now_ms: u64, file: bool, kernel: bool, io: &mut impl Actions) {
        let changes = file && kernel;
        if changes {
            self.timers[Timer::Publish] = None;
            self.counters.publishes += 1;
        }
        let p = Publish {
            map: &self.map,
            file,
            kernel,
            changes,
        };
        let r = io.publish(&p);
        if changes {
            self.map.mark_published();
        }
        if file {
            self.timers[Timer::FileRetry] = r.file_failed.then_some(now_ms + PUBLISH_RETRY_MS);
        }
        if kernel {
            self.timers[Timer::KernelRetry] = r.kernel_failed.then_some(now_ms + PUBLISH_RETRY_MS);
        }
    }

    /// The coalesced publish, or a retry, if one is due.
    pub(super) fn publish_due(&mut self, now_ms: u64, io: &mut impl Actions) {
        if self.timers.due(Timer::Publish, now_ms) {
            self.publish(now_ms, true, true, io);
        } else {
            let file = self.timers.due(Timer::FileRetry, now_ms);
            let kernel = self.timers.due(Timer::KernelRetry, now_ms);
            if file || kernel {
                self.publish(now_ms, file, kernel, io);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::*;

    #[test]
    fn a_burst_of_fifty_joins_is_published_once() {
        let mut c = core(1000, 9);
        let mut rec = Rec::default();
        run(&mut c, &mut rec, 1000);
        assert_eq!(rec.publishes.len(), 1, "the start-up publish");
        for i in 0..50u8 {
            let m = message(MessageType::Announce, peer(10 + i), 1, 3000);
            feed(&mut c, &mut rec, 1000 + u64::from(i), &m, IF0, true);
        }
        run(&mut c, &mut rec, 2000);
        assert_eq!(rec.publishes.len(), 2);
        let (at, file, kernel, changes, len) = rec.publishes[1];
        assert_eq!(
            (at, file, kernel, changes, len),
            (1100, true, true, true, 51)
        );
        assert_eq!(c.counters().publishes, 2);
    }

    #[test]
    fn a_failed_map_file_write_is_retried_alone() {
        let mut c = core(1000, 10);
        let mut rec = Rec {
            fail_file: true,
            ..Rec::default()
        };
        run(&mut c, &mut rec, 0);
        rec.fail_file = false;
        run(&mut c, &mut rec, PUBLISH_RETRY_MS);
        assert_eq!(
            rec.publishes,
            vec![
                (0, true, true, true, 1),
                (PUBLISH_RETRY_MS, true, false, false, 1)
            ]
        );
    }
}
