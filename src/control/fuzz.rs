//! The fuzz invariant of the control protocol and the maps it is checked
//! on: test scaffolding, compiled only for tests and with the `fuzzing` feature.

#![forbid(unsafe_code)]

use std::fmt;

use crate::map::{ClusterMap, NodeId};
use crate::mapfile;

use super::answer::{Answer, Chunk, Snapshot, Stat, Stats, CHUNK, ROW_MAX};
use super::server::REQUEST_MAX;
use super::watch::{Change, Line, DROPPED};
use super::{Request, StatsFormat, View, WatchFormat};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
