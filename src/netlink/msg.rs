//! The pure half of [`crate::netlink`]: rtnetlink messages as bytes. Headers, the walk
//! over messages and attributes, the per-type parsers, events, the request/reply state
//! machine, the dump collectors and request encoding. Everything here works on any byte
//! slice, makes no system call, never panics and never allocates, so it can be fuzzed
//! (`fuzz_check`) and unit-tested without a socket; `unsafe` is forbidden.
//!
//! Headers are modelled on netlink-packet-route, but attributes are walked in place instead
//! of being collected into a `Vec`. Netlink is host byte order, so header fields are native
//! integers. Headers are *copied* out with `read_from_prefix` rather than referenced: the
//! parsers accept arbitrary slices (fixtures, fuzz input) that need not be 4-byte aligned.
//!
//! Error convention of the parsers: [`NlError::Truncated`] when fewer bytes are present than
//! a fixed header needs or than a length field claims; [`NlError::Malformed`] when a length
//! field is impossible (smaller than its own header) or a value has the wrong size.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::net::Ipv4Addr;

use arrayvec::ArrayVec;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Netlink messages and attributes are padded to 4 bytes.
const NLMSG_ALIGNTO: usize = 4;
/// Length of [`NlMsgHdr`].
pub const NLMSG_HDRLEN: usize = size_of::<NlMsgHdr>();
/// Length of [`RtAttrHdr`].
const RTA_HDRLEN: usize = size_of::<RtAttrHdr>();

// Message types and flags: libc has them as `c_int`, the header fields are `u16`.
const NLMSG_NOOP: u16 = libc::NLMSG_NOOP as u16;
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const NLMSG_OVERRUN: u16 = libc::NLMSG_OVERRUN as u16;
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_MULTI: u16 = libc::NLM_F_MULTI as u16;
pub const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
const NLM_F_DUMP_INTR: u16 = libc::NLM_F_DUMP_INTR as u16;
const NLA_TYPE_MASK: u16 = libc::NLA_TYPE_MASK as u16;
pub const AF_INET: u8 = libc::AF_INET as u8;
const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;
/// `IFA_FLAGS` (u32 flags superseding the 8-bit `ifa_flags`); libc does not export it.
const IFA_FLAGS: u16 = 8;
const IFF_UP: u32 = libc::IFF_UP as u32;
const IFF_RUNNING: u32 = libc::IFF_RUNNING as u32;
const IFF_MULTICAST: u32 = libc::IFF_MULTICAST as u32;
const IFF_LOOPBACK: u32 = libc::IFF_LOOPBACK as u32;
/// Linux interface names are at most 15 bytes plus a NUL.
pub const IFNAMSIZ: usize = 16;

/// `struct nlmsghdr`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NlMsgHdr {
    /// Length of the message including this header.
    pub len: u32,
    /// Message type (`RTM_*`, `NLMSG_*`).
    pub kind: u16,
    /// `NLM_F_*`.
    pub flags: u16,
    /// Sequence number, echoed by the kernel in replies.
    pub seq: u32,
    /// Port id of the requester (replies) or originator (notifications).
    pub pid: u32,
}

/// `struct rtattr` / `struct nlattr` header.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct RtAttrHdr {
    /// Length including this header, excluding trailing padding.
    pub len: u16,
    /// Attribute type, possibly with `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER`.
    pub kind: u16,
}

/// `struct rtmsg` (routes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct RtMsg {
    pub family: u8,
    pub dst_len: u8,
    pub src_len: u8,
    pub tos: u8,
    /// Routing table id when below 256; `RTA_TABLE` carries the full value.
    pub table: u8,
    pub protocol: u8,
    pub scope: u8,
    /// `RTN_*` route type.
    pub kind: u8,
    pub flags: u32,
}

/// `struct ifinfomsg` (links).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct IfInfoMsg {
    pub family: u8,
    pub pad: u8,
    /// `ARPHRD_*` device type.
    pub kind: u16,
    pub index: i32,
    /// `IFF_*` device flags.
    pub flags: u32,
    pub change: u32,
}

/// `struct ifaddrmsg` (addresses).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct IfAddrMsg {
    pub family: u8,
    pub prefix_len: u8,
    /// Low 8 bits of the `IFA_F_*` flags; `IFA_FLAGS` carries all of them.
    pub flags: u8,
    pub scope: u8,
    pub index: u32,
}

/// `struct rtnexthop`, the element of `RTA_MULTIPATH`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct RtNexthop {
    /// Length including this header and the nexthop's attributes.
    pub len: u16,
    pub flags: u8,
    pub hops: u8,
    pub ifindex: i32,
}

/// Everything that can go wrong talking to or parsing rtnetlink. `Copy` and allocation-free
/// so the event loop can pass it around and log it freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NlError {
    /// A socket call failed with this errno.
    Io(i32),
    /// Fewer bytes than a header needs or than a length field claims.
    Truncated,
    /// A length field or value that cannot be right.
    Malformed,
    /// The kernel answered with `NLMSG_ERROR` carrying this (positive) errno.
    Kernel(i32),
    /// The kernel dropped messages (`NLMSG_OVERRUN` / `ENOBUFS`): state must be re-read.
    Overrun,
    /// A datagram or request did not fit the fixed buffer.
    BufferTooSmall,
    /// The dump changed while it was being read (`NLM_F_DUMP_INTR`), even after retries.
    Interrupted,
}

impl NlError {
    pub fn from_io(e: &io::Error) -> NlError {
        NlError::Io(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Names of the errnos rtnetlink actually returns, so logs are readable without `strerror`
/// (which would allocate through `io::Error`'s `Display`).
fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOBUFS => "ENOBUFS",
        libc::ECONNREFUSED => "ECONNREFUSED",
        _ => return None,
    })
}

fn fmt_errno(f: &mut fmt::Formatter<'_>, e: i32) -> fmt::Result {
    match errno_name(e) {
        Some(name) => write!(f, "{name} (errno {e})"),
        None => write!(f, "errno {e}"),
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NlError::Io(e) => {
                f.write_str("netlink socket error: ")?;
                fmt_errno(f, e)
            }
            NlError::Truncated => f.write_str("netlink message truncated"),
            NlError::Malformed => f.write_str("malformed netlink message"),
            NlError::Kernel(e) => {
                f.write_str("kernel refused netlink request: ")?;
                fmt_errno(f, e)
            }
            NlError::Overrun => f.write_str("netlink messages lost (overrun)"),
            NlError::BufferTooSmall => f.write_str("netlink message larger than the buffer"),
            NlError::Interrupted => f.write_str("netlink dump kept changing while read"),
        }
    }
}

impl std::error::Error for NlError {}

