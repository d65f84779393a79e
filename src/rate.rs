//! Rate limits on what remote input can trigger (answers, probes, probe
//! replies, change logs): a token bucket, in integer thousandths of a token.
#![forbid(unsafe_code)]

/// A token bucket: `rate` tokens per second, at most `burst` at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    /// Thousandths of a token.
    milli: u64,
    last_ms: u64,
}

impl Bucket {
    pub(crate) const fn full(burst: u64) -> Bucket {
        Bucket {
            milli: burst * 1000,
            last_ms: 0,
        }
    }

    /// Takes a token at `now_ms` if there is one; `rate` tokens per second
    /// refill it.
    pub(crate) fn take(&mut self, now_ms: u64, rate: u64, burst: u64) -> bool {
        self.take_per(now_ms, rate, burst, 1000)
    }

    /// [`Bucket::take`] with `rate` tokens per `per_ms` milliseconds.
    pub(crate) fn take_per(&mut self, now_ms: u64, rate: u64, burst: u64, per_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        let refill = elapsed
            .saturating_mul(rate * 1000)
            .checked_div(per_ms)
            .unwrap_or(0);
        // Time that has not yet made a thousandth of a token is kept for the
        // next call (frequent calls would otherwise never refill a slow
        // bucket); a full bucket keeps nothing.
        let full = burst * 1000;
        if self.milli.saturating_add(refill) >= full {
            self.milli = full;
            self.last_ms = self.last_ms.max(now_ms);
        } else if refill > 0 {
            self.milli += refill;
            self.last_ms += refill * per_ms / (rate * 1000);
        }
        if self.milli < 1000 {
            return false;
        }
        self.milli -= 1000;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_at_once_then_its_rate() {
        let mut b = Bucket::full(4);
        let now = 1_000_000;
        let got = (0..10).filter(|_| b.take(now, 2, 4)).count();
        assert_eq!(got, 4, "the burst");
        assert!(!b.take(now + 499, 2, 4));
        assert!(b.take(now + 500, 2, 4), "2 a second: one every 500 ms");
        assert!(!b.take(now + 500, 2, 4));
        // Per minute, and never above the burst after a long pause.
        let mut m = Bucket::full(1);
        assert!(m.take_per(now, 1, 1, 60_000));
        assert!(!m.take_per(now + 59_999, 1, 1, 60_000));
        assert!(m.take_per(now + 60_000, 1, 1, 60_000));
        // Asked every 10 ms, a slow bucket still refills on time.
        let t = (1..=6000)
            .map(|i| now + 60_000 + i * 10)
            .find(|&t| m.take_per(t, 1, 1, 60_000));
        assert_eq!(t, Some(now + 120_000));
        assert!(m.take_per(u64::MAX, 1, 1, 60_000));
        assert!(!m.take_per(u64::MAX, 1, 1, 60_000));
    }
}
