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

use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

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

mod answer;
#[cfg(any(test, feature = "fuzzing"))]
mod fuzz;
mod server;
mod watch;

pub use answer::{Answer, Chunk, Snapshot, Stat, Stats, CHUNK};
#[cfg(any(test, feature = "fuzzing"))]
pub use fuzz::{fuzz_check, fuzz_map};
pub(crate) use server::check_path;
pub use server::{Server, CLIENT_TIMEOUT_MS, MAX_CLIENTS, MAX_WATCHERS};
pub(crate) use watch::Change;
use watch::DROPPED;

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
}
