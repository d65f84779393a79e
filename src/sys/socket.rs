//! Sockets of every family (the UDP socket, netlink, `AF_UNIX`): creating,
//! binding, naming and connecting them, and their options. Per-packet sends
//! and receives stay with their callers, which build the message headers.

use std::io;
use std::mem;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr;

use super::{cvt, cvt_r};

/// C structs for which all-zero bytes are a valid value, and so is anything
/// the kernel writes into them: the socket addresses and the message
/// headers handed to it.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` structs of integers, arrays of them and
/// raw pointers.
pub(crate) unsafe trait Plain: Copy {}

// SAFETY: all of these are libc's #[repr(C)] structs of integers, integer
// arrays and raw pointers.
unsafe impl Plain for libc::sockaddr_in {}
// SAFETY: as above.
unsafe impl Plain for libc::sockaddr_nl {}
// SAFETY: as above.
unsafe impl Plain for libc::sockaddr_un {}
// SAFETY: as above.
unsafe impl Plain for libc::ucred {}
// SAFETY: as above.
unsafe impl Plain for libc::msghdr {}
// SAFETY: as above.
unsafe impl Plain for libc::mmsghdr {}
// SAFETY: an integer.
unsafe impl Plain for libc::c_int {}

/// An all-zero `T`: a socket address or a message header to fill in.
#[inline]
pub(crate) fn zeroed<T: Plain>() -> T {
    // SAFETY: all-zero bytes are a valid T (see `Plain`).
    unsafe { mem::zeroed() }
}

/// `size_of::<T>()` as a `socklen_t`.
#[inline]
pub(crate) fn len_of<T>() -> libc::socklen_t {
    mem::size_of::<T>() as libc::socklen_t
}

/// `socket(domain, kind, protocol)`.
pub(crate) fn socket(
    domain: libc::c_int,
    kind: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only.
    let fd = cvt(unsafe { libc::socket(domain, kind, protocol) })?;
    // SAFETY: socket just returned this descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the option `level`/`name` of `fd` to `val` (an int, a timeval, an
/// `ip_mreqn`...).
pub(crate) fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    let ptr = (val as *const T).cast::<libc::c_void>();
    // SAFETY: ptr points at a live T the kernel only reads, and the length
    // passed is its size.
    cvt(unsafe { libc::setsockopt(fd, level, name, ptr, len_of::<T>()) })?;
    Ok(())
}

/// Reads the option `level`/`name` of `fd` (an int, a `ucred`...).
pub(crate) fn getsockopt<T: Plain>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    let mut val = zeroed::<T>();
    let mut len = len_of::<T>();
    let ptr = (&mut val as *mut T).cast::<libc::c_void>();
    // SAFETY: val is writable for len bytes, its size, and any bytes the
    // kernel writes make a valid T (see `Plain`).
    cvt(unsafe { libc::getsockopt(fd, level, name, ptr, &mut len) })?;
    Ok(val)
}

/// Binds `fd` to the first `len` bytes (at most its size) of `addr`.
pub(crate) fn bind<A: Plain>(fd: RawFd, addr: &A, len: libc::socklen_t) -> io::Result<()> {
    let len = len.min(len_of::<A>());
    let ptr = (addr as *const A).cast::<libc::sockaddr>();
    // SAFETY: addr is a live A, readable for len bytes; the kernel only reads it.
    cvt(unsafe { libc::bind(fd, ptr, len) })?;
    Ok(())
}

/// Connects `fd` to the first `len` bytes (at most its size) of `addr`.
pub(crate) fn connect<A: Plain>(fd: RawFd, addr: &A, len: libc::socklen_t) -> io::Result<()> {
    let len = len.min(len_of::<A>());
    let ptr = (addr as *const A).cast::<libc::sockaddr>();
    // SAFETY: addr is a live A, readable for len bytes; the kernel only reads it.
    cvt(unsafe { libc::connect(fd, ptr, len) })?;
    Ok(())
}