impl From<NlError> for io::Error {
    fn from(e: NlError) -> io::Error {
        match e {
            NlError::Io(n) | NlError::Kernel(n) => io::Error::from_raw_os_error(n),
            NlError::Overrun => io::Error::from_raw_os_error(libc::ENOBUFS),
            NlError::BufferTooSmall => io::Error::from_raw_os_error(libc::EMSGSIZE),
            NlError::Interrupted => io::Error::from(io::ErrorKind::Interrupted),
            NlError::Truncated | NlError::Malformed => io::Error::from(io::ErrorKind::InvalidData),
        }
    }
}

/// `NLMSG_ALIGN`: saturating so a hostile length cannot overflow on 32-bit targets.
const fn nlmsg_align(len: usize) -> usize {
    len.saturating_add(NLMSG_ALIGNTO - 1) & !(NLMSG_ALIGNTO - 1)
}

/// Copies a header out of the front of `bytes` (no alignment requirement).
fn read_hdr<T: FromBytes>(bytes: &[u8]) -> Result<T, NlError> {
    T::read_from_prefix(bytes)
        .map(|(v, _)| v)
        .map_err(|_| NlError::Truncated)
}

// ---------------------------------------------------------------------------------------
// Message and attribute walking
// ---------------------------------------------------------------------------------------

/// A netlink record: a fixed header whose length field counts the header itself, then a
/// payload, then padding to 4 bytes. Messages (`nlmsghdr`), attributes (`rtattr`) and
/// multipath nexthops (`rtnexthop`) are all framed this way, so one iterator,
/// [`Records`], walks them all.
pub trait Record<'a>: Sized {
    /// The fixed header at the front of each record.
    type Header: FromBytes;
    /// The header's length field: header plus payload, excluding trailing padding.
    fn len(header: &Self::Header) -> usize;
    /// The record made of its header and the payload bytes after it.
    fn new(header: Self::Header, payload: &'a [u8]) -> Self;
}

/// Iterator over a run of records of one kind, walked in place. Yields an error once and
/// then stops when the framing is broken, since nothing after a bad length can be trusted.
#[derive(Debug)]
pub struct Records<'a, R> {
    rest: &'a [u8],
    kind: PhantomData<fn() -> R>,
}

impl<'a, R: Record<'a>> Records<'a, R> {
    /// Walks the records in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Records {
            rest: buf,
            kind: PhantomData,
        }
    }
}

impl<'a, R: Record<'a>> Iterator for Records<'a, R> {
    type Item = Result<R, NlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let header: R::Header = match read_hdr(rest) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let len = R::len(&header);
        let header_len = size_of::<R::Header>();
        if len < header_len {
            return Some(Err(NlError::Malformed));
        }
        let Some(payload) = rest.get(header_len..len) else {
            return Some(Err(NlError::Truncated));
        };
        // The last record of a run may omit its padding.
        self.rest = rest.get(nlmsg_align(len)..).unwrap_or(&[]);
        Some(Ok(R::new(header, payload)))
    }
}

/// One netlink message inside a received buffer: its header and the bytes after it.
#[derive(Clone, Copy, Debug)]
pub struct MessageView<'a> {
    pub header: NlMsgHdr,
    /// `nlmsg_len - NLMSG_HDRLEN` bytes following the header.
    pub payload: &'a [u8],
}

impl<'a> Record<'a> for MessageView<'a> {
    type Header = NlMsgHdr;
    fn len(header: &NlMsgHdr) -> usize {
        header.len as usize
    }
    fn new(header: NlMsgHdr, payload: &'a [u8]) -> Self {
        MessageView { header, payload }
    }
}

/// The messages of one datagram.
pub type Messages<'a> = Records<'a, MessageView<'a>>;

/// Walks the messages of one datagram in place.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Records::new(buf)
}

/// Calls `f` for every message of one datagram, stopping at the first error (framing or
/// returned by `f`).
pub fn walk_messages<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(MessageView<'a>) -> Result<(), NlError>,
) -> Result<(), NlError> {
    for m in messages(buf) {
        f(m?)?;
    }
    Ok(())
}

/// One attribute: its type (flags masked off) and its payload.
#[derive(Clone, Copy, Debug)]
pub struct Attr<'a> {
    /// Type with `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` masked off.
    pub kind: u16,
    pub payload: &'a [u8],
}

impl<'a> Record<'a> for Attr<'a> {
    type Header = RtAttrHdr;
    fn len(header: &RtAttrHdr) -> usize {
        usize::from(header.len)
    }
    fn new(header: RtAttrHdr, payload: &'a [u8]) -> Self {
        Attr {
            kind: header.kind & NLA_TYPE_MASK,
            payload,
        }
    }
}

impl Attr<'_> {
    /// A native-endian `u32` value; any other size is malformed.
    pub fn u32(&self) -> Result<u32, NlError> {
        let b: [u8; 4] = self.payload.try_into().map_err(|_| NlError::Malformed)?;
        Ok(u32::from_ne_bytes(b))
    }

    /// An IPv4 address (network order on the wire, as in `struct in_addr`).
    pub fn ipv4(&self) -> Result<Ipv4Addr, NlError> {
        let b: [u8; 4] = self.payload.try_into().map_err(|_| NlError::Malformed)?;
        Ok(Ipv4Addr::from(b))
    }
}

/// A run of attributes (a nested attribute's payload is one too).
pub type Attrs<'a> = Records<'a, Attr<'a>>;

/// Walks the attributes in `buf` in place.
pub fn attrs(buf: &[u8]) -> Attrs<'_> {
    Records::new(buf)
}

/// One `rtnexthop` of an `RTA_MULTIPATH` payload and the attributes after its header.
#[derive(Clone, Copy, Debug)]
struct Nexthop<'a> {
    header: RtNexthop,
    attrs: &'a [u8],
}

impl<'a> Record<'a> for Nexthop<'a> {
    type Header = RtNexthop;
    fn len(header: &RtNexthop) -> usize {
        usize::from(header.len)
    }
    fn new(header: RtNexthop, attrs: &'a [u8]) -> Self {
        Nexthop { header, attrs }
    }
}

/// Splits a message payload into its fixed family header and the attributes after it.
fn split_fixed<T: FromBytes>(payload: &[u8]) -> Result<(T, Attrs<'_>), NlError> {
    let hdr: T = read_hdr(payload)?;
    let at = nlmsg_align(size_of::<T>());
    Ok((hdr, attrs(payload.get(at..).unwrap_or(&[]))))
}

// ---------------------------------------------------------------------------------------
// Per-type parsers
// ---------------------------------------------------------------------------------------

/// The fields of a route message the daemon cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub family: u8,
    /// `RTA_TABLE` when present, else `rtm_table`.
    pub table: u32,
    pub dst_len: u8,
    /// `RTN_*`.
    pub kind: u8,
    /// `RTA_OIF`, or for a multipath route without one the first nexthop's interface.
    pub ifindex: Option<u32>,
    /// `RTA_PRIORITY`; absent means 0.
    pub metric: u32,
    /// `RTA_GATEWAY` (IPv4 routes only), or the first nexthop's for multipath routes.
    pub gateway: Option<Ipv4Addr>,
}

