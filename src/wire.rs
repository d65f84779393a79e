//! Protocol v1 messages on the wire (`docs/PROTOCOL.md` is the byte-by-byte spec).
//!
//! Two layers, in the manner of smoltcp's `wire` module:
//!
//! - [`Packet`] is a zero-copy view over a received datagram. [`Packet::check_len`]
//!   validates the *framing* (everything that decides where fields are); after it,
//!   no accessor can panic or read out of bounds.
//! - [`Repr`] is the validated, owned (but allocation-free) meaning of a message.
//!   [`Repr::parse`] applies every receiver rule that depends on the message alone;
//!   [`Repr::emit`] refuses to write anything `parse` would reject.
//!
//! The label, own-message and sequence rules need daemon state and live there.
#![forbid(unsafe_code)]

use core::fmt;
use core::net::Ipv4Addr;

use arrayvec::ArrayVec;
use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `OMDS`: lets receivers tell our datagrams from other traffic on the port.
pub const MAGIC: [u8; 4] = *b"OMDS";
/// The protocol version this module speaks.
pub const VERSION: u8 = 1;
/// Common header, present in every message.
pub const HEADER_LEN: usize = 48;
/// ANNOUNCE / LEAVE body: alias count, members, reserved, six alias slots.
pub const ANNOUNCE_BODY_LEN: usize = 28;
/// A whole ANNOUNCE or LEAVE without trailer or extensions.
pub const ANNOUNCE_LEN: usize = HEADER_LEN + ANNOUNCE_BODY_LEN;
/// Header plus the SYNC entry count and its reserved bytes.
pub const SYNC_HEADER_LEN: usize = 52;
/// One SYNC entry: addr, incarnation, hold_ms.
pub const SYNC_ENTRY_LEN: usize = 12;
/// A LEAVE is sent this many times (the same bytes) when a node stops or
/// changes its address (`docs/PROTOCOL.md`, ANNOUNCE and LEAVE).
pub const GOODBYES: u8 = 3;
/// Length of a NOTICE's body.
pub const NOTICE_BODY_LEN: usize = 16;
/// Length of a NOTICE without the trailer.
pub const NOTICE_LEN: usize = HEADER_LEN + NOTICE_BODY_LEN;
/// Authentication trailer (present when [`flags::AUTH`] is set).
pub const TRAILER_LEN: usize = 24;
/// Length of the truncated MAC at the very end of the trailer.
pub const MAC_LEN: usize = 16;
/// Below the 576-byte IPv4 reassembly minimum, so messages are never fragmented.
pub const MAX_MESSAGE_LEN: usize = 512;
/// Alias slots in an ANNOUNCE / LEAVE body.
pub const MAX_ALIASES: usize = 6;
/// Entries in one SYNC: `52 + 36 * 12 + 24 = 508 <= 512`.
pub const MAX_SYNC_ENTRIES: usize = 36;
/// Cluster label size in bytes (NUL-padded).
pub const LABEL_LEN: usize = 16;
/// Smallest announce interval a sender may advertise.
pub const MIN_INTERVAL_MS: u32 = 100;
/// Largest announce interval (one hour).
pub const MAX_INTERVAL_MS: u32 = 3_600_000;
/// Longest hold time (one day).
pub const MAX_HOLD_MS: u32 = 86_400_000;

/// Byte offsets of every field, as in the tables of `docs/PROTOCOL.md`.
pub mod field {
    use core::ops::Range;

    /// A multi-byte field: its byte range in the message (or in its sub-structure).
    pub type Field = Range<usize>;

    // Common header.
    pub const MAGIC: Field = 0..4;
    pub const VERSION: usize = 4;
    pub const TYPE: usize = 5;
    pub const FLAGS: usize = 6;
    pub const HOPS: usize = 7;
    pub const LENGTH: Field = 8..10;
    pub const NODE_ID: Field = 10..12;
    pub const INCARNATION: Field = 12..16;
    pub const SEQUENCE: Field = 16..20;
    pub const INTERVAL_MS: Field = 20..24;
    pub const HOLD_MS: Field = 24..28;
    pub const LABEL: Field = 28..44;
    pub const ADDR: Field = 44..48;

    // ANNOUNCE / LEAVE body.
    pub const ALIAS_COUNT: usize = 48;
    pub const MEMBERS: Field = 49..51;
    pub const ALIAS_RESERVED: Field = 51..52;
    pub const ALIASES: Field = 52..76;

    // SYNC body.
    pub const ENTRY_COUNT: Field = 48..50;
    pub const SYNC_RESERVED: Field = 50..52;
    pub const ENTRIES: usize = 52;

    // Inside one SYNC entry.
    pub const ENTRY_ADDR: Field = 0..4;
    pub const ENTRY_INCARNATION: Field = 4..8;
    pub const ENTRY_HOLD_MS: Field = 8..12;

    // NOTICE body.
    pub const NOTICE_WHAT: usize = 48;
    pub const NOTICE_RESERVED: Field = 49..52;
    pub const SUBJECT_ADDR: Field = 52..56;
    pub const SUBJECT_INCARNATION: Field = 56..60;
    pub const SUBJECT_SEQUENCE: Field = 60..64;

    // Inside the authentication trailer (which starts `TRAILER_LEN` before the end).
    pub const KEY_ID: Field = 0..4;
    pub const STAMP: Field = 4..8;
    pub const MAC: Field = 8..24;
}

/// Bits of the header `flags` byte.
pub mod flags {
    /// An authentication trailer ends the message.
    pub const AUTH: u8 = 0x01;
    /// An answer to a node that asked for the map ([`JOIN`]); never answered
    /// itself.
    pub const REPLY: u8 = 0x02;
    /// ANNOUNCE only: the sender is joining and asks for the map (SYNC).
    pub const JOIN: u8 = 0x04;
    /// ANNOUNCE only, unicast: the sender has not heard the receiver for a
    /// whole hold and asks it to answer with its own ANNOUNCE by unicast.
    pub const PROBE: u8 = 0x08;
    /// ANNOUNCE only: the sender takes part in failure detection (it
    /// watches others, answers asks to check one and tells deaths with
    /// NOTICEs). Nodes that predate it leave the bit clear and ignore it.
    pub const WATCHER: u8 = 0x10;
}

/// The common header, as laid out on the wire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Header {
    pub magic: [u8; 4],
    pub version: u8,
    pub kind: u8,
    pub flags: u8,
    pub hops: u8,
    pub length: U16,
    pub node_id: U16,
    pub incarnation: U32,
    pub sequence: U32,
    pub interval_ms: U32,
    pub hold_ms: U32,
    pub label: [u8; LABEL_LEN],
    pub addr: [u8; 4],
}

/// ANNOUNCE / LEAVE body, as laid out on the wire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct AnnounceBody {
    pub alias_count: u8,
    pub members: U16,
    pub reserved: [u8; 1],
    pub aliases: [[u8; 4]; MAX_ALIASES],
}

/// The fixed part of a SYNC body that precedes the entries.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SyncBody {
    pub entry_count: U16,
    pub reserved: [u8; 2],
}

/// One SYNC entry, as laid out on the wire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SyncEntryRaw {
    pub addr: [u8; 4],
    pub incarnation: U32,
    pub hold_ms: U32,
}

/// The NOTICE body: what the sender says of another node, the subject.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct NoticeBody {
    pub what: u8,
    pub reserved: [u8; 3],
    pub addr: [u8; 4],
    pub incarnation: U32,
    pub sequence: U32,
}

/// The authentication trailer, as laid out on the wire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct AuthTrailer {
    pub key_id: U32,
    pub stamp: U32,
    pub mac: [u8; MAC_LEN],
}

// The structs and the `field` table describe the same bytes; keep them in step.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<Header>() == HEADER_LEN);
    assert!(size_of::<AnnounceBody>() == ANNOUNCE_BODY_LEN);
    assert!(HEADER_LEN + size_of::<SyncBody>() == SYNC_HEADER_LEN);
    assert!(size_of::<SyncEntryRaw>() == SYNC_ENTRY_LEN);
    assert!(size_of::<AuthTrailer>() == TRAILER_LEN);
    assert!(size_of::<NoticeBody>() == NOTICE_BODY_LEN);
    assert!(HEADER_LEN + offset_of!(NoticeBody, reserved) == field::NOTICE_RESERVED.start);
    assert!(HEADER_LEN + offset_of!(NoticeBody, addr) == field::SUBJECT_ADDR.start);
    assert!(HEADER_LEN + offset_of!(NoticeBody, incarnation) == field::SUBJECT_INCARNATION.start);
    assert!(HEADER_LEN + offset_of!(NoticeBody, sequence) == field::SUBJECT_SEQUENCE.start);
    assert!(HEADER_LEN + size_of::<NoticeBody>() == field::SUBJECT_SEQUENCE.end);
    assert!(offset_of!(Header, version) == field::VERSION);
    assert!(offset_of!(Header, kind) == field::TYPE);
    assert!(offset_of!(Header, flags) == field::FLAGS);
    assert!(offset_of!(Header, hops) == field::HOPS);
    assert!(offset_of!(Header, length) == field::LENGTH.start);
    assert!(offset_of!(Header, node_id) == field::NODE_ID.start);
    assert!(offset_of!(Header, incarnation) == field::INCARNATION.start);
    assert!(offset_of!(Header, sequence) == field::SEQUENCE.start);
    assert!(offset_of!(Header, interval_ms) == field::INTERVAL_MS.start);
    assert!(offset_of!(Header, hold_ms) == field::HOLD_MS.start);
    assert!(offset_of!(Header, label) == field::LABEL.start);
    assert!(offset_of!(Header, addr) == field::ADDR.start);
    assert!(HEADER_LEN + offset_of!(AnnounceBody, members) == field::MEMBERS.start);
    assert!(HEADER_LEN + offset_of!(AnnounceBody, reserved) == field::ALIAS_RESERVED.start);
    assert!(HEADER_LEN + offset_of!(AnnounceBody, aliases) == field::ALIASES.start);
    assert!(HEADER_LEN + size_of::<AnnounceBody>() == field::ALIASES.end);
    assert!(offset_of!(SyncEntryRaw, hold_ms) == field::ENTRY_HOLD_MS.start);
    assert!(offset_of!(AuthTrailer, mac) == field::MAC.start);
    assert!(SYNC_HEADER_LEN + MAX_SYNC_ENTRIES * SYNC_ENTRY_LEN + TRAILER_LEN <= MAX_MESSAGE_LEN);
};

