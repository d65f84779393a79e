//! Clocks: CLOCK_MONOTONIC, the daemon's only clock for deadlines, and the
//! local wall-clock time of syslog lines.

/// Microseconds on CLOCK_MONOTONIC, immune to wall-clock steps; also what
/// sd_notify's `MONOTONIC_USEC=` wants. The one reading of the clock:
/// [`monotonic_ms`] is derived from it. Never inlined: read at some forty
/// places (a call is nothing beside the clock read itself), it would be
/// some forty copies (docs/SCALE.md, "Binary size").
#[inline(never)]
pub fn monotonic_us() -> u64 {
    let ts = read(libc::CLOCK_MONOTONIC);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000)
        .wrapping_add(ts.tv_nsec as u64 / 1000)
}

/// Milliseconds on CLOCK_MONOTONIC (the clock of [`monotonic_us`]): the
/// daemon's clock for deadlines. The same clock drives
/// [`TimerFd::arm_at_ms`](super::TimerFd::arm_at_ms). Never inlined, like
/// [`monotonic_us`].
#[inline(never)]
pub fn monotonic_ms() -> u64 {
    monotonic_us() / 1000
}

/// Whole seconds since 1970 on CLOCK_REALTIME, 0 before 1970: what
/// `SystemTime::now().duration_since(UNIX_EPOCH)` gives, without std's
/// `SystemTime::now`, whose `unwrap` of an `io::Error` (it cannot fail) brings
/// the error's `Debug` printer into the binary (docs/SCALE.md, "Binary size").
/// Never inlined, like [`monotonic_us`].
#[inline(never)]
pub fn unix_time_s() -> u64 {
    u64::try_from(read(libc::CLOCK_REALTIME).tv_sec).unwrap_or(0)
}

/// The clock `id` now (CLOCK_MONOTONIC or CLOCK_REALTIME, which always exist
/// on Linux).
fn read(id: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec, and `id` a clock that
    // exists, so the call cannot fail.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts
}

/// The local time now (`time`, `localtime_r`); all zero where the
/// conversion fails. The first call loads the zone file (and allocates).
pub(crate) fn local_time() -> libc::tm {
    // SAFETY: time(NULL) has no preconditions.
    let t = unsafe { libc::time(core::ptr::null_mut()) };
    // SAFETY: tm is plain data (integers and a pointer) for which all-zero is valid.
    let mut tm: libc::tm = unsafe { core::mem::zeroed() };
    // SAFETY: both pointers are valid; on failure tm stays zeroed.
    unsafe { libc::localtime_r(&t, &mut tm) };
    tm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_ms();
        let b = monotonic_ms();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn monotonic_us_agrees_with_monotonic_ms() {
        let ms = monotonic_ms();
        let us = monotonic_us();
        assert!(us / 1000 >= ms && us / 1000 - ms < 1000);
    }
}
