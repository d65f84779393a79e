//! Real omdiscd daemons in a [`Lab`](super::Lab): starting them with safe
//! paths (`-n`, a map file in the lab dir, an empty `--proc-root`), reading
//! their map files back with an independent parser, waiting on them with
//! deadlines (failures show every map and log), their `counters:` lines
//! (SIGUSR1), and an [`Observer`] that listens to the group.
//!
//! Shared by tests/cluster.rs, tests/hostile.rs and tests/lossy.rs.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 42);
/// Generous upper bound for anything that should happen "within a few
/// intervals".
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon may take to log its counters after SIGUSR1.
pub const COUNTERS_TIMEOUT: Duration = Duration::from_secs(5);

/// The openMosix node id of an address: `(o3 << 8) | o4`.
pub fn nid(a: Ipv4Addr) -> u16 {
    let o = a.octets();
    (u16::from(o[2]) << 8) | u16::from(o[3])
}

pub type Entry = (u16, Ipv4Addr);

pub fn entry(a: Ipv4Addr) -> Entry {
    (nid(a), a)
}

pub fn set_of(addrs: &[Ipv4Addr]) -> BTreeSet<Entry> {
    addrs.iter().map(|&a| entry(a)).collect()
}

/// A map file read back, independently of the daemon's own parser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapView {
    /// From the `# this-node: ID ADDR` comment.
    pub this_node: Option<Entry>,
    /// The first range line, when its count is 1 (the own node's line).
    pub first: Option<Entry>,
    /// Every node, ranges expanded.
    pub nodes: BTreeSet<Entry>,
    /// `ID ADDR ALIAS` lines.
    pub aliases: BTreeSet<Entry>,
}

pub fn parse_map(text: &str) -> MapView {
    let mut v = MapView::default();
    let mut first_seen = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# this-node:") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(f.len(), 2, "bad this-node line {line:?} in:\n{text}");
            v.this_node = Some((f[0].parse().unwrap(), f[1].parse().unwrap()));
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "bad map line {line:?} in:\n{text}");
        let id: u16 = f[0]
            .parse()
            .unwrap_or_else(|_| panic!("bad id {line:?}:\n{text}"));
        let addr: Ipv4Addr = f[1]
            .parse()
            .unwrap_or_else(|_| panic!("bad address {line:?}:\n{text}"));
        if f[2] == "ALIAS" {
            v.aliases.insert((id, addr));
            continue;
        }
        let count: u32 = f[2]
            .parse()
            .unwrap_or_else(|_| panic!("bad count {line:?}:\n{text}"));
        assert!(count >= 1, "count 0 in {line:?}");
        if !first_seen {
            first_seen = true;
            if count == 1 {
                v.first = Some((id, addr));
            }
        }
        for k in 0..count {
            let a = Ipv4Addr::from(u32::from(addr) + k);
            let i = u16::try_from(u32::from(id) + k).expect("range within ids");
            assert_eq!(i, nid(a), "id/address mismatch in {line:?}:\n{text}");
            v.nodes.insert((i, a));
        }
    }
    v
}

/// The map file parsed, or `None` while it does not exist yet.
pub fn read_map(path: &Path) -> Option<MapView> {
    fs::read_to_string(path).ok().map(|t| parse_map(&t))
}

/// A running (or stopped) daemon of a test, with what identifies it.
pub struct Daemon {
    pub node: NodeId,
    pub addr: Ipv4Addr,
    pub map: PathBuf,
    pub proc: Option<Proc>,
}

impl Daemon {
    pub fn view(&self) -> MapView {
        read_map(&self.map).unwrap_or_default()
    }

    pub fn nodes(&self) -> BTreeSet<Entry> {
        self.view().nodes
    }

    /// The map is exactly `want`, with this node first and in `this-node`.
    pub fn has_exactly(&self, want: &BTreeSet<Entry>) -> bool {
        let v = self.view();
        let own = Some(entry(self.addr));
        v.this_node == own && v.first == own && v.nodes == *want
    }

    pub fn lists(&self, a: Ipv4Addr) -> bool {
        self.nodes().contains(&entry(a))
    }

    pub fn proc(&self) -> &Proc {
        self.proc.as_ref().expect("daemon was started")
    }

    pub fn log(&self) -> String {
        self.proc
            .as_ref()
            .map(Proc::stdout_text)
            .unwrap_or_default()
    }
}