/// Message type (header byte 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Announce = 1,
    Leave = 2,
    Sync = 3,
    Notice = 4,
}

impl MessageType {
    /// `None` for a type this version does not know.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Announce),
            2 => Some(Self::Leave),
            3 => Some(Self::Sync),
            4 => Some(Self::Notice),
            _ => None,
        }
    }

    /// Length of header plus the fixed part of the body (without SYNC entries).
    const fn fixed_len(self) -> usize {
        match self {
            Self::Announce | Self::Leave => ANNOUNCE_LEN,
            Self::Sync => SYNC_HEADER_LEN,
            Self::Notice => NOTICE_LEN,
        }
    }
}

impl TryFrom<u8> for MessageType {
    type Error = ParseError;
    fn try_from(v: u8) -> Result<Self, ParseError> {
        Self::from_u8(v).ok_or(ParseError::UnknownType)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Announce => "ANNOUNCE",
            Self::Leave => "LEAVE",
            Self::Sync => "SYNC",
            Self::Notice => "NOTICE",
        })
    }
}

/// Cluster label: 16 raw bytes, NUL-padded. Compared as bytes by the daemon.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Label(pub [u8; LABEL_LEN]);

impl Label {
    /// The label of a node started without `--label`.
    pub const DEFAULT: Label = Label([0; LABEL_LEN]);

    /// `None` if `s` is longer than 16 bytes or contains a NUL (which would
    /// make two different strings look alike once padded).
    pub fn from_str_checked(s: &str) -> Option<Label> {
        let bytes = s.as_bytes();
        if bytes.len() > LABEL_LEN || bytes.contains(&0) {
            return None;
        }
        let mut raw = [0u8; LABEL_LEN];
        raw[..bytes.len()].copy_from_slice(bytes);
        Some(Label(raw))
    }

    /// The bytes up to the first NUL.
    pub fn trimmed(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(LABEL_LEN);
        &self.0[..end]
    }

    /// The label as text (bytes up to the first NUL), if that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.trimmed()).ok()
    }
}

/// Shows the text, or `\xNN` escapes for a label that is not UTF-8 (for logs).
impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.as_str() {
            return f.write_str(s);
        }
        for &b in self.trimmed() {
            if b.is_ascii_graphic() || b == b' ' {
                fmt::Write::write_char(f, char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label(\"{self}\")")
    }
}

/// Why a datagram was dropped. One variant per drop counter of `docs/PROTOCOL.md`
/// (except the daemon-side ones), so the daemon can keep `[u64; ParseError::COUNT]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    Truncated,
    BadMagic,
    BadVersion,
    NewerVersion,
    LengthMismatch,
    UnknownType,
    BadNodeId,
    BadAddress,
    TooMany,
    BadTiming,
}

impl ParseError {
    /// Number of variants (length of a counter array).
    pub const COUNT: usize = 10;

    /// Every variant, in `index` order.
    pub const ALL: [ParseError; Self::COUNT] = [
        Self::Truncated,
        Self::BadMagic,
        Self::BadVersion,
        Self::NewerVersion,
        Self::LengthMismatch,
        Self::UnknownType,
        Self::BadNodeId,
        Self::BadAddress,
        Self::TooMany,
        Self::BadTiming,
    ];

    /// Position in [`ParseError::ALL`], for indexing a counter array.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The counter name used in `docs/PROTOCOL.md` and in the daemon's statistics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::BadMagic => "bad_magic",
            Self::BadVersion => "bad_version",
            Self::NewerVersion => "newer_version",
            Self::LengthMismatch => "length_mismatch",
            Self::UnknownType => "unknown_type",
            Self::BadNodeId => "bad_node_id",
            Self::BadAddress => "bad_address",
            Self::TooMany => "too_many",
            Self::BadTiming => "bad_timing",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "message shorter than its type requires",
            Self::BadMagic => "not an omdiscd message (bad magic)",
            Self::BadVersion => "protocol version 0",
            Self::NewerVersion => "newer protocol version",
            Self::LengthMismatch => "length field differs from datagram size or exceeds 512",
            Self::UnknownType => "unknown message type",
            Self::BadNodeId => "node id 0 or not derived from the address",
            Self::BadAddress => "unspecified, multicast or broadcast address",
            Self::TooMany => "alias or entry count out of range",
            Self::BadTiming => "interval or hold time out of range",
        })
    }
}

impl std::error::Error for ParseError {}

/// Why [`Repr::emit`] wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmitError {
    /// The buffer is shorter than [`Repr::buffer_len`].
    BufferTooSmall,
    /// The `Repr` would be dropped by receivers, for this reason.
    Invalid(ParseError),
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("buffer too small for message"),
            Self::Invalid(e) => write!(f, "invalid message: {e}"),
        }
    }
}

impl std::error::Error for EmitError {}

/// The openMosix node id of an address: its last two octets, `(o3 << 8) | o4`.
pub const fn node_id_of(addr: Ipv4Addr) -> u16 {
    let o = addr.octets();
    u16::from_be_bytes([o[2], o[3]])
}

/// Whether `addr` may appear as a node or alias address: not in 0.0.0.0/8
/// ("this network"), not loopback (127.0.0.0/8), not multicast, not
/// 255.255.255.255 (node ids are checked separately).
pub const fn is_valid_node_addr(addr: Ipv4Addr) -> bool {
    let first = addr.octets()[0];
    !(first == 0 || addr.is_loopback() || addr.is_multicast() || addr.is_broadcast())
}

/// Sets the relay count of a message in place. Relays use this instead of
/// re-emitting, since `hops` is outside the MAC. Does nothing on a buffer
/// too short to hold a header byte 7.
pub fn set_hops(buf: &mut [u8], hops: u8) {
    if let Some(b) = buf.get_mut(field::HOPS) {
        *b = hops;
    }
}

