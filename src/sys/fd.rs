//! File descriptors and the C error convention: [`cvt`]/[`cvt_r`] (the one
//! place `-1`/`errno` becomes an `io::Error`), reads, writes, pipes, and
//! printing an error without allocating.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Return types of libc calls that report failure as `-1` and set `errno`.
pub(crate) trait IsMinusOne: Copy {
    fn is_minus_one(self) -> bool;
}

macro_rules! impl_is_minus_one {
    ($($t:ty)*) => ($(impl IsMinusOne for $t {
        fn is_minus_one(self) -> bool {
            self == -1
        }
    })*)
}

impl_is_minus_one! { i32 i64 isize }

/// Turns a libc return of `-1` into the `errno` it left, as std's `cvt` does.
/// The only place the C error convention is converted; never allocates.
pub(crate) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(last_error())
    } else {
        Ok(ret)
    }
}

/// `errno` as an `io::Error`: out of line and cold, one copy for the forty-odd
/// inlined [`cvt`]s rather than one each (docs/SCALE.md, "Binary size").
#[cold]
#[inline(never)]
fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// [`cvt`] for calls a signal can interrupt: repeats `call` while it fails with
/// `EINTR`. The crate's one EINTR retry loop.
pub(crate) fn cvt_r<T: IsMinusOne>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(call()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Writes all of `buf` to `fd`, retrying on EINTR and after partial writes.
/// Does not allocate; used by the logger for its one-write-per-line output
/// and by the map-file writer to flush its buffer.
pub fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write_fd(fd, buf)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// A pipe, `(read end, write end)`, opened with `flags` (`O_CLOEXEC`,
/// `O_NONBLOCK`) on both ends.
pub fn pipe(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
    // SAFETY: pipe2 just returned these two descriptors, owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One `write` of `buf` to `fd` (retried on EINTR): how many bytes it took.
pub fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for the `buf.len()` bytes passed.
    cvt_r(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }).map(|n| n as usize)
}

/// Reads what is there from a non-blocking descriptor: `Ok(0)` at end of
/// file, `Err(WouldBlock)` when nothing is waiting.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for the `buf.len()` bytes passed.
    cvt_r(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }).map(|n| n as usize)
}

/// An OS error number, printed the way std prints an `io::Error`
/// ("No such file or directory (os error 2)") but without allocating: std
/// builds a `String` for the message, and the event loop must not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 128];
        // SAFETY: `buf` is writable for its whole length; the XSI strerror_r
        // (which the libc crate binds) writes a NUL-terminated message into
        // it or returns an error and leaves it alone.
        let r = unsafe { libc::strerror_r(self.0, buf.as_mut_ptr().cast(), buf.len()) };
        let msg = (r == 0)
            .then(|| std::ffi::CStr::from_bytes_until_nul(&buf).ok())
            .flatten()
            .and_then(|c| c.to_str().ok());
        match msg {
            Some(msg) => write!(f, "{msg} (os error {})", self.0),
            None => write!(f, "Unknown error {} (os error {})", self.0, self.0),
        }
    }
}

/// Displays an `io::Error` without allocating when it carries an OS error
/// (all the daemon's do); others print as std prints them.
pub struct IoErr<'a>(pub &'a io::Error);

impl std::fmt::Display for IoErr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.raw_os_error() {
            Some(n) => Errno(n).fmt(f),
            None => self.0.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn write_all_fd_writes_everything() {
        let (r, w) = pipe(libc::O_CLOEXEC | libc::O_NONBLOCK).unwrap();
        write_all_fd(w.as_raw_fd(), b"hello").unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: `buf` is writable for the `buf.len()` bytes passed.
        let n =
            cvt(unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }).unwrap();
        assert_eq!(&buf[..n as usize], b"hello");
        assert!(write_all_fd(-1, b"x").is_err());
    }

    #[test]
    fn errno_prints_as_std_does() {
        for n in [1, 2, 13, 21, 28, 9999] {
            let std_text = io::Error::from_raw_os_error(n).to_string();
            assert_eq!(Errno(n).to_string(), std_text);
            assert_eq!(
                IoErr(&io::Error::from_raw_os_error(n)).to_string(),
                std_text
            );
        }
        let custom = io::Error::other("custom");
        assert_eq!(IoErr(&custom).to_string(), "custom");
    }
}
