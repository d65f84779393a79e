//! The map file (the `setpe` / `/etc/openmosix.map` text format) and the
//! `showmap` layout printed by `omdiscd --dump`.
//!
//! Written by the daemon, read back by `--dump`. The format, one entry a line:
//!
//! ```text
//! # openMosix map written by omdiscd 0.1.0: do not edit, rewritten on every change
//! # writer: pid 1234 time 1764460800
//! # this-node: 2780 192.168.10.220
//! # nodes: 5
//! 2780 192.168.10.220 1
//! 2627 192.168.10.67 1
//! 2780 10.0.0.220 ALIAS
//! ```
//!
//! `FIRST-ID ADDRESS COUNT` is a range of COUNT consecutive ids at consecutive
//! addresses; `ID ADDRESS ALIAS` is a second address of a node. This node's
//! line comes first (on its own, so `--dump` can list it first like `showmap`),
//! then the other nodes by ascending id, consecutive ones compressed into ranges.
#![forbid(unsafe_code)]

use std::fmt::{self, Write};
use std::net::Ipv4Addr;

use crate::map::{ClusterMap, Collision, Node, NodeId};
use crate::num::{u32_of, u64_of};

/// Marker of the comment that names this node.
pub const THIS_NODE_TAG: &str = "# this-node:";

/// Marker of the comment that names the process that wrote the file and
/// when (seconds since 1970), so `--dump` can tell a stale map.
pub const WRITER_TAG: &str = "# writer:";

/// Who wrote a map file, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writer {
    pub pid: u32,
    /// Seconds since 1970.
    pub time_s: u64,
}

/// A time in seconds since 1970, shown as a UTC date in ISO 8601
/// (`2026-12-07T13:59:48Z`). Does not allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc(pub u64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, secs) = (self.0 / 86_400, self.0 % 86_400);
        // The proleptic Gregorian calendar in eras of 400 years (146,097
        // days), counted from 0000-03-01 so that the leap day ends a year.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// A span of whole seconds, as a person says it: `42 s`, `7 min`,
/// `3 h 12 min`, `2 d 5 h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub u64);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        match s {
            0..60 => write!(f, "{s} s"),
            60..3_600 => write!(f, "{} min", s / 60),
            3_600..86_400 => write!(f, "{} h {} min", s / 3_600, s / 60 % 60),
            _ => write!(f, "{} d {} h", s / 86_400, s / 3_600 % 24),
        }
    }
}

/// Most node lines printed in full in the change log; beyond, only joins and leaves.
pub const CHANGE_LOG_FULL_LIMIT: usize = 64;

/// Writes the map in the map file format. Does not allocate.
pub fn render<W: Write + ?Sized>(
    map: &ClusterMap,
    version: &str,
    writer: Option<Writer>,
    out: &mut W,
) -> fmt::Result {
    head(map, version, writer, out)?;
    let own = map.own_node();
    range_line(out, &own, 1)?;
    let mut after = None;
    while let Some((first, count)) = next_range(map, after) {
        range_line(out, &first, count)?;
        after = Some(first.id + (count - 1) as NodeId);
    }
    for node in map.iter() {
        for alias in node.aliases() {
            alias_line(out, node.id, alias)?;
        }
    }
    Ok(())
}

/// The comment lines that start a map file.
pub(crate) fn head<W: Write + ?Sized>(
    map: &ClusterMap,
    version: &str,
    writer: Option<Writer>,
    out: &mut W,
) -> fmt::Result {
    let own = map.own_node();
    writeln!(
        out,
        "# openMosix map written by omdiscd {version}: do not edit, rewritten on every change"
    )?;
    if let Some(w) = writer {
        writeln!(out, "{WRITER_TAG} pid {} time {}", w.pid, w.time_s)?;
    }
    writeln!(out, "{THIS_NODE_TAG} {} {}", own.id, own.addr)?;
    writeln!(out, "# nodes: {}", map.len())
}

/// The next range of the other nodes after id `after`: its first node and
/// how many consecutive ids at consecutive addresses it holds (this node
/// is listed on its own, first).
pub(crate) fn next_range(map: &ClusterMap, after: Option<NodeId>) -> Option<(Node, u32)> {
    let own = map.own_id();
    let mut nodes = map.iter_after(after).filter(|n| n.id != own);
    let first = nodes.next()?;
    let mut count = 1u32;
    for node in nodes {
        let next_id = first.id as u32 + count;
        let next_addr = u32::from(first.addr).checked_add(count);
        if node.id as u32 != next_id || next_addr != Some(u32::from(node.addr)) {
            break;
        }
        count += 1;
    }
    Some((first, count))
}

/// `FIRST-ID ADDRESS COUNT`.
pub(crate) fn range_line<W: Write + ?Sized>(out: &mut W, first: &Node, count: u32) -> fmt::Result {
    writeln!(out, "{} {} {}", first.id, first.addr, count)
}

/// `ID ADDRESS ALIAS`.
pub(crate) fn alias_line<W: Write + ?Sized>(
    out: &mut W,
    id: NodeId,
    alias: Ipv4Addr,
) -> fmt::Result {
    writeln!(out, "{id} {alias} ALIAS")
}

