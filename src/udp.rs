//! The daemon's one UDP socket: multicast announcements in and out on every
//! managed interface, plus unicast replies to the same port.
//!
//! One socket serves all interfaces (at most a handful, well under
//! `net.ipv4.igmp_max_memberships`): memberships are per interface
//! (`ip_mreqn.imr_ifindex`), the arrival interface and destination address of
//! each datagram come back as an `IP_PKTINFO` cmsg, and the output interface
//! of each sent datagram is chosen with an `IP_PKTINFO` cmsg on `sendmsg`.
//!
//! std has no `ip_mreqn`/`IP_MULTICAST_IF`, `IP_PKTINFO` or `recvmmsg`
//! (and nix's `recvmmsg` wrapper allocates), so this module talks to libc
//! directly. Nothing here allocates
//! after start-up: receive buffers live in a [`RecvBatch`] made once, and the
//! per-call headers live on the stack.

use std::io;
use std::mem::{self, size_of};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;

use crate::sys::{cvt_r, socket};

/// Datagrams a [`RecvBatch`] takes per `recvmmsg` call unless told otherwise.
pub const BATCH: usize = 8;

/// Bytes of each receive buffer: protocol messages are far smaller, and
/// anything longer is reported truncated rather than read in pieces.
pub const DGRAM_BUF: usize = 2048;

/// Control bytes per datagram: room for `IP_PKTINFO` (32 bytes on 64-bit)
/// plus `SO_RXQ_OVFL` (24), with slack so an extra cmsg never truncates these.
const CMSG_BUF: usize = 128;

/// A control-message buffer aligned like `cmsghdr`, as `CMSG_FIRSTHDR` assumes.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf<const L: usize>([u8; L]);

const _: () = assert!(mem::align_of::<CmsgBuf<CMSG_BUF>>() >= mem::align_of::<libc::cmsghdr>());

fn ip_to_in_addr(ip: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(ip.octets()),
    }
}

fn in_addr_to_ip(a: libc::in_addr) -> Ipv4Addr {
    Ipv4Addr::from(a.s_addr.to_ne_bytes())
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    let mut sa: libc::sockaddr_in = socket::zeroed();
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr = ip_to_in_addr(*addr.ip());
    sa
}

fn mreqn(group: Ipv4Addr, ifindex: u32) -> libc::ip_mreqn {
    libc::ip_mreqn {
        imr_multiaddr: ip_to_in_addr(group),
        imr_address: ip_to_in_addr(Ipv4Addr::UNSPECIFIED),
        imr_ifindex: ifindex as libc::c_int,
    }
}

/// The daemon's UDP socket, bound to `0.0.0.0:port`.
#[derive(Debug)]
pub struct McastSocket {
    fd: OwnedFd,
    port: u16,
    granted_rcvbuf: usize,
}