/// The address `fd` is bound to.
pub(crate) fn getsockname<A: Plain>(fd: RawFd) -> io::Result<A> {
    let mut addr = zeroed::<A>();
    let mut len = len_of::<A>();
    let ptr = (&mut addr as *mut A).cast::<libc::sockaddr>();
    // SAFETY: addr is writable for len bytes, its size, and any bytes the
    // kernel writes make a valid A (see `Plain`).
    cvt(unsafe { libc::getsockname(fd, ptr, &mut len) })?;
    Ok(addr)
}

/// Sends `buf` as one datagram on the connected `fd`; not retried on EINTR
/// (a send timeout makes the caller drop the datagram instead).
pub(crate) fn send(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is readable for the buf.len() bytes passed.
    let n = cvt(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) })?;
    Ok(n as usize)
}

/// Sends `buf` as one datagram to the first `len` bytes (at most its size)
/// of `to`, retrying on EINTR.
pub(crate) fn send_to<A: Plain>(
    fd: RawFd,
    buf: &[u8],
    flags: libc::c_int,
    to: &A,
    len: libc::socklen_t,
) -> io::Result<usize> {
    let len = len.min(len_of::<A>());
    let to = (to as *const A).cast::<libc::sockaddr>();
    // SAFETY: buf is readable for buf.len() bytes and `to` for len bytes;
    // the kernel only reads both, during the call.
    let n = cvt_r(|| unsafe { libc::sendto(fd, buf.as_ptr().cast(), buf.len(), flags, to, len) })?;
    Ok(n as usize)
}

/// Receives one datagram into `buf`, retrying on EINTR: its length, which
/// with `MSG_TRUNC` may be more than `buf` holds.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
    // SAFETY: buf is writable for the len bytes passed.
    let n = cvt_r(|| unsafe { libc::recv(fd, ptr, len, flags) })?;
    Ok(n as usize)
}

/// Bytes of the control buffer [`send_msg`] builds on the stack: room for
/// one control message of up to 16 data bytes (an `in_pktinfo`: 12).
pub(crate) const SEND_CMSG_BUF: usize = 32;

/// A control-message buffer aligned like `cmsghdr`, as `CMSG_FIRSTHDR` assumes.
#[repr(C, align(8))]
struct SendCmsgBuf([u8; SEND_CMSG_BUF]);

const _: () = assert!(mem::align_of::<SendCmsgBuf>() >= mem::align_of::<libc::cmsghdr>());

/// Sends `buf` as one datagram to `to` with `sendmsg`, with one control
/// message (`level`, `type`, data) attached (`IP_PKTINFO` choosing the
/// output interface) or none; retries on EINTR. The headers live on the
/// stack: nothing is allocated.
#[inline]
pub(crate) fn send_msg<A: Plain, T: Copy>(
    fd: RawFd,
    buf: &[u8],
    to: &A,
    cmsg: Option<(libc::c_int, libc::c_int, &T)>,
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cbuf = SendCmsgBuf([0u8; SEND_CMSG_BUF]);
    let mut msg: libc::msghdr = zeroed();
    msg.msg_name = (to as *const A).cast_mut().cast::<libc::c_void>();
    msg.msg_namelen = len_of::<A>();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some((level, kind, data)) = cmsg {
        let data_len = mem::size_of::<T>() as libc::c_uint;
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        if space > SEND_CMSG_BUF {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        msg.msg_control = cbuf.0.as_mut_ptr().cast::<libc::c_void>();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at SEND_CMSG_BUF (>= space) bytes
        // aligned for cmsghdr, so the first header and its data fit.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = level;
            (*c).cmsg_type = kind;
            (*c).cmsg_len = libc::CMSG_LEN(data_len) as _;
            ptr::write_unaligned(libc::CMSG_DATA(c).cast::<T>(), *data);
        }
    }
    // SAFETY: msg and everything it points at (to, iov -> buf, cbuf) live
    // until the call returns; the kernel only reads them.
    let n = cvt_r(|| unsafe { libc::sendmsg(fd, &msg, flags) })?;
    Ok(n as usize)
}