impl RouteInfo {
    /// An IPv4 unicast `0.0.0.0/0` route in the main table: what "the default route" means
    /// for picking the interface to announce on.
    pub fn is_ipv4_main_default(&self) -> bool {
        self.family == AF_INET
            && self.table == u32::from(libc::RT_TABLE_MAIN)
            && self.dst_len == 0
            && self.kind == libc::RTN_UNICAST
    }
}

/// Parses the payload of an `RTM_NEWROUTE` / `RTM_DELROUTE` message.
///
/// Multipath routes (`RTA_MULTIPATH`) without `RTA_OIF` report their *first* nexthop's
/// interface and gateway: the daemon needs one interface to announce on, and the first
/// nexthop is as good as any and stable across dumps.
pub fn parse_route(payload: &[u8]) -> Result<RouteInfo, NlError> {
    let (rtm, attrs): (RtMsg, _) = split_fixed(payload)?;
    let mut info = RouteInfo {
        family: rtm.family,
        table: u32::from(rtm.table),
        dst_len: rtm.dst_len,
        kind: rtm.kind,
        ifindex: None,
        metric: 0,
        gateway: None,
    };
    let mut first_hop: Option<(u32, Option<Ipv4Addr>)> = None;
    for a in attrs {
        let a = a?;
        match a.kind {
            libc::RTA_TABLE => info.table = a.u32()?,
            libc::RTA_OIF => info.ifindex = Some(a.u32()?),
            libc::RTA_PRIORITY => info.metric = a.u32()?,
            libc::RTA_GATEWAY if rtm.family == AF_INET => info.gateway = Some(a.ipv4()?),
            libc::RTA_MULTIPATH => first_hop = first_nexthop(a.payload, rtm.family)?,
            _ => {}
        }
    }
    if let (None, Some((idx, gw))) = (info.ifindex, first_hop) {
        info.ifindex = Some(idx);
        if info.gateway.is_none() {
            info.gateway = gw;
        }
    }
    Ok(info)
}

/// The first `rtnexthop` of an `RTA_MULTIPATH` payload: its interface and gateway.
fn first_nexthop(buf: &[u8], family: u8) -> Result<Option<(u32, Option<Ipv4Addr>)>, NlError> {
    let Some(nh) = Records::<Nexthop<'_>>::new(buf).next() else {
        return Ok(None);
    };
    let nh = nh?;
    let mut gw = None;
    for a in attrs(nh.attrs) {
        let a = a?;
        if a.kind == libc::RTA_GATEWAY && family == AF_INET {
            gw = Some(a.ipv4()?);
        }
    }
    Ok(Some((nh.header.ifindex as u32, gw)))
}

