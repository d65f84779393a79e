//! Seeds from the kernel: `getrandom`.

use super::{cvt_r, getpid, monotonic_ms};

/// 64 random bits from the kernel, for seeding jitter and instance ids. Uses
/// GRND_NONBLOCK so an early-boot start never hangs; falls back to a mix of the
/// clocks and the pid, which is enough to desynchronise nodes booted together.
pub fn getrandom_u64() -> u64 {
    let mut buf = [0u8; 8];
    let len = buf.len();
    // SAFETY: `buf` is writable for the `len` bytes passed.
    let got =
        cvt_r(|| unsafe { libc::getrandom(buf.as_mut_ptr().cast(), len, libc::GRND_NONBLOCK) });
    if let Ok(8) = got {
        return u64::from_ne_bytes(buf);
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let pid = u64::from(getpid());
    let t = (ts.tv_sec as u64).wrapping_mul(1_000_000_000) ^ ts.tv_nsec as u64;
    crate::rng::Rng::from_seed(t ^ monotonic_ms().rotate_left(20) ^ (pid << 40)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrandom_differs() {
        // 2^-64 chance of a false failure.
        assert_ne!(getrandom_u64(), getrandom_u64());
    }
}