/// Everything about the daemons, for a failure message.
pub fn diag(ds: &[&Daemon]) -> String {
    let mut s = String::new();
    for d in ds {
        let map = fs::read_to_string(&d.map).unwrap_or_else(|e| format!("(no map: {e})"));
        let (out, err, status) = match &d.proc {
            Some(p) => (
                p.stdout_text(),
                p.stderr_text(),
                format!("{:?}", p.try_wait()),
            ),
            None => Default::default(),
        };
        s.push_str(&format!(
            "=== {} ({}) status {status}\n--- map\n{map}--- stdout\n{out}--- stderr\n{err}\n",
            d.addr,
            d.map.display()
        ));
    }
    s
}

/// Polls `f` until it holds; on timeout panics with `what` and the daemons'
/// maps and logs. Returns the time it took.
pub fn wait_for(
    timeout: Duration,
    what: &str,
    ds: &[&Daemon],
    f: impl FnMut() -> bool,
) -> Duration {
    match poll_for(timeout, f) {
        Some(t) => t,
        None => panic!(
            "timed out after {timeout:?} waiting for: {what}\n{}",
            diag(ds)
        ),
    }
}

/// Checks for the whole of `window` (from now) that `f` keeps holding.
pub fn holds_for(window: Duration, what: &str, ds: &[&Daemon], mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        assert!(
            f(),
            "no longer true after {:?}: {what}\n{}",
            start.elapsed(),
            diag(ds)
        );
        if start.elapsed() >= window {
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

pub fn map_path(lab: &Lab, name: &str) -> PathBuf {
    lab.dir().join(format!("{name}.map"))
}

/// An empty directory to use as `--proc-root`, so no real /proc/hpc is seen.
pub fn empty_proc_root(lab: &Lab) -> PathBuf {
    let p = lab.dir().join("empty-proc");
    fs::create_dir_all(&p).unwrap();
    p
}

/// Starts `omdiscd -n --map-file DIR/NAME.map --proc-root EMPTY args...` in
/// `node`. `args` must carry the interval and interfaces.
pub fn start(lab: &Lab, node: NodeId, addr: Ipv4Addr, name: &str, args: &[&str]) -> Daemon {
    let root = empty_proc_root(lab);
    start_with_root(lab, node, addr, name, &root, args)
}

pub fn start_with_root(
    lab: &Lab,
    node: NodeId,
    addr: Ipv4Addr,
    name: &str,
    proc_root: &Path,
    args: &[&str],
) -> Daemon {
    let map = map_path(lab, name);
    let mut d = Daemon {
        node,
        addr,
        map,
        proc: None,
    };
    d.proc = Some(spawn_daemon(lab, &d, proc_root, args));
    d
}

pub fn spawn_daemon(lab: &Lab, d: &Daemon, proc_root: &Path, args: &[&str]) -> Proc {
    let map = d.map.to_str().unwrap().to_owned();
    let root = proc_root.to_str().unwrap().to_owned();
    let mut full: Vec<&str> = vec!["-n", "--map-file", &map, "--proc-root", &root];
    full.extend_from_slice(args);
    lab.spawn(d.node, Path::new(BIN), &full)
}

pub fn all_have(ds: &[Daemon], want: &BTreeSet<Entry>) -> bool {
    ds.iter().all(|d| d.has_exactly(want))
}

pub fn refs(ds: &[Daemon]) -> Vec<&Daemon> {
    ds.iter().collect()
}

/// Collects (time, sender address, message type, flags, hops) of every
/// omdiscd datagram seen on the group from a listener socket, until stopped.
pub struct Observer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// One datagram an [`Observer`] saw.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Its sender's address field (the originator, also when relayed).
    pub addr: Ipv4Addr,
    /// Its message type (1 ANNOUNCE, 2 LEAVE, 3 SYNC).
    pub kind: u8,
    pub flags: u8,
    /// Relay count: 0 from the originator.
    pub hops: u8,
}

impl Observer {
    pub fn new(lab: &Lab, node: NodeId) -> Observer {
        let sock = lab.in_netns(node, || mcast_receiver(GROUP, PORT, "eth0"));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (Arc::clone(&stop), Arc::clone(&seen));
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                if let Some((d, _)) = recv_timeout(&sock, Duration::from_millis(20)) {
                    if d.len() >= 48 && &d[..4] == b"OMDS" {
                        seen2.lock().unwrap().push(Seen {
                            at: Instant::now(),
                            addr: Ipv4Addr::new(d[44], d[45], d[46], d[47]),
                            kind: d[5],
                            flags: d[6],
                            hops: d[7],
                        });
                    }
                }
            }
        });
        Observer {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// When the first ANNOUNCE from `a` arrived, if one did.
    pub fn first_announce(&self, a: Ipv4Addr) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.addr == a && s.kind == 1)
            .map(|s| s.at)
    }

    /// How many ANNOUNCEs `a` sent to the group itself (not relayed) so far.
    pub fn announces_from(&self, a: Ipv4Addr) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.addr == a && s.kind == 1 && s.hops == 0)
            .count()
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// When the last datagram from `a` (any type, any hops) arrived.
    pub fn last_from(&self, a: Ipv4Addr) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.addr == a)
            .map(|s| s.at)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Daemon {
    /// The counters as the daemon logs them on SIGUSR1, read now: the two
    /// `counters:` lines (not the `dropped NAME: N` lines: see
    /// [`Daemon::counters_with_drops`]).
    ///
    /// The daemon logs them at most once a second, so this may take a
    /// second: it signals again every 250 ms until a new block shows.
    pub fn counters(&self) -> Counters {
        self.read_counters(false)
    }

    /// [`Daemon::counters`] with the `dropped NAME: N` lines. Those follow
    /// the `counters:` lines (one per non-zero drop counter), so the block
    /// is only known to be complete once the next one has begun: this
    /// takes a second more.
    pub fn counters_with_drops(&self) -> Counters {
        self.read_counters(true)
    }

    fn read_counters(&self, drops: bool) -> Counters {
        const RETRY: Duration = Duration::from_millis(250);
        let before = counter_blocks(&self.log()).len();
        let blocks = if drops { 2 } else { 1 };
        let what = format!("{} logs its counters (SIGUSR1)", self.addr);
        let mut signalled: Option<Instant> = None;
        let mut block = String::new();
        wait_for(COUNTERS_TIMEOUT, &what, &[self], || {
            let log = self.log();
            let all = counter_blocks(&log);
            let done = all.len() >= before + blocks
                || (!drops && all.get(before).is_some_and(|b| has_second_line(b)));
            if done {
                block = all[before].to_owned();
                return true;
            }
            // Another one, in case the last came within the daemon's
            // one-second gap and was ignored.
            if all.len() < before + blocks && signalled.is_none_or(|t| t.elapsed() >= RETRY) {
                assert!(
                    self.proc().signal(Signal::SIGUSR1),
                    "{} has exited\n{}",
                    self.addr,
                    diag(&[self])
                );
                signalled = Some(Instant::now());
            }
            false
        });
        Counters::parse(&block)
    }
}