/// A zero-copy view over a message buffer.
///
/// Accessors may panic on a buffer shorter than [`HEADER_LEN`] made with
/// [`Packet::new_unchecked`]; after [`Packet::check_len`] succeeds they never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without looking at it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ParseError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Validates the framing, in the order of the receiver rules: header length,
    /// magic, version, length field, type, fixed body (+ trailer) length, counts,
    /// SYNC entries length. Magic and version come before the length checks so
    /// foreign traffic and newer versions are counted as such.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let data = self.buffer.as_ref();
        let Ok((header, tail)) = Header::ref_from_prefix(data) else {
            return Err(ParseError::Truncated);
        };
        if header.magic != MAGIC {
            return Err(ParseError::BadMagic);
        }
        match header.version {
            0 => return Err(ParseError::BadVersion),
            VERSION => {}
            _ => return Err(ParseError::NewerVersion),
        }
        let len = usize::from(header.length.get());
        if len != data.len() || len > MAX_MESSAGE_LEN {
            return Err(ParseError::LengthMismatch);
        }
        let kind = MessageType::try_from(header.kind)?;
        let trailer = if header.flags & flags::AUTH != 0 {
            TRAILER_LEN
        } else {
            0
        };
        if len < kind.fixed_len() + trailer {
            return Err(ParseError::Truncated);
        }
        match kind {
            MessageType::Announce | MessageType::Leave => {
                let Ok((body, _)) = AnnounceBody::ref_from_prefix(tail) else {
                    return Err(ParseError::Truncated);
                };
                if usize::from(body.alias_count) > MAX_ALIASES {
                    return Err(ParseError::TooMany);
                }
            }
            MessageType::Sync => {
                let Ok((body, _)) = SyncBody::ref_from_prefix(tail) else {
                    return Err(ParseError::Truncated);
                };
                let count = usize::from(body.entry_count.get());
                if count == 0 || count > MAX_SYNC_ENTRIES {
                    return Err(ParseError::TooMany);
                }
                if len < SYNC_HEADER_LEN + count * SYNC_ENTRY_LEN + trailer {
                    return Err(ParseError::Truncated);
                }
            }
            MessageType::Notice => {
                let Ok((body, _)) = NoticeBody::ref_from_prefix(tail) else {
                    return Err(ParseError::Truncated);
                };
                // A kind of notice this version does not know.
                What::from_u8(body.what).ok_or(ParseError::UnknownType)?;
            }
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The common header.
    ///
    /// # Panics
    /// On an unchecked buffer shorter than [`HEADER_LEN`].
    pub fn header(&self) -> &Header {
        match Header::ref_from_prefix(self.buffer.as_ref()) {
            Ok((header, _)) => header,
            Err(_) => panic!("omdiscd packet shorter than its header; call check_len first"),
        }
    }

    /// The message type, `None` if unknown (only possible before `check_len`).
    pub fn kind(&self) -> Option<MessageType> {
        MessageType::from_u8(self.header().kind)
    }

    pub fn flags(&self) -> u8 {
        self.header().flags
    }

    pub fn hops(&self) -> u8 {
        self.header().hops
    }

    pub fn length(&self) -> u16 {
        self.header().length.get()
    }

    pub fn node_id(&self) -> u16 {
        self.header().node_id.get()
    }

    pub fn incarnation(&self) -> u32 {
        self.header().incarnation.get()
    }

    pub fn sequence(&self) -> u32 {
        self.header().sequence.get()
    }

    pub fn interval_ms(&self) -> u32 {
        self.header().interval_ms.get()
    }

    pub fn hold_ms(&self) -> u32 {
        self.header().hold_ms.get()
    }

    pub fn label(&self) -> Label {
        Label(self.header().label)
    }

    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.header().addr)
    }

    /// The ANNOUNCE / LEAVE body; `None` for SYNC (or a short unchecked buffer).
    pub fn announce_body(&self) -> Option<&AnnounceBody> {
        match self.kind()? {
            MessageType::Announce | MessageType::Leave => {
                let tail = self.buffer.as_ref().get(HEADER_LEN..)?;
                AnnounceBody::ref_from_prefix(tail).ok().map(|(b, _)| b)
            }
            MessageType::Sync | MessageType::Notice => None,
        }
    }

    /// The NOTICE body; `None` for other types (or a short unchecked buffer).
    pub fn notice_body(&self) -> Option<&NoticeBody> {
        if self.kind()? != MessageType::Notice {
            return None;
        }
        let tail = self.buffer.as_ref().get(HEADER_LEN..)?;
        NoticeBody::ref_from_prefix(tail).ok().map(|(b, _)| b)
    }

    /// The valid aliases (the first `alias_count` slots); empty for SYNC.
    pub fn aliases(&self) -> &[[u8; 4]] {
        match self.announce_body() {
            Some(body) => body
                .aliases
                .get(..usize::from(body.alias_count))
                .unwrap_or(&[]),
            None => &[],
        }
    }

    /// The SYNC entries; empty for other types (or a short unchecked buffer).
    pub fn sync_entries(&self) -> &[SyncEntryRaw] {
        if self.kind() != Some(MessageType::Sync) {
            return &[];
        }
        let Some(tail) = self.buffer.as_ref().get(HEADER_LEN..) else {
            return &[];
        };
        let Ok((body, entries)) = SyncBody::ref_from_prefix(tail) else {
            return &[];
        };
        let count = usize::from(body.entry_count.get());
        match <[SyncEntryRaw]>::ref_from_prefix_with_elems(entries, count) {
            Ok((entries, _)) => entries,
            Err(_) => &[],
        }
    }

    /// The authentication trailer when the AUTH flag is set.
    pub fn trailer(&self) -> Option<&AuthTrailer> {
        if self.flags() & flags::AUTH == 0 {
            return None;
        }
        let data = self.buffer.as_ref();
        let msg = data.get(..usize::from(self.length()))?;
        if msg.len() < HEADER_LEN + TRAILER_LEN {
            return None;
        }
        AuthTrailer::ref_from_suffix(msg).ok().map(|(_, t)| t)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// See [`set_hops`].
    pub fn set_hops(&mut self, hops: u8) {
        set_hops(self.buffer.as_mut(), hops);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// One map entry carried by a SYNC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncEntry {
    pub addr: Ipv4Addr,
    pub incarnation: u32,
    /// Remaining hold time as the sender sees it.
    pub hold_ms: u32,
}

/// What a NOTICE says of its subject (body byte 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum What {
    /// Unicast to a member: "I have not heard the subject since `sequence`;
    /// check it and tell me" (an indirect probe).
    Ask = 1,
    /// Unicast answer to an ASK: the sender heard the subject lately, or it
    /// answered the sender's probe.
    Alive = 2,
    /// Unicast answer to an ASK: the sender has not heard the subject lately
    /// either (and it did not answer a probe); `sequence` is the last the
    /// sender heard of it.
    Silent = 3,
    /// Multicast: the subject is dead; `sequence` is the last heard of it.
    Dead = 4,
}

impl What {
    /// `None` for a kind this version does not know.
    pub const fn from_u8(v: u8) -> Option<What> {
        match v {
            1 => Some(What::Ask),
            2 => Some(What::Alive),
            3 => Some(What::Silent),
            4 => Some(What::Dead),
            _ => None,
        }
    }
}

/// A NOTICE's body, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Notice {
    pub what: What,
    /// The subject: its address, incarnation and a sequence number of it.
    pub addr: Ipv4Addr,
    pub incarnation: u32,
    pub sequence: u32,
}

/// The authentication trailer, decoded. The MAC is checked by the auth code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Auth {
    pub key_id: u32,
    pub stamp: u32,
    pub mac: [u8; MAC_LEN],
}

/// A validated message.
///
/// Invariant: a `Repr` is valid iff `Repr::parse` of its emitted bytes gives it
/// back; [`Repr::validate`] checks exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub kind: MessageType,
    /// Header flags without [`flags::AUTH`], which is derived from `auth`.
    /// REPLY and reserved bits are kept as received.
    pub flags: u8,
    pub hops: u8,
    pub node_id: u16,
    pub incarnation: u32,
    pub sequence: u32,
    pub interval_ms: u32,
    pub hold_ms: u32,
    pub label: Label,
    pub addr: Ipv4Addr,
    /// ANNOUNCE / LEAVE only: nodes in the sender's map, itself included
    /// (65535 for more); 0: not said. Always 0 in a SYNC.
    pub members: u16,
    /// ANNOUNCE / LEAVE only.
    pub aliases: ArrayVec<Ipv4Addr, MAX_ALIASES>,
    /// SYNC only (1 ..= 36).
    pub entries: ArrayVec<SyncEntry, MAX_SYNC_ENTRIES>,
    /// NOTICE only (and always there in one).
    pub notice: Option<Notice>,
    pub auth: Option<Auth>,
}

impl Repr {
    /// A message from `addr` with no flags, hops, sequence 0, no aliases,
    /// entries or trailer; `node_id` is derived from `addr`.
    pub fn new(
        kind: MessageType,
        addr: Ipv4Addr,
        incarnation: u32,
        label: Label,
        interval_ms: u32,
        hold_ms: u32,
    ) -> Repr {
        Repr {
            kind,
            flags: 0,
            hops: 0,
            node_id: node_id_of(addr),
            incarnation,
            sequence: 0,
            interval_ms,
            hold_ms,
            label,
            addr,
            members: 0,
            aliases: ArrayVec::new_const(),
            entries: ArrayVec::new_const(),
            notice: None,
            auth: None,
        }
    }

    /// Parses and validates a datagram (all message-local receiver rules).
    pub fn parse(data: &[u8]) -> Result<Repr, ParseError> {
        Self::decode(&Packet::new_checked(data)?)
    }

    /// Decodes a packet (checking its framing first) and validates its values.
    pub fn from_packet<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ParseError> {
        packet.check_len()?;
        Self::decode(packet)
    }

    /// `from_packet` without re-checking the framing. Fills the `Repr` in place:
    /// it is ~500 bytes, and each move of it shows in the benchmark.
    fn decode<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ParseError> {
        let h = packet.header();
        let mut repr = Repr {
            kind: MessageType::try_from(h.kind)?,
            flags: h.flags & !flags::AUTH,
            hops: h.hops,
            node_id: h.node_id.get(),
            incarnation: h.incarnation.get(),
            sequence: h.sequence.get(),
            interval_ms: h.interval_ms.get(),
            hold_ms: h.hold_ms.get(),
            label: Label(h.label),
            addr: Ipv4Addr::from(h.addr),
            members: packet.announce_body().map_or(0, |b| b.members.get()),
            aliases: ArrayVec::new_const(),
            entries: ArrayVec::new_const(),
            notice: packet.notice_body().and_then(|b| {
                Some(Notice {
                    what: What::from_u8(b.what)?,
                    addr: Ipv4Addr::from(b.addr),
                    incarnation: b.incarnation.get(),
                    sequence: b.sequence.get(),
                })
            }),
            auth: packet.trailer().map(|t| Auth {
                key_id: t.key_id.get(),
                stamp: t.stamp.get(),
                mac: t.mac,
            }),
        };
        for raw in packet.aliases() {
            repr.aliases
                .try_push(Ipv4Addr::from(*raw))
                .map_err(|_| ParseError::TooMany)?;
        }
        for raw in packet.sync_entries() {
            let entry = SyncEntry {
                addr: Ipv4Addr::from(raw.addr),
                incarnation: raw.incarnation.get(),
                hold_ms: raw.hold_ms.get(),
            };
            repr.entries
                .try_push(entry)
                .map_err(|_| ParseError::TooMany)?;
        }
        repr.validate()?;
        Ok(repr)
    }

