//! The control socket's protocol: what a client may ask, and the answers,
//! rendered in pieces into a fixed buffer so that a map of any size is
//! served without allocating (see [`Answer`]).
//!
//! A client connects, sends one request line and reads to end-of-file. The
//! request words are [`Request::word`]'s: `showmap`, `map`, `json`, `hosts`,
//! `stats text`, `stats json`, `stats prometheus`, `watch text`, `watch
//! json`. An unknown request is answered with one line starting `error:`.
//!
//! `watch` is answered with the map, then one line per change of the map
//! as the daemon publishes it, until the client goes. A watcher that reads
//! too slowly for its fixed backlog is disconnected after a last line that
//! says so (`Backlog`).
#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};
use std::io::{self, Read as _, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::map::{ClusterMap, Collision, Node, NodeId, Via};
use crate::mapfile;
use crate::sys::Epoll;

/// How `--dump` shows the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The original `showmap` layout.
    Showmap,
    /// The map file (setpe) format.
    Map,
    /// One JSON object, with one object per node.
    Json,
    /// One address per line (MPI host files, pdsh).
    Hosts,
}

/// How `--stats` shows the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsFormat {
    /// `name value` lines.
    Text,
    /// One JSON object.
    Json,
    /// The Prometheus text exposition format.
    Prometheus,
}

/// How `--watch` shows the map and its changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchFormat {
    /// The map in the `showmap` layout, then each change as the log words
    /// it, after the UTC time.
    Text,
    /// One JSON object per line: each node, then each change.
    Json,
}

/// One request on the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Show(View),
    Stats(StatsFormat),
    Watch(WatchFormat),
}

impl View {
    /// `--format` values with `--dump`; the first is the default.
    pub const NAMES: [(&'static str, View); 4] = [
        ("showmap", View::Showmap),
        ("map", View::Map),
        ("json", View::Json),
        ("hosts", View::Hosts),
    ];
}

impl StatsFormat {
    /// `--format` values with `--stats`; the first is the default.
    pub const NAMES: [(&'static str, StatsFormat); 3] = [
        ("text", StatsFormat::Text),
        ("json", StatsFormat::Json),
        ("prometheus", StatsFormat::Prometheus),
    ];
}

impl WatchFormat {
    /// `--format` values with `--watch`; the first is the default.
    pub const NAMES: [(&'static str, WatchFormat); 2] =
        [("text", WatchFormat::Text), ("json", WatchFormat::Json)];
}

fn name_of<T: PartialEq + Copy>(names: &[(&'static str, T)], v: T) -> &'static str {
    names.iter().find(|(_, x)| *x == v).map_or("?", |(n, _)| n)
}

impl Request {
    /// The request line's words (without the newline).
    pub fn word(self) -> (&'static str, Option<&'static str>) {
        match self {
            Request::Show(v) => (name_of(&View::NAMES, v), None),
            Request::Stats(f) => ("stats", Some(name_of(&StatsFormat::NAMES, f))),
            Request::Watch(f) => ("watch", Some(name_of(&WatchFormat::NAMES, f))),
        }
    }

    /// Parses a request line (without its newline; a trailing `\r` is
    /// allowed).
    pub fn parse(line: &[u8]) -> Option<Request> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).ok()?;
        let mut words = line.split_ascii_whitespace();
        let first = words.next()?;
        let second = words.next();
        if words.next().is_some() {
            return None;
        }
        /// The second word among `names`; the first name without one.
        fn format<T: Copy>(names: &[(&'static str, T)], second: Option<&str>) -> Option<T> {
            match second {
                None => Some(names[0].1),
                Some(s) => Some(names.iter().find(|(n, _)| *n == s)?.1),
            }
        }
        match first {
            "stats" => return format(&StatsFormat::NAMES, second).map(Request::Stats),
            "watch" => return format(&WatchFormat::NAMES, second).map(Request::Watch),
            _ => {}
        }
        if second.is_some() {
            return None;
        }
        View::NAMES
            .iter()
            .find(|(n, _)| *n == first)
            .map(|&(_, v)| Request::Show(v))
    }
}

/// The fuzz invariant of the control protocol, shared by
/// `fuzz/fuzz_targets/control.rs` and the seed replay (tests/fuzz_corpus.rs).
/// Test scaffolding: compiled only for tests and with the `fuzzing` feature.
///
/// Input: a request line, up to the first `\n` (the whole input if there is
/// none; any length, though the server parses at most 64 bytes);
/// then, after the `\n` if there is one, bytes a map is built from (see
/// [`fuzz_map`]).
///
/// Checks: parsing never panics; a request that parses is spelled by
/// [`Request::word`] as a line that fits the server's buffer and parses back
/// to it. With a map: every answer is rendered chunk by chunk and ends; a
/// chunk that does not end the answer is full up to less than one row; the
/// `map` answer has the lines of [`mapfile::render`] (the `ALIAS` lines in
/// any order: the answer lists this node's by id, the file first), reads back
/// ([`mapfile::parse`]) as the same nodes and aliases; the `showmap` and
/// `hosts` answers are what `--dump` prints from that map file; the `json`
/// answer has one object per node; the `watch text` answer is the `showmap`
/// one, the `watch json` answer a line per node; each node's change lines
/// fit one line; every statistic is one row.
/// Returns what the request line parsed to.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_check(data: &[u8]) -> Option<Request> {
    let (line, map_bytes) = match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], Some(&data[end + 1..])),
        None => (data, None),
    };
    let request = Request::parse(line);
    if let Some(r) = request {
        let spelled = match r.word() {
            (first, Some(second)) => format!("{first} {second}"),
            (first, None) => first.to_string(),
        };
        assert!(spelled.len() < REQUEST_MAX, "{spelled:?} does not fit");
        assert_eq!(Request::parse(spelled.as_bytes()), Some(r), "{spelled:?}");
    }
    if let Some(bytes) = map_bytes {
        let (map, now_ms) = fuzz_map(bytes);
        fuzz_render(&map, now_ms);
    }
    request
}

/// Builds a map from fuzz input, read as:
/// - this node's address (4 bytes; id 0 is made 1), its alias count (1
///   byte, modulo 7) and aliases (4 bytes each);
/// - the time answers are rendered at, in seconds (1 byte);
/// - then records until the input ends: a first address (4 bytes), a byte
///   with the alias count (bits 0-2, modulo 7) and a run length minus one
///   (bits 3-7), and the aliases (4 bytes each): the run announces that
///   many consecutive addresses, at time 0, held for 6 s, each with these
///   aliases. At most 4096 announcements.
///
/// A short field ends the input (missing own fields take defaults).
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_map(bytes: &[u8]) -> (ClusterMap, u64) {
    use crate::map::{node_id_of, Announcement, MAX_ALIASES};
    use std::net::Ipv4Addr;

    struct Input<'a>(&'a [u8]);
    impl Input<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn addr(&mut self) -> Option<Ipv4Addr> {
            self.take::<4>().map(Ipv4Addr::from)
        }
        /// Up to `n` addresses, as many as the input holds.
        fn aliases(&mut self, n: usize) -> arrayvec::ArrayVec<Ipv4Addr, MAX_ALIASES> {
            (0..n.min(MAX_ALIASES)).map_while(|_| self.addr()).collect()
        }
    }