/// The block holds the whole second `counters:` line.
fn has_second_line(block: &str) -> bool {
    block
        .find("counters: auth_failed")
        .is_some_and(|at| block[at..].contains('\n'))
}

/// The counter blocks of a log, each from its first `counters:` line up to
/// the next block (the last one may be incomplete).
fn counter_blocks(log: &str) -> Vec<&str> {
    let is_first = |line: &str| line.contains("counters: ") && line.contains(" nodes, interval ");
    let mut starts = Vec::new();
    let mut at = 0;
    for line in log.split_inclusive('\n') {
        if is_first(line) {
            starts.push(at);
        }
        at += line.len();
    }
    let ends = starts.iter().skip(1).copied().chain([log.len()]);
    starts.iter().zip(ends).map(|(&s, e)| &log[s..e]).collect()
}

/// One reading of a daemon's counters, by the names it logs them under:
/// `received`, `auth_failed`, `unsigned`, `answers limited`, `nodes`, ...,
/// and `dropped NAME` for the drop counters (absent ones are 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    /// Parses one block of `counters:` and `dropped NAME: N` lines.
    pub fn parse(block: &str) -> Counters {
        let mut c = BTreeMap::new();
        for line in block.lines() {
            if let Some((_, rest)) = line.split_once("counters: ") {
                for item in rest.split(", ") {
                    // "answers 3 (1 multicast": the parenthesis is another item.
                    let item = item.split(" (").next().unwrap_or("");
                    let words: Vec<&str> = item.split_whitespace().collect();
                    let Some((last, name)) = words.split_last() else {
                        continue;
                    };
                    if let Ok(v) = last.parse() {
                        c.insert(name.join(" "), v);
                    } else if let Some((first, name)) = words.split_first() {
                        // "3 nodes"
                        if let Ok(v) = first.parse() {
                            c.insert(name.join(" "), v);
                        }
                    }
                }
            } else if let Some(at) = line.find("dropped ") {
                let rest = &line[at..];
                if let Some((name, v)) = rest.split_once(": ") {
                    if let Ok(v) = v.trim().parse() {
                        c.insert(name.to_owned(), v);
                    }
                }
            }
        }
        assert!(
            c.contains_key("auth_failed") && c.contains_key("received"),
            "not a counters block:\n{block}"
        );
        Counters(c)
    }

    /// The counter `name`; 0 for a `dropped NAME` that was not logged.
    /// Panics for any other name that is not there (a typo, or a renamed
    /// counter).
    pub fn get(&self, name: &str) -> u64 {
        match self.0.get(name) {
            Some(&v) => v,
            None if name.starts_with("dropped ") => 0,
            None => panic!("no counter {name:?} in {:?}", self.0),
        }
    }
}

