//! `AF_UNIX` sockets: the abstract-name claim (one daemon per network
//! namespace) and the datagram socket sd_notify's messages go out on.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;

use super::{cvt, socket};

/// A name in the abstract `AF_UNIX` namespace held by a listening socket:
/// one holder per network namespace, released when the process dies (no
/// file is left behind). Connecting to it tells who holds it.
#[derive(Debug)]
pub struct AbstractClaim {
    fd: OwnedFd,
}

fn abstract_addr(name: &[u8]) -> io::Result<UnixAddr> {
    UnixAddr::abstract_name(name).ok_or_else(|| io::Error::from_raw_os_error(libc::ENAMETOOLONG))
}

fn unix_stream() -> io::Result<OwnedFd> {
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    socket::socket(libc::AF_UNIX, kind, 0)
}

impl AbstractClaim {
    /// Takes `name`; `EADDRINUSE` if another process holds it.
    pub fn take(name: &[u8]) -> io::Result<AbstractClaim> {
        let fd = unix_stream()?;
        let addr = abstract_addr(name)?;
        socket::bind(fd.as_raw_fd(), &addr.addr, addr.len)?;
        // SAFETY: listen takes integers only.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), 4) })?;
        Ok(AbstractClaim { fd })
    }

    /// The PID of the process holding `name`, if one does and says.
    pub fn holder(name: &[u8]) -> Option<u32> {
        let fd = unix_stream().ok()?;
        let addr = abstract_addr(name).ok()?;
        // A listening peer accepts the connection into its backlog at once.
        socket::connect(fd.as_raw_fd(), &addr.addr, addr.len).ok()?;
        let (level, name) = (libc::SOL_SOCKET, libc::SO_PEERCRED);
        let cred: libc::ucred = socket::getsockopt(fd.as_raw_fd(), level, name).ok()?;
        (cred.pid > 0).then_some(cred.pid as u32)
    }

    /// Closes the connections of those who asked (see [`AbstractClaim::holder`]).
    pub fn drain(&self) {
        loop {
            // SAFETY: accept4 with null address pointers is allowed.
            let r = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    ptr::null_mut(),
                    ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if r < 0 {
                return;
            }
            // SAFETY: accept4 just returned this descriptor; closed once.
            unsafe { libc::close(r) };
        }
    }
}

impl AsRawFd for AbstractClaim {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Bytes of `sockaddr_un.sun_path` (108 on Linux).
const SUN_PATH_LEN: usize = mem::size_of::<libc::sockaddr_un>() - UnixAddr::PATH_OFFSET;

/// The longest filesystem path a [`UnixAddr`] holds: `sun_path` without
/// the terminating NUL.
pub(crate) const SUN_PATH_MAX: usize = SUN_PATH_LEN - 1;

/// An `AF_UNIX` socket address built once (at start-up) and handed to
/// [`UnixDgram::send_to`] as often as needed: a filesystem path, or an
/// abstract name (Linux: the first byte of `sun_path` is NUL).
#[derive(Clone, Copy)]
pub struct UnixAddr {
    addr: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl UnixAddr {
    /// Offset of `sun_path` in `sockaddr_un` (after the 2-byte family).
    const PATH_OFFSET: usize = mem::size_of::<libc::sa_family_t>();

    /// A filesystem path: NUL-terminated in `sun_path`; `None` when it is
    /// empty, holds a NUL or does not fit (107 bytes at most).
    pub fn path(path: &[u8]) -> Option<UnixAddr> {
        if path.is_empty() || path.contains(&0) {
            return None;
        }
        // The terminating NUL is part of the address length.
        Self::raw(path, 0, 1)
    }

    /// An abstract name (without the leading NUL; the `@` of
    /// `NOTIFY_SOCKET` already stripped): exactly these bytes, no NUL at
    /// the end, at most 107 bytes.
    pub fn abstract_name(name: &[u8]) -> Option<UnixAddr> {
        Self::raw(name, 1, 0)
    }

    /// `name` at `sun_path[skip..]`, with `extra` bytes (the NUL) counted
    /// in the length. Never inlined (four callers, all at start-up).
    #[inline(never)]
    fn raw(name: &[u8], skip: usize, extra: usize) -> Option<UnixAddr> {
        let mut addr = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; SUN_PATH_LEN],
        };
        let used = skip + name.len() + extra;
        if used > addr.sun_path.len() {
            return None;
        }
        for (dst, &b) in addr.sun_path[skip..].iter_mut().zip(name) {
            *dst = b as libc::c_char;
        }
        let len = (Self::PATH_OFFSET + skip + name.len() + extra) as libc::socklen_t;
        Some(UnixAddr { addr, len })
    }