/// A `showmap` row.
pub(crate) fn showmap_row<W: Write + ?Sized>(
    out: &mut W,
    first: NodeId,
    addr: &dyn fmt::Display,
    count: u32,
) -> fmt::Result {
    // Padded as a whole: the id and the address are formatted first.
    let id = Padded::<12>::of(format_args!("0x{first:04x}"));
    let addr = Padded::<16>::of(format_args!("{addr}"));
    writeln!(out, "{id} {addr} {count}")
}

/// The lines `showmap` starts with.
pub(crate) fn showmap_head<W: Write + ?Sized>(out: &mut W, own_id: NodeId) -> fmt::Result {
    writeln!(out, "My Node-Id: 0x{own_id:04x}")?;
    writeln!(out)?;
    writeln!(out, "Base Node-Id Address          Count")?;
    writeln!(out, "------------ ---------------- -----")
}

/// Text formatted into a fixed buffer and padded to `N` columns when shown,
/// without allocating.
struct Padded<const N: usize> {
    buf: heapless::String<256>,
}

impl<const N: usize> Padded<N> {
    fn of(args: fmt::Arguments<'_>) -> Self {
        let mut buf = heapless::String::new();
        let _ = buf.write_fmt(args);
        Padded { buf }
    }
}

impl<const N: usize> fmt::Display for Padded<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<N$}", self.buf.as_str())
    }
}

/// Why a node left the map (see [`Reason::of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// It said goodbye (a LEAVE).
    Goodbye,
    /// It said goodbye because its address changed to this one.
    Moved(Ipv4Addr),
    /// Nothing heard from it for this many milliseconds.
    Expired(u64),
    /// Confirmed dead (a death notice, or this node's own check) after this
    /// many milliseconds of silence, by this node.
    Dead { silent_ms: u64, by: Ipv4Addr },
    /// Taken out otherwise (this node's own old identity).
    Unknown,
}

impl Reason {
    /// Why `n`, a node that left, left.
    pub(crate) fn of(n: &Node) -> Reason {
        match (n.said_goodbye, n.moved_to) {
            (true, Some(to)) => Reason::Moved(to),
            (true, None) => Reason::Goodbye,
            _ if n.dead_by.is_some() && n.departed_ms > n.last_seen_ms => Reason::Dead {
                silent_ms: n.departed_ms - n.last_seen_ms,
                by: n.dead_by.unwrap_or(n.addr),
            },
            _ if n.departed_ms > n.last_seen_ms => Reason::Expired(n.departed_ms - n.last_seen_ms),
            _ => Reason::Unknown,
        }
    }
}

/// Why a node left, for the change log: ` (goodbye)`, ` (address changed
/// to A)`, ` (expired after N s of silence)` or ` (confirmed dead after N s
/// of silence, by A)`.
struct Why(Reason);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Reason::Moved(to) => write!(f, " (address changed to {to})"),
            Reason::Goodbye => f.write_str(" (goodbye)"),
            Reason::Expired(silent_ms) => write!(
                f,
                " (expired after {}.{} s of silence)",
                silent_ms / 1000,
                silent_ms % 1000 / 100
            ),
            Reason::Dead { silent_ms, by } => write!(
                f,
                " (confirmed dead after {}.{} s of silence, by {by})",
                silent_ms / 1000,
                silent_ms % 1000 / 100
            ),
            Reason::Unknown => Ok(()),
        }
    }
}

/// The change line of a node that joined:
/// `openMosix #ID (IP address A) joined the cluster`.
pub(crate) struct JoinedLine<'a>(pub &'a Node);

impl fmt::Display for JoinedLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        write!(
            f,
            "openMosix #{} (IP address {}) joined the cluster",
            n.id, n.addr
        )
    }
}

/// The change line of a node that left, and why:
/// `openMosix #ID (IP address A) left the cluster (goodbye)`.
pub(crate) struct LeftLine<'a>(pub &'a Node);

impl fmt::Display for LeftLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        write!(
            f,
            "openMosix #{} (IP address {}) left the cluster{}",
            n.id,
            n.addr,
            Why(Reason::of(n))
        )
    }
}

/// The line of a node id collision, as logged (and shown by `--watch`).
pub(crate) struct CollisionLine(pub Collision);

impl fmt::Display for CollisionLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Collision {
            id, winner, loser, ..
        } = self.0;
        let why = "or at the same second has the lower address, or is signed where";
        if self.0.own_lost {
            write!(f, "lost node id #{id} (0x{id:04x}) to {winner}, which started first: this node ({loser}) is out of the cluster and silent until {winner} leaves; give it an address whose last two octets no other node has")
        } else if self.0.replaced {
            write!(f, "node id collision: #{id} (0x{id:04x}) moves from {loser} to {winner}, which started first ({why} {loser} is not); {loser} is no longer in the map")
        } else {
            write!(f, "node id collision: #{id} (0x{id:04x}) is claimed by {winner} and {loser}; {winner} keeps it (it started first, {why} {loser} is not), {loser} is not in the map")
        }
    }
}