impl McastSocket {
    /// Opens the socket, bound to `0.0.0.0:port` (0 picks a free port), with
    /// every option the daemon relies on set; see the module doc.
    ///
    /// `rcvbuf_bytes` is passed to `SO_RCVBUFFORCE` (or `SO_RCVBUF` when not
    /// privileged, capped by `net.core.rmem_max`); 0 keeps the kernel default.
    /// The default (~212 KB) holds only ~256 small datagrams, fewer than a
    /// cold-booting cluster announces at once. The kernel doubles the request
    /// for its bookkeeping; [`granted_rcvbuf`](Self::granted_rcvbuf) tells what it granted.
    pub fn open(port: u16, rcvbuf_bytes: usize) -> io::Result<McastSocket> {
        let kind = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let fd = socket::socket(libc::AF_INET, kind, 0)?;
        let mut sock = McastSocket {
            fd,
            port,
            granted_rcvbuf: 0,
        };
        let one: libc::c_int = 1;
        let zero: libc::c_int = 0;
        // Lets a restarted daemon rebind while the old socket lingers.
        sock.setsockopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
        // Arrival interface and destination address of every datagram.
        sock.setsockopt(libc::IPPROTO_IP, libc::IP_PKTINFO, &one)?;
        // Only groups this socket joined, not every group joined on the host.
        sock.setsockopt(libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, &zero)?;
        // Two daemons on one host must hear each other.
        sock.setsockopt(libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &one)?;
        // The kernel's drop counter rides along as a cmsg.
        sock.setsockopt(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &one)?;
        if rcvbuf_bytes > 0 {
            let req = libc::c_int::try_from(rcvbuf_bytes).unwrap_or(libc::c_int::MAX);
            if sock
                .setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &req)
                .is_err()
            {
                sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &req)?;
            }
        }
        let rcvbuf: libc::c_int =
            socket::getsockopt(sock.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF)?;
        sock.granted_rcvbuf = rcvbuf as usize;

        let sa = sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
        let sa_len = socket::len_of::<libc::sockaddr_in>();
        socket::bind(sock.fd.as_raw_fd(), &sa, sa_len)?;
        let bound: libc::sockaddr_in = socket::getsockname(sock.fd.as_raw_fd())?;
        sock.port = u16::from_be(bound.sin_port);
        Ok(sock)
    }

    fn setsockopt<T: Copy>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        val: &T,
    ) -> io::Result<()> {
        socket::setsockopt(self.fd.as_raw_fd(), level, name, val)
    }

    /// The receive buffer the kernel granted (`SO_RCVBUF` as read back), so
    /// the daemon can log it and warn when it is below what it asked for.
    pub fn granted_rcvbuf(&self) -> usize {
        self.granted_rcvbuf
    }

    /// The bound port; useful when `open` was given 0.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Joins `group` on the interface `ifindex`. Already a member counts as
    /// success, so the daemon can re-join on every link-up without tracking.
    pub fn join(&self, group: Ipv4Addr, ifindex: u32) -> io::Result<()> {
        let m = mreqn(group, ifindex);
        match self.setsockopt(libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &m) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Ok(()),
            r => r,
        }
    }

    /// Leaves `group` on `ifindex`. Not a member (or the interface is gone)
    /// counts as success: the goal state holds either way.
    pub fn leave(&self, group: Ipv4Addr, ifindex: u32) -> io::Result<()> {
        let m = mreqn(group, ifindex);
        match self.setsockopt(libc::IPPROTO_IP, libc::IP_DROP_MEMBERSHIP, &m) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV)
                ) =>
            {
                Ok(())
            }
            r => r,
        }
    }

    /// Hop limit of outgoing multicast (the kernel default is 1: this link only).
    pub fn set_multicast_ttl(&self, ttl: u8) -> io::Result<()> {
        let v = libc::c_int::from(ttl);
        self.setsockopt(libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &v)
    }

    /// Interface for multicast sent with `ifindex: None`; without it the
    /// kernel would pick one by routing table, possibly one not managed.
    pub fn set_default_interface(&self, ifindex: u32) -> io::Result<()> {
        let m = mreqn(Ipv4Addr::UNSPECIFIED, ifindex);
        self.setsockopt(libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &m)
    }

    /// Sends one datagram to `dst`. With `Some(ifindex)` an `IP_PKTINFO` cmsg
    /// makes the kernel send it out of that interface (this is how one socket
    /// announces on every interface); `None` uses the default interface for
    /// multicast and the routing table for unicast. The source address is
    /// the kernel's pick for that interface (its primary address; on `lo`,
    /// whose 127.0.0.1 is host-scope, another interface's address).
    pub fn send(&self, buf: &[u8], dst: SocketAddrV4, ifindex: Option<u32>) -> io::Result<()> {
        self.send_inner(buf, dst, ifindex, Ipv4Addr::UNSPECIFIED)
    }

    /// Like [`McastSocket::send`] out of `ifindex`, with `src` as the source
    /// address (`ipi_spec_dst`), so a node's datagrams carry the address it
    /// announces, also on `lo` where the kernel would pick another interface's.
    pub fn send_from(
        &self,
        buf: &[u8],
        dst: SocketAddrV4,
        ifindex: u32,
        src: Ipv4Addr,
    ) -> io::Result<()> {
        self.send_inner(buf, dst, Some(ifindex), src)
    }

    fn send_inner(
        &self,
        buf: &[u8],
        dst: SocketAddrV4,
        ifindex: Option<u32>,
        src: Ipv4Addr,
    ) -> io::Result<()> {
        let name = sockaddr_in(dst);
        let info = ifindex.map(|ifindex| libc::in_pktinfo {
            ipi_ifindex: ifindex as libc::c_int,
            ipi_spec_dst: ip_to_in_addr(src),
            ipi_addr: ip_to_in_addr(Ipv4Addr::UNSPECIFIED),
        });
        let cmsg = info
            .as_ref()
            .map(|i| (libc::IPPROTO_IP, libc::IP_PKTINFO, i));
        let n = socket::send_msg(self.fd.as_raw_fd(), buf, &name, cmsg, libc::MSG_NOSIGNAL)?;
        if n != buf.len() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(())
    }

    /// Reads up to `N` queued datagrams in one `recvmmsg` call without
    /// blocking. Returns how many arrived (0 when the queue is empty); read
    /// them with [`RecvBatch::get`] until the next call.
    pub fn recv_batch<const N: usize>(&self, batch: &mut RecvBatch<N>) -> io::Result<usize> {
        batch.count = 0;
        // The headers point into `batch`; they are rebuilt on the stack at
        // every call, so a RecvBatch holds no self-referential pointers and
        // may be moved freely. Building 8 headers costs a few stores.
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; N];
        let mut hdrs: [libc::mmsghdr; N] = [socket::zeroed(); N];
        for i in 0..N {
            iov[i].iov_base = batch.bufs[i].as_mut_ptr().cast::<libc::c_void>();
            iov[i].iov_len = DGRAM_BUF;
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = ptr::addr_of_mut!(batch.names[i]).cast::<libc::c_void>();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            h.msg_control = batch.cmsgs[i].0.as_mut_ptr().cast::<libc::c_void>();
            h.msg_controllen = CMSG_BUF as _;
        }
        let fd = self.fd.as_raw_fd();
        let hdrs_ptr = hdrs.as_mut_ptr();
        let flags = libc::MSG_DONTWAIT as _;
        // SAFETY: hdrs_ptr points at N headers whose name, iovec and control
        // pointers reference live, writable buffers of the sizes given; a
        // null timeout is allowed.
        let n = match cvt_r(|| unsafe {
            libc::recvmmsg(fd, hdrs_ptr, N as libc::c_uint, flags, ptr::null_mut())
        }) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        for (i, hdr) in hdrs.iter().enumerate().take(n) {
            let h = &hdr.msg_hdr;
            let mut meta = Meta {
                len: (hdr.msg_len as usize).min(DGRAM_BUF),
                truncated: h.msg_flags & libc::MSG_TRUNC != 0,
                src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                ifindex: 0,
                dst: Ipv4Addr::UNSPECIFIED,
            };
            let sa = &batch.names[i];
            if h.msg_namelen as usize >= size_of::<libc::sockaddr_in>()
                && sa.sin_family == libc::AF_INET as libc::sa_family_t
            {
                meta.src = SocketAddrV4::new(in_addr_to_ip(sa.sin_addr), u16::from_be(sa.sin_port));
            }
            // SAFETY: h.msg_control/msg_controllen describe the part of
            // batch.cmsgs[i] the kernel filled; CMSG_FIRSTHDR/NXTHDR stay
            // within it and the data reads are unaligned-safe.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    let data = libc::CMSG_DATA(c);
                    match ((*c).cmsg_level, (*c).cmsg_type) {
                        (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                            let info = ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                            meta.ifindex = info.ipi_ifindex as u32;
                            meta.dst = in_addr_to_ip(info.ipi_addr);
                        }
                        (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                            let drops = ptr::read_unaligned(data.cast::<u32>());
                            batch.dropped = batch.dropped.max(drops);
                        }
                        _ => {}
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
            batch.meta[i] = meta;
        }
        batch.count = n;
        Ok(n)
    }
}

