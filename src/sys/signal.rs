//! Signals as readable events: `signalfd`.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

#[cfg(doc)]
use super::Epoll;
use super::{cvt, cvt_r};

/// What a [`SignalFd`] read returns: the signal and the pid that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalInfo {
    pub signo: i32,
    pub pid: u32,
}

/// Signals delivered as readable events in the epoll loop instead of through
/// async handlers, so handling them needs no async-signal-safety reasoning.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

fn sigset_of(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data for which all-zero is valid; sigemptyset
    // initialises it fully below.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a live, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &sig in signals {
        // SAFETY: `set` is a live, initialised sigset_t; a bad signal number is
        // reported as EINVAL, not undefined behaviour.
        cvt(unsafe { libc::sigaddset(&mut set, sig) })?;
    }
    Ok(set)
}

fn set_sigmask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: `set` is an initialised sigset_t; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(how, set, ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

impl SignalFd {
    /// Blocks `signals` in the calling thread (the whole daemon, as it is
    /// single-threaded and threads inherit the mask) and returns a non-blocking,
    /// close-on-exec signalfd that reports them.
    pub fn new(signals: &[i32]) -> io::Result<SignalFd> {
        let set = sigset_of(signals)?;
        set_sigmask(libc::SIG_BLOCK, &set)?;
        let flags = libc::SFD_NONBLOCK | libc::SFD_CLOEXEC;
        // SAFETY: `set` is a live, initialised sigset_t the kernel only reads.
        let fd = cvt(unsafe { libc::signalfd(-1, &set, flags) })?;
        // SAFETY: signalfd(-1, ..) just returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalFd { fd })
    }

    /// Takes one pending signal, or `None` when none is pending.
    pub fn read(&self) -> io::Result<Option<SignalInfo>> {
        // SAFETY: signalfd_siginfo is plain data for which all-zero is valid.
        let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
        let size = mem::size_of::<libc::signalfd_siginfo>();
        let fd = self.fd.as_raw_fd();
        // SAFETY: `info` is a live signalfd_siginfo, writable for the `size` bytes passed.
        match cvt_r(|| unsafe { libc::read(fd, ptr::addr_of_mut!(info).cast(), size) }) {
            Ok(n) if n as usize == size => Ok(Some(SignalInfo {
                signo: info.ssi_signo as i32,
                pid: info.ssi_pid,
            })),
            Ok(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The raw fd, to register with [`Epoll`].
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