/// The nodes that left since the last publish, and why, while fewer than
/// [`CHANGE_LOG_FULL_LIMIT`] lines are `listed`; returns how many left.
fn list_left(
    map: &ClusterMap,
    listed: &mut usize,
    line: &mut impl FnMut(fmt::Arguments<'_>),
) -> usize {
    let mut left = 0;
    for node in map.left() {
        left += 1;
        if *listed < CHANGE_LOG_FULL_LIMIT {
            *listed += 1;
            line(format_args!("{}", LeftLine(&node)));
        }
    }
    left
}

/// Emits the lines the openMosix kernel printed when its map changed. For a
/// large map only the nodes that joined or left since the last publish are
/// listed, with a count, so a cluster of thousands does not flood the log.
pub fn change_log(map: &ClusterMap, mut line: impl FnMut(fmt::Arguments<'_>)) {
    let own = map.own_id();
    line(format_args!(
        "openMosix configuration changed: This is openMosix #{own} (of {} configured)",
        map.len()
    ));
    if map.len() <= CHANGE_LOG_FULL_LIMIT {
        for node in map.iter() {
            line(format_args!(
                "openMosix #{} is at IP address {}",
                node.id, node.addr
            ));
        }
        // Then what changed, by name: who came, who went and why.
        let mut listed = 0;
        for node in map.joined().filter(|n| n.id != own) {
            if listed < CHANGE_LOG_FULL_LIMIT {
                listed += 1;
                line(format_args!("{}", JoinedLine(&node)));
            }
        }
        list_left(map, &mut listed, &mut line);
        return;
    }
    // A cold boot of thousands of nodes joins them all at once: list at most
    // CHANGE_LOG_FULL_LIMIT of the changes, count the rest.
    let (mut joined, mut listed) = (0usize, 0usize);
    for node in map.joined() {
        joined += 1;
        if listed < CHANGE_LOG_FULL_LIMIT {
            listed += 1;
            line(format_args!(
                "openMosix #{} is at IP address {}",
                node.id, node.addr
            ));
        }
    }
    let left = list_left(map, &mut listed, &mut line);
    line(format_args!(
        "openMosix: {joined} joined, {left} left ({} of these not listed), {} nodes unchanged",
        joined + left - listed,
        map.len() - joined.min(map.len())
    ));
}

/// A map file read back: what `--dump` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedMap {
    /// This node, from the `# this-node:` comment.
    pub own: Option<(NodeId, String)>,
    /// From the `# writer:` comment (a file without one, or with one
    /// that does not read, has none).
    pub writer: Option<Writer>,
    /// Ranges in file order.
    pub ranges: Vec<RangeLine>,
    /// Alias lines in file order.
    pub aliases: Vec<(NodeId, String)>,
}

/// A `FIRST-ID ADDRESS COUNT` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeLine {
    pub first: NodeId,
    pub addr: String,
    pub count: u32,
}

/// What is wrong with a map file line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFileErrorKind {
    /// Fewer than three fields.
    MissingField,
    /// More than three fields.
    ExtraField,
    /// A node id that is not a number from 1 to 65535.
    BadNodeId,
    /// An address that is neither an IPv4 address nor a host name.
    BadAddress,
    /// A count that is not a number >= 1, or a range past id 65535 or past 255.255.255.255.
    BadCount,
    /// A malformed `# this-node:` comment.
    BadThisNode,
    /// The file is not UTF-8 text.
    NotText,
}

/// A map file error: the 1-based line and what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFileError {
    pub line: usize,
    pub kind: MapFileErrorKind,
}

impl fmt::Display for MapFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            MapFileErrorKind::MissingField => {
                "expected FIRST-ID ADDRESS COUNT (or ID ADDRESS ALIAS)"
            }
            MapFileErrorKind::ExtraField => "too many fields",
            MapFileErrorKind::BadNodeId => "node id must be a number from 1 to 65535",
            MapFileErrorKind::BadAddress => "not an IPv4 address or host name",
            MapFileErrorKind::BadCount => {
                "count must be a number >= 1 that keeps the range within ids 1..65535"
            }
            MapFileErrorKind::BadThisNode => "malformed '# this-node: ID ADDRESS' comment",
            MapFileErrorKind::NotText => "not UTF-8 text",
        };
        write!(f, "line {}: {what}", self.line)
    }
}

impl std::error::Error for MapFileError {}