impl std::ops::Index<&str> for Counters {
    type Output = u64;

    /// `counters["name"]`: as [`Counters::get`].
    fn index(&self, name: &str) -> &u64 {
        match self.0.get(name) {
            Some(v) => v,
            None if name.starts_with("dropped ") => &0,
            None => panic!("no counter {name:?} in {:?}", self.0),
        }
    }
}

/// Writes `text` as a key file `DIR/NAME` of the lab, mode 0600 (what
/// `--key-file` asks for).
pub fn key_file(lab: &Lab, name: &str, text: &str) -> PathBuf {
    write_key_file(lab.dir(), name, text, 0o600)
}

/// Panics (with every map and log) if a map of `ds` lacks a node of `alive`:
/// a live node flapped out of it. `when` says when, for the message.
pub fn assert_none_missing(ds: &[&Daemon], alive: &BTreeSet<Entry>, when: &str) {
    for d in ds {
        let nodes = d.nodes();
        let missing: Vec<&Entry> = alive.difference(&nodes).collect();
        assert!(
            missing.is_empty(),
            "{}'s map lost the live node(s) {missing:?} {when}\n{}",
            d.addr,
            diag(ds)
        );
    }
}

/// Polls `f` until it holds, like [`wait_for`], and checks at every poll
/// that no map of `ds` lacks a node of `alive` ([`assert_none_missing`]).
pub fn wait_for_without_flaps(
    timeout: Duration,
    what: &str,
    ds: &[&Daemon],
    alive: &BTreeSet<Entry>,
    mut f: impl FnMut() -> bool,
) -> Duration {
    let when = format!("while waiting for: {what}");
    wait_for(timeout, what, ds, || {
        assert_none_missing(ds, alive, &when);
        f()
    })
}

/// Watches the maps of `ds` after the node `dead` was killed at `killed`
/// until it has left every one of them, or panics once `timeout` has passed
/// since the kill. At every poll no map may lack a node of `alive` (a live
/// node flapping out), and `dead` may not come back into a map it left.
/// Returns, per daemon of `ds`, how long after the kill its map lost `dead`.
pub fn watch_departure(
    ds: &[&Daemon],
    alive: &BTreeSet<Entry>,
    dead: Ipv4Addr,
    killed: Instant,
    timeout: Duration,
) -> Vec<Duration> {
    let mut gone: Vec<Option<Duration>> = vec![None; ds.len()];
    loop {
        let now = killed.elapsed();
        let when = format!("{now:?} after {dead} was killed");
        assert_none_missing(ds, alive, &when);
        for (d, gone) in ds.iter().zip(gone.iter_mut()) {
            let lists = d.lists(dead);
            match *gone {
                None if !lists => *gone = Some(now),
                Some(left) if lists => panic!(
                    "{dead} came back into {}'s map {when} (it had left {left:?} after)\n{}",
                    d.addr,
                    diag(ds)
                ),
                _ => {}
            }
        }
        if gone.iter().all(Option::is_some) {
            return gone.into_iter().flatten().collect();
        }
        if now >= timeout {
            let still: Vec<Ipv4Addr> = ds
                .iter()
                .zip(&gone)
                .filter(|(_, g)| g.is_none())
                .map(|(d, _)| d.addr)
                .collect();
            panic!(
                "{dead} still in the maps of {still:?} {when} (deadline {timeout:?})\n{}",
                diag(ds)
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