impl AsRawFd for McastSocket {
    /// For registering with epoll.
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[derive(Clone, Copy)]
struct Meta {
    len: usize,
    truncated: bool,
    src: SocketAddrV4,
    ifindex: u32,
    dst: Ipv4Addr,
}

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The payload (at most [`DGRAM_BUF`] bytes).
    pub data: &'a [u8],
    /// Sender's address and port.
    pub src: SocketAddrV4,
    /// Interface it arrived on (`IP_PKTINFO`), 0 if the kernel did not say.
    pub ifindex: u32,
    /// Destination address in its IP header: the group for multicast, our
    /// own address for unicast.
    pub dst: Ipv4Addr,
    /// Longer than [`DGRAM_BUF`]; `data` holds only the start. The daemon
    /// drops these: no valid message is that long.
    pub truncated: bool,
}

/// Fixed receive buffers for [`McastSocket::recv_batch`], created once at
/// start-up so the receive path never allocates. Holds no pointers into
/// itself (the syscall headers are rebuilt per call), so it may be moved.
/// It is about `N * 2.2` KiB: box it if a stack frame must stay small.
pub struct RecvBatch<const N: usize = BATCH> {
    bufs: [[u8; DGRAM_BUF]; N],
    names: [libc::sockaddr_in; N],
    cmsgs: [CmsgBuf<CMSG_BUF>; N],
    meta: [Meta; N],
    count: usize,
    dropped: u32,
}

