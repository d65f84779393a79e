//! Watchers: the changes of the map they are sent, and each one's fixed
//! backlog.

#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};

use crate::map::{Collision, Node};
use crate::mapfile;

use super::answer::Secs;
use super::WatchFormat;

/// A change of the map, for watchers (see [`Server::broadcast`](super::Server::broadcast)).
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

pub(super) type Line = heapless::String<LINE_MAX>;

impl Change {
    /// The change as one line in `format`, at `time_s` (seconds since 1970).
    pub(super) fn line(&self, format: WatchFormat, time_s: u64, out: &mut Line) -> fmt::Result {
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
                            mapfile::Reason::Dead { silent_ms, by } => write!(
                                out,
                                ",\"reason\":\"dead\",\"silent_s\":{},\"by\":\"{by}\"",
                                Secs(silent_ms)
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
pub(super) const DROPPED: [(WatchFormat, &str); 2] = [
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
/// [`CLIENT_TIMEOUT_MS`](super::CLIENT_TIMEOUT_MS).
pub(super) struct Backlog {
    data: Box<[u8; BACKLOG]>,
    /// Written up to here.
    start: usize,
    end: usize,
    /// Lines were lost: nothing more is taken.
    pub(super) lost: bool,
}

impl Backlog {
    pub(super) fn new() -> Backlog {
        Backlog {
            data: Box::new([0; BACKLOG]),
            start: 0,
            end: 0,
            lost: false,
        }
    }

    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.lost = false;
    }

    /// What is waiting.
    pub(super) fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// `n` bytes were written.
    pub(super) fn consume(&mut self, n: usize) {
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
    pub(super) fn push(&mut self, line: &[u8]) -> bool {
        !self.lost && self.append(line, BACKLOG - LAST_LINE_ROOM)
    }

    /// Lines were lost: `last` ends what the watcher gets.
    pub(super) fn overflow(&mut self, last: &[u8]) {
        self.lost = true;
        self.append(last, BACKLOG);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