    /// The error `parse` would report for this message, checked in the same
    /// order: counts, addresses, node ids, timing. Also rejects what the wire
    /// cannot express (entries in ANNOUNCE/LEAVE, aliases in SYNC, the AUTH bit
    /// in `flags`) as `TooMany`: more than the type has room for.
    pub fn validate(&self) -> Result<(), ParseError> {
        let lists_ok = match self.kind {
            MessageType::Announce | MessageType::Leave => {
                self.entries.is_empty() && self.notice.is_none()
            }
            MessageType::Sync => {
                self.aliases.is_empty()
                    && !self.entries.is_empty()
                    && self.members == 0
                    && self.notice.is_none()
            }
            MessageType::Notice => {
                self.aliases.is_empty()
                    && self.entries.is_empty()
                    && self.members == 0
                    && self.notice.is_some()
            }
        };
        if !lists_ok || self.flags & flags::AUTH != 0 {
            return Err(ParseError::TooMany);
        }
        let addrs_ok = is_valid_node_addr(self.addr)
            && self.aliases.iter().all(|&a| is_valid_node_addr(a))
            && self.entries.iter().all(|e| is_valid_node_addr(e.addr))
            && self.notice.is_none_or(|n| is_valid_node_addr(n.addr));
        if !addrs_ok {
            return Err(ParseError::BadAddress);
        }
        let ids_ok = self.node_id != 0
            && self.node_id == node_id_of(self.addr)
            && self.entries.iter().all(|e| node_id_of(e.addr) != 0)
            && self.notice.is_none_or(|n| node_id_of(n.addr) != 0);
        if !ids_ok {
            return Err(ParseError::BadNodeId);
        }
        let timing_ok = (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms)
            && (self.interval_ms..=MAX_HOLD_MS).contains(&self.hold_ms)
            && self.entries.iter().all(|e| e.hold_ms <= MAX_HOLD_MS);
        if !timing_ok {
            return Err(ParseError::BadTiming);
        }
        Ok(())
    }

    /// Bytes [`Repr::emit`] writes (no extension bytes).
    pub fn buffer_len(&self) -> usize {
        let body = match self.kind {
            MessageType::Announce | MessageType::Leave => ANNOUNCE_LEN,
            MessageType::Sync => SYNC_HEADER_LEN + self.entries.len() * SYNC_ENTRY_LEN,
            MessageType::Notice => NOTICE_LEN,
        };
        body + if self.auth.is_some() { TRAILER_LEN } else { 0 }
    }

    /// Writes the message to the front of `buf` and returns its length.
    /// Reserved bytes and unused alias slots are zero; the AUTH flag is set iff
    /// `auth` is `Some`. Writes nothing if the `Repr` is invalid.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        self.validate().map_err(EmitError::Invalid)?;
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(EmitError::BufferTooSmall)?;
        out.fill(0);

        let auth_flag = if self.auth.is_some() { flags::AUTH } else { 0 };
        let header = Header {
            magic: MAGIC,
            version: VERSION,
            kind: self.kind as u8,
            flags: self.flags | auth_flag,
            hops: self.hops,
            // `len` <= 508 by construction (validated counts).
            length: U16::new(len as u16),
            node_id: U16::new(self.node_id),
            incarnation: U32::new(self.incarnation),
            sequence: U32::new(self.sequence),
            interval_ms: U32::new(self.interval_ms),
            hold_ms: U32::new(self.hold_ms),
            label: self.label.0,
            addr: self.addr.octets(),
        };
        let (head, body) = out.split_at_mut(HEADER_LEN);
        header.write_to(head).map_err(too_small)?;

        match self.kind {
            MessageType::Announce | MessageType::Leave => {
                let mut slots = [[0u8; 4]; MAX_ALIASES];
                for (slot, alias) in slots.iter_mut().zip(&self.aliases) {
                    *slot = alias.octets();
                }
                let raw = AnnounceBody {
                    alias_count: self.aliases.len() as u8,
                    members: U16::new(self.members),
                    reserved: [0; 1],
                    aliases: slots,
                };
                raw.write_to_prefix(body).map_err(too_small)?;
            }
            MessageType::Sync => {
                let raw = SyncBody {
                    entry_count: U16::new(self.entries.len() as u16),
                    reserved: [0; 2],
                };
                raw.write_to_prefix(body).map_err(too_small)?;
                let slots = body
                    .get_mut(SYNC_HEADER_LEN - HEADER_LEN..)
                    .ok_or(EmitError::BufferTooSmall)?
                    .chunks_exact_mut(SYNC_ENTRY_LEN);
                for (slot, e) in slots.zip(&self.entries) {
                    let raw = SyncEntryRaw {
                        addr: e.addr.octets(),
                        incarnation: U32::new(e.incarnation),
                        hold_ms: U32::new(e.hold_ms),
                    };
                    raw.write_to(slot).map_err(too_small)?;
                }
            }
            MessageType::Notice => {
                // `validate` made sure it is there.
                let n = self.notice.ok_or(EmitError::Invalid(ParseError::TooMany))?;
                let raw = NoticeBody {
                    what: n.what as u8,
                    reserved: [0; 3],
                    addr: n.addr.octets(),
                    incarnation: U32::new(n.incarnation),
                    sequence: U32::new(n.sequence),
                };
                raw.write_to_prefix(body).map_err(too_small)?;
            }
        }

        if let Some(auth) = &self.auth {
            let raw = AuthTrailer {
                key_id: U32::new(auth.key_id),
                stamp: U32::new(auth.stamp),
                mac: auth.mac,
            };
            raw.write_to_suffix(out).map_err(too_small)?;
        }
        Ok(len)
    }
}

/// Maps zerocopy's size errors, which validated lengths rule out, to our error.
fn too_small<E>(_: E) -> EmitError {
    EmitError::BufferTooSmall
}

