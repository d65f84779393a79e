//! The event loop's multiplexer: `epoll`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

use super::cvt;

/// An all-zero `epoll_event`, for initialising the array handed to [`Epoll::wait`]
/// without a heap allocation: `[EMPTY_EVENT; 64]`.
pub const EMPTY_EVENT: libc::epoll_event = libc::epoll_event { events: 0, u64: 0 };

/// The token registered with [`Epoll::add`], copied out of the (packed on x86_64)
/// `epoll_event` so callers never take a reference to a packed field.
pub fn event_token(ev: &libc::epoll_event) -> u64 {
    ev.u64
}

/// The daemon's event loop multiplexer. Owning the fd closes it on drop.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// Creates the epoll instance; close-on-exec so hooks we spawn do not inherit it.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Registers `fd` for `events` (`EPOLLIN as u32`, ...); `token` comes back in `wait`.
    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        let op = libc::EPOLL_CTL_ADD;
        // SAFETY: `ev` is a live epoll_event the kernel only reads during the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Changes what `fd` (registered with [`Epoll::add`]) waits for.
    pub fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        let op = libc::EPOLL_CTL_MOD;
        // SAFETY: `ev` is a live epoll_event the kernel only reads during the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Stops waiting on `fd` (before it is closed).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let op = libc::EPOLL_CTL_DEL;
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL (since Linux 2.6.9).
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, ptr::null_mut()) })?;
        Ok(())
    }

    /// Waits for events; returns how many entries of `events` were filled.
    ///
    /// `None` waits forever. A signal interrupting the wait is not an error: it
    /// returns `Ok(0)` so the loop simply recomputes its deadlines and goes round.
    pub fn wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let max = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
        let timeout = epoll_timeout_ms(timeout);
        // SAFETY: `events` is writable for `max` (at most its length) entries and
        // outlives the call.
        match cvt(unsafe {
            libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout)
        }) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Converts a timeout to epoll's milliseconds, rounding up (as mio does) so that a
/// deadline less than 1 ms away sleeps 1 ms instead of spinning with timeout 0.
/// Capped at `i32::MAX` ms (~24.8 days); `None` is -1, wait forever.
fn epoll_timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(to) => {
            let to = to.checked_add(Duration::from_nanos(999_999)).unwrap_or(to);
            to.as_millis().min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{pipe, write_all_fd};

    #[test]
    fn epoll_reports_readable_pipe() {
        let ep = Epoll::new().unwrap();
        let (r, w) = pipe(libc::O_CLOEXEC | libc::O_NONBLOCK).unwrap();
        ep.add(r.as_raw_fd(), 7, libc::EPOLLIN as u32).unwrap();
        let mut evs = [EMPTY_EVENT; 4];
        assert_eq!(ep.wait(&mut evs, Some(Duration::ZERO)).unwrap(), 0);
        write_all_fd(w.as_raw_fd(), b"x").unwrap();
        let n = ep.wait(&mut evs, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(n, 1);
        assert_eq!(event_token(&evs[0]), 7);
        let flags = evs[0].events;
        assert_ne!(flags & libc::EPOLLIN as u32, 0);
        // The same fd cannot be registered twice.
        assert!(ep.add(r.as_raw_fd(), 8, libc::EPOLLIN as u32).is_err());
    }

    #[test]
    fn timeout_rounds_up_and_caps() {
        assert_eq!(epoll_timeout_ms(None), -1);
        assert_eq!(epoll_timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(epoll_timeout_ms(Some(Duration::from_micros(300))), 1);
        assert_eq!(epoll_timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(epoll_timeout_ms(Some(Duration::from_millis(5))), 5);
        assert_eq!(epoll_timeout_ms(Some(Duration::from_micros(5001))), 6);
        assert_eq!(
            epoll_timeout_ms(Some(Duration::from_secs(1 << 40))),
            i32::MAX
        );
        assert_eq!(epoll_timeout_ms(Some(Duration::MAX)), i32::MAX);
    }
}
