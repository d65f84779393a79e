//! Hand-rolled rtnetlink (`NETLINK_ROUTE`): the few questions the daemon asks the kernel
//! (which interface carries the default route, is it up, what is its primary IPv4 address)
//! and the change notifications that tell it when to ask again.
//!
//! Two layers:
//! - a pure message layer (the private `msg` module, which forbids `unsafe`): headers,
//!   attribute walking, parsers, the reply state machine and the dump collectors. It
//!   works on any byte slice, never panics and never allocates, so it can be fuzzed
//!   (`fuzz_check`) and unit-tested without a socket;
//! - [`Netlink`] (this module), which owns the socket and one fixed receive buffer, sends
//!   requests and feeds the replies to the message layer. After [`Netlink::open`] /
//!   [`Netlink::open_monitor`] nothing here allocates.

// The system calls go through crate::sys.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use arrayvec::ArrayVec;
use zerocopy::IntoBytes;

use crate::sys::socket;

pub mod msg;

#[cfg(any(test, feature = "fuzzing"))]
pub use msg::fuzz_check;
use msg::{
    encode_request, parse_events, parse_link, AddrCollector, DefaultRouteSelector, DumpSink,
    IfAddrMsg, IfInfoMsg, MessageView, ReplyState, ReplyStatus, RtMsg, AF_INET, IFNAMSIZ,
    NLM_F_DUMP, REQUEST_LEN,
};
pub use msg::{DefaultRoute, Event, LinkInfo, NlError};

/// Size of the receive buffer. The kernel caps dump datagrams at 32 KiB
/// (`SKB_WITH_OVERHEAD(32768)` in `netlink_recvmsg`), so one datagram always fits.
const RECV_BUF_LEN: usize = 32 * 1024;
/// How often a dump is retried when the kernel flags it inconsistent (`NLM_F_DUMP_INTR`).
const DUMP_RETRIES: usize = 4;

/// An rtnetlink socket with its own receive buffer: either a request socket
/// ([`Netlink::open`]) or a notification socket ([`Netlink::open_monitor`]).
pub struct Netlink {
    fd: OwnedFd,
    /// Port id the kernel assigned at bind; replies to us carry it.
    port_id: u32,
    seq: u32,
    /// Allocated once at open; every reply is read into it.
    buf: Box<[u8]>,
    /// Sees every datagram received (debug dumps, fuzz-seed capture).
    tap: Option<fn(&[u8])>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.fd)
            .field("port_id", &self.port_id)
            .field("seq", &self.seq)
            .field("tap", &self.tap.is_some())
            .finish_non_exhaustive()
    }
}

fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    socket::setsockopt(fd, level, name, &val)
}

/// Creates, binds and names a NETLINK_ROUTE socket.
fn open_socket(extra_type: libc::c_int, groups: u32) -> io::Result<(OwnedFd, u32)> {
    let kind = libc::SOCK_RAW | libc::SOCK_CLOEXEC | extra_type;
    let fd = socket::socket(libc::AF_NETLINK, kind, libc::NETLINK_ROUTE)?;
    let mut addr: libc::sockaddr_nl = socket::zeroed();
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    socket::bind(fd.as_raw_fd(), &addr, socket::len_of::<libc::sockaddr_nl>())?;
    let addr: libc::sockaddr_nl = socket::getsockname(fd.as_raw_fd())?;
    Ok((fd, addr.nl_pid))
}

impl Netlink {
    fn with_fd(fd: OwnedFd, port_id: u32) -> Netlink {
        Netlink {
            fd,
            port_id,
            seq: 0,
            buf: vec![0u8; RECV_BUF_LEN].into_boxed_slice(),
            tap: None,
        }
    }