/// The fuzz invariant, shared by `fuzz/fuzz_targets/wire.rs` and the seed-corpus
/// replay test: parsing never panics, and whatever parses re-emits to a message
/// that parses to the same `Repr` (bytes may differ: reserved and extension
/// bytes are not kept). Panics when the invariant is broken. Test scaffolding:
/// compiled only for tests and with the `fuzzing` feature.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_check(data: &[u8]) {
    let parsed = Repr::parse(data);
    // The unchecked accessors must not panic either once framing is valid.
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = (packet.aliases(), packet.sync_entries(), packet.trailer());
    }
    let Ok(repr) = parsed else { return };
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let n = match repr.emit(&mut buf) {
        Ok(n) => n,
        Err(e) => panic!("parsed Repr does not emit: {e:?}: {repr:?}"),
    };
    assert_eq!(n, repr.buffer_len());
    assert!(n <= data.len(), "emit grew the message");
    let again = Repr::parse(&buf[..n]);
    assert_eq!(
        again.as_ref(),
        Ok(&repr),
        "emit/parse round trip changed the Repr"
    );

    // A relay bumping `hops` in place changes nothing else.
    let hops = repr.hops.wrapping_add(1);
    set_hops(&mut buf[..n], hops);
    let relayed = Repr::parse(&buf[..n]);
    assert_eq!(relayed.map(|r| r.hops), Ok(hops));
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    /// ANNOUNCE from 192.168.10.220 with two aliases.
    #[rustfmt::skip]
    const ANNOUNCE: [u8; 76] = [
        0x4f, 0x4d, 0x44, 0x53,             // magic "OMDS"
        0x01,                               // version 1
        0x01,                               // type ANNOUNCE
        0x00,                               // flags
        0x00,                               // hops
        0x00, 0x4c,                         // length 76
        0x0a, 0xdc,                         // node_id 0x0adc
        0x12, 0x34, 0x56, 0x78,             // incarnation
        0x00, 0x00, 0x00, 0x2a,             // sequence 42
        0x00, 0x00, 0x07, 0xd0,             // interval_ms 2000
        0x00, 0x00, 0x17, 0x70,             // hold_ms 6000
        b'm', b'o', b's', b'i', b'x', 0, 0, 0, // label "mosix"
        0, 0, 0, 0, 0, 0, 0, 0,
        192, 168, 10, 220,                  // addr
        0x02,                               // alias_count 2
        0x01, 0x2c,                         // members 300
        0x00,                               // reserved
        10, 0, 0, 220,                      // alias 1
        172, 16, 5, 220,                    // alias 2
        0, 0, 0, 0,                         // unused slots
        0, 0, 0, 0,
        0, 0, 0, 0,
        0, 0, 0, 0,
    ];

    fn announce_repr() -> Repr {
        let mut r = Repr::new(
            MessageType::Announce,
            ip(192, 168, 10, 220),
            0x1234_5678,
            Label::from_str_checked("mosix").unwrap(),
            2000,
            6000,
        );
        r.sequence = 42;
        r.members = 300;
        r.aliases.push(ip(10, 0, 0, 220));
        r.aliases.push(ip(172, 16, 5, 220));
        r
    }

    /// LEAVE from 10.1.2.3, relayed twice, default label, no aliases.
    #[rustfmt::skip]
    const LEAVE: [u8; 76] = [
        0x4f, 0x4d, 0x44, 0x53,             // magic
        0x01,                               // version
        0x02,                               // type LEAVE
        0x00,                               // flags
        0x02,                               // hops 2
        0x00, 0x4c,                         // length 76
        0x02, 0x03,                         // node_id 0x0203
        0xca, 0xfe, 0xba, 0xbe,             // incarnation
        0xff, 0xff, 0xff, 0xff,             // sequence (about to wrap)
        0x00, 0x00, 0x03, 0xe8,             // interval_ms 1000
        0x00, 0x00, 0x0b, 0xb8,             // hold_ms 3000
        0, 0, 0, 0, 0, 0, 0, 0,             // label: default (all NUL)
        0, 0, 0, 0, 0, 0, 0, 0,
        10, 1, 2, 3,                        // addr
        0x00,                               // alias_count 0
        0x00, 0x00,                         // members: not said
        0x00,                               // reserved
        0, 0, 0, 0, 0, 0, 0, 0,             // 6 unused alias slots
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn leave_repr() -> Repr {
        let mut r = Repr::new(
            MessageType::Leave,
            ip(10, 1, 2, 3),
            0xcafe_babe,
            Label::DEFAULT,
            1000,
            3000,
        );
        r.hops = 2;
        r.sequence = u32::MAX;
        r
    }

    /// SYNC reply from 192.168.10.1 with two entries.
    #[rustfmt::skip]
    const SYNC: [u8; 76] = [
        0x4f, 0x4d, 0x44, 0x53,             // magic
        0x01,                               // version
        0x03,                               // type SYNC
        0x02,                               // flags REPLY
        0x00,                               // hops
        0x00, 0x4c,                         // length 76 (52 + 2 * 12)
        0x0a, 0x01,                         // node_id 0x0a01
        0x00, 0x00, 0x00, 0x07,             // incarnation 7
        0x00, 0x00, 0x01, 0x00,             // sequence 256
        0x00, 0x00, 0x00, 0x64,             // interval_ms 100 (minimum)
        0x05, 0x26, 0x5c, 0x00,             // hold_ms 86 400 000 (maximum)
        b'm', b'o', b's', b'i', b'x', 0, 0, 0, // label "mosix"
        0, 0, 0, 0, 0, 0, 0, 0,
        192, 168, 10, 1,                    // addr
        0x00, 0x02,                         // entry_count 2
        0x00, 0x00,                         // reserved
        192, 168, 10, 220,                  // entry 1: addr
        0x12, 0x34, 0x56, 0x78,             //          incarnation
        0x00, 0x00, 0x13, 0x88,             //          hold_ms 5000
        192, 168, 10, 7,                    // entry 2: addr
        0xde, 0xad, 0xbe, 0xef,             //          incarnation
        0x00, 0x00, 0x00, 0x00,             //          hold_ms 0 (about to expire)
    ];

    fn sync_repr() -> Repr {
        let mut r = Repr::new(
            MessageType::Sync,
            ip(192, 168, 10, 1),
            7,
            Label::from_str_checked("mosix").unwrap(),
            MIN_INTERVAL_MS,
            MAX_HOLD_MS,
        );
        r.flags = flags::REPLY;
        r.sequence = 256;
        r.entries.push(SyncEntry {
            addr: ip(192, 168, 10, 220),
            incarnation: 0x1234_5678,
            hold_ms: 5000,
        });
        r.entries.push(SyncEntry {
            addr: ip(192, 168, 10, 7),
            incarnation: 0xdead_beef,
            hold_ms: 0,
        });
        r
    }

    /// ANNOUNCE from 172.16.0.5 (node id 5) with one alias and an AUTH trailer.
    #[rustfmt::skip]
    const ANNOUNCE_AUTH: [u8; 100] = [
        0x4f, 0x4d, 0x44, 0x53,             // magic
        0x01,                               // version
        0x01,                               // type ANNOUNCE
        0x01,                               // flags AUTH
        0x00,                               // hops
        0x00, 0x64,                         // length 100 (76 + 24)
        0x00, 0x05,                         // node_id 5
        0x00, 0x00, 0x00, 0x01,             // incarnation 1
        0x00, 0x00, 0x00, 0x00,             // sequence 0
        0x00, 0x36, 0xee, 0x80,             // interval_ms 3 600 000 (maximum)
        0x00, 0x36, 0xee, 0x80,             // hold_ms = interval_ms
        b'l', b'a', b'b', b'-', b'c', b'l', b'u', b's', // label "lab-cluster-0001"
        b't', b'e', b'r', b'-', b'0', b'0', b'0', b'1', //   (all 16 bytes)
        172, 16, 0, 5,                      // addr
        0x01,                               // alias_count 1
        0x00, 0x00, 0x00,                   // reserved
        10, 9, 8, 7,                        // alias 1
        0, 0, 0, 0, 0, 0, 0, 0,             // 5 unused slots
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0,
        0x00, 0x00, 0x00, 0x07,             // trailer key_id 7
        0x00, 0x01, 0x02, 0x03,             //         stamp
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, // mac
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
    ];

    fn announce_auth_repr() -> Repr {
        let mut r = Repr::new(
            MessageType::Announce,
            ip(172, 16, 0, 5),
            1,
            Label::from_str_checked("lab-cluster-0001").unwrap(),
            MAX_INTERVAL_MS,
            MAX_INTERVAL_MS,
        );
        r.aliases.push(ip(10, 9, 8, 7));
        r.auth = Some(Auth {
            key_id: 7,
            stamp: 0x0001_0203,
            mac: [
                0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad,
                0xae, 0xaf,
            ],
        });
        r
    }

    fn fixtures() -> [(&'static str, &'static [u8], Repr); 4] {
        [
            ("announce", &ANNOUNCE, announce_repr()),
            ("leave", &LEAVE, leave_repr()),
            ("sync", &SYNC, sync_repr()),
            ("announce_auth", &ANNOUNCE_AUTH, announce_auth_repr()),
        ]
    }

    /// Copies `src` into an owned buffer, applies `f`, and parses the result.
    fn parse_patched(src: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Result<Repr, ParseError> {
        let mut v = src.to_vec();
        f(&mut v);
        let r = Repr::parse(&v);
        fuzz_check(&v);
        r
    }

    fn set_len_field(v: &mut [u8], len: usize) {
        v[field::LENGTH].copy_from_slice(&(len as u16).to_be_bytes());
    }

    /// Makes the length field agree with the buffer.
    fn fix_len_field(v: &mut [u8]) {
        let n = v.len();
        set_len_field(v, n);
    }

    /// Replaces the header address and keeps the node id consistent with it.
    fn set_addr(v: &mut [u8], a: Ipv4Addr) {
        v[field::ADDR].copy_from_slice(&a.octets());
        v[field::NODE_ID].copy_from_slice(&node_id_of(a).to_be_bytes());
    }

    fn full_sync(auth: bool) -> Repr {
        let mut r = sync_repr();
        r.entries.clear();
        for i in 0..MAX_SYNC_ENTRIES as u8 {
            r.entries.push(SyncEntry {
                addr: ip(192, 168, 10, i + 1),
                incarnation: u32::from(i) * 0x0101_0101,
                hold_ms: u32::from(i) * 1000,
            });
        }
        if auth {
            r.auth = announce_auth_repr().auth;
        }
        r
    }

    #[test]
    fn fixtures_parse_and_emit() {
        for (name, bytes, expected) in fixtures() {
            assert_eq!(Repr::parse(bytes), Ok(expected.clone()), "{name}");
            assert_eq!(expected.buffer_len(), bytes.len(), "{name}");
            let mut buf = [0xffu8; MAX_MESSAGE_LEN];
            assert_eq!(expected.emit(&mut buf), Ok(bytes.len()), "{name}");
            assert_eq!(&buf[..bytes.len()], bytes, "{name}");
            fuzz_check(bytes);
        }
    }

    #[test]
    fn packet_accessors() {
        let p = Packet::new_checked(&ANNOUNCE[..]).unwrap();
        assert_eq!(p.kind(), Some(MessageType::Announce));
        assert_eq!(p.node_id(), 0x0adc);
        assert_eq!(p.length(), 76);
        assert_eq!(p.addr(), ip(192, 168, 10, 220));
        assert_eq!(p.aliases(), &[[10, 0, 0, 220], [172, 16, 5, 220]]);
        assert!(p.sync_entries().is_empty());
        assert!(p.trailer().is_none());
        assert_eq!(p.label().as_str(), Some("mosix"));

        let p = Packet::new_checked(&SYNC[..]).unwrap();
        assert_eq!(p.sync_entries().len(), 2);
        assert_eq!(p.sync_entries()[1].incarnation.get(), 0xdead_beef);
        assert!(p.announce_body().is_none());

        let p = Packet::new_checked(&ANNOUNCE_AUTH[..]).unwrap();
        assert_eq!(p.trailer().map(|t| t.key_id.get()), Some(7));

        // Unchecked view of garbage: body accessors stay panic-free.
        let mut junk = ANNOUNCE;
        junk[field::ALIAS_COUNT] = 200;
        let p = Packet::new_unchecked(&junk[..]);
        assert_eq!(p.check_len(), Err(ParseError::TooMany));
        assert!(p.aliases().is_empty());
        let p = Packet::new_unchecked(&SYNC[..60]);
        assert!(p.sync_entries().is_empty());
    }

    #[test]
    fn field_offsets_match_fixture() {
        assert_eq!(&ANNOUNCE[field::MAGIC], b"OMDS");
        assert_eq!(ANNOUNCE[field::VERSION], VERSION);
        assert_eq!(ANNOUNCE[field::TYPE], MessageType::Announce as u8);
        assert_eq!(&ANNOUNCE[field::NODE_ID], &[0x0a, 0xdc]);
        assert_eq!(&ANNOUNCE[field::ADDR], &[192, 168, 10, 220]);
        assert_eq!(ANNOUNCE[field::ALIAS_COUNT], 2);
        assert_eq!(&ANNOUNCE[field::ALIASES][..4], &[10, 0, 0, 220]);
        assert_eq!(&SYNC[field::ENTRY_COUNT], &[0, 2]);
        assert_eq!(
            &SYNC[field::ENTRIES..][field::ENTRY_ADDR],
            &[192, 168, 10, 220]
        );
        let trailer = &ANNOUNCE_AUTH[ANNOUNCE_AUTH.len() - TRAILER_LEN..];
        assert_eq!(&trailer[field::KEY_ID], &[0, 0, 0, 7]);
        assert_eq!(trailer[field::MAC][0], 0xa0);
    }

    #[test]
    fn empty_and_every_truncation() {
        assert_eq!(Repr::parse(&[]), Err(ParseError::Truncated));
        for (name, bytes, _) in fixtures() {
            for n in 0..bytes.len() {
                let r = Repr::parse(&bytes[..n]);
                let want = if n < HEADER_LEN {
                    ParseError::Truncated
                } else {
                    ParseError::LengthMismatch
                };
                assert_eq!(r, Err(want), "{name} cut at {n}");
                fuzz_check(&bytes[..n]);
                // Same cut, length field patched to agree: the body is short.
                if n >= HEADER_LEN {
                    let r = parse_patched(&bytes[..n], |v| set_len_field(v, n));
                    assert_eq!(r, Err(ParseError::Truncated), "{name} short body {n}");
                }
            }
        }
    }

    #[test]
    fn bad_magic_and_version() {
        let r = parse_patched(&ANNOUNCE, |v| v[0] = b'X');
        assert_eq!(r, Err(ParseError::BadMagic));
        let r = parse_patched(&ANNOUNCE, |v| v[field::VERSION] = 0);
        assert_eq!(r, Err(ParseError::BadVersion));
        let r = parse_patched(&ANNOUNCE, |v| v[field::VERSION] = 2);
        assert_eq!(r, Err(ParseError::NewerVersion));
        let r = parse_patched(&ANNOUNCE, |v| v[field::VERSION] = 255);
        assert_eq!(r, Err(ParseError::NewerVersion));
        // Magic is checked before the length: foreign traffic is bad_magic.
        let r = parse_patched(&ANNOUNCE[..60], |v| v[1] = 0);
        assert_eq!(r, Err(ParseError::BadMagic));
        // A newer version may have any length.
        let r = parse_patched(&ANNOUNCE[..60], |v| v[field::VERSION] = 2);
        assert_eq!(r, Err(ParseError::NewerVersion));
    }

    #[test]
    fn length_field() {
        for delta in [-1i32, 1] {
            let r = parse_patched(&ANNOUNCE, |v| set_len_field(v, (76 + delta) as usize));
            assert_eq!(r, Err(ParseError::LengthMismatch), "delta {delta}");
        }
        let r = parse_patched(&ANNOUNCE, |v| set_len_field(v, 0xffff));
        assert_eq!(r, Err(ParseError::LengthMismatch));
        // Consistent but too big.
        let r = parse_patched(&ANNOUNCE, |v| {
            v.resize(MAX_MESSAGE_LEN + 1, 0);
            set_len_field(v, MAX_MESSAGE_LEN + 1);
        });
        assert_eq!(r, Err(ParseError::LengthMismatch));
        // Exactly the maximum is fine (extension bytes).
        let r = parse_patched(&ANNOUNCE, |v| {
            v.resize(MAX_MESSAGE_LEN, 0);
            set_len_field(v, MAX_MESSAGE_LEN);
        });
        assert_eq!(r, Ok(announce_repr()));
        // Trailing bytes beyond the length field.
        let r = parse_patched(&ANNOUNCE, |v| v.push(0));
        assert_eq!(r, Err(ParseError::LengthMismatch));
    }

    #[test]
    fn unknown_type() {
        for t in [0u8, 5, 255] {
            let r = parse_patched(&ANNOUNCE, |v| v[field::TYPE] = t);
            assert_eq!(r, Err(ParseError::UnknownType), "type {t}");
        }
        // A kind of NOTICE this version does not know is an unknown type too.
        for what in [0u8, 5, 255] {
            let mut v = NOTICE.to_vec();
            v[field::NOTICE_WHAT] = what;
            assert_eq!(Repr::parse(&v), Err(ParseError::UnknownType), "what {what}");
        }
        // ANNOUNCE <-> LEAVE share the body.
        let r = parse_patched(&ANNOUNCE, |v| v[field::TYPE] = 2);
        assert_eq!(r.map(|r| r.kind), Ok(MessageType::Leave));
    }

    /// NOTICE (DEAD) from 192.168.10.220 about 192.168.10.78.
    #[rustfmt::skip]
    const NOTICE: [u8; 64] = [
        0x4f, 0x4d, 0x44, 0x53,             // magic "OMDS"
        0x01,                               // version 1
        0x04,                               // type NOTICE
        0x00,                               // flags
        0x00,                               // hops
        0x00, 0x40,                         // length 64
        0x0a, 0xdc,                         // node_id 0x0adc
        0x12, 0x34, 0x56, 0x78,             // incarnation
        0x00, 0x00, 0x00, 0x2b,             // sequence 43
        0x00, 0x00, 0x07, 0xd0,             // interval_ms 2000
        0x00, 0x00, 0x17, 0x70,             // hold_ms 6000
        0, 0, 0, 0, 0, 0, 0, 0,             // label: default
        0, 0, 0, 0, 0, 0, 0, 0,
        192, 168, 10, 220,                  // addr
        0x04,                               // what: DEAD
        0x00, 0x00, 0x00,                   // reserved
        192, 168, 10, 78,                   // subject addr
        0xca, 0xfe, 0xba, 0xbe,             // subject incarnation
        0x00, 0x00, 0x01, 0x00,             // subject sequence 256
    ];

    #[test]
    fn notice_layout_parses_and_emits_byte_for_byte() {
        let mut r = Repr::new(
            MessageType::Notice,
            ip(192, 168, 10, 220),
            0x1234_5678,
            Label::DEFAULT,
            2000,
            6000,
        );
        r.sequence = 43;
        r.notice = Some(Notice {
            what: What::Dead,
            addr: ip(192, 168, 10, 78),
            incarnation: 0xcafe_babe,
            sequence: 256,
        });
        assert_eq!(Repr::parse(&NOTICE), Ok(r.clone()));
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let n = r.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], &NOTICE[..]);
        fuzz_check(&NOTICE);
        // A subject that is no node: a bad address; short: truncated.
        let mut v = NOTICE.to_vec();
        v[field::SUBJECT_ADDR][..].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(Repr::parse(&v), Err(ParseError::BadAddress));
        let mut v = NOTICE[..60].to_vec();
        v[field::LENGTH][..].copy_from_slice(&[0, 60]);
        assert_eq!(Repr::parse(&v), Err(ParseError::Truncated));
        // A NOTICE without its body cannot be emitted.
        r.notice = None;
        assert!(r.emit(&mut buf).is_err());
    }

    #[test]
    fn counts() {
        for c in [7u8, 255] {
            let r = parse_patched(&ANNOUNCE, |v| v[field::ALIAS_COUNT] = c);
            assert_eq!(r, Err(ParseError::TooMany), "alias_count {c}");
        }
        // Six is fine (the unused slots of the fixture are 0.0.0.0: bad address).
        let r = parse_patched(&ANNOUNCE, |v| v[field::ALIAS_COUNT] = 6);
        assert_eq!(r, Err(ParseError::BadAddress));
        for c in [0u16, 37, 0xffff] {
            let r = parse_patched(&SYNC, |v| {
                v[field::ENTRY_COUNT].copy_from_slice(&c.to_be_bytes())
            });
            assert_eq!(r, Err(ParseError::TooMany), "entry_count {c}");
        }
        // 3 entries claimed, 2 present.
        let r = parse_patched(&SYNC, |v| v[field::ENTRY_COUNT].copy_from_slice(&[0, 3]));
        assert_eq!(r, Err(ParseError::Truncated));
        // 1 entry claimed, 2 present: the second is extension space.
        let r = parse_patched(&SYNC, |v| v[field::ENTRY_COUNT].copy_from_slice(&[0, 1]));
        assert_eq!(r.map(|r| r.entries.len()), Ok(1));
    }

    #[test]
    fn node_ids() {
        let r = parse_patched(&ANNOUNCE, |v| v[field::NODE_ID].copy_from_slice(&[0, 0]));
        assert_eq!(r, Err(ParseError::BadNodeId));
        let r = parse_patched(&ANNOUNCE, |v| {
            v[field::NODE_ID].copy_from_slice(&[0x0a, 0xdd])
        });
        assert_eq!(r, Err(ParseError::BadNodeId));
        // An address whose id would be 0.
        let r = parse_patched(&ANNOUNCE, |v| set_addr(v, ip(10, 1, 0, 0)));
        assert_eq!(r, Err(ParseError::BadNodeId));
        // A SYNC entry whose id would be 0.
        let r = parse_patched(&SYNC, |v| v[field::ENTRIES + 2..field::ENTRIES + 4].fill(0));
        assert_eq!(r, Err(ParseError::BadNodeId));
        assert_eq!(node_id_of(ip(192, 168, 10, 220)), 2780);
    }

    #[test]
    fn addresses() {
        let bad = [
            ip(0, 0, 0, 0),
            ip(0, 1, 2, 3),
            ip(127, 0, 0, 1),
            ip(127, 9, 10, 11),
            ip(224, 0, 0, 1),
            ip(239, 255, 77, 42),
            ip(255, 255, 255, 255),
        ];
        for a in bad {
            assert!(!is_valid_node_addr(a));
            // Even with the node id made to match, the address is refused first.
            let r = parse_patched(&ANNOUNCE, |v| set_addr(v, a));
            assert_eq!(r, Err(ParseError::BadAddress), "addr {a}");
            let r = parse_patched(&ANNOUNCE, |v| v[56..60].copy_from_slice(&a.octets()));
            assert_eq!(r, Err(ParseError::BadAddress), "alias {a}");
            let r = parse_patched(&SYNC, |v| v[64..68].copy_from_slice(&a.octets()));
            assert_eq!(r, Err(ParseError::BadAddress), "entry {a}");
        }
        // Bad address wins over a bad node id.
        let r = parse_patched(&ANNOUNCE, |v| v[field::ADDR].fill(0));
        assert_eq!(r, Err(ParseError::BadAddress));
        assert!(is_valid_node_addr(ip(10, 0, 0, 1)));
    }

    #[test]
    fn timing() {
        let put = |v: &mut Vec<u8>, f: field::Field, x: u32| v[f].copy_from_slice(&x.to_be_bytes());
        let cases: [(u32, u32, bool); 9] = [
            (99, 1000, false),
            (100, 100, true),
            (0, 0, false),
            (MAX_INTERVAL_MS, MAX_HOLD_MS, true),
            (MAX_INTERVAL_MS + 1, MAX_HOLD_MS, false),
            (2000, 1999, false),
            (2000, MAX_HOLD_MS + 1, false),
            (2000, u32::MAX, false),
            (u32::MAX, u32::MAX, false),
        ];
        for (interval, hold, ok) in cases {
            let r = parse_patched(&ANNOUNCE, |v| {
                put(v, field::INTERVAL_MS, interval);
                put(v, field::HOLD_MS, hold);
            });
            let want = if ok {
                Ok(())
            } else {
                Err(ParseError::BadTiming)
            };
            assert_eq!(r.map(|_| ()), want, "interval {interval} hold {hold}");
        }
        let entry_hold = field::ENTRIES + field::ENTRY_HOLD_MS.start;
        let r = parse_patched(&SYNC, |v| {
            put(v, entry_hold..entry_hold + 4, MAX_HOLD_MS + 1)
        });
        assert_eq!(r, Err(ParseError::BadTiming));
    }

    #[test]
    fn auth_trailer_rules() {
        // AUTH flag on a message with no room for the trailer.
        let r = parse_patched(&ANNOUNCE, |v| v[field::FLAGS] |= flags::AUTH);
        assert_eq!(r, Err(ParseError::Truncated));
        let r = parse_patched(&SYNC, |v| v[field::FLAGS] |= flags::AUTH);
        assert_eq!(r, Err(ParseError::Truncated));
        // Without the flag, the trailer bytes are just extension bytes.
        let r = parse_patched(&ANNOUNCE_AUTH, |v| v[field::FLAGS] = 0);
        let mut want = announce_auth_repr();
        want.auth = None;
        assert_eq!(r, Ok(want));
        // Full SYNC with trailer is the largest message: 508 bytes.
        let full = full_sync(true);
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        assert_eq!(full.emit(&mut buf), Ok(508));
        assert_eq!(Repr::parse(&buf[..508]), Ok(full));
    }

    #[test]
    fn extension_bytes_are_ignored() {
        // 8 bytes between the ANNOUNCE body and the trailer.
        let mut v = ANNOUNCE_AUTH[..ANNOUNCE_LEN].to_vec();
        v.extend_from_slice(&[0xee; 8]);
        v.extend_from_slice(&ANNOUNCE_AUTH[ANNOUNCE_LEN..]);
        fix_len_field(&mut v);
        assert_eq!(Repr::parse(&v), Ok(announce_auth_repr()));
        fuzz_check(&v);
        // After a SYNC's entries, no trailer.
        let r = parse_patched(&SYNC, |v| {
            v.extend_from_slice(&[1, 2, 3]);
            fix_len_field(v);
        });
        assert_eq!(r, Ok(sync_repr()));
        // Reserved bytes and unused slots are ignored, and re-emitted as zero.
        let r = parse_patched(&ANNOUNCE, |v| {
            v[field::ALIAS_RESERVED].fill(0x55);
            v[68..76].fill(0x66);
        });
        assert_eq!(r, Ok(announce_repr()));
        let r = parse_patched(&SYNC, |v| v[field::SYNC_RESERVED].fill(0x77));
        assert_eq!(r, Ok(sync_repr()));
        // Reserved flag bits are kept, not refused.
        let r = parse_patched(&ANNOUNCE, |v| v[field::FLAGS] = 0xfc);
        assert_eq!(r.map(|r| r.flags), Ok(0xfc));
    }

    #[test]
    fn emit_refuses_invalid() {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let mut r = announce_repr();
        r.node_id = 1;
        assert_eq!(
            r.emit(&mut buf),
            Err(EmitError::Invalid(ParseError::BadNodeId))
        );
        let mut r = announce_repr();
        r.aliases[0] = Ipv4Addr::BROADCAST;
        assert_eq!(
            r.emit(&mut buf),
            Err(EmitError::Invalid(ParseError::BadAddress))
        );
        let mut r = announce_repr();
        r.hold_ms = r.interval_ms - 1;
        assert_eq!(
            r.emit(&mut buf),
            Err(EmitError::Invalid(ParseError::BadTiming))
        );
        let mut r = sync_repr();
        r.entries.clear();
        assert_eq!(
            r.emit(&mut buf),
            Err(EmitError::Invalid(ParseError::TooMany))
        );
        let mut r = announce_repr();
        r.entries.push(sync_repr().entries[0]);
        assert_eq!(
            r.emit(&mut buf),
            Err(EmitError::Invalid(ParseError::TooMany))
        );
        let mut r = sync_repr();
        r.aliases.push(ip(10, 0, 0, 1));
        assert_eq!(
            r.emit(&mut buf),
            Err(EmitError::Invalid(ParseError::TooMany))
        );
        let mut r = announce_repr();
        r.flags = flags::AUTH;
        assert!(matches!(r.emit(&mut buf), Err(EmitError::Invalid(_))));
        // Too small a buffer: nothing written.
        let mut small = [0xaau8; 75];
        assert_eq!(
            announce_repr().emit(&mut small),
            Err(EmitError::BufferTooSmall)
        );
        assert!(small.iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn relay_set_hops() {
        let mut v = ANNOUNCE_AUTH;
        set_hops(&mut v, 9);
        let mut want = announce_auth_repr();
        want.hops = 9;
        assert_eq!(Repr::parse(&v), Ok(want));
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.set_hops(10);
        assert_eq!(p.hops(), 10);
        // Short buffers are left alone.
        let mut short = [0u8; 7];
        set_hops(&mut short, 1);
        assert_eq!(short, [0; 7]);
    }

    #[test]
    fn labels() {
        assert_eq!(Label::from_str_checked(""), Some(Label::DEFAULT));
        assert!(Label::from_str_checked("0123456789abcdef").is_some());
        assert!(Label::from_str_checked("0123456789abcdefg").is_none());
        assert!(Label::from_str_checked("a\0b").is_none());
        assert!(Label::from_str_checked("ü-cluster").is_some());
        let l = Label::from_str_checked("mosix").unwrap();
        assert_eq!(l.as_str(), Some("mosix"));
        assert_eq!(l.trimmed(), b"mosix");
        let mut raw = [0u8; LABEL_LEN];
        raw[..3].copy_from_slice(&[b'a', 0xff, b'\n']);
        let bad = Label(raw);
        assert_eq!(bad.as_str(), None);
        let mut buf = [0u8; 32];
        let s = fmt_to(&mut buf, format_args!("{bad}"));
        assert_eq!(s, "a\\xff\\x0a");
    }

    /// Formats into a stack buffer: checks Display needs no allocation.
    fn fmt_to<'a>(buf: &'a mut [u8], args: fmt::Arguments<'_>) -> &'a str {
        struct W<'b>(&'b mut [u8], usize);
        impl fmt::Write for W<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let end = self.1 + s.len();
                self.0
                    .get_mut(self.1..end)
                    .ok_or(fmt::Error)?
                    .copy_from_slice(s.as_bytes());
                self.1 = end;
                Ok(())
            }
        }
        let mut w = W(buf, 0);
        fmt::write(&mut w, args).unwrap();
        let n = w.1;
        core::str::from_utf8(&buf[..n]).unwrap()
    }

    #[test]
    fn error_table() {
        for (i, e) in ParseError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!(!e.name().is_empty());
            let mut buf = [0u8; 128];
            assert!(!fmt_to(&mut buf, format_args!("{e}")).is_empty());
        }
        let names: Vec<_> = ParseError::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "truncated",
                "bad_magic",
                "bad_version",
                "newer_version",
                "length_mismatch",
                "unknown_type",
                "bad_node_id",
                "bad_address",
                "too_many",
                "bad_timing"
            ]
        );
    }

    /// xorshift64*: deterministic, no extra crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn u32(&mut self) -> u32 {
            (self.next() >> 32) as u32
        }
        fn u8(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
        /// Uniform-ish in `lo ..= hi`.
        fn range(&mut self, lo: u32, hi: u32) -> u32 {
            lo + (self.next() % (u64::from(hi - lo) + 1)) as u32
        }
        fn addr(&mut self) -> Ipv4Addr {
            loop {
                let a = Ipv4Addr::from(self.u32());
                if is_valid_node_addr(a) && node_id_of(a) != 0 {
                    return a;
                }
            }
        }
    }

    fn random_repr(rng: &mut Rng) -> Repr {
        let kind = MessageType::from_u8(rng.range(1, 4) as u8).unwrap();
        let interval = rng.range(MIN_INTERVAL_MS, MAX_INTERVAL_MS);
        let hold = rng.range(interval, MAX_HOLD_MS);
        let mut label = [0u8; LABEL_LEN];
        label.iter_mut().for_each(|b| *b = rng.u8());
        let mut r = Repr::new(kind, rng.addr(), rng.u32(), Label(label), interval, hold);
        r.flags = rng.u8() & !flags::AUTH;
        r.hops = rng.u8();
        r.sequence = rng.u32();
        match kind {
            MessageType::Announce | MessageType::Leave => {
                for _ in 0..rng.range(0, MAX_ALIASES as u32) {
                    r.aliases.push(rng.addr());
                }
            }
            MessageType::Sync => {
                for _ in 0..rng.range(1, MAX_SYNC_ENTRIES as u32) {
                    r.entries.push(SyncEntry {
                        addr: rng.addr(),
                        incarnation: rng.u32(),
                        hold_ms: rng.range(0, MAX_HOLD_MS),
                    });
                }
            }
            MessageType::Notice => {
                r.notice = Some(Notice {
                    what: What::from_u8(rng.range(1, 4) as u8).unwrap(),
                    addr: rng.addr(),
                    incarnation: rng.u32(),
                    sequence: rng.u32(),
                });
            }
        }
        if rng.u8() & 1 == 1 {
            let mut mac = [0u8; MAC_LEN];
            mac.iter_mut().for_each(|b| *b = rng.u8());
            r.auth = Some(Auth {
                key_id: rng.u32(),
                stamp: rng.u32(),
                mac,
            });
        }
        r
    }

    #[test]
    fn property_random_reprs_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        for _ in 0..5000 {
            let r = random_repr(&mut rng);
            let n = r.emit(&mut buf).expect("valid random Repr emits");
            assert_eq!(n, r.buffer_len());
            assert_eq!(Repr::parse(&buf[..n]).as_ref(), Ok(&r));
            fuzz_check(&buf[..n]);
        }
    }

    #[test]
    fn property_random_bytes() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut buf = [0u8; 600];
        let mut ok = 0;
        for i in 0..20_000 {
            let n = rng.range(0, 600) as usize;
            buf[..n].iter_mut().for_each(|b| *b = rng.u8());
            // Half the time, make the framing plausible so the deeper rules run.
            if i % 2 == 0 && n >= HEADER_LEN {
                buf[field::MAGIC].copy_from_slice(&MAGIC);
                buf[field::VERSION] = VERSION;
                buf[field::TYPE] = rng.range(1, 3) as u8;
                buf[field::LENGTH].copy_from_slice(&(n as u16).to_be_bytes());
                if buf[field::TYPE] == MessageType::Sync as u8 {
                    buf[field::ENTRY_COUNT.start] = 0;
                } else {
                    buf[field::ALIAS_COUNT] &= 7;
                }
            }
            ok += usize::from(Repr::parse(&buf[..n]).is_ok());
            fuzz_check(&buf[..n]);
        }
        // Sanity: random bytes essentially never make a valid message.
        assert!(ok < 100, "{ok}");
    }

    #[test]
    fn property_single_byte_mutations() {
        let mut full = [0u8; MAX_MESSAGE_LEN];
        let n = full_sync(true).emit(&mut full).unwrap();
        let mut inputs: Vec<&[u8]> = fixtures().iter().map(|f| f.1).collect();
        inputs.push(&full[..n]);
        for input in inputs {
            let mut v = input.to_vec();
            for pos in 0..v.len() {
                let orig = v[pos];
                for b in 0..=255u8 {
                    v[pos] = b;
                    fuzz_check(&v);
                }
                v[pos] = orig;
            }
        }
    }

    /// Regenerates the seed corpus: `cargo test --lib wire -- --ignored write_seed_corpus`.
    /// tests/fuzz_corpus.rs replays it and lists what each seed must parse to.
    #[test]
    #[ignore]
    fn write_seed_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/wire");
        std::fs::create_dir_all(dir).unwrap();
        let mut full = [0u8; MAX_MESSAGE_LEN];
        let n = full_sync(true).emit(&mut full).unwrap();
        let mut ext = ANNOUNCE_AUTH[..ANNOUNCE_LEN].to_vec();
        ext.extend_from_slice(&[0xee; 8]);
        ext.extend_from_slice(&ANNOUNCE_AUTH[ANNOUNCE_LEN..]);
        fix_len_field(&mut ext);

        let patch = |src: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = src.to_vec();
            f(&mut v);
            v
        };
        let seeds: Vec<(&str, Vec<u8>)> = vec![
            ("valid-announce", ANNOUNCE.to_vec()),
            ("valid-leave", LEAVE.to_vec()),
            ("valid-sync", SYNC.to_vec()),
            ("valid-announce-auth", ANNOUNCE_AUTH.to_vec()),
            ("valid-announce-ext", ext),
            ("valid-sync-full-auth", full[..n].to_vec()),
            ("bad-empty", Vec::new()),
            ("bad-short-47", ANNOUNCE[..47].to_vec()),
            ("bad-magic", patch(&ANNOUNCE, &|v| v[0] = b'X')),
            (
                "bad-version-0",
                patch(&ANNOUNCE, &|v| v[field::VERSION] = 0),
            ),
            (
                "bad-version-2",
                patch(&ANNOUNCE, &|v| v[field::VERSION] = 2),
            ),
            ("bad-length", patch(&ANNOUNCE, &|v| set_len_field(v, 77))),
            ("bad-type-4", patch(&ANNOUNCE, &|v| v[field::TYPE] = 4)),
            (
                "bad-alias-count-7",
                patch(&ANNOUNCE, &|v| v[field::ALIAS_COUNT] = 7),
            ),
            (
                "bad-sync-count-37",
                patch(&SYNC, &|v| v[field::ENTRY_COUNT].copy_from_slice(&[0, 37])),
            ),
            (
                "bad-sync-short",
                patch(&SYNC, &|v| v[field::ENTRY_COUNT].copy_from_slice(&[0, 3])),
            ),
            (
                "bad-node-id",
                patch(&ANNOUNCE, &|v| v[field::NODE_ID].fill(0)),
            ),
            (
                "bad-addr-multicast",
                patch(&ANNOUNCE, &|v| set_addr(v, ip(239, 255, 77, 42))),
            ),
            (
                "bad-timing",
                patch(&ANNOUNCE, &|v| v[field::HOLD_MS].fill(0)),
            ),
            (
                "bad-auth-no-room",
                patch(&ANNOUNCE, &|v| v[field::FLAGS] |= flags::AUTH),
            ),
        ];
        for (name, data) in seeds {
            std::fs::write(format!("{dir}/{name}"), &data).unwrap();
        }
    }
}
