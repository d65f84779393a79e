//! The seeded pseudo-random generator behind every jitter and random delay.
//!
//! Pure: it reads no clock and no entropy source, so the protocol core and the
//! simulator are reproducible from a seed. The daemon seeds it from the kernel.
#![forbid(unsafe_code)]

/// A small non-cryptographic PRNG (splitmix64) for timer jitter: no allocation, no
/// locking, and any seed (zero included) gives a full-period sequence.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A reproducible generator: the daemon seeds it from the kernel
    /// (`sys::getrandom_u64`), the simulator and the tests from a fixed seed.
    pub const fn from_seed(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// Never inlined: drawn at some ten places (jitter, delays, picks), none
    /// per packet; one copy of the mixing, not ten.
    #[inline(never)]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The high half, which is the better-mixed one.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform-enough value in `0..n` by multiply-shift (bias < n / 2^32); 0 if `n == 0`.
    pub fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.next_u32()) * u64::from(n)) >> 32) as u32
    }

    /// `base_ms` spread uniformly over `base*(1-p)..=base*(1+p)` with `p = percent/100`
    /// (clamped to 100), so nodes started together do not announce in lockstep.
    pub fn jitter_ms(&mut self, base_ms: u64, percent: u32) -> u64 {
        let base = u128::from(base_ms);
        let span = base * u128::from(percent.min(100)) / 100;
        let width = 2 * span + 1;
        let off = (u128::from(self.next_u64()) * width) >> 64;
        u64::try_from(base - span + off).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_below_stays_in_range_and_covers_it() {
        let mut rng = Rng::from_seed(0);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = rng.below(10);
            assert!(v < 10);
            seen[v as usize] += 1;
        }
        // Each bucket expects 1000; allow a wide margin.
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
        let mut other = Rng::from_seed(u64::MAX);
        assert!(other.below(u32::MAX) < u32::MAX);
    }

    #[test]
    fn rng_jitter_stays_in_bounds() {
        let mut rng = Rng::from_seed(42);
        let (mut lo, mut hi) = (u64::MAX, 0);
        for _ in 0..10_000 {
            let v = rng.jitter_ms(1000, 20);
            assert!((800..=1200).contains(&v), "{v}");
            lo = lo.min(v);
            hi = hi.max(v);
        }
        assert!(lo < 820 && hi > 1180, "{lo}..{hi}");
        assert_eq!(rng.jitter_ms(1000, 0), 1000);
        assert_eq!(rng.jitter_ms(0, 50), 0);
        assert!(rng.jitter_ms(10, 500) <= 20);
        // Saturates instead of overflowing.
        let _ = rng.jitter_ms(u64::MAX, 100);
    }

    #[test]
    fn rng_is_reproducible() {
        let mut a = Rng::from_seed(9);
        let mut b = Rng::from_seed(9);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(a.next_u32(), a.next_u32());
    }
}
