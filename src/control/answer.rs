//! The answers: statistics, the snapshot an answer is rendered from, and
//! the rendering in pieces into a fixed [`Chunk`].

#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};

use crate::map::{ClusterMap, Node, NodeId, Via};
use crate::mapfile;

use super::{Request, StatsFormat, View, WatchFormat};

/// Largest answer row (a node with all its aliases in JSON).
pub(super) const ROW_MAX: usize = 1024;

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
    pub(super) len: usize,
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
pub(super) struct Secs(pub(super) u64);

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