    let mut input = Input(bytes);
    let mut own = input.addr().unwrap_or(Ipv4Addr::new(10, 0, 0, 1));
    if node_id_of(own) == 0 {
        own = Ipv4Addr::from(u32::from(own) | 1);
    }
    let count = input.take::<1>().map_or(0, |[n]| n % 7);
    let own_aliases = input.aliases(count.into());
    let mut map = ClusterMap::new(own, &own_aliases, 1);
    let now_ms = input.take::<1>().map_or(0, |[s]| u64::from(s) * 1000);
    let mut announced = 0;
    while let (Some(first), Some([flags])) = (input.addr(), input.take::<1>()) {
        let aliases = input.aliases((flags % 8 % 7).into());
        let run = u32::from(flags >> 3) + 1;
        for i in 0..run {
            let Some(addr) = u32::from(first).checked_add(i) else {
                break;
            };
            if announced == 4096 {
                return (map, now_ms);
            }
            announced += 1;
            map.apply_announce(&Announcement::test(addr.into(), &aliases), 0);
        }
    }
    (map, now_ms)
}

/// Panics naming the first line (or node) where `got` and `want` differ,
/// without printing answers of megabytes.
#[cfg(any(test, feature = "fuzzing"))]
fn fuzz_same<T: PartialEq + fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}, item {} of {} (expected {}): {:?}, expected {:?}",
            i + 1,
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        );
    }
}

/// Renders every answer from `map` and checks them (see [`fuzz_check`]).
#[cfg(any(test, feature = "fuzzing"))]
fn fuzz_render(map: &ClusterMap, now_ms: u64) {
    use std::net::Ipv4Addr;

    let mut stats = Stats::new();
    let m = map.stats();
    for (name, value) in [
        ("collisions", m.collisions),
        ("duplicates", m.duplicates),
        ("stale", m.stale),
    ] {
        let _ = stats.push(Stat::new(name, "Fuzz.", value));
    }
    for e in crate::wire::ParseError::ALL {
        let _ = stats.push(Stat {
            reason: Some(e.name()),
            ..Stat::new("dropped", "Fuzz, by reason.", e.index() as u64)
        });
    }
    let _ = stats.push(Stat {
        gauge: true,
        ..Stat::new("nodes", "Fuzz.", map.len() as u64)
    });
    let writer = mapfile::Writer {
        pid: 4321,
        time_s: 1_764_460_800,
    };
    let snapshot = Snapshot {
        map,
        now_ms,
        time_s: writer.time_s,
        pid: writer.pid,
        version: "fuzz",
        stats: &stats,
    };
    let mut chunk = Chunk::new();
    let mut render = |request| {
        let mut answer = Answer::new(request);
        let mut text = Vec::new();
        while !answer.done() {
            chunk.clear();
            answer.fill(&snapshot, &mut chunk);
            let n = chunk.bytes().len();
            assert!(
                answer.done() || n > CHUNK - ROW_MAX,
                "{request:?}: a chunk of {n} bytes does not end the answer"
            );
            text.extend_from_slice(chunk.bytes());
        }
        String::from_utf8(text).expect("an answer is UTF-8")
    };

    let text = render(Request::Show(View::Map));
    let mut want = String::new();
    mapfile::render(map, "fuzz", Some(writer), &mut want).expect("rendering into a String");
    // The same lines as the map file; the ALIAS lines may come in another
    // order (the answer lists this node's after those of lower ids, the
    // file first).
    let (mut aliases, others): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|l| l.ends_with(" ALIAS"));
    let (mut want_aliases, want_others): (Vec<&str>, Vec<&str>) =
        want.lines().partition(|l| l.ends_with(" ALIAS"));
    fuzz_same("map answer", &others, &want_others);
    aliases.sort_unstable();
    want_aliases.sort_unstable();
    fuzz_same("map answer ALIAS", &aliases, &want_aliases);
    assert!(
        text.ends_with('\n'),
        "the map answer ends without a newline"
    );
    let parsed = mapfile::parse(text.as_bytes()).expect("the map answer reads back");
    let own = map.own_node();
    assert_eq!(parsed.own, Some((own.id, own.addr.to_string())));
    assert_eq!(parsed.writer, Some(writer));
    let mut nodes: Vec<(NodeId, Ipv4Addr)> = parsed
        .ranges
        .iter()
        .flat_map(|r| {
            let first: Ipv4Addr = r.addr.parse().expect("a map answer has addresses");
            (0..r.count).map(move |i| (r.first + i as NodeId, Ipv4Addr::from(u32::from(first) + i)))
        })
        .collect();
    let mut aliases: Vec<(NodeId, String)> = parsed.aliases.clone();
    nodes.sort_unstable();
    aliases.sort_unstable();
    let mut want_nodes: Vec<_> = map.iter().map(|n| (n.id, n.addr)).collect();
    let mut want_aliases: Vec<_> = map
        .iter()
        .flat_map(|n| {
            n.aliases()
                .map(move |a| (n.id, a.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    want_nodes.sort_unstable();
    want_aliases.sort_unstable();
    fuzz_same("map answer nodes", &nodes, &want_nodes);
    fuzz_same("map answer aliases", &aliases, &want_aliases);

    let text = render(Request::Show(View::Showmap));
    let want = mapfile::showmap(&parsed);
    fuzz_same(
        "showmap answer",
        &text.lines().collect::<Vec<_>>(),
        &want.lines().collect::<Vec<_>>(),
    );
    assert_eq!(text.len(), want.len(), "showmap answer");
    let text = render(Request::Show(View::Hosts));
    let want = mapfile::hosts(&parsed);
    fuzz_same(
        "hosts answer",
        &text.lines().collect::<Vec<_>>(),
        &want.lines().collect::<Vec<_>>(),
    );
    assert_eq!(text.len(), want.len(), "hosts answer");
    let text = render(Request::Watch(WatchFormat::Text));
    assert_eq!(text, render(Request::Show(View::Showmap)), "watch text");
    let text = render(Request::Watch(WatchFormat::Json));
    assert_eq!(text.lines().count(), map.len(), "watch json: {text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("{\"event\":\"present\",") && l.ends_with('}')),
        "watch json: {text}"
    );
    // Each node as a change: one line of either format.
    for n in map.iter() {
        for change in [Change::Joined(n), Change::Left(n)] {
            for (format, _) in DROPPED {
                let mut line = Line::new();
                change
                    .line(format, now_ms / 1000, &mut line)
                    .expect("a change line fits");
                assert!(
                    line.ends_with('\n') && line.matches('\n').count() == 1,
                    "{line}"
                );
            }
        }
    }
    let text = render(Request::Show(View::Json));
    assert!(
        text.starts_with("{\"source\":\"daemon\",") && text.ends_with("\n]}\n"),
        "json answer of {} bytes",
        text.len()
    );
    assert_eq!(
        text.matches("\n{\"id\":").count(),
        map.len(),
        "json answer of {} bytes",
        text.len()
    );

    let text = render(Request::Stats(StatsFormat::Text));
    assert_eq!(text.lines().count(), stats.len(), "stats text: {text}");
    let text = render(Request::Stats(StatsFormat::Json));
    assert!(text.starts_with('{') && text.ends_with("\n}\n"), "{text}");
    assert_eq!(
        text.matches("\n\"").count(),
        stats.len(),
        "stats json: {text}"
    );
    let text = render(Request::Stats(StatsFormat::Prometheus));
    let samples = text.lines().filter(|l| l.starts_with("omdiscd_")).count();
    assert_eq!(samples, stats.len(), "prometheus: {text}");
    let names = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(names, 5, "prometheus: {text}");
}

/// Largest answer row (a node with all its aliases in JSON).
const ROW_MAX: usize = 1024;

/// Where answers are rendered before they are written: each write hands the
/// socket up to this much.
pub const CHUNK: usize = 16 * 1024;

/// One statistic (see [`Stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Snake case, without the `omdiscd_` prefix and the `_total` suffix.
    pub name: &'static str,
    /// A `reason` label (for drops), or none.
    pub reason: Option<&'static str>,
    pub help: &'static str,
    pub value: u64,
    /// A gauge (nodes, uptime) rather than a counter.
    pub gauge: bool,
}

impl Stat {
    /// A counter without a label.
    pub fn new(name: &'static str, help: &'static str, value: u64) -> Stat {
        Stat {
            name,
            reason: None,
            help,
            value,
            gauge: false,
        }
    }
}

/// Every statistic of the daemon, in a fixed array.
pub type Stats = heapless::Vec<Stat, 64>;

/// What answers are rendered from.
pub struct Snapshot<'a> {
    pub map: &'a ClusterMap,
    pub now_ms: u64,
    /// Seconds since 1970, for the map file view's writer line.
    pub time_s: u64,
    pub pid: u32,
    pub version: &'a str,
    pub stats: &'a Stats,
}

