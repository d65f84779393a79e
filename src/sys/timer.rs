//! A one-shot timer fd on the monotonic clock.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use super::{cvt, cvt_r};
#[cfg(doc)]
use super::{monotonic_ms, Epoll};

/// A one-shot CLOCK_MONOTONIC timer fd, armed at absolute deadlines so that time
/// spent between computing and arming a deadline is not added to it.
#[derive(Debug)]
pub struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    /// Creates a disarmed, non-blocking, close-on-exec timer.
    pub fn new() -> io::Result<TimerFd> {
        let flags = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
        // SAFETY: timerfd_create takes no pointers.
        let fd = cvt(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) })?;
        // SAFETY: timerfd_create just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(TimerFd { fd })
    }

    /// Arms the timer to fire once at `deadline_ms` on [`monotonic_ms`]'s clock.
    /// A deadline already past fires at once.
    pub fn arm_at_ms(&self, deadline_ms: u64) -> io::Result<()> {
        // Capped well inside any time_t (musl's is changing width); ~292 years.
        let secs = (deadline_ms / 1000).min(i32::MAX as u64);
        let mut nsecs = ((deadline_ms % 1000) * 1_000_000) as libc::c_long;
        if secs == 0 && nsecs == 0 {
            // An all-zero it_value disarms; 1 ns after boot is just as much "past".
            nsecs = 1;
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: secs as _,
                tv_nsec: nsecs,
            },
        };
        let flags = libc::TFD_TIMER_ABSTIME;
        // SAFETY: `spec` is a live itimerspec the kernel only reads; the old
        // value is not requested (null is allowed).
        cvt(unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), flags, &spec, ptr::null_mut()) })?;
        Ok(())
    }

    /// Reads and clears the expiration count (0 if it has not fired), so the fd
    /// stops being readable and the level-triggered loop does not spin.
    pub fn drain(&self) -> io::Result<u64> {
        let mut count: u64 = 0;
        let fd = self.fd.as_raw_fd();
        let size = mem::size_of::<u64>();
        // SAFETY: `count` is a live u64, writable for the `size` bytes passed.
        match cvt_r(|| unsafe { libc::read(fd, ptr::addr_of_mut!(count).cast(), size) }) {
            Ok(_) => Ok(count),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The raw fd, to register with [`Epoll`].
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TimerFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{event_token, monotonic_ms, Epoll, EMPTY_EVENT};
    use std::time::Duration;

    /// Waits until `token` is reported, giving up after a generous 5 s.
    fn wait_for(ep: &Epoll, token: u64) -> bool {
        let deadline = monotonic_ms() + 5000;
        let mut evs = [EMPTY_EVENT; 8];
        while monotonic_ms() < deadline {
            let n = ep.wait(&mut evs, Some(Duration::from_millis(100))).unwrap();
            if evs[..n].iter().any(|e| event_token(e) == token) {
                return true;
            }
        }
        false
    }

    #[test]
    fn timer_in_the_past_fires_at_once() {
        let ep = Epoll::new().unwrap();
        let t = TimerFd::new().unwrap();
        ep.add(t.as_raw_fd(), 1, libc::EPOLLIN as u32).unwrap();
        assert_eq!(t.drain().unwrap(), 0);
        t.arm_at_ms(monotonic_ms().saturating_sub(1000)).unwrap();
        assert!(wait_for(&ep, 1));
        assert_eq!(t.drain().unwrap(), 1);
        assert_eq!(t.drain().unwrap(), 0);
        // Deadline 0 must not be the "disarm" all-zero value.
        t.arm_at_ms(0).unwrap();
        assert!(wait_for(&ep, 1));
        assert_eq!(t.drain().unwrap(), 1);
    }

    #[test]
    fn timer_in_the_near_future_fires() {
        let ep = Epoll::new().unwrap();
        let t = TimerFd::new().unwrap();
        ep.add(t.as_raw_fd(), 2, libc::EPOLLIN as u32).unwrap();
        let start = monotonic_ms();
        t.arm_at_ms(start + 20).unwrap();
        assert!(wait_for(&ep, 2));
        assert!(monotonic_ms() >= start + 20);
        assert_eq!(t.drain().unwrap(), 1);
    }
}