/// Parses a map file (ours or a hand-written openmosix.map).
pub fn parse(bytes: &[u8]) -> Result<ParsedMap, MapFileError> {
    let text = std::str::from_utf8(bytes).map_err(|e| MapFileError {
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        kind: MapFileErrorKind::NotText,
    })?;
    let mut parsed = ParsedMap::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |kind| MapFileError { line, kind };
        let trimmed = raw.trim();
        if let Some(rest) = trimmed.strip_prefix(THIS_NODE_TAG) {
            let ([id, addr, _, _], 2) = fields(rest) else {
                return Err(err(MapFileErrorKind::BadThisNode));
            };
            let id = parse_id(id).ok_or(err(MapFileErrorKind::BadThisNode))?;
            if !is_address(addr) {
                return Err(err(MapFileErrorKind::BadThisNode));
            }
            parsed.own = Some((id, addr.to_string()));
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(WRITER_TAG) {
            if let (["pid", pid, "time", t], 4) = fields(rest) {
                if let (Some(pid), Some(time_s)) = (u32_of(pid), u64_of(t)) {
                    parsed.writer = Some(Writer { pid, time_s });
                }
            }
            continue;
        }
        let content = match trimmed.find('#') {
            Some(p) => trimmed[..p].trim(),
            None => trimmed,
        };
        if content.is_empty() {
            continue;
        }
        let ([id, addr, third, _], n) = fields(content);
        if n < 3 {
            return Err(err(MapFileErrorKind::MissingField));
        }
        if n > 3 {
            return Err(err(MapFileErrorKind::ExtraField));
        }
        let id = parse_id(id).ok_or(err(MapFileErrorKind::BadNodeId))?;
        if !is_address(addr) {
            return Err(err(MapFileErrorKind::BadAddress));
        }
        if third.eq_ignore_ascii_case("alias") {
            parsed.aliases.push((id, addr.to_string()));
            continue;
        }
        let count: u32 = u32_of(third)
            .filter(|&c| {
                // Checked: a count up to 4294967295 must be a line error,
                // never an overflow.
                let last = (c >= 1).then(|| u32::from(id).checked_add(c - 1)).flatten();
                last.is_some_and(|last| last <= u32::from(u16::MAX))
            })
            .ok_or(err(MapFileErrorKind::BadCount))?;
        if let Ok(ip) = addr.parse::<Ipv4Addr>() {
            if u32::from(ip).checked_add(count - 1).is_none() {
                return Err(err(MapFileErrorKind::BadCount));
            }
        }
        parsed.ranges.push(RangeLine {
            first: id,
            addr: addr.to_string(),
            count,
        });
    }
    Ok(parsed)
}

/// The first four whitespace-separated fields of `s` (`""` for those
/// missing) and how many there are: 5 for five or more. One splitter for
/// the three kinds of line (not `split_whitespace` inlined at each).
#[inline(never)]
fn fields(s: &str) -> ([&str; 4], usize) {
    let mut out = [""; 4];
    let mut n = 0;
    for w in s.split_whitespace() {
        if n == 4 {
            return (out, 5);
        }
        out[n] = w;
        n += 1;
    }
    (out, n)
}

fn parse_id(s: &str) -> Option<NodeId> {
    if !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 5 {
        return None;
    }
    u32_of(s)
        .filter(|&v| (1..=u16::MAX as u32).contains(&v))
        .map(|v| v as NodeId)
}