/// A fixed buffer an answer is rendered into.
pub struct Chunk {
    data: Box<[u8; CHUNK]>,
    len: usize,
}

impl Chunk {
    /// Allocates the buffer (at start-up).
    pub fn new() -> Chunk {
        Chunk {
            data: Box::new([0; CHUNK]),
            len: 0,
        }
    }

    /// What was rendered.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `row` if it fits whole.
    fn push(&mut self, row: &str) -> bool {
        let end = self.len + row.len();
        if end > CHUNK {
            return false;
        }
        self.data[self.len..end].copy_from_slice(row.as_bytes());
        self.len = end;
        true
    }
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head,
    Own,
    /// The other nodes (or statistics), after the cursor.
    Rows,
    Aliases,
    Tail,
    Done,
}

/// An answer being rendered, chunk by chunk: the phase and a cursor (the
/// last node id, or statistic index, rendered), so that a map of any size
/// goes out through a fixed buffer. Each chunk is rendered from the map as
/// it is then: rows are whole and consistent, but a map that changes while
/// a large answer is read may show the change in its later rows only.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    request: Request,
    phase: Phase,
    cursor: Option<NodeId>,
    index: usize,
}

type Row = heapless::String<ROW_MAX>;

impl Answer {
    pub fn new(request: Request) -> Answer {
        Answer {
            request,
            phase: Phase::Head,
            cursor: None,
            index: 0,
        }
    }

    /// Everything was rendered.
    pub fn done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Renders the next rows into `out`, as many as fit.
    pub fn fill(&mut self, s: &Snapshot<'_>, out: &mut Chunk) {
        while self.phase != Phase::Done {
            let mut row = Row::new();
            // A row that does not fit ROW_MAX is cut short rather than lost.
            let next = self.row(s, &mut row);
            if !row.is_empty() && !out.push(&row) {
                return;
            }
            self.advance(next);
        }
    }

    /// Renders the current row into `row`; returns where to go after it.
    fn row(&self, s: &Snapshot<'_>, row: &mut Row) -> Step {
        match self.request {
            Request::Show(View::Showmap) | Request::Watch(WatchFormat::Text) => {
                self.showmap_row(s, row)
            }
            Request::Watch(WatchFormat::Json) => self.watch_json_row(s, row),
            Request::Show(View::Map) => self.map_row(s, row),
            Request::Show(View::Json) => self.json_row(s, row),
            Request::Show(View::Hosts) => self.hosts_row(s, row),
            Request::Stats(f) => self.stats_row(s, f, row),
        }
    }

    fn advance(&mut self, step: Step) {
        match step {
            Step::Next(phase) => {
                self.phase = phase;
                self.cursor = None;
                self.index = 0;
            }
            Step::Stay(cursor) => {
                self.cursor = Some(cursor);
                self.index += 1;
            }
        }
    }

    fn showmap_row(&self, s: &Snapshot<'_>, row: &mut Row) -> Step {
        let own = s.map.own_node();
        match self.phase {
            Phase::Head => {
                let _ = mapfile::showmap_head(row, own.id);
                Step::Next(Phase::Own)
            }
            Phase::Own => {
                let _ = mapfile::showmap_row(row, own.id, &own.addr, 1);
                Step::Next(Phase::Rows)
            }
            Phase::Rows => match mapfile::next_range(s.map, self.cursor) {
                Some((first, count)) => {
                    let _ = mapfile::showmap_row(row, first.id, &first.addr, count);
                    Step::Stay(first.id + (count - 1) as NodeId)
                }
                None => Step::Next(Phase::Done),
            },
            _ => Step::Next(Phase::Done),
        }
    }

    fn map_row(&self, s: &Snapshot<'_>, row: &mut Row) -> Step {
        match self.phase {
            Phase::Head => {
                let writer = Some(mapfile::Writer {
                    pid: s.pid,
                    time_s: s.time_s,
                });
                let _ = mapfile::head(s.map, s.version, writer, row);
                Step::Next(Phase::Own)
            }
            Phase::Own => {
                let _ = mapfile::range_line(row, &s.map.own_node(), 1);
                Step::Next(Phase::Rows)
            }
            Phase::Rows => match mapfile::next_range(s.map, self.cursor) {
                Some((first, count)) => {
                    let _ = mapfile::range_line(row, &first, count);
                    Step::Stay(first.id + (count - 1) as NodeId)
                }
                None => Step::Next(Phase::Aliases),
            },
            Phase::Aliases => match s.map.iter_after(self.cursor).next() {
                Some(node) => {
                    for alias in node.aliases() {
                        let _ = mapfile::alias_line(row, node.id, alias);
                    }
                    Step::Stay(node.id)
                }
                None => Step::Next(Phase::Done),
            },
            _ => Step::Next(Phase::Done),
        }
    }

    fn hosts_row(&self, s: &Snapshot<'_>, row: &mut Row) -> Step {
        let own = s.map.own_id();
        match self.phase {
            Phase::Head | Phase::Own => {
                let _ = writeln!(row, "{}", s.map.own_node().addr);
                Step::Next(Phase::Rows)
            }
            Phase::Rows => match s.map.iter_after(self.cursor).find(|n| n.id != own) {
                Some(node) => {
                    let _ = writeln!(row, "{}", node.addr);
                    Step::Stay(node.id)
                }
                None => Step::Next(Phase::Done),
            },
            _ => Step::Next(Phase::Done),
        }
    }

    fn json_row(&self, s: &Snapshot<'_>, row: &mut Row) -> Step {
        let own = s.map.own_node();
        match self.phase {
            Phase::Head => {
                let _ = write!(
                    row,
                    "{{\"source\":\"daemon\",\"node_id\":{},\"address\":\"{}\",\"nodes\":[",
                    own.id, own.addr
                );
                Step::Next(Phase::Own)
            }
            Phase::Own => {
                let _ = json_node(row, s.now_ms, &own, "");
                Step::Next(Phase::Rows)
            }
            Phase::Rows => match s.map.iter_after(self.cursor).find(|n| n.id != own.id) {
                Some(node) => {
                    let _ = json_node(row, s.now_ms, &node, ",");
                    Step::Stay(node.id)
                }
                None => Step::Next(Phase::Tail),
            },
            Phase::Tail => {
                let _ = row.push_str("\n]}\n");
                Step::Next(Phase::Done)
            }
            _ => Step::Next(Phase::Done),
        }
    }