    /// A blocking request socket for [`default_route`](Self::default_route),
    /// [`link`](Self::link) and [`ipv4_addrs`](Self::ipv4_addrs).
    pub fn open() -> io::Result<Netlink> {
        let (fd, port_id) = open_socket(0, 0)?;
        // Strict checking lets the kernel filter dumps by table / interface; older kernels
        // lack it and we filter in user space anyway, so failure is fine.
        let _ = set_int_opt(
            fd.as_raw_fd(),
            libc::SOL_NETLINK,
            libc::NETLINK_GET_STRICT_CHK,
            1,
        );
        // The kernel always answers, but a daemon must never hang on it forever.
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        let (level, name) = (libc::SOL_SOCKET, libc::SO_RCVTIMEO);
        socket::setsockopt(fd.as_raw_fd(), level, name, &tv)?;
        Ok(Netlink::with_fd(fd, port_id))
    }

    /// A non-blocking socket subscribed to link, IPv4 address and IPv4 route changes; poll
    /// its fd for readability and call [`read_events`](Self::read_events).
    pub fn open_monitor() -> io::Result<Netlink> {
        let groups =
            (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV4_ROUTE) as u32;
        let (fd, port_id) = open_socket(libc::SOCK_NONBLOCK, groups)?;
        // Bursts (an interface flapping with many addresses) should not overrun a small
        // default buffer; best effort.
        let _ = set_int_opt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            256 * 1024,
        );
        Ok(Netlink::with_fd(fd, port_id))
    }

    /// Installs a function that sees the raw bytes of every datagram received: for hex
    /// dumps while debugging and for capturing fuzz seeds from a live kernel.
    pub fn set_tap(&mut self, tap: Option<fn(&[u8])>) {
        self.tap = tap;
    }

    /// Sends one request: header, fixed family header `body`, and optionally one attribute.
    fn send(
        &mut self,
        kind: u16,
        flags: u16,
        body: &[u8],
        attr: Option<(u16, &[u8])>,
    ) -> Result<u32, NlError> {
        let mut req = [0u8; REQUEST_LEN];
        let seq = self.seq.wrapping_add(1).max(1);
        let end = encode_request(&mut req, kind, flags, seq, body, attr)?;
        self.seq = seq;
        let mut kernel: libc::sockaddr_nl = socket::zeroed();
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let fd = self.fd.as_raw_fd();
        let to_len = socket::len_of::<libc::sockaddr_nl>();
        match socket::send_to(fd, &req[..end], 0, &kernel, to_len) {
            Ok(n) if n == end => Ok(self.seq),
            Ok(_) => Err(NlError::Io(libc::EIO)),
            Err(e) => Err(NlError::from_io(&e)),
        }
    }

    /// Receives one datagram into the buffer. `MSG_TRUNC` makes the kernel report the real
    /// length, so a datagram that did not fit is an error rather than silent data loss.
    fn recv(&mut self, flags: libc::c_int) -> Result<usize, NlError> {
        let fd = self.fd.as_raw_fd();
        let n = socket::recv(fd, &mut self.buf, flags | libc::MSG_TRUNC)
            .map_err(|e| NlError::from_io(&e))?;
        if let Some(tap) = self.tap {
            tap(&self.buf[..n.min(self.buf.len())]);
        }
        if n > self.buf.len() {
            return Err(NlError::BufferTooSmall);
        }
        Ok(n)
    }

    /// Sends a request and feeds every data message of its reply to `on_msg`.
    fn transact(
        &mut self,
        kind: u16,
        flags: u16,
        body: &[u8],
        attr: Option<(u16, &[u8])>,
        mut on_msg: impl FnMut(MessageView<'_>) -> Result<(), NlError>,
    ) -> Result<(), NlError> {
        let seq = self.send(kind, flags, body, attr)?;
        let mut state = ReplyState::new(seq, self.port_id);
        loop {
            let n = self.recv(0)?;
            if state.feed(&self.buf[..n], &mut on_msg)? == ReplyStatus::Done {
                return Ok(());
            }
        }
    }

    /// Runs a dump, retrying when the kernel says it changed underneath us.
    fn dump(&mut self, kind: u16, body: &[u8], sink: &mut impl DumpSink) -> Result<(), NlError> {
        let mut tries = 0;
        loop {
            sink.reset();
            match self.transact(kind, NLM_F_DUMP, body, None, |m| sink.feed(&m)) {
                Err(NlError::Interrupted) if tries + 1 < DUMP_RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    /// The IPv4 default route of the main table with the lowest metric, if any.
    pub fn default_route(&mut self) -> Result<Option<DefaultRoute>, NlError> {
        let req = RtMsg {
            family: AF_INET,
            table: libc::RT_TABLE_MAIN,
            ..RtMsg::default()
        };
        let mut sel = DefaultRouteSelector::default();
        self.dump(libc::RTM_GETROUTE, req.as_bytes(), &mut sel)?;
        Ok(sel.best)
    }

    /// The link with this index, or `None` if there is none.
    pub fn link(&mut self, ifindex: u32) -> Result<Option<LinkInfo>, NlError> {
        let Ok(index) = i32::try_from(ifindex) else {
            return Ok(None);
        };
        if index == 0 {
            return Ok(None);
        }
        let req = IfInfoMsg {
            index,
            ..IfInfoMsg::default()
        };
        self.get_link(req.as_bytes(), None)
    }

    /// The link with this name, or `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>, NlError> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.as_bytes().contains(&0) {
            return Ok(None);
        }
        let mut raw = [0u8; IFNAMSIZ];
        raw[..name.len()].copy_from_slice(name.as_bytes());
        let req = IfInfoMsg::default();
        self.get_link(
            req.as_bytes(),
            Some((libc::IFLA_IFNAME, &raw[..=name.len()])),
        )
    }

    fn get_link(
        &mut self,
        body: &[u8],
        attr: Option<(u16, &[u8])>,
    ) -> Result<Option<LinkInfo>, NlError> {
        let mut found = None;
        let r = self.transact(libc::RTM_GETLINK, 0, body, attr, |m| {
            if m.header.kind == libc::RTM_NEWLINK {
                found = Some(parse_link(m.payload)?);
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok(found),
            Err(NlError::Kernel(libc::ENODEV)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The IPv4 addresses of one interface, the primary ones first (at most 8).
    pub fn ipv4_addrs(
        &mut self,
        ifindex: u32,
        out: &mut ArrayVec<Ipv4Addr, 8>,
    ) -> Result<(), NlError> {
        out.clear();
        let req = IfAddrMsg {
            family: AF_INET,
            index: ifindex,
            ..IfAddrMsg::default()
        };
        let mut col = AddrCollector::new(ifindex);
        self.dump(libc::RTM_GETADDR, req.as_bytes(), &mut col)?;
        col.finish(out);
        Ok(())
    }

    /// The interface's primary IPv4 address: the node identity announced to
    /// the cluster. The first address that may be a node's; on an interface
    /// with loopback addresses only (`lo`, a single-machine try), the first
    /// of them, which no other node accepts.
    pub fn primary_ipv4(&mut self, ifindex: u32) -> Result<Option<Ipv4Addr>, NlError> {
        let mut out = ArrayVec::new();
        self.ipv4_addrs(ifindex, &mut out)?;
        let node = out
            .iter()
            .copied()
            .find(|&a| crate::wire::is_valid_node_addr(a));
        Ok(node.or_else(|| out.first().copied().filter(Ipv4Addr::is_loopback)))
    }

    /// Drains a monitor socket until it would block, calling `f` per event. Lost
    /// notifications (`ENOBUFS`, an oversized or unparsable datagram) become
    /// [`Event::Overrun`] so the daemon re-reads its state instead of trusting a gap.
    pub fn read_events(&mut self, mut f: impl FnMut(Event)) -> Result<(), NlError> {
        loop {
            let n = match self.recv(libc::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(NlError::Io(e)) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => return Ok(()),
                Err(NlError::Io(libc::ENOBUFS)) | Err(NlError::BufferTooSmall) => {
                    f(Event::Overrun);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if parse_events(&self.buf[..n], &mut f).is_err() {
                f(Event::Overrun);
            }
        }
    }
}

impl AsRawFd for Netlink {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Netlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