/// An IPv4 address, or a plausible host name (setpe accepts both).
fn is_address(s: &str) -> bool {
    if s.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let looks_numeric = s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    !looks_numeric
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The nodes a parsed map lists (the sum of its ranges' counts).
pub(crate) fn node_count(map: &ParsedMap) -> u32 {
    map.ranges
        .iter()
        .map(|r| r.count)
        .fold(0u32, u32::saturating_add)
}

/// The node of a parsed map that has one of `addrs` (this host's
/// addresses): its id and that address. Only IPv4 ranges and aliases
/// count: a host name is not resolved.
pub(crate) fn node_of(map: &ParsedMap, addrs: &[Ipv4Addr]) -> Option<(NodeId, Ipv4Addr)> {
    for &a in addrs {
        for r in &map.ranges {
            let Ok(first) = r.addr.parse::<Ipv4Addr>() else {
                continue;
            };
            // Checked by the parser: the range ends within both spaces.
            let offset = u32::from(a).wrapping_sub(u32::from(first));
            if u32::from(a) >= u32::from(first) && offset < r.count {
                return Some((r.first + offset as NodeId, a));
            }
        }
        for (id, alias) in &map.aliases {
            if alias.parse::<Ipv4Addr>() == Ok(a) {
                return Some((*id, a));
            }
        }
    }
    None
}

/// Writes a hand-written map (`--static-map`), as parsed from `source`,
/// in the map file format: our comment lines (with `own` as this node, if
/// known), then its ranges and aliases in its order, normalised (one
/// space between fields, its comments left out).
pub(crate) fn render_static<W: Write + ?Sized>(
    map: &ParsedMap,
    source: &std::path::Path,
    version: &str,
    writer: Writer,
    out: &mut W,
) -> fmt::Result {
    out.write_str("# openMosix map: the static map ")?;
    // A path is any bytes: a newline in it must not end the comment.
    for c in source.to_string_lossy().chars() {
        out.write_char(if c.is_control() { '?' } else { c })?;
    }
    writeln!(
        out,
        ", published by omdiscd {version} (no discovery): do not edit, rewritten at start and on SIGHUP"
    )?;
    writeln!(
        out,
        "{WRITER_TAG} pid {} time {}",
        writer.pid, writer.time_s
    )?;
    if let Some((id, addr)) = &map.own {
        writeln!(out, "{THIS_NODE_TAG} {id} {addr}")?;
    }
    writeln!(out, "# nodes: {}", node_count(map))?;
    for r in &map.ranges {
        writeln!(out, "{} {} {}", r.first, r.addr, r.count)?;
    }
    for (id, addr) in &map.aliases {
        writeln!(out, "{id} {addr} ALIAS")?;
    }
    Ok(())
}

/// Prints a parsed map in the exact `showmap` layout: `My Node-Id`, a blank
/// line, the header and dash row, then one row per range, this node's first.
pub fn showmap(map: &ParsedMap) -> String {
    let own_id = map.own.as_ref().map_or(0, |(id, _)| *id);
    let mut out = String::new();
    let _ = showmap_head(&mut out, own_id);
    let holds_own = |r: &RangeLine| {
        own_id != 0 && (r.first as u32..r.first as u32 + r.count).contains(&(own_id as u32))
    };
    let own_first = map.ranges.iter().filter(|r| holds_own(r));
    let rest = map.ranges.iter().filter(|r| !holds_own(r));
    for r in own_first.chain(rest) {
        let _ = showmap_row(&mut out, r.first, &r.addr, r.count);
    }
    out
}

/// Every node of a parsed map, this node first: id and address (the
/// addresses of a range counted up from its first; a host name is not).
fn each_node(map: &ParsedMap, each: &mut dyn FnMut(NodeId, String)) {
    let own_id = map.own.as_ref().map_or(0, |(id, _)| *id);
    let holds_own = |r: &RangeLine| {
        own_id != 0 && (r.first as u32..r.first as u32 + r.count).contains(&(own_id as u32))
    };
    // The range that holds this node, then the others, in file order.
    for own_first in [true, false] {
        for r in map.ranges.iter().filter(|r| holds_own(r) == own_first) {
            let ip = r.addr.parse::<Ipv4Addr>().ok();
            for i in 0..r.count {
                let addr = match ip {
                    Some(ip) => Ipv4Addr::from(u32::from(ip) + i).to_string(),
                    None => r.addr.clone(),
                };
                each(r.first + i as NodeId, addr);
            }
        }
    }
}

/// `--dump --format hosts` from a map file: one address per line (a
/// range at a host name, in a hand-written map, gives the name once).
pub fn hosts(map: &ParsedMap) -> String {
    let mut out = String::new();
    let mut last: Option<String> = None;
    each_node(map, &mut |_, addr| {
        if last.as_ref() == Some(&addr) {
            return;
        }
        out.push_str(&addr);
        out.push('\n');
        last = Some(addr);
    });
    out
}

/// `--dump --format json` from a map file: what a map file knows (ids,
/// addresses, aliases); the running daemon's answer has more.
pub fn json(map: &ParsedMap) -> String {
    let own_id = map.own.as_ref().map_or(0, |(id, _)| *id);
    let own_addr = map.own.as_ref().map_or("", |(_, a)| a.as_str());
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"source\":\"map-file\",\"node_id\":{own_id},\"address\":{},\"nodes\":[",
        Json(own_addr)
    );
    let mut i = 0;
    each_node(map, &mut |id, addr| {
        let sep = if i == 0 { "" } else { "," };
        i += 1;
        let _ = write!(
            out,
            "{sep}\n{{\"id\":{id},\"address\":{},\"aliases\":[",
            Json(&addr)
        );
        let aliases = map.aliases.iter().filter(|(a, _)| *a == id);
        for (j, (_, alias)) in aliases.enumerate() {
            let sep = if j == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{}", Json(alias));
        }
        out.push_str("]}");
    });
    out.push_str("\n]}\n");
    out
}

/// A string as a JSON string literal, quotes included.
pub struct Json<'a>(pub &'a str);

impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// The fuzz invariant for the map file parser: never panics, and what it
/// accepts prints. Test scaffolding: compiled only for tests and with the
/// `fuzzing` feature.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_check(data: &[u8]) {
    if let Ok(parsed) = parse(data) {
        let text = showmap(&parsed);
        assert!(text.starts_with("My Node-Id: 0x"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_shows_iso_8601_dates_across_leap_years_and_centuries() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_796_647_819, "2026-12-07T12:50:19Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
        ] {
            assert_eq!(Utc(secs).to_string(), want, "{secs}");
        }
    }

    #[test]
    fn span_says_how_long_in_the_largest_two_units() {
        for (secs, want) in [
            (0, "0 s"),
            (59, "59 s"),
            (60, "1 min"),
            (3_599, "59 min"),
            (11_530, "3 h 12 min"),
            (190_800, "2 d 5 h"),
        ] {
            assert_eq!(Span(secs).to_string(), want, "{secs}");
        }
    }

    use super::*;
    use crate::map::Announcement;
    use crate::rng::Rng;

    fn howto_map() -> ClusterMap {
        let peers = [78, 86, 67, 74].map(|last| Ipv4Addr::new(192, 168, 10, last));
        crate::map::test_map(Ipv4Addr::new(192, 168, 10, 220), peers)
    }

    fn rendered(map: &ClusterMap) -> String {
        let mut s = String::new();
        render(map, "test", None, &mut s).unwrap();
        s
    }

    const HOWTO_SHOWMAP: &str = "My Node-Id: 0x0adc

Base Node-Id Address          Count
------------ ---------------- -----
0x0adc       192.168.10.220   1
0x0a43       192.168.10.67    1
0x0a4a       192.168.10.74    1
0x0a4e       192.168.10.78    1
0x0a56       192.168.10.86    1
";

    #[test]
    fn howto_cluster_round_trip() {
        let text = rendered(&howto_map());
        assert_eq!(
            text,
            "# openMosix map written by omdiscd test: do not edit, rewritten on every change
# this-node: 2780 192.168.10.220
# nodes: 5
2780 192.168.10.220 1
2627 192.168.10.67 1
2634 192.168.10.74 1
2638 192.168.10.78 1
2646 192.168.10.86 1
"
        );
        let parsed = parse(text.as_bytes()).unwrap();
        assert_eq!(showmap(&parsed), HOWTO_SHOWMAP);
    }

    #[test]
    fn consecutive_nodes_compress_into_ranges_around_the_own_node() {
        let peers = (1..=9)
            .chain([20, 21])
            .map(|last| Ipv4Addr::new(10, 0, 1, last));
        let map = crate::map::test_map(Ipv4Addr::new(10, 0, 1, 5), peers);
        let text = rendered(&map);
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            vec![
                "261 10.0.1.5 1",
                "257 10.0.1.1 4",
                "262 10.0.1.6 4",
                "276 10.0.1.20 2"
            ]
        );
        let shown = showmap(&parse(text.as_bytes()).unwrap());
        assert!(
            shown.contains("0x0105       10.0.1.5         1\n0x0101       10.0.1.1         4\n")
        );
    }

    #[test]
    fn aliases_are_written_and_read() {
        let own_aliases = [Ipv4Addr::new(10, 0, 0, 220)];
        let map = ClusterMap::new(Ipv4Addr::new(192, 168, 10, 220), &own_aliases, 1);
        let text = rendered(&map);
        assert!(text.ends_with("2780 10.0.0.220 ALIAS\n"));
        let parsed = parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.aliases, vec![(2780, "10.0.0.220".to_string())]);
    }

    #[test]
    fn hand_written_map_with_hostnames_and_comments() {
        let parsed =
            parse(b"# cluster\n\n1 node1.example 1  # first\n2\t10.0.0.2\t3\n1 10.1.0.1 alias\n")
                .unwrap();
        assert_eq!(parsed.own, None);
        assert_eq!(parsed.ranges.len(), 2);
        assert_eq!(parsed.ranges[1].count, 3);
        assert!(showmap(&parsed).starts_with("My Node-Id: 0x0000\n"));
    }

    /// A map as an openMosix site wrote it by hand: comments, blank lines,
    /// tabs, ranges, an alias, a host name.
    const HAND_WRITTEN: &str = "# openMosix map of the lab
# ID   IP              COUNT
1\t10.0.0.1\t4      # four nodes, ids 1-4
10  192.168.1.10  1
20  node20.lab  1
30  rack30  2
2   192.168.1.2   alias