    /// `{"event":"present","id":ID,"address":"A","self":true}`, this node
    /// first.
    fn watch_json_row(&self, s: &Snapshot<'_>, row: &mut Row) -> Step {
        let own = s.map.own_node();
        let node = match self.phase {
            Phase::Head | Phase::Own => Some(own),
            Phase::Rows => s.map.iter_after(self.cursor).find(|n| n.id != own.id),
            _ => None,
        };
        let Some(n) = node else {
            return Step::Next(Phase::Done);
        };
        let _ = writeln!(
            row,
            "{{\"event\":\"present\",\"id\":{},\"address\":\"{}\",\"self\":{}}}",
            n.id,
            n.addr,
            n.id == own.id
        );
        if self.phase == Phase::Rows {
            Step::Stay(n.id)
        } else {
            Step::Next(Phase::Rows)
        }
    }

    fn stats_row(&self, s: &Snapshot<'_>, f: StatsFormat, row: &mut Row) -> Step {
        let stat = s.stats.get(self.index);
        let (phase, next) = match (self.phase, stat) {
            (Phase::Head, _) => (Phase::Head, Step::Next(Phase::Rows)),
            (Phase::Rows, Some(_)) => (Phase::Rows, Step::Stay(0)),
            (Phase::Rows, None) => (Phase::Tail, Step::Next(Phase::Done)),
            _ => return Step::Next(Phase::Done),
        };
        // Prometheus says HELP and TYPE once per name.
        let first_of_name = self.index == 0
            || stat
                .zip(s.stats.get(self.index - 1))
                .is_none_or(|(a, b)| a.name != b.name);
        let _ = match (f, phase, stat) {
            (StatsFormat::Json, Phase::Head, _) => row.push_str("{").map_err(|_| fmt::Error),
            (StatsFormat::Json, Phase::Rows, Some(st)) => {
                let sep = if self.index == 0 { "" } else { "," };
                write!(row, "{sep}\n\"{}\":{}", Flat(st), st.value)
            }
            (StatsFormat::Json, Phase::Tail, _) => row.push_str("\n}\n").map_err(|_| fmt::Error),
            (StatsFormat::Text, Phase::Rows, Some(st)) => {
                writeln!(row, "{} {}", Flat(st), st.value)
            }
            (StatsFormat::Prometheus, Phase::Rows, Some(st)) => prometheus(row, st, first_of_name),
            _ => Ok(()),
        };
        next
    }
}

/// Where an answer goes after a row.
enum Step {
    Next(Phase),
    /// Another row of this phase, after this node id.
    Stay(NodeId),
}

/// A statistic's flat name: `dropped_bad_magic`, `received`.
struct Flat<'a>(&'a Stat);

impl fmt::Display for Flat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)?;
        match self.0.reason {
            Some(r) => write!(f, "_{r}"),
            None => Ok(()),
        }
    }
}

fn prometheus(row: &mut Row, st: &Stat, first_of_name: bool) -> fmt::Result {
    let (kind, suffix) = if st.gauge {
        ("gauge", "")
    } else {
        ("counter", "_total")
    };
    if first_of_name {
        writeln!(row, "# HELP omdiscd_{}{suffix} {}", st.name, st.help)?;
        writeln!(row, "# TYPE omdiscd_{}{suffix} {kind}", st.name)?;
    }
    write!(row, "omdiscd_{}{suffix}", st.name)?;
    if let Some(r) = st.reason {
        write!(row, "{{reason=\"{r}\"}}")?;
    }
    writeln!(row, " {}", st.value)
}

/// Milliseconds as seconds with 3 decimals.
struct Secs(u64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

fn json_node(row: &mut Row, now_ms: u64, n: &Node, sep: &str) -> fmt::Result {
    let state = if n.via == Via::Own {
        "self"
    } else if n.pinned {
        "static"
    } else if now_ms < n.expires_ms {
        "alive"
    } else {
        "probing"
    };
    let (heard, left) = if n.via == Via::Own || n.via == Via::Static {
        (0, 0)
    } else if n.pinned {
        // Heard from, but it holds no deadline.
        (now_ms.saturating_sub(n.last_seen_ms), 0)
    } else {
        (
            now_ms.saturating_sub(n.last_seen_ms),
            n.expires_ms.saturating_sub(now_ms),
        )
    };
    write!(
        row,
        "{sep}\n{{\"id\":{},\"address\":\"{}\",\"aliases\":[",
        n.id, n.addr
    )?;
    for (i, a) in n.aliases().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(row, "{sep}\"{a}\"")?;
    }
    write!(
        row,
        "],\"state\":\"{state}\",\"last_heard_s\":{},\"hold_left_s\":{},\"incarnation\":{},\"joined\":\"{}\"}}",
        Secs(heard),
        Secs(left),
        n.incarnation,
        n.via.name()
    )
}

/// A change of the map, for watchers (see [`Server::broadcast`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// A node joined the map (at a publish).
    Joined(Node),
    /// A node left the map (at a publish), for [`mapfile::Reason::of`].
    Left(Node),
    /// A node id is claimed by two addresses, when it is first seen.
    Collision(Collision),
}

/// The longest change line, either format.
const LINE_MAX: usize = 512;

type Line = heapless::String<LINE_MAX>;

impl Change {
    /// The change as one line in `format`, at `time_s` (seconds since 1970).
    fn line(&self, format: WatchFormat, time_s: u64, out: &mut Line) -> fmt::Result {
        match format {
            WatchFormat::Text => {
                write!(out, "{} ", mapfile::Utc(time_s))?;
                match self {
                    Change::Joined(n) => write!(out, "{}", mapfile::JoinedLine(n))?,
                    Change::Left(n) => write!(out, "{}", mapfile::LeftLine(n))?,
                    Change::Collision(c) => write!(out, "{}", mapfile::CollisionLine(*c))?,
                }
            }
            WatchFormat::Json => {
                write!(out, "{{\"time\":\"{}\",", mapfile::Utc(time_s))?;
                match self {
                    Change::Joined(n) => write!(
                        out,
                        "\"event\":\"joined\",\"id\":{},\"address\":\"{}\"",
                        n.id, n.addr
                    )?,
                    Change::Left(n) => {
                        write!(
                            out,
                            "\"event\":\"left\",\"id\":{},\"address\":\"{}\"",
                            n.id, n.addr
                        )?;
                        match mapfile::Reason::of(n) {
                            mapfile::Reason::Goodbye => write!(out, ",\"reason\":\"goodbye\""),
                            mapfile::Reason::Moved(to) => {
                                write!(out, ",\"reason\":\"address_changed\",\"to\":\"{to}\"")
                            }
                            mapfile::Reason::Expired(ms) => write!(
                                out,
                                ",\"reason\":\"expired\",\"silent_s\":{}",
                                Secs(ms)
                            ),
                            mapfile::Reason::Unknown => Ok(()),
                        }?;
                    }
                    Change::Collision(c) => write!(
                        out,
                        "\"event\":\"collision\",\"id\":{},\"winner\":\"{}\",\"loser\":\"{}\",\"own_lost\":{}",
                        c.id, c.winner, c.loser, c.own_lost
                    )?,
                }
                out.push('}').map_err(|_| fmt::Error)?;
            }
        }
        out.push('\n').map_err(|_| fmt::Error)
    }
}

/// Bytes a watcher may have waiting: about 200 change lines.
const BACKLOG: usize = 16 * 1024;

/// The end of a [`BACKLOG`] kept for the line that says a watcher is
/// disconnected.
const LAST_LINE_ROOM: usize = 128;

/// The last line of a watcher that read too slowly, by format; the client
/// (`--watch`) knows it by these words.
const DROPPED: [(WatchFormat, &str); 2] = [
    (
        WatchFormat::Text,
        "error: this watcher read too slowly and is disconnected; changes after this line were not sent\n",
    ),
    (
        WatchFormat::Json,
        "{\"event\":\"dropped\",\"reason\":\"read too slowly\"}\n",
    ),
];