/// An interface as the daemon sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    /// `IFLA_IFNAME`; bytes that are not UTF-8 show as `?`.
    pub name: heapless::String<IFNAMSIZ>,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_RUNNING`: operationally up (carrier present).
    pub running: bool,
    /// `IFF_MULTICAST`: announcements can be sent here.
    pub multicast: bool,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// All `IFF_*` flags, for logging.
    pub flags: u32,
}

/// Parses the payload of an `RTM_NEWLINK` / `RTM_DELLINK` message.
pub fn parse_link(payload: &[u8]) -> Result<LinkInfo, NlError> {
    let (ifi, attrs): (IfInfoMsg, _) = split_fixed(payload)?;
    let flags = ifi.flags;
    let mut info = LinkInfo {
        ifindex: ifi.index as u32,
        name: heapless::String::new(),
        up: flags & IFF_UP != 0,
        running: flags & IFF_RUNNING != 0,
        multicast: flags & IFF_MULTICAST != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        flags,
    };
    for a in attrs {
        let a = a?;
        if a.kind == libc::IFLA_IFNAME {
            info.name = ifname(a.payload);
        }
    }
    Ok(info)
}

/// Decodes an `IFLA_IFNAME` payload (NUL-terminated, at most 15 bytes kept).
fn ifname(raw: &[u8]) -> heapless::String<IFNAMSIZ> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let raw = &raw[..end.min(IFNAMSIZ - 1)];
    let mut name = heapless::String::new();
    match std::str::from_utf8(raw) {
        // Cannot fail: at most 15 bytes into a 16-byte string.
        Ok(s) => {
            let _ = name.push_str(s);
        }
        Err(_) => {
            for &b in raw {
                let c = if b.is_ascii() { char::from(b) } else { '?' };
                let _ = name.push(c);
            }
        }
    }
    name
}

/// The fields of an address message the daemon cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    pub family: u8,
    pub ifindex: u32,
    pub prefix_len: u8,
    /// `IFA_FLAGS` when present, else `ifa_flags`.
    pub flags: u32,
    /// `IFA_LOCAL` (IPv4 only): the interface's own address.
    pub local: Option<Ipv4Addr>,
    /// `IFA_ADDRESS` (IPv4 only): the peer on point-to-point links, else equal to local.
    pub address: Option<Ipv4Addr>,
}

impl AddrInfo {
    /// The interface's own address: `IFA_LOCAL`, falling back to `IFA_ADDRESS` because on
    /// point-to-point links `IFA_ADDRESS` is the peer.
    pub fn addr(&self) -> Option<Ipv4Addr> {
        self.local.or(self.address)
    }

    /// Secondary addresses (same subnet as an earlier one) are never the node identity.
    pub fn is_secondary(&self) -> bool {
        self.flags & libc::IFA_F_SECONDARY != 0
    }
}

/// Parses the payload of an `RTM_NEWADDR` / `RTM_DELADDR` message.
pub fn parse_addr(payload: &[u8]) -> Result<AddrInfo, NlError> {
    let (ifa, attrs): (IfAddrMsg, _) = split_fixed(payload)?;
    let mut info = AddrInfo {
        family: ifa.family,
        ifindex: ifa.index,
        prefix_len: ifa.prefix_len,
        flags: u32::from(ifa.flags),
        local: None,
        address: None,
    };
    for a in attrs {
        let a = a?;
        match a.kind {
            IFA_FLAGS => info.flags = a.u32()?,
            libc::IFA_LOCAL if ifa.family == AF_INET => info.local = Some(a.ipv4()?),
            libc::IFA_ADDRESS if ifa.family == AF_INET => info.address = Some(a.ipv4()?),
            _ => {}
        }
    }
    Ok(info)
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// A change notification from the monitor socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A link appeared or changed (flags, name, carrier...).
    Link {
        ifindex: u32,
        up: bool,
        running: bool,
    },
    /// A link was deleted.
    LinkRemoved { ifindex: u32 },
    /// An IPv4 address was added.
    AddrAdded { ifindex: u32, addr: Ipv4Addr },
    /// An IPv4 address was removed.
    AddrRemoved { ifindex: u32, addr: Ipv4Addr },
    /// An IPv4 main-table default route appeared (ifindex 0 if it has no interface).
    DefaultRouteAdded { ifindex: u32 },
    /// An IPv4 main-table default route went away. The kernel does not notify routes
    /// flushed because their link went down: watch [`Event::Link`] too.
    DefaultRouteRemoved { ifindex: u32 },
    /// Notifications were lost or unreadable: re-read the whole state.
    Overrun,
}

/// Turns one notification message into an [`Event`], or `None` for messages the daemon does
/// not care about (other families, non-default routes, bridge port messages...).
pub fn parse_event(msg: &MessageView<'_>) -> Result<Option<Event>, NlError> {
    let ev = match msg.header.kind {
        NLMSG_OVERRUN => Some(Event::Overrun),
        libc::RTM_NEWLINK | libc::RTM_DELLINK => {
            let (ifi, _): (IfInfoMsg, _) = split_fixed(msg.payload)?;
            // AF_BRIDGE messages describe bridge ports; RTM_DELLINK there means "left the
            // bridge", not "device gone".
            if ifi.family != AF_UNSPEC {
                return Ok(None);
            }
            let link = parse_link(msg.payload)?;
            if msg.header.kind == libc::RTM_NEWLINK {
                Some(Event::Link {
                    ifindex: link.ifindex,
                    up: link.up,
                    running: link.running,
                })
            } else {
                Some(Event::LinkRemoved {
                    ifindex: link.ifindex,
                })
            }
        }
        libc::RTM_NEWADDR | libc::RTM_DELADDR => {
            let a = parse_addr(msg.payload)?;
            match (a.family == AF_INET, a.addr()) {
                (true, Some(addr)) if msg.header.kind == libc::RTM_NEWADDR => {
                    Some(Event::AddrAdded {
                        ifindex: a.ifindex,
                        addr,
                    })
                }
                (true, Some(addr)) => Some(Event::AddrRemoved {
                    ifindex: a.ifindex,
                    addr,
                }),
                _ => None,
            }
        }
        libc::RTM_NEWROUTE | libc::RTM_DELROUTE => {
            let r = parse_route(msg.payload)?;
            if !r.is_ipv4_main_default() {
                return Ok(None);
            }
            let ifindex = r.ifindex.unwrap_or(0);
            if msg.header.kind == libc::RTM_NEWROUTE {
                Some(Event::DefaultRouteAdded { ifindex })
            } else {
                Some(Event::DefaultRouteRemoved { ifindex })
            }
        }
        _ => None,
    };
    Ok(ev)
}

/// Calls `f` for every event in one notification datagram. Stops at the first framing or
/// parse error, after delivering the events before it.
pub fn parse_events(buf: &[u8], mut f: impl FnMut(Event)) -> Result<(), NlError> {
    walk_messages(buf, |m| {
        if let Some(ev) = parse_event(&m)? {
            f(ev);
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// Request/reply state machine (pure)
// ---------------------------------------------------------------------------------------

/// Whether a reply is complete after one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    /// More datagrams belong to this reply.
    More,
    /// `NLMSG_DONE`, an ACK, or a single non-multipart answer was seen.
    Done,
}

/// Tracks one request's reply across datagrams: filters foreign messages by sequence number
/// and port id, turns `NLMSG_ERROR` into [`NlError::Kernel`], and notices the end.
#[derive(Clone, Copy, Debug)]
pub struct ReplyState {
    seq: u32,
    port_id: u32,
    interrupted: bool,
}

impl ReplyState {
    /// A reply to the request sent with `seq` from the socket bound to `port_id`.
    pub fn new(seq: u32, port_id: u32) -> ReplyState {
        ReplyState {
            seq,
            port_id,
            interrupted: false,
        }
    }

    /// Feeds one datagram, handing each data message of this reply to `on_msg`.
    pub fn feed(
        &mut self,
        buf: &[u8],
        mut on_msg: impl FnMut(MessageView<'_>) -> Result<(), NlError>,
    ) -> Result<ReplyStatus, NlError> {
        for m in messages(buf) {
            let m = m?;
            // Late parts of an earlier, abandoned request: not ours.
            if m.header.seq != self.seq || m.header.pid != self.port_id {
                continue;
            }
            if m.header.flags & NLM_F_DUMP_INTR != 0 {
                self.interrupted = true;
            }
            match m.header.kind {
                NLMSG_NOOP => {}
                NLMSG_OVERRUN => return Err(NlError::Overrun),
                NLMSG_ERROR => {
                    let code = read_i32(m.payload)?;
                    return match code {
                        0 => Ok(ReplyStatus::Done),
                        c if c < 0 => Err(NlError::Kernel(c.saturating_neg())),
                        _ => Err(NlError::Malformed),
                    };
                }
                NLMSG_DONE => {
                    // A dump may end with an error code in DONE's payload (optional).
                    if let Ok(c) = read_i32(m.payload) {
                        if c < 0 {
                            return Err(NlError::Kernel(c.saturating_neg()));
                        }
                    }
                    return if self.interrupted {
                        Err(NlError::Interrupted)
                    } else {
                        Ok(ReplyStatus::Done)
                    };
                }
                _ => {
                    on_msg(m)?;
                    if m.header.flags & NLM_F_MULTI == 0 {
                        return Ok(ReplyStatus::Done);
                    }
                }
            }
        }
        Ok(ReplyStatus::More)
    }
}

fn read_i32(b: &[u8]) -> Result<i32, NlError> {
    let b: [u8; 4] = b
        .get(..4)
        .ok_or(NlError::Truncated)?
        .try_into()
        .map_err(|_| NlError::Truncated)?;
    Ok(i32::from_ne_bytes(b))
}

// ---------------------------------------------------------------------------------------
// Reply collectors (pure, shared by the socket API and fuzz_check)
// ---------------------------------------------------------------------------------------

/// A consumer of dump messages that can start over when the dump is retried.
pub trait DumpSink {
    fn reset(&mut self);
    fn feed(&mut self, m: &MessageView<'_>) -> Result<(), NlError>;
}

impl DumpSink for DefaultRouteSelector {
    fn reset(&mut self) {
        self.best = None;
    }
    fn feed(&mut self, m: &MessageView<'_>) -> Result<(), NlError> {
        DefaultRouteSelector::feed(self, m)
    }
}

impl DumpSink for AddrCollector {
    fn reset(&mut self) {
        self.primary.clear();
        self.secondary.clear();
    }
    fn feed(&mut self, m: &MessageView<'_>) -> Result<(), NlError> {
        AddrCollector::feed(self, m)
    }
}

/// The route the daemon follows to pick its interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    pub ifindex: u32,
    pub metric: u32,
    pub gateway: Option<Ipv4Addr>,
}

/// Keeps the lowest-metric IPv4 main-table default route seen in a route dump; the first
/// one wins ties, as the kernel's own lookup does.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRouteSelector {
    pub best: Option<DefaultRoute>,
}

impl DefaultRouteSelector {
    pub fn feed(&mut self, m: &MessageView<'_>) -> Result<(), NlError> {
        if m.header.kind != libc::RTM_NEWROUTE {
            return Ok(());
        }
        let r = parse_route(m.payload)?;
        let Some(ifindex) = r.ifindex.filter(|_| r.is_ipv4_main_default()) else {
            return Ok(());
        };
        if self.best.is_none_or(|b| r.metric < b.metric) {
            self.best = Some(DefaultRoute {
                ifindex,
                metric: r.metric,
                gateway: r.gateway,
            });
        }
        Ok(())
    }
}

/// Collects one interface's IPv4 addresses from an address dump, primaries before
/// secondaries, each group in kernel order; at most 8 are kept.
#[derive(Clone, Debug)]
pub struct AddrCollector {
    ifindex: u32,
    primary: ArrayVec<Ipv4Addr, 8>,
    secondary: ArrayVec<Ipv4Addr, 8>,
}

impl AddrCollector {
    pub fn new(ifindex: u32) -> AddrCollector {
        AddrCollector {
            ifindex,
            primary: ArrayVec::new(),
            secondary: ArrayVec::new(),
        }
    }

    pub fn feed(&mut self, m: &MessageView<'_>) -> Result<(), NlError> {
        if m.header.kind != libc::RTM_NEWADDR {
            return Ok(());
        }
        let a = parse_addr(m.payload)?;
        if a.family != AF_INET || a.ifindex != self.ifindex {
            return Ok(());
        }
        if let Some(addr) = a.addr() {
            let list = if a.is_secondary() {
                &mut self.secondary
            } else {
                &mut self.primary
            };
            let _ = list.try_push(addr);
        }
        Ok(())
    }

    /// Writes primaries then secondaries into `out` (cleared first).
    pub fn finish(&self, out: &mut ArrayVec<Ipv4Addr, 8>) {
        out.clear();
        for &a in self.primary.iter().chain(self.secondary.iter()) {
            if out.try_push(a).is_err() {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// Room for the largest request the daemon sends: a header, a family header and one small
/// attribute (an interface name).
pub const REQUEST_LEN: usize = 64;

/// Encodes one request into `out`: the header (`seq`, and `flags` with `NLM_F_REQUEST`
/// added), the fixed family header `body`, and optionally one attribute. Returns its
/// length, or [`NlError::BufferTooSmall`] when it does not fit.
pub fn encode_request(
    out: &mut [u8; REQUEST_LEN],
    kind: u16,
    flags: u16,
    seq: u32,
    body: &[u8],
    attr: Option<(u16, &[u8])>,
) -> Result<usize, NlError> {
    let body_at = NLMSG_HDRLEN;
    let attr_at = body_at + nlmsg_align(body.len());
    let end = match attr {
        Some((_, data)) => attr_at + RTA_HDRLEN + data.len(),
        None => body_at + body.len(),
    };
    if end > out.len() {
        return Err(NlError::BufferTooSmall);
    }
    let hdr = NlMsgHdr {
        len: end as u32,
        kind,
        flags: flags | NLM_F_REQUEST,
        seq,
        pid: 0,
    };
    out[..NLMSG_HDRLEN].copy_from_slice(hdr.as_bytes());
    out[body_at..body_at + body.len()].copy_from_slice(body);
    if let Some((akind, data)) = attr {
        let ahdr = RtAttrHdr {
            len: (RTA_HDRLEN + data.len()) as u16,
            kind: akind,
        };
        out[attr_at..attr_at + RTA_HDRLEN].copy_from_slice(ahdr.as_bytes());
        out[attr_at + RTA_HDRLEN..end].copy_from_slice(data);
    }
    Ok(end)
}

// ---------------------------------------------------------------------------------------
// Fuzzing
// ---------------------------------------------------------------------------------------

/// Feeds arbitrary bytes through every parser, as a dump reply and as an event batch. Must
/// never panic; the fuzz target and the seed-corpus replay test call it.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_check(data: &[u8]) {
    // Every message through every per-type parser, and every attribute walk.
    for m in messages(data) {
        let Ok(m) = m else { break };
        let _ = parse_route(m.payload);
        let _ = parse_link(m.payload);
        let _ = parse_addr(m.payload);
        let _ = parse_event(&m);
        let _ = read_i32(m.payload);
        for skip in [
            0,
            size_of::<RtMsg>(),
            size_of::<IfAddrMsg>(),
            size_of::<IfInfoMsg>(),
        ] {
            for a in attrs(m.payload.get(skip..).unwrap_or(&[])) {
                let Ok(a) = a else { break };
                let _ = (a.u32(), a.ipv4());
                for n in attrs(a.payload) {
                    if n.is_err() {
                        break;
                    }
                }
                let _ = first_nexthop(a.payload, AF_INET);
            }
        }
    }
    // As replies to a request, with the seq/pid of the first message so they are not all
    // ignored as foreign.
    let first: NlMsgHdr = read_hdr(data).unwrap_or_default();
    let mut routes = DefaultRouteSelector::default();
    let _ = ReplyState::new(first.seq, first.pid).feed(data, |m| routes.feed(&m));
    let ifindex = data
        .get(NLMSG_HDRLEN..)
        .map_or(0, |p| read_hdr::<IfAddrMsg>(p).map_or(0, |a| a.index));
    let mut addrs = AddrCollector::new(ifindex);
    let _ = ReplyState::new(first.seq, first.pid).feed(data, |m| addrs.feed(&m));
    let mut out = ArrayVec::new();
    addrs.finish(&mut out);
    let _ = ReplyState::new(first.seq, first.pid).feed(data, |m| parse_link(m.payload).map(drop));
    // As a notification batch.
    let _ = parse_events(data, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds netlink messages for fixtures.
    struct Msg(Vec<u8>);

    impl Msg {
        fn new(kind: u16, flags: u16, seq: u32, pid: u32) -> Msg {
            let hdr = NlMsgHdr {
                len: 0,
                kind,
                flags,
                seq,
                pid,
            };
            Msg(hdr.as_bytes().to_vec())
        }
        fn body(mut self, b: &[u8]) -> Msg {
            self.0.extend_from_slice(b);
            self.pad()
        }
        fn attr(mut self, kind: u16, data: &[u8]) -> Msg {
            let h = RtAttrHdr {
                len: (4 + data.len()) as u16,
                kind,
            };
            self.0.extend_from_slice(h.as_bytes());
            self.0.extend_from_slice(data);
            self.pad()
        }
        fn pad(mut self) -> Msg {
            while self.0.len() % 4 != 0 {
                self.0.push(0);
            }
            self
        }
        fn done(mut self) -> Vec<u8> {
            let len = self.0.len() as u32;
            self.0[..4].copy_from_slice(&len.to_ne_bytes());
            self.0
        }
    }

    fn route(table: u8, dst_len: u8, oif: u32, metric: Option<u32>) -> Msg {
        let rtm = RtMsg {
            family: AF_INET,
            dst_len,
            table,
            kind: libc::RTN_UNICAST,
            ..RtMsg::default()
        };
        let mut m = Msg::new(libc::RTM_NEWROUTE, NLM_F_MULTI, 7, 42)
            .body(rtm.as_bytes())
            .attr(libc::RTA_TABLE, &u32::from(table).to_ne_bytes())
            .attr(libc::RTA_OIF, &oif.to_ne_bytes())
            .attr(libc::RTA_GATEWAY, &[198, 18, 7, 1]);
        if let Some(p) = metric {
            m = m.attr(libc::RTA_PRIORITY, &p.to_ne_bytes());
        }
        m
    }

    fn done_msg(seq: u32, pid: u32) -> Vec<u8> {
        Msg::new(NLMSG_DONE, NLM_F_MULTI, seq, pid)
            .body(&0i32.to_ne_bytes())
            .done()
    }

    fn err_msg(code: i32, seq: u32, pid: u32) -> Vec<u8> {
        let orig = NlMsgHdr::default();
        Msg::new(NLMSG_ERROR, 0, seq, pid)
            .body(&code.to_ne_bytes())
            .body(orig.as_bytes())
            .done()
    }

    fn addr(index: u32, a: [u8; 4], secondary: bool) -> Vec<u8> {
        let ifa = IfAddrMsg {
            family: AF_INET,
            prefix_len: 24,
            flags: if secondary {
                libc::IFA_F_SECONDARY as u8
            } else {
                0
            },
            scope: 0,
            index,
        };
        Msg::new(libc::RTM_NEWADDR, NLM_F_MULTI, 7, 42)
            .body(ifa.as_bytes())
            .attr(libc::IFA_ADDRESS, &a)
            .attr(libc::IFA_LOCAL, &a)
            .done()
    }

    fn select(buf: &[u8]) -> Result<(ReplyStatus, Option<DefaultRoute>), NlError> {
        let mut sel = DefaultRouteSelector::default();
        let st = ReplyState::new(7, 42).feed(buf, |m| sel.feed(&m))?;
        Ok((st, sel.best))
    }

    #[test]
    fn header_layouts_match_the_kernel() {
        assert_eq!(size_of::<NlMsgHdr>(), 16);
        assert_eq!(size_of::<RtAttrHdr>(), 4);
        assert_eq!(size_of::<RtMsg>(), 12);
        assert_eq!(size_of::<IfInfoMsg>(), 16);
        assert_eq!(size_of::<IfAddrMsg>(), 8);
        assert_eq!(size_of::<RtNexthop>(), 8);
    }

    #[test]
    fn empty_buffer_has_no_messages() {
        assert!(messages(&[]).next().is_none());
        assert_eq!(walk_messages(&[], |_| Ok(())), Ok(()));
    }

    #[test]
    fn truncated_header_is_an_error() {
        let m = done_msg(1, 1);
        for cut in 1..NLMSG_HDRLEN {
            let r: Vec<_> = messages(&m[..cut]).collect();
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].unwrap_err(), NlError::Truncated, "cut {cut}");
        }
    }

    #[test]
    fn nlmsg_len_smaller_than_header_is_malformed() {
        for len in [0u32, 1, 15] {
            let mut m = done_msg(1, 1);
            m[..4].copy_from_slice(&len.to_ne_bytes());
            let r: Vec<_> = messages(&m).collect();
            assert_eq!(r.len(), 1, "len {len}");
            assert_eq!(r[0].unwrap_err(), NlError::Malformed);
        }
    }

    #[test]
    fn nlmsg_len_larger_than_buffer_is_truncated() {
        let mut m = done_msg(1, 1);
        let too_long = m.len() as u32 + 4;
        m[..4].copy_from_slice(&too_long.to_ne_bytes());
        assert_eq!(walk_messages(&m, |_| Ok(())), Err(NlError::Truncated));
        m[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(walk_messages(&m, |_| Ok(())), Err(NlError::Truncated));
    }

    #[test]
    fn unpadded_last_message_is_accepted() {
        // A 17-byte message with no padding after it.
        let mut m = Msg::new(libc::RTM_NEWLINK, 0, 1, 1).0;
        m.push(9);
        m[..4].copy_from_slice(&17u32.to_ne_bytes());
        let v: Vec<_> = messages(&m).collect::<Result<_, _>>().unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].payload, &[9]);
    }

    #[test]
    fn trailing_garbage_after_messages_is_truncated() {
        let mut m = done_msg(1, 1);
        m.extend_from_slice(&[1, 2, 3]);
        let r: Vec<_> = messages(&m).collect();
        assert!(r[0].is_ok());
        assert_eq!(r[1].unwrap_err(), NlError::Truncated);
    }

    #[test]
    fn attribute_lengths_are_checked() {
        // rta_len 0 and 3: smaller than the attribute header.
        for len in [0u16, 3] {
            let mut b = RtAttrHdr { len, kind: 1 }.as_bytes().to_vec();
            b.extend_from_slice(&[0; 8]);
            let r: Vec<_> = attrs(&b).collect();
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].unwrap_err(), NlError::Malformed, "len {len}");
        }
        // Overrunning the buffer.
        let mut b = RtAttrHdr { len: 12, kind: 1 }.as_bytes().to_vec();
        b.extend_from_slice(&[0; 4]);
        assert_eq!(attrs(&b).next().unwrap().unwrap_err(), NlError::Truncated);
        // Partial attribute header.
        assert_eq!(
            attrs(&[8, 0]).next().unwrap().unwrap_err(),
            NlError::Truncated
        );
        // Exactly a header: empty payload, fine.
        let b = RtAttrHdr {
            len: 4,
            kind: 3 | 0x8000,
        }
        .as_bytes()
        .to_vec();
        let a = attrs(&b).next().unwrap().unwrap();
        assert_eq!((a.kind, a.payload.len()), (3, 0));
    }

    #[test]
    fn attribute_values_of_the_wrong_size_are_malformed() {
        let rtm = RtMsg {
            family: AF_INET,
            ..RtMsg::default()
        };
        let m = Msg::new(libc::RTM_NEWROUTE, 0, 1, 1)
            .body(rtm.as_bytes())
            .attr(libc::RTA_OIF, &[1, 0])
            .done();
        assert_eq!(parse_route(&m[16..]), Err(NlError::Malformed));
        let m = Msg::new(libc::RTM_NEWROUTE, 0, 1, 1)
            .body(rtm.as_bytes())
            .attr(libc::RTA_GATEWAY, &[1, 2, 3, 4, 5, 6, 7, 8])
            .done();
        assert_eq!(parse_route(&m[16..]), Err(NlError::Malformed));
    }

    #[test]
    fn short_family_headers_are_truncated() {
        assert_eq!(parse_route(&[0; 11]), Err(NlError::Truncated));
        assert_eq!(parse_link(&[0; 15]).unwrap_err(), NlError::Truncated);
        assert_eq!(parse_addr(&[0; 7]), Err(NlError::Truncated));
    }

    #[test]
    fn error_ack_ends_a_reply() {
        let buf = err_msg(0, 7, 42);
        assert_eq!(select(&buf), Ok((ReplyStatus::Done, None)));
    }

    #[test]
    fn error_with_errno_is_a_kernel_error() {
        let buf = err_msg(-libc::ENODEV, 7, 42);
        assert_eq!(select(&buf), Err(NlError::Kernel(libc::ENODEV)));
        let buf = err_msg(i32::MIN, 7, 42);
        assert_eq!(select(&buf), Err(NlError::Kernel(i32::MAX)));
        let buf = err_msg(5, 7, 42);
        assert_eq!(select(&buf), Err(NlError::Malformed));
        // An NLMSG_ERROR too short to hold the code.
        let mut buf = Msg::new(NLMSG_ERROR, 0, 7, 42).0;
        buf.extend_from_slice(&[0, 0]);
        buf[..4].copy_from_slice(&18u32.to_ne_bytes());
        assert_eq!(select(&buf), Err(NlError::Truncated));
    }

    #[test]
    fn done_ends_a_dump_and_may_carry_an_error() {
        assert_eq!(select(&done_msg(7, 42)), Ok((ReplyStatus::Done, None)));
        let bare = Msg::new(NLMSG_DONE, NLM_F_MULTI, 7, 42).done();
        assert_eq!(select(&bare), Ok((ReplyStatus::Done, None)));
        let failed = Msg::new(NLMSG_DONE, NLM_F_MULTI, 7, 42)
            .body(&(-libc::EBUSY).to_ne_bytes())
            .done();
        assert_eq!(select(&failed), Err(NlError::Kernel(libc::EBUSY)));
    }

    #[test]
    fn interrupted_dump_is_reported_at_done() {
        let mut buf = route(254, 0, 2, None).done();
        buf[6..8].copy_from_slice(&(NLM_F_MULTI | NLM_F_DUMP_INTR).to_ne_bytes());
        buf.extend(done_msg(7, 42));
        assert_eq!(select(&buf), Err(NlError::Interrupted));
    }

    #[test]
    fn dump_spanning_datagrams_needs_done() {
        let part1 = route(254, 0, 3, Some(100)).done();
        let mut part2 = route(254, 0, 4, Some(50)).done();
        part2.extend(done_msg(7, 42));
        let mut sel = DefaultRouteSelector::default();
        let mut st = ReplyState::new(7, 42);
        assert_eq!(st.feed(&part1, |m| sel.feed(&m)), Ok(ReplyStatus::More));
        assert_eq!(st.feed(&part2, |m| sel.feed(&m)), Ok(ReplyStatus::Done));
        assert_eq!(sel.best.unwrap().ifindex, 4);
        assert_eq!(sel.best.unwrap().metric, 50);
    }

    #[test]
    fn foreign_messages_are_ignored() {
        let mut buf = route(254, 0, 9, None).done();
        buf[8..12].copy_from_slice(&6u32.to_ne_bytes()); // stale seq
        let mut other_pid = route(254, 0, 8, None).done();
        other_pid[12..16].copy_from_slice(&41u32.to_ne_bytes());
        buf.extend(other_pid);
        buf.extend(err_msg(-libc::EPERM, 6, 42)); // stale error
        buf.extend(route(254, 0, 2, Some(10)).done());
        buf.extend(done_msg(7, 42));
        let (st, best) = select(&buf).unwrap();
        assert_eq!(st, ReplyStatus::Done);
        assert_eq!(best.unwrap().ifindex, 2);
    }

    #[test]
    fn default_route_selection() {
        let mut buf = Vec::new();
        buf.extend(route(254, 24, 5, None).done()); // not a default
        buf.extend(route(100, 0, 6, None).done()); // other table
        buf.extend(route(254, 0, 3, Some(100)).done());
        buf.extend(route(254, 0, 4, Some(50)).done());
        buf.extend(route(254, 0, 7, Some(50)).done()); // tie: first wins
        buf.extend(done_msg(7, 42));
        let best = select(&buf).unwrap().1.unwrap();
        assert_eq!(
            best,
            DefaultRoute {
                ifindex: 4,
                metric: 50,
                gateway: Some(Ipv4Addr::new(198, 18, 7, 1)),
            }
        );
        // No metric attribute means metric 0, which beats everything.
        buf.truncate(buf.len() - 20);
        let mut buf2 = route(254, 0, 9, None).done();
        buf2.extend(buf);
        buf2.extend(done_msg(7, 42));
        assert_eq!(select(&buf2).unwrap().1.unwrap().ifindex, 9);
    }

    #[test]
    fn multipath_default_uses_first_nexthop() {
        let rtm = RtMsg {
            family: AF_INET,
            table: 254,
            kind: libc::RTN_UNICAST,
            ..RtMsg::default()
        };
        let mut mp = Vec::new();
        for (idx, gw) in [(11i32, [198, 18, 1, 1]), (12, [198, 18, 2, 1])] {
            let nh = RtNexthop {
                len: 16,
                flags: 0,
                hops: 0,
                ifindex: idx,
            };
            mp.extend_from_slice(nh.as_bytes());
            mp.extend_from_slice(
                RtAttrHdr {
                    len: 8,
                    kind: libc::RTA_GATEWAY,
                }
                .as_bytes(),
            );
            mp.extend_from_slice(&gw);
        }
        let m = Msg::new(libc::RTM_NEWROUTE, 0, 1, 1)
            .body(rtm.as_bytes())
            .attr(libc::RTA_MULTIPATH, &mp)
            .done();
        let r = parse_route(&m[16..]).unwrap();
        assert!(r.is_ipv4_main_default());
        assert_eq!(r.ifindex, Some(11));
        assert_eq!(r.gateway, Some(Ipv4Addr::new(198, 18, 1, 1)));
        // A nexthop whose length is below its header.
        let mut bad = mp.clone();
        bad[0] = 4;
        let m = Msg::new(libc::RTM_NEWROUTE, 0, 1, 1)
            .body(rtm.as_bytes())
            .attr(libc::RTA_MULTIPATH, &bad)
            .done();
        assert_eq!(parse_route(&m[16..]), Err(NlError::Malformed));
    }

    #[test]
    fn link_parsing() {
        let ifi = IfInfoMsg {
            index: 3,
            flags: IFF_UP | IFF_MULTICAST,
            ..IfInfoMsg::default()
        };
        let m = Msg::new(libc::RTM_NEWLINK, 0, 1, 1)
            .body(ifi.as_bytes())
            .attr(libc::IFLA_IFNAME, b"eth0\0")
            .done();
        let l = parse_link(&m[16..]).unwrap();
        assert_eq!(l.ifindex, 3);
        assert_eq!(l.name.as_str(), "eth0");
        assert!(l.up && l.multicast && !l.running && !l.loopback);
        // Over-long and non-UTF-8 names do not fail.
        assert_eq!(
            ifname(b"abcdefghijklmnopqrstuvwxyz").as_str(),
            "abcdefghijklmno"
        );
        assert_eq!(ifname(b"a\xffb\0junk").as_str(), "a?b");
    }

    #[test]
    fn addr_collection_puts_primaries_first() {
        let mut buf = Vec::new();
        buf.extend(addr(2, [198, 18, 7, 6], true));
        buf.extend(addr(3, [198, 18, 9, 9], false)); // other interface
        buf.extend(addr(2, [198, 18, 7, 5], false));
        buf.extend(done_msg(7, 42));
        let mut col = AddrCollector::new(2);
        let st = ReplyState::new(7, 42).feed(&buf, |m| col.feed(&m)).unwrap();
        assert_eq!(st, ReplyStatus::Done);
        let mut out = ArrayVec::new();
        col.finish(&mut out);
        assert_eq!(
            out.as_slice(),
            &[Ipv4Addr::new(198, 18, 7, 5), Ipv4Addr::new(198, 18, 7, 6)]
        );
    }

    #[test]
    fn ifa_local_is_preferred_and_ifa_flags_wins() {
        let ifa = IfAddrMsg {
            family: AF_INET,
            index: 4,
            ..IfAddrMsg::default()
        };
        let m = Msg::new(libc::RTM_NEWADDR, 0, 1, 1)
            .body(ifa.as_bytes())
            .attr(libc::IFA_ADDRESS, &[10, 0, 0, 2])
            .attr(libc::IFA_LOCAL, &[10, 0, 0, 1])
            .attr(IFA_FLAGS, &libc::IFA_F_SECONDARY.to_ne_bytes())
            .done();
        let a = parse_addr(&m[16..]).unwrap();
        assert_eq!(a.addr(), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(a.is_secondary());
    }

    #[test]
    fn events_from_a_batch() {
        let mut buf = Vec::new();
        let ifi = IfInfoMsg {
            index: 5,
            flags: IFF_UP,
            ..IfInfoMsg::default()
        };
        buf.extend(
            Msg::new(libc::RTM_NEWLINK, 0, 0, 0)
                .body(ifi.as_bytes())
                .done(),
        );
        buf.extend(
            Msg::new(libc::RTM_DELLINK, 0, 0, 0)
                .body(ifi.as_bytes())
                .done(),
        );
        let bridge = IfInfoMsg {
            family: libc::AF_BRIDGE as u8,
            ..ifi
        };
        buf.extend(
            Msg::new(libc::RTM_DELLINK, 0, 0, 0)
                .body(bridge.as_bytes())
                .done(),
        );
        let mut a = addr(5, [198, 18, 7, 5], false);
        a[8..16].fill(0);
        buf.extend(a.clone());
        a[4..6].copy_from_slice(&libc::RTM_DELADDR.to_ne_bytes());
        buf.extend(a);
        buf.extend(route(254, 0, 5, None).done());
        buf.extend(route(254, 8, 5, None).done()); // not a default: no event
        let mut del = route(254, 0, 5, None).done();
        del[4..6].copy_from_slice(&libc::RTM_DELROUTE.to_ne_bytes());
        buf.extend(del);
        buf.extend(Msg::new(NLMSG_OVERRUN, 0, 0, 0).done());
        let mut evs = Vec::new();
        parse_events(&buf, |e| evs.push(e)).unwrap();
        let a = Ipv4Addr::new(198, 18, 7, 5);
        assert_eq!(
            evs,
            [
                Event::Link {
                    ifindex: 5,
                    up: true,
                    running: false
                },
                Event::LinkRemoved { ifindex: 5 },
                Event::AddrAdded {
                    ifindex: 5,
                    addr: a
                },
                Event::AddrRemoved {
                    ifindex: 5,
                    addr: a
                },
                Event::DefaultRouteAdded { ifindex: 5 },
                Event::DefaultRouteRemoved { ifindex: 5 },
                Event::Overrun,
            ]
        );
    }

    #[test]
    fn requests_encode_and_parse_back() {
        let mut req = [0u8; REQUEST_LEN];
        let body = IfInfoMsg::default();
        let n = encode_request(
            &mut req,
            libc::RTM_GETLINK,
            0,
            9,
            body.as_bytes(),
            Some((libc::IFLA_IFNAME, b"eth0\0")),
        )
        .unwrap();
        assert_eq!(n, NLMSG_HDRLEN + size_of::<IfInfoMsg>() + RTA_HDRLEN + 5);
        let m = messages(&req[..n]).next().unwrap().unwrap();
        assert_eq!(m.header.len as usize, n);
        assert_eq!(m.header.kind, libc::RTM_GETLINK);
        assert_eq!(m.header.flags, NLM_F_REQUEST);
        assert_eq!(m.header.seq, 9);
        assert_eq!(parse_link(m.payload).unwrap().name.as_str(), "eth0");
        let big = [0u8; REQUEST_LEN];
        assert_eq!(
            encode_request(&mut req, libc::RTM_GETLINK, 0, 1, &big, None),
            Err(NlError::BufferTooSmall)
        );
    }

    #[test]
    fn display_does_not_need_allocation_helpers() {
        assert_eq!(
            NlError::Kernel(libc::ENODEV).to_string(),
            "kernel refused netlink request: ENODEV (errno 19)"
        );
        assert_eq!(
            NlError::Io(4242).to_string(),
            "netlink socket error: errno 4242"
        );
    }

    #[test]
    fn fuzz_check_survives_fixtures_and_their_prefixes() {
        let mut buf = Vec::new();
        buf.extend(route(254, 0, 3, Some(100)).done());
        buf.extend(addr(2, [198, 18, 7, 6], true));
        buf.extend(done_msg(7, 42));
        for end in 0..=buf.len() {
            fuzz_check(&buf[..end]);
            fuzz_check(&buf[end..]);
        }
    }
}