";

    #[test]
    fn a_hand_written_map_is_published_and_dumped_like_ours() {
        let mut parsed = parse(HAND_WRITTEN.as_bytes()).unwrap();
        assert_eq!(node_count(&parsed), 8);
        // This host is 10.0.0.3: node 3, in the range of 4.
        let here = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3)];
        assert_eq!(node_of(&parsed, &here), Some((3, here[1])));
        assert_eq!(
            node_of(&parsed, &[Ipv4Addr::new(192, 168, 1, 2)]),
            Some((2, Ipv4Addr::new(192, 168, 1, 2)))
        );
        assert_eq!(node_of(&parsed, &[Ipv4Addr::new(10, 0, 0, 5)]), None);
        parsed.own = Some((3, "10.0.0.3".to_string()));
        let w = Writer { pid: 7, time_s: 9 };
        let mut text = String::new();
        let source = std::path::Path::new("/etc/openmosix.map\n2 10.9.9.9 1");
        render_static(&parsed, source, "test", w, &mut text).unwrap();
        assert_eq!(
            text,
            "# openMosix map: the static map /etc/openmosix.map?2 10.9.9.9 1, published by omdiscd test (no discovery): do not edit, rewritten at start and on SIGHUP
# writer: pid 7 time 9
# this-node: 3 10.0.0.3
# nodes: 8
1 10.0.0.1 4
10 192.168.1.10 1
20 node20.lab 1
30 rack30 2
2 192.168.1.2 ALIAS
"
        );
        // Read back: the same map, and shown as showmap shows ours, this
        // node's range first; a host name as written.
        let again = parse(text.as_bytes()).unwrap();
        assert_eq!(again.ranges, parsed.ranges);
        assert_eq!(again.aliases, parsed.aliases);
        assert_eq!(again.writer, Some(w));
        assert_eq!(
            showmap(&again),
            "My Node-Id: 0x0003

Base Node-Id Address          Count
------------ ---------------- -----
0x0001       10.0.0.1         4
0x000a       192.168.1.10     1
0x0014       node20.lab       1
0x001e       rack30           2
"
        );
        // Not resolved: a range at a host name is listed once.
        assert_eq!(
            hosts(&again),
            "10.0.0.1\n10.0.0.2\n10.0.0.3\n10.0.0.4\n192.168.1.10\nnode20.lab\nrack30\n"
        );
    }

    #[test]
    fn malformed_lines_are_named() {
        let cases: &[(&[u8], usize, MapFileErrorKind)] = &[
            (b"1 10.0.0.1\n", 1, MapFileErrorKind::MissingField),
            (b"# ok\n1 10.0.0.1 1 x\n", 2, MapFileErrorKind::ExtraField),
            (b"0 10.0.0.1 1\n", 1, MapFileErrorKind::BadNodeId),
            (b"65536 10.0.0.1 1\n", 1, MapFileErrorKind::BadNodeId),
            (b"-1 10.0.0.1 1\n", 1, MapFileErrorKind::BadNodeId),
            (b"1 10.0.0.300 1\n", 1, MapFileErrorKind::BadAddress),
            (b"1 bad_host! 1\n", 1, MapFileErrorKind::BadAddress),
            (b"1 10.0.0.1 0\n", 1, MapFileErrorKind::BadCount),
            (b"65535 10.0.0.1 2\n", 1, MapFileErrorKind::BadCount),
            (b"1 255.255.255.255 2\n", 1, MapFileErrorKind::BadCount),
            (
                b"\n\n# this-node: x 1.2.3.4\n",
                3,
                MapFileErrorKind::BadThisNode,
            ),
            (b"1 10.0.0.1 1\n\xff\n", 2, MapFileErrorKind::NotText),
        ];
        for &(input, line, kind) in cases {
            assert_eq!(
                parse(input),
                Err(MapFileError { line, kind }),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let msg = MapFileError {
            line: 7,
            kind: MapFileErrorKind::BadNodeId,
        }
        .to_string();
        assert!(msg.starts_with("line 7: "), "{msg}");
    }

    #[test]
    fn change_log_small_map_lists_every_node_then_who_came_and_who_went_and_why() {
        let map = howto_map();
        let mut lines = Vec::new();
        change_log(&map, |a| lines.push(a.to_string()));
        assert_eq!(
            lines,
            vec![
                "openMosix configuration changed: This is openMosix #2780 (of 5 configured)",
                "openMosix #2780 is at IP address 192.168.10.220",
                "openMosix #2627 is at IP address 192.168.10.67",
                "openMosix #2634 is at IP address 192.168.10.74",
                "openMosix #2638 is at IP address 192.168.10.78",
                "openMosix #2646 is at IP address 192.168.10.86",
                "openMosix #2627 (IP address 192.168.10.67) joined the cluster",
                "openMosix #2634 (IP address 192.168.10.74) joined the cluster",
                "openMosix #2638 (IP address 192.168.10.78) joined the cluster",
                "openMosix #2646 (IP address 192.168.10.86) joined the cluster",
            ]
        );
        // Then one leaves with a goodbye and one falls silent: each says why.
        let mut map = howto_map();
        map.mark_published();
        map.apply_leave(Ipv4Addr::new(192, 168, 10, 67), 3, 2, 0, 10);
        map.expire(6000);
        let mut lines = Vec::new();
        change_log(&map, |a| lines.push(a.to_string()));
        assert_eq!(
            lines[1..],
            [
                "openMosix #2780 is at IP address 192.168.10.220",
                "openMosix #2627 (IP address 192.168.10.67) left the cluster (goodbye)",
                "openMosix #2634 (IP address 192.168.10.74) left the cluster (expired after 6.0 s of silence)",
                "openMosix #2638 (IP address 192.168.10.78) left the cluster (expired after 6.0 s of silence)",
                "openMosix #2646 (IP address 192.168.10.86) left the cluster (expired after 6.0 s of silence)",
            ]
        );
    }

    #[test]
    fn change_log_large_map_lists_only_changes() {
        let mut map = ClusterMap::new(Ipv4Addr::new(10, 0, 0, 1), &[], 1);
        let add = |map: &mut ClusterMap, last: u8| {
            let a = Announcement::test(Ipv4Addr::new(10, 0, 1, last), &[]);
            map.apply_announce(&a, 0);
        };
        for last in 1..=100 {
            add(&mut map, last);
        }
        map.mark_published();
        add(&mut map, 200);
        map.apply_leave(Ipv4Addr::new(10, 0, 1, 7), 3, 1000, 0, 10);
        let mut lines = Vec::new();
        change_log(&map, |a| lines.push(a.to_string()));
        assert_eq!(
            lines,
            vec![
                "openMosix configuration changed: This is openMosix #1 (of 101 configured)",
                "openMosix #456 is at IP address 10.0.1.200",
                "openMosix #263 (IP address 10.0.1.7) left the cluster (goodbye)",
                "openMosix: 1 joined, 1 left (0 of these not listed), 100 nodes unchanged",
            ]
        );
    }

    #[test]
    fn change_log_of_a_cold_boot_is_bounded() {
        let peers = (1..=1000u16).map(|i| Ipv4Addr::new(10, 0, (i >> 8) as u8 + 1, i as u8));
        let map = crate::map::test_map(Ipv4Addr::new(10, 0, 0, 1), peers);
        let mut lines = Vec::new();
        change_log(&map, |a| lines.push(a.to_string()));
        assert_eq!(lines.len(), 1 + CHANGE_LOG_FULL_LIMIT + 1);
        assert_eq!(
            lines.last().unwrap(),
            "openMosix: 1001 joined, 0 left (937 of these not listed), 0 nodes unchanged"
        );
    }

    /// A random node address in one of a few /16s, so that ids collide now and
    /// then; `None` for one whose node id would be 0.
    fn random_addr(rng: &mut Rng) -> Option<Ipv4Addr> {
        const NETS: [[u8; 2]; 4] = [[10, 0], [10, 1], [192, 168], [172, 16]];
        let [a, b] = NETS[rng.below(4) as usize];
        let addr = Ipv4Addr::new(a, b, rng.below(4) as u8, rng.below(256) as u8);
        (crate::wire::node_id_of(addr) != 0).then_some(addr)
    }

    fn random_aliases(rng: &mut Rng) -> Vec<Ipv4Addr> {
        // Half the nodes have none; the others up to the limit.
        let n = if rng.below(2) == 0 {
            0
        } else {
            1 + rng.below(crate::wire::MAX_ALIASES as u32)
        };
        (0..n).filter_map(|_| random_addr(rng)).collect()
    }

    /// A map with random own node and aliases, and runs of consecutive nodes
    /// (which render as ranges) of random lengths at random places.
    fn random_map(rng: &mut Rng) -> ClusterMap {
        let own = loop {
            if let Some(a) = random_addr(rng) {
                break a;
            }
        };
        let mut map = ClusterMap::new(own, &random_aliases(rng), 1);
        for _ in 0..rng.below(20) {
            let Some(first) = random_addr(rng) else {
                continue;
            };
            for k in 0..1 + rng.below(12) {
                let addr = Ipv4Addr::from(u32::from(first).wrapping_add(k));
                let aliases = random_aliases(rng);
                // Ids of 0 and collisions are refused by the map: fine.
                map.apply_announce(&Announcement::test(addr, &aliases), 0);
            }
        }
        map
    }

    /// Builds the map a parsed map file describes (what the daemon would have
    /// held to write it).
    fn map_of(parsed: &ParsedMap) -> ClusterMap {
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("rendered maps hold addresses");
        let aliases_of = |id: NodeId| -> Vec<Ipv4Addr> {
            parsed
                .aliases
                .iter()
                .filter(|(i, _)| *i == id)
                .map(|(_, a)| ip(a))
                .collect()
        };
        let (own_id, own) = parsed.own.as_ref().expect("this-node comment");
        let own = ip(own);
        let mut map = ClusterMap::new(own, &aliases_of(*own_id), 1);
        for r in &parsed.ranges {
            for k in 0..r.count {
                let addr = Ipv4Addr::from(u32::from(ip(&r.addr)) + k);
                let id = r.first + k as NodeId;
                assert_eq!(crate::wire::node_id_of(addr), id, "range {r:?}");
                if addr == own {
                    continue;
                }
                let aliases = aliases_of(id);
                assert_eq!(
                    map.apply_announce(&Announcement::test(addr, &aliases), 0),
                    crate::map::AnnounceOutcome::Joined,
                    "{addr} in {r:?}"
                );
            }
        }
        map
    }

    #[test]
    fn property_random_maps_render_parse_render_unchanged() {
        let mut rng = Rng::from_seed(0x6d61_7066_696c_6521);
        let (mut ranges, mut aliases, mut longest) = (0, 0, 0);
        for i in 0..150 {
            let map = random_map(&mut rng);
            let text = rendered(&map);
            let parsed = parse(text.as_bytes()).unwrap_or_else(|e| panic!("map {i}: {e}\n{text}"));
            let own = map.own_node();
            assert_eq!(parsed.own, Some((own.id, own.addr.to_string())), "{text}");
            let listed: u32 = parsed.ranges.iter().map(|r| r.count).sum();
            assert_eq!(listed as usize, map.len(), "{text}");
            let again = rendered(&map_of(&parsed));
            assert_eq!(again, text, "map {i}: render -> parse -> render changed it");
            assert_eq!(parse(again.as_bytes()).as_ref(), Ok(&parsed));
            ranges += parsed.ranges.len();
            aliases += parsed.aliases.len();
            longest = longest.max(parsed.ranges.iter().map(|r| r.count).max().unwrap_or(0));
        }
        // The generator really makes what the format compresses.
        assert!(
            ranges > 500 && aliases > 500 && longest >= 10,
            "{ranges} {aliases} {longest}"
        );
    }

    #[test]
    fn the_writer_line_names_pid_and_time_and_reads_back() {
        let w = Writer {
            pid: 4321,
            time_s: 1_764_460_800,
        };
        let mut s = String::new();
        render(&howto_map(), "test", Some(w), &mut s).unwrap();
        assert!(s.contains("\n# writer: pid 4321 time 1764460800\n"), "{s}");
        assert_eq!(parse(s.as_bytes()).unwrap().writer, Some(w));
        // Without one, or with one that does not read: none, and no error.
        assert_eq!(
            parse(rendered(&howto_map()).as_bytes()).unwrap().writer,
            None
        );
        let odd = "# writer: pid x time 1\n2780 192.168.10.220 1\n";
        assert_eq!(parse(odd.as_bytes()).unwrap().writer, None);
    }

    #[test]
    fn fuzz_check_survives_odd_input() {
        for input in [
            &b""[..],
            b"\n",
            b"#",
            b"1 a 1",
            b"\xff\xfe",
            b"1 1.2.3.4 99999999999",
        ] {
            fuzz_check(input);
        }
    }
}