/// A watcher's lines not yet written, whole lines in order, in a fixed
/// buffer. The daemon never waits for a watcher: a line that does not fit
/// (the socket and the backlog are full) is lost, and so is every later
/// one; the watcher gets [`DROPPED`]'s line in the room kept for it, then
/// end-of-file once it has read what it has, or when it has not within
/// [`CLIENT_TIMEOUT_MS`].
pub(crate) struct Backlog {
    data: Box<[u8; BACKLOG]>,
    /// Written up to here.
    start: usize,
    end: usize,
    /// Lines were lost: nothing more is taken.
    lost: bool,
}

impl Backlog {
    fn new() -> Backlog {
        Backlog {
            data: Box::new([0; BACKLOG]),
            start: 0,
            end: 0,
            lost: false,
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.lost = false;
    }

    /// What is waiting.
    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// `n` bytes were written.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Appends `line` if it fits in `room` bytes of the buffer (moving what
    /// is waiting to its start if need be).
    fn append(&mut self, line: &[u8], room: usize) -> bool {
        if self.end + line.len() > room {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end + line.len() > room {
            return false;
        }
        self.data[self.end..self.end + line.len()].copy_from_slice(line);
        self.end += line.len();
        true
    }

    /// Takes `line` unless lines were lost; false if it does not fit.
    fn push(&mut self, line: &[u8]) -> bool {
        !self.lost && self.append(line, BACKLOG - LAST_LINE_ROOM)
    }

    /// Lines were lost: `last` ends what the watcher gets.
    fn overflow(&mut self, last: &[u8]) {
        self.lost = true;
        self.append(last, BACKLOG);
    }
}

/// Asks the daemon listening on `path` (a client: `--dump`, `--stats`).
/// An answer starting `error:` is an error.
pub fn ask(path: &Path, request: Request) -> io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(path)?;
    let timeout = Some(Duration::from_millis(CLIENT_TIMEOUT_MS));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let (first, second) = request.word();
    let line = match second {
        Some(s) => format!("{first} {s}\n"),
        None => format!("{first}\n"),
    };
    stream.write_all(line.as_bytes())?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER_BYTES).read_to_end(&mut answer)?;
    if answer.is_empty() || answer.starts_with(b"error:") {
        let text = String::from_utf8_lossy(&answer).trim_end().to_string();
        return Err(io::Error::new(io::ErrorKind::InvalidData, text));
    }
    Ok(answer)
}

/// Asks the daemon listening on `path` to watch (a client: `--watch`): the
/// stream of its answer, read without a time limit once the daemon took the
/// request. An answer starting `error:` is an error.
pub fn watch(path: &Path, format: WatchFormat) -> io::Result<io::BufReader<UnixStream>> {
    let mut stream = UnixStream::connect(path)?;
    let timeout = Some(Duration::from_millis(CLIENT_TIMEOUT_MS));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let (first, second) = Request::Watch(format).word();
    writeln!(stream, "{first} {}", second.unwrap_or_default())?;
    let mut lines = io::BufReader::new(stream);
    let head = io::BufRead::fill_buf(&mut lines)?;
    if head.starts_with(b"error:") {
        let text = String::from_utf8_lossy(head).trim_end().to_string();
        return Err(io::Error::new(io::ErrorKind::InvalidData, text));
    }
    lines.get_ref().set_read_timeout(None)?;
    Ok(lines)
}

/// Whether `line` is the last one a watcher gets when it is dropped for
/// reading too slowly.
pub fn is_dropped(line: &[u8]) -> bool {
    DROPPED.iter().any(|(_, l)| line == l.as_bytes())
}

/// The most a client reads (a JSON map of 65,535 nodes with aliases is
/// about 20 MiB).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// A client that has not finished within this long is disconnected (the
/// daemon), or gives up (the client).
pub const CLIENT_TIMEOUT_MS: u64 = 5_000;

/// Clients served at once; more wait in the listen backlog.
pub const MAX_CLIENTS: usize = MAX_WATCHERS + 1;

/// Clients that may watch at once: one slot is always left for requests
/// (`--dump`, `--stats`), which watchers would otherwise hold.
pub const MAX_WATCHERS: usize = 4;

/// What a watch request is answered when [`MAX_WATCHERS`] clients watch.
const TOO_MANY_WATCHERS: &[u8] = b"error: too many watchers; try again later\n";

/// The longest request line.
const REQUEST_MAX: usize = 64;

/// What an unknown request is answered.
const BAD_REQUEST: &[u8] =
    b"error: unknown request; ask showmap, map, json, hosts, stats [text|json|prometheus] or watch [text|json]\n";

/// One connection.
struct Client {
    stream: Option<UnixStream>,
    request: [u8; REQUEST_MAX],
    got: usize,
    answer: Option<Answer>,
    chunk: Chunk,
    /// Bytes of `chunk` already written.
    sent: usize,
    /// When it is disconnected: 5 s after it connected, while it asks and
    /// reads its answer; never for a watcher that has its map, until its
    /// lines were lost.
    deadline_ms: u64,
    /// The epoll events it is registered for.
    interest: u32,
    /// A `watch` request: its changes go into `backlog`.
    watch: Option<WatchFormat>,
    backlog: Backlog,
}

impl Client {
    /// A watcher that has its map: what is left to write is its backlog.
    fn watching(&self) -> bool {
        let answered = self.answer.is_some_and(|a| a.done()) && self.sent == self.chunk.len;
        answered && self.watch.is_some() && self.stream.is_some()
    }
}

/// How far a write went.
enum Wrote {
    /// Everything waiting.
    All,
    /// The socket is full.
    Full,
    /// The client is gone.
    Gone,
}

/// Writes `bytes[*sent..]`, advancing `sent`.
fn write_some(stream: &mut UnixStream, bytes: &[u8], sent: &mut usize) -> Wrote {
    while *sent < bytes.len() {
        match stream.write(&bytes[*sent..]) {
            Ok(0) => return Wrote::Gone,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::Full,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Wrote::Gone,
        }
    }
    Wrote::All
}

/// The control socket: a listening `AF_UNIX` stream socket, mode 0600, and
/// up to [`MAX_CLIENTS`] connections, each with its own fixed buffers
/// (allocated in [`Server::bind`]). The daemon's epoll loop calls it.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    clients: Box<[Client]>,
    /// epoll token of client 0; client i has `token + i`.
    token: u64,
    /// Watchers disconnected because they read too slowly.
    pub(crate) watchers_dropped: u64,
}

/// Refuses, without creating anything, a path the control socket cannot
/// be bound at: longer than a socket address holds, ending in `/`, or
/// naming something that is not a socket. True if a socket is there (one
/// left by a daemon that died: [`Server::bind`] replaces it).
pub(crate) fn check_path(path: &Path) -> io::Result<bool> {
    let invalid = |kind, why| Err(io::Error::new(kind, why));
    // sun_path holds 108 bytes with the NUL; the socket is bound at a
    // name 2 bytes longer first (see `bound_aside`).
    if path.as_os_str().len() > 105 {
        return invalid(
            io::ErrorKind::InvalidInput,
            "longer than 105 bytes, the most a control socket's path may have; give a shorter --control-socket",
        );
    }
    if path.as_os_str().as_bytes().ends_with(b"/") || path.file_name().is_none() {
        return invalid(io::ErrorKind::InvalidInput, "does not name a file");
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(true),
        Ok(_) => invalid(io::ErrorKind::AlreadyExists, "exists and is not a socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A socket listening at `path`, which appears there only once it
/// listens: it is bound and narrowed to mode 0600 at `.NAME~` beside it,
/// then renamed into place. A client that sees the file can connect (bound
/// at `path` itself, the file would exist a moment before the socket
/// listened, and a connection then is refused).
fn bound_aside(path: &Path) -> io::Result<UnixListener> {
    let name = path.file_name().unwrap_or_default();
    let mut aside = std::ffi::OsString::from(".");
    aside.push(name);
    aside.push("~");
    let aside = path.with_file_name(aside);
    // One left by a daemon that died (the caller holds the lock file).
    if std::fs::symlink_metadata(&aside).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(&aside)?;
    }
    // Made with the umask's mode (no write for others: nobody else can
    // connect), then narrowed to the owner.
    let listener = UnixListener::bind(&aside)?;
    let placed = std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&aside, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&aside);
        return Err(e);
    }
    Ok(listener)
}