    /// The address as the kernel takes it: `sun_path` bytes within the
    /// length (the abstract name with its leading NUL).
    pub fn as_bytes(&self) -> &[u8] {
        let n = self.len as usize - Self::PATH_OFFSET;
        // c_char is i8 or u8 by target; either way one byte each.
        let path: &[libc::c_char] = &self.addr.sun_path[..n];
        // SAFETY: c_char and u8 have the same size and alignment and every
        // bit pattern is valid for both; the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(path.as_ptr().cast::<u8>(), path.len()) }
    }
}

impl std::fmt::Debug for UnixAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.as_bytes();
        match b.split_first() {
            Some((0, name)) => write!(f, "UnixAddr(@{})", name.escape_ascii()),
            _ => write!(
                f,
                "UnixAddr({})",
                b.strip_suffix(&[0]).unwrap_or(b).escape_ascii()
            ),
        }
    }
}

/// An unbound `AF_UNIX` datagram socket, close-on-exec so setpe does not
/// inherit it: connected, it sends with a send timeout (syslog's socket);
/// unconnected, it sends to a [`UnixAddr`] (sd_notify's socket). Those
/// sends never block: a receiver whose queue is full
/// (`net.unix.max_dgram_qlen`, 10 in a new network namespace) makes them
/// fail with `WouldBlock` instead of stopping the event loop.
#[derive(Debug)]
pub struct UnixDgram {
    fd: OwnedFd,
}

impl UnixDgram {
    /// `socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)`.
    pub fn new() -> io::Result<UnixDgram> {
        let kind = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC;
        let fd = socket::socket(libc::AF_UNIX, kind, 0)?;
        Ok(UnixDgram { fd })
    }

    /// Makes a blocking send to a full queue give up after `us`
    /// microseconds (`SO_SNDTIMEO`, less than a second) with `WouldBlock`.
    pub(crate) fn set_send_timeout_us(&self, us: u32) -> io::Result<()> {
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: us as _,
        };
        let (level, name) = (libc::SOL_SOCKET, libc::SO_SNDTIMEO);
        socket::setsockopt(self.fd.as_raw_fd(), level, name, &timeout)
    }

    /// Connects to `to`, where [`UnixDgram::send`] then sends.
    pub(crate) fn connect(&self, to: &UnixAddr) -> io::Result<()> {
        socket::connect(self.fd.as_raw_fd(), &to.addr, to.len)
    }

    /// Sends `buf` as one datagram to the connected peer, without SIGPIPE
    /// (`MSG_NOSIGNAL`), waiting for room up to the send timeout.
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<()> {
        socket::send(self.fd.as_raw_fd(), buf, libc::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// Sends `buf` as one datagram to `to`, without waiting (`MSG_DONTWAIT`)
    /// and without SIGPIPE (`MSG_NOSIGNAL`). Retries on EINTR; never
    /// allocates.
    pub fn send_to(&self, buf: &[u8], to: &UnixAddr) -> io::Result<usize> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        socket::send_to(self.fd.as_raw_fd(), buf, flags, &to.addr, to.len)
    }
}

impl AsFd for UnixDgram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_addresses_are_laid_out_as_the_kernel_wants() {
        let p = UnixAddr::path(b"/run/systemd/notify").unwrap();
        assert_eq!(p.as_bytes(), b"/run/systemd/notify\0");
        assert_eq!(p.len as usize, 2 + 20);
        let a = UnixAddr::abstract_name(b"sd").unwrap();
        assert_eq!(a.as_bytes(), b"\0sd");
        assert_eq!(format!("{a:?}"), "UnixAddr(@sd)");
        assert_eq!(format!("{p:?}"), "UnixAddr(/run/systemd/notify)");
        assert!(UnixAddr::path(b"").is_none());
        assert!(UnixAddr::path(b"/a\0b").is_none());
        assert!(UnixAddr::path(&[b'x'; 107]).is_some());
        assert!(
            UnixAddr::path(&[b'x'; 108]).is_none(),
            "no room for the NUL"
        );
        assert!(UnixAddr::abstract_name(&[b'x'; 107]).is_some());
        assert!(UnixAddr::abstract_name(&[b'x'; 108]).is_none());
    }
}