impl<const N: usize> RecvBatch<N> {
    /// Empty buffers for `N` datagrams.
    pub fn new() -> Self {
        let meta = Meta {
            len: 0,
            truncated: false,
            src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            ifindex: 0,
            dst: Ipv4Addr::UNSPECIFIED,
        };
        RecvBatch {
            bufs: [[0u8; DGRAM_BUF]; N],
            names: [socket::zeroed(); N],
            cmsgs: [CmsgBuf([0u8; CMSG_BUF]); N],
            meta: [meta; N],
            count: 0,
            dropped: 0,
        }
    }

    /// Datagrams read by the last `recv_batch`.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last `recv_batch` read nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`-th datagram of the last `recv_batch`, if it read that many.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.count {
            return None;
        }
        let m = &self.meta[i];
        Some(Datagram {
            data: &self.bufs[i][..m.len],
            src: m.src,
            ifindex: m.ifindex,
            dst: m.dst,
            truncated: m.truncated,
        })
    }

    /// The datagrams of the last `recv_batch`, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        (0..self.count).filter_map(move |i| self.get(i))
    }

    /// Datagrams the kernel dropped on this socket for want of buffer space
    /// since it was opened: the last `SO_RXQ_OVFL` value seen. The kernel
    /// reports it only on a later datagram, so it lags until one arrives.
    pub fn dropped_total(&self) -> u32 {
        self.dropped
    }
}

impl<const N: usize> Default for RecvBatch<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::socket::SEND_CMSG_BUF;

    #[test]
    fn cmsg_buffers_fit() {
        // SAFETY: CMSG_SPACE only computes a size.
        let (pkt, ovfl) = unsafe {
            (
                libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize,
                libc::CMSG_SPACE(size_of::<u32>() as u32) as usize,
            )
        };
        assert!(pkt + ovfl <= CMSG_BUF);
        assert!(pkt <= SEND_CMSG_BUF);
    }
}