impl Server {
    /// Listens on `path`: a socket left there by a daemon that died is
    /// replaced (the caller holds the lock file, so no daemon uses it);
    /// anything else there is an error. Client `i` gets epoll token
    /// `client_token + i`.
    pub fn bind(path: &Path, client_token: u64) -> io::Result<Server> {
        if check_path(path)? {
            std::fs::remove_file(path)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let listener = bound_aside(path)?;
        listener.set_nonblocking(true)?;
        let clients = (0..MAX_CLIENTS)
            .map(|_| Client {
                stream: None,
                request: [0; REQUEST_MAX],
                got: 0,
                answer: None,
                chunk: Chunk::new(),
                sent: 0,
                deadline_ms: 0,
                interest: 0,
                watch: None,
                backlog: Backlog::new(),
            })
            .collect();
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            clients,
            token: client_token,
            watchers_dropped: 0,
        })
    }

    /// The listening socket, for epoll.
    pub fn listener_fd(&self) -> i32 {
        self.listener.as_raw_fd()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `token` is one of the clients'; its index.
    pub fn client_of(&self, token: u64) -> Option<usize> {
        let i = token.checked_sub(self.token)?;
        (i < MAX_CLIENTS as u64).then_some(i as usize)
    }

    /// Accepts waiting connections while a client slot is free.
    pub fn accept(&mut self, now_ms: u64, epoll: &Epoll) {
        while let Some(i) = self.clients.iter().position(|c| c.stream.is_none()) {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => return,
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = self.token + i as u64;
            let interest = libc::EPOLLIN as u32;
            if epoll.add(stream.as_raw_fd(), token, interest).is_err() {
                continue;
            }
            let c = &mut self.clients[i];
            c.stream = Some(stream);
            c.got = 0;
            c.answer = None;
            c.chunk.clear();
            c.sent = 0;
            c.deadline_ms = now_ms + CLIENT_TIMEOUT_MS;
            c.interest = interest;
            c.watch = None;
            c.backlog.clear();
        }
    }

    /// Serves client `i`: reads its request, then writes as much of the
    /// answer as the socket takes. `hangup`: epoll said the client hung up
    /// or failed (a watcher that has nothing to write learns it so).
    pub fn serve(&mut self, i: usize, snapshot: &Snapshot<'_>, epoll: &Epoll, hangup: bool) {
        let token = self.token + i as u64;
        let watchers = self.clients.iter().filter(|c| c.watch.is_some()).count();
        let c = &mut self.clients[i];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        if c.answer.is_none() {
            match stream.read(&mut c.request[c.got..]) {
                Ok(0) => {
                    close(c, epoll);
                    return;
                }
                Ok(n) => c.got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return
                }
                Err(_) => {
                    close(c, epoll);
                    return;
                }
            }
            let Some(end) = c.request[..c.got].iter().position(|&b| b == b'\n') else {
                if c.got == REQUEST_MAX {
                    // What the client sent beyond is read first, so that
                    // closing does not reset the connection before it reads
                    // the answer.
                    for _ in 0..64 {
                        if !matches!(stream.read(&mut c.request), Ok(n) if n > 0) {
                            break;
                        }
                    }
                    let _ = stream.write(BAD_REQUEST);
                    close(c, epoll);
                }
                return;
            };
            match Request::parse(&c.request[..end]) {
                Some(Request::Watch(_)) if watchers == MAX_WATCHERS => {
                    let _ = stream.write(TOO_MANY_WATCHERS);
                    close(c, epoll);
                    return;
                }
                Some(r) => {
                    c.answer = Some(Answer::new(r));
                    if let Request::Watch(f) = r {
                        c.watch = Some(f);
                    }
                }
                None => {
                    let _ = stream.write(BAD_REQUEST);
                    close(c, epoll);
                    return;
                }
            }
        } else if hangup && c.watching() && c.backlog.pending().is_empty() {
            close(c, epoll);
            return;
        }
        loop {
            if c.sent == c.chunk.bytes().len() {
                c.chunk.clear();
                c.sent = 0;
                match c.answer.as_mut() {
                    Some(a) if !a.done() => a.fill(snapshot, &mut c.chunk),
                    _ => {}
                }
                if c.chunk.bytes().is_empty() {
                    break;
                }
            }
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            match write_some(stream, c.chunk.bytes(), &mut c.sent) {
                Wrote::All => {}
                Wrote::Full => {
                    want(c, token, epoll, libc::EPOLLOUT as u32);
                    return;
                }
                Wrote::Gone => {
                    close(c, epoll);
                    return;
                }
            }
        }
        if c.watch.is_none() {
            close(c, epoll);
            return;
        }
        // A watcher has its map: it is not timed out for listening.
        if !c.backlog.lost {
            c.deadline_ms = u64::MAX;
        }
        flush(c, token, epoll);
    }

    /// Whether any client watches: changes are worth rendering.
    pub(crate) fn watched(&self) -> bool {
        self.clients.iter().any(|c| c.watch.is_some())
    }

    /// Gives every watcher `change`, at `now_ms` and `time_s` (seconds
    /// since 1970). Written when [`Server::flush`] runs, or now if its
    /// backlog is full; a watcher that cannot take the line is dropped
    /// (see [`Backlog`]).
    pub(crate) fn broadcast(&mut self, change: &Change, now_ms: u64, time_s: u64) {
        for c in self.clients.iter_mut() {
            let Some(format) = c.watch.filter(|_| c.stream.is_some()) else {
                continue;
            };
            let mut line = Line::new();
            // A line longer than LINE_MAX is cut short rather than lost.
            let _ = change.line(format, time_s, &mut line);
            if c.backlog.push(line.as_bytes()) {
                continue;
            }
            if c.backlog.lost {
                continue;
            }
            // Full: write what the socket takes now, then try again.
            let answered = c.watching();
            if let Some(stream) = c.stream.as_mut().filter(|_| answered) {
                let mut sent = 0;
                let wrote = write_some(stream, c.backlog.pending(), &mut sent);
                c.backlog.consume(sent);
                if matches!(wrote, Wrote::Gone) {
                    // The epoll loop learns it (a hang-up): nothing to write.
                    c.backlog.clear();
                    continue;
                }
                if c.backlog.push(line.as_bytes()) {
                    continue;
                }
            }
            let last = DROPPED
                .iter()
                .find(|(f, _)| *f == format)
                .map_or("", |d| d.1);
            c.backlog.overflow(last.as_bytes());
            c.deadline_ms = c.deadline_ms.min(now_ms + CLIENT_TIMEOUT_MS);
            self.watchers_dropped += 1;
        }
    }

    /// Writes the watchers' backlogs (after [`Server::broadcast`]).
    pub(crate) fn flush(&mut self, epoll: &Epoll) {
        for (i, c) in self.clients.iter_mut().enumerate() {
            if c.watching() && c.interest != libc::EPOLLOUT as u32 {
                flush(c, self.token + i as u64, epoll);
            }
        }
    }

    /// The earliest client deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.clients
            .iter()
            .filter(|c| c.stream.is_some() && c.deadline_ms != u64::MAX)
            .map(|c| c.deadline_ms)
            .min()
    }

    /// Disconnects clients past their deadline.
    pub fn expire(&mut self, now_ms: u64, epoll: &Epoll) {
        for c in self.clients.iter_mut() {
            if c.stream.is_some() && now_ms >= c.deadline_ms {
                close(c, epoll);
            }
        }
    }
}

/// Writes a watcher's backlog as far as the socket takes it: registered
/// for writability while some is left, for hang-ups only when none is;
/// disconnected once it has the line that says it was dropped.
fn flush(c: &mut Client, token: u64, epoll: &Epoll) {
    let Some(stream) = c.stream.as_mut() else {
        return;
    };
    let mut sent = 0;
    let wrote = write_some(stream, c.backlog.pending(), &mut sent);
    c.backlog.consume(sent);
    match wrote {
        Wrote::All if c.backlog.lost => close(c, epoll),
        Wrote::All => want(c, token, epoll, 0),
        Wrote::Full => want(c, token, epoll, libc::EPOLLOUT as u32),
        Wrote::Gone => close(c, epoll),
    }
}

/// Registers client `c` for `interest` (0: hang-ups and errors only).
fn want(c: &mut Client, token: u64, epoll: &Epoll, interest: u32) {
    if c.interest == interest {
        return;
    }
    let Some(stream) = c.stream.as_ref() else {
        return;
    };
    if epoll.modify(stream.as_raw_fd(), token, interest).is_err() {
        close(c, epoll);
        return;
    }
    c.interest = interest;
}

fn close(c: &mut Client, epoll: &Epoll) {
    if let Some(stream) = c.stream.take() {
        let _ = epoll.delete(stream.as_raw_fd());
    }
    c.answer = None;
    c.watch = None;
}

impl Drop for Server {
    /// A stopped daemon leaves no socket behind.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_round_trips() {
        let all = View::NAMES
            .iter()
            .map(|&(_, v)| Request::Show(v))
            .chain(StatsFormat::NAMES.iter().map(|&(_, f)| Request::Stats(f)))
            .chain(WatchFormat::NAMES.iter().map(|&(_, f)| Request::Watch(f)));
        for r in all {
            let line = match r.word() {
                (a, Some(b)) => format!("{a} {b}\r"),
                (a, None) => format!(" {a}\t"),
            };
            assert_eq!(fuzz_check(line.as_bytes()), Some(r), "{line:?}");
        }
        assert_eq!(
            fuzz_check(b"stats\n"),
            Some(Request::Stats(StatsFormat::Text))
        );
        assert_eq!(
            fuzz_check(b"watch\n"),
            Some(Request::Watch(WatchFormat::Text))
        );
        for bad in [
            &b""[..],
            b"\n",
            b"stats xml",
            b"map json",
            b"stats text json",
            b"watch showmap",
            b"watch json text",
            b"Map",
        ] {
            assert_eq!(fuzz_check(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn fuzz_maps_render_in_several_chunks() {
        // This node with 6 aliases, then 4 runs of 32 nodes with 6 aliases:
        // the map and json answers need more than one chunk.
        let mut input = b"json\n".to_vec();
        input.extend([10, 2, 200, 5, 6]);
        for a in 0..6u8 {
            input.extend([172, 16, 0, a]);
        }
        input.push(3);
        for run in 0..4u8 {
            input.extend([10, 1, run * 40, 1, 6 | 31 << 3]);
            for a in 0..6u8 {
                input.extend([172, 17 + run, 0, a]);
            }
        }
        let (map, _) = fuzz_map(&input[5..]);
        assert_eq!(map.len(), 1 + 4 * 32);
        let mut text = String::new();
        mapfile::render(&map, "fuzz", None, &mut text).unwrap();
        assert!(text.len() > CHUNK, "{}", text.len());
        assert_eq!(fuzz_check(&input), Some(Request::Show(View::Json)));
        // Short and odd inputs.
        for end in 0..input.len().min(64) {
            fuzz_check(&input[..end]);
        }
        fuzz_check(b"showmap\n\0\0\0\0");
        fuzz_check(b"hosts\n\xff\xff\xff\xff\x06");
    }
    #[test]
    fn change_lines_share_the_change_log_words() {
        use std::net::Ipv4Addr;
        let mut map = crate::map::test_map(
            Ipv4Addr::new(10, 0, 0, 1),
            [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)],
        );
        map.mark_published();
        map.apply_leave(Ipv4Addr::new(10, 0, 0, 2), 3, 1000, 0, 10);
        map.expire(6000);
        let mut log = Vec::new();
        mapfile::change_log(&map, |a| log.push(a.to_string()));
        let render = |change: Change, format| {
            let mut line = Line::new();
            change.line(format, 1_764_460_800, &mut line).unwrap();
            line.to_string()
        };
        let left: Vec<Node> = map.left().collect();
        assert_eq!(left.len(), 2);
        for n in &left {
            let text = render(Change::Left(*n), WatchFormat::Text);
            let words = text
                .strip_prefix("2025-11-30T00:00:00Z ")
                .and_then(|t| t.strip_suffix('\n'))
                .unwrap();
            assert!(log.iter().any(|l| l == words), "{text:?} not in {log:?}");
        }
        assert_eq!(
            render(Change::Left(left[0]), WatchFormat::Json),
            "{\"time\":\"2025-11-30T00:00:00Z\",\"event\":\"left\",\"id\":2,\"address\":\"10.0.0.2\",\"reason\":\"goodbye\"}\n"
        );
        assert_eq!(
            render(Change::Left(left[1]), WatchFormat::Json),
            "{\"time\":\"2025-11-30T00:00:00Z\",\"event\":\"left\",\"id\":3,\"address\":\"10.0.0.3\",\"reason\":\"expired\",\"silent_s\":6.000}\n"
        );
        let own = map.own_node();
        assert_eq!(
            render(Change::Joined(own), WatchFormat::Text),
            "2025-11-30T00:00:00Z openMosix #1 (IP address 10.0.0.1) joined the cluster\n"
        );
        assert_eq!(
            render(Change::Joined(own), WatchFormat::Json),
            "{\"time\":\"2025-11-30T00:00:00Z\",\"event\":\"joined\",\"id\":1,\"address\":\"10.0.0.1\"}\n"
        );
        let c = Collision {
            id: 2,
            winner: Ipv4Addr::new(10, 0, 0, 2),
            loser: Ipv4Addr::new(10, 9, 0, 2),
            replaced: false,
            own_lost: true,
            first_report: true,
        };
        let text = render(Change::Collision(c), WatchFormat::Text);
        assert!(
            text.starts_with(
                "2025-11-30T00:00:00Z lost node id #2 (0x0002) to 10.0.0.2, which started first"
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
        assert_eq!(
            render(Change::Collision(c), WatchFormat::Json),
            "{\"time\":\"2025-11-30T00:00:00Z\",\"event\":\"collision\",\"id\":2,\"winner\":\"10.0.0.2\",\"loser\":\"10.9.0.2\",\"own_lost\":true}\n"
        );
    }

    #[test]
    fn a_backlog_keeps_whole_lines_in_order_and_room_for_the_last() {
        let mut b = Backlog::new();
        let line = [b'x'; 100];
        let mut taken = 0;
        while b.push(&line) {
            taken += 1;
        }
        assert_eq!(taken, (BACKLOG - LAST_LINE_ROOM) / 100);
        // Writing some makes room again, at the start of the buffer.
        b.consume(200);
        assert!(b.push(&line) && b.push(&line));
        assert!(!b.push(&line));
        assert_eq!(b.pending().len(), taken * 100);
        let last = DROPPED[0].1.as_bytes();
        assert!(last.len() <= LAST_LINE_ROOM && DROPPED[1].1.len() <= LAST_LINE_ROOM);
        b.overflow(last);
        assert!(b.pending().ends_with(last));
        // Once lines were lost, none is taken, even with room.
        b.consume(b.pending().len());
        assert!(b.pending().is_empty() && !b.push(b"y\n"));
        b.clear();
        assert!(b.push(b"y\n"));
    }

    /// A server on a socket in a fresh directory, its epoll, and a map.
    fn server(name: &str) -> (Server, Epoll, PathBuf, ClusterMap) {
        use std::net::Ipv4Addr;
        let dir = std::env::temp_dir().join(format!("omd-ctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sock");
        let server = Server::bind(&path, 100).unwrap();
        let map = crate::map::test_map(Ipv4Addr::new(10, 0, 0, 1), [Ipv4Addr::new(10, 0, 0, 2)]);
        (server, Epoll::new().unwrap(), path, map)
    }

    /// Connects a client that sends `request`, and has the server answer it.
    fn connect(
        s: &mut Server,
        epoll: &Epoll,
        path: &Path,
        map: &ClusterMap,
        request: &str,
    ) -> UnixStream {
        let mut client = UnixStream::connect(path).unwrap();
        client.write_all(request.as_bytes()).unwrap();
        s.accept(0, epoll);
        let i = s.clients.iter().rposition(|c| c.stream.is_some()).unwrap();
        let stats = Stats::new();
        let snapshot = Snapshot {
            map,
            now_ms: 0,
            time_s: 0,
            pid: 1,
            version: "t",
            stats: &stats,
        };
        s.serve(i, &snapshot, epoll, false);
        client
    }

    fn read_lines(client: &mut UnixStream, n: usize) -> Vec<String> {
        let mut text = Vec::new();
        let mut byte = [0u8];
        let mut lines = Vec::new();
        while lines.len() < n {
            assert_eq!(
                client.read(&mut byte).unwrap(),
                1,
                "end-of-file after {lines:?}"
            );
            if byte[0] == b'\n' {
                lines.push(String::from_utf8(std::mem::take(&mut text)).unwrap());
            } else {
                text.push(byte[0]);
            }
        }
        lines
    }

    #[test]
    fn a_watcher_gets_the_map_then_each_change_and_no_deadline() {
        let (mut s, epoll, path, map) = server("watch");
        let mut client = connect(&mut s, &epoll, &path, &map, "watch json\n");
        let lines = read_lines(&mut client, 2);
        assert_eq!(
            lines[0],
            "{\"event\":\"present\",\"id\":1,\"address\":\"10.0.0.1\",\"self\":true}"
        );
        assert_eq!(
            lines[1],
            "{\"event\":\"present\",\"id\":2,\"address\":\"10.0.0.2\",\"self\":false}"
        );
        // Listening, it is not timed out; registered for hang-ups only.
        assert_eq!(s.next_deadline(), None);
        assert!(s.watched());
        assert_eq!(s.clients[0].interest, 0);
        for n in map.iter() {
            s.broadcast(&Change::Joined(n), 10, 0);
        }
        s.flush(&epoll);
        let lines = read_lines(&mut client, 2);
        assert!(
            lines[0].contains("\"event\":\"joined\",\"id\":1,"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("\"event\":\"joined\",\"id\":2,"),
            "{lines:?}"
        );
        // Up to four watch; a fifth is refused, a request still served.
        let _more: Vec<UnixStream> = (0..MAX_WATCHERS - 1)
            .map(|_| connect(&mut s, &epoll, &path, &map, "watch\n"))
            .collect();
        let mut fifth = connect(&mut s, &epoll, &path, &map, "watch\n");
        let mut text = String::new();
        fifth.read_to_string(&mut text).unwrap();
        assert_eq!(text.as_bytes(), TOO_MANY_WATCHERS);
        // A request alongside is answered and closed as before.
        let mut other = connect(&mut s, &epoll, &path, &map, "hosts\n");
        let mut text = String::new();
        other.read_to_string(&mut text).unwrap();
        assert_eq!(text, "10.0.0.1\n10.0.0.2\n");
        // The watcher hangs up: the next hang-up event closes its slot.
        drop(client);
        let stats = Stats::new();
        let snapshot = Snapshot {
            map: &map,
            now_ms: 0,
            time_s: 0,
            pid: 1,
            version: "t",
            stats: &stats,
        };
        s.serve(0, &snapshot, &epoll, true);
        assert!(s.clients[0].stream.is_none() && s.clients[0].watch.is_none());
    }

    #[test]
    fn a_watcher_that_does_not_read_is_dropped_with_a_last_line_not_waited_for() {
        let (mut s, epoll, path, map) = server("slow");
        let mut slow = connect(&mut s, &epoll, &path, &map, "watch\n");
        let mut fast = connect(&mut s, &epoll, &path, &map, "watch text\n");
        assert_eq!(read_lines(&mut fast, 6).len(), 6);
        // The slow one reads nothing: the socket fills, then its backlog.
        let node = map.own_node();
        let mut sent = 0;
        while s.watchers_dropped == 0 {
            s.broadcast(&Change::Joined(node), 1_000, 0);
            s.flush(&epoll);
            sent += 1;
            // The fast one keeps up.
            read_lines(&mut fast, 1);
            assert!(sent < 1_000_000, "never dropped");
        }
        assert_eq!(s.watchers_dropped, 1);
        // Lost lines are not taken; the fast watcher goes on.
        let other = map.get(2).unwrap();
        s.broadcast(&Change::Joined(other), 1_001, 0);
        s.flush(&epoll);
        assert_eq!(read_lines(&mut fast, 1).len(), 1);
        assert_eq!(s.watchers_dropped, 1);
        // The dropped one has 5 s to read what it has.
        assert_eq!(s.next_deadline(), Some(1_000 + CLIENT_TIMEOUT_MS));
        // It reads: the map, every line taken, in order, the last line, end.
        slow.set_nonblocking(false).unwrap();
        let stats = Stats::new();
        let snapshot = Snapshot {
            map: &map,
            now_ms: 0,
            time_s: 0,
            pid: 1,
            version: "t",
            stats: &stats,
        };
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = slow.read(&mut buf).unwrap();
            text.extend_from_slice(&buf[..n]);
            // The socket has room again: epoll would say so.
            s.serve(0, &snapshot, &epoll, false);
            if s.clients[0].stream.is_none() {
                slow.read_to_end(&mut text).unwrap();
                break;
            }
        }
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("My Node-Id: 0x0001"), "{}", lines[0]);
        let changes = &lines[6..];
        assert_eq!(format!("{}\n", changes.last().unwrap()), DROPPED[0].1);
        // Every line but the one that did not fit, none after it, and the
        // last line.
        assert_eq!(changes.len(), sent);
        assert!(changes[..changes.len() - 1]
            .iter()
            .all(|l| l.ends_with("openMosix #1 (IP address 10.0.0.1) joined the cluster")));
        assert!(is_dropped(DROPPED[1].1.as_bytes()));
    }
}
