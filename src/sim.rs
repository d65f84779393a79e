//! A deterministic cluster simulator: N protocol cores ([`crate::node::Core`])
//! on a simulated LAN with a virtual clock, in one process.
//!
//! The network delivers multicast to every running node on the sender's side
//! of a partition and unicast to one node, each copy with its own delay
//! (base + jitter), loss, duplication and reordering (an extra delay for
//! some); a node may also lose part of what reaches it (ingress loss).
//! Every node has a bounded receive queue, like a socket buffer: what
//! arrives when it is full is dropped and counted. A node may process only
//! so many datagrams per second (`rx_rate`), so a slow node falls behind.
//!
//! The script starts nodes (all at once or spread over a window), stops them
//! gracefully, kills them, pauses them, changes their address, brings
//! newcomers into a converged cluster, partitions the LAN and heals it.
//!
//! Time advances in 1 ms ticks (the cores' resolution). The same
//! [`Scenario`] gives the same run bit for bit: all randomness comes from the
//! seed, and [`Report::digest`] hashes every datagram sent and every map
//! published, with their times.
//!
//! What it measures ([`Report`]):
//! - the time until every live node's *published* map (what the map file and
//!   the kernel get) holds exactly the live nodes of its side of the network,
//!   after the cold boot and after each membership change of the script;
//! - datagrams and bytes sent, per node per second and for the whole cluster,
//!   over the whole run and over the steady state at its end;
//! - receive-queue drops;
//! - false removals: a node drops from a published map a node that has
//!   been live and reachable for longer than its hold time (per node that
//!   dropped and per node dropped);
//! - for every node the script kills: the time from its last message until
//!   no live node's published map holds it;
//! - ghost entries: a dead node still in a live node's map past its hold
//!   time plus the expiry granularity.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::map::ClusterMap;
use crate::node::{
    Actions, Core, Datagram, Dest, Event, Input, Link, Publish, Published, Received, Settings,
    EXPIRY_GRANULARITY_MS, READ_AT_ONCE,
};
use crate::rng::Rng;
use crate::wire::{self, Label, MAX_MESSAGE_LEN};

/// The simulated interface index of every node's one link.
const IFINDEX: u32 = 2;
/// The real-time clock (seconds since 1970) at the start of every run.
const SIM_EPOCH_S: u32 = 1_800_000_000;
/// The simulated port.
const PORT: u16 = 7742;
/// Deliveries are scheduled at most this far ahead (ms); longer delays are cut.
const WHEEL_MS: usize = 8192;
/// Probabilities are given in parts per million.
const PPM: u32 = 1_000_000;
/// Below this many queued datagrams a tick runs on one thread: starting a
/// thread (~20 us) costs more than it saves.
const PARALLEL_FROM: usize = 256;

/// The simulated network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetConfig {
    /// One-way delay of every datagram (ms).
    pub delay_ms: u32,
    /// Plus a uniform random 0 ..= jitter (ms), drawn per copy.
    pub jitter_ms: u32,
    /// Probability that a copy is lost.
    pub loss: f64,
    /// Probability that a copy is delivered twice.
    pub duplicate: f64,
    /// Probability that a copy is held back by up to `reorder_ms` more.
    pub reorder: f64,
    pub reorder_ms: u32,
    /// Receive queue of each node, in datagrams (the daemon's 8 MiB socket
    /// buffer holds about 8,000 of them).
    pub queue: usize,
    /// Datagrams a node can process per second; 0: as many as arrive.
    pub rx_rate: u32,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            delay_ms: 1,
            jitter_ms: 1,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_ms: 10,
            queue: 8192,
            rx_rate: 0,
        }
    }
}

/// What happens to whom in a [`Step`] of the script.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    /// Start `count` new nodes (newcomers) at once.
    Join { count: usize },
    /// Stop `count` random live nodes gracefully (LEAVE).
    Stop { count: usize },
    /// Kill `count` random live nodes (no goodbye).
    Kill { count: usize },
    /// Pause `count` random live nodes for `ms`, then resume them.
    Pause { count: usize, ms: u64 },
    /// Give `count` random live nodes a new address (and node id).
    ChangeAddress { count: usize },
    /// Split the LAN: this fraction of the nodes on one side, the rest on
    /// the other; nothing crosses.
    Partition { fraction: f64 },
    /// Join the sides again.
    Heal,
}

/// One step of the script: an action at a time (ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub at_ms: u64,
    pub action: Action,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Nodes started at the beginning (the cold boot).
    pub nodes: usize,
    /// Simulated time (ms).
    pub duration_ms: u64,
    pub seed: u64,
    /// The initial nodes start at random times within this window (0: all
    /// in the same millisecond).
    pub start_window_ms: u64,
    pub interval_ms: u32,
    pub hold_ms: u32,
    /// Announcements per second for the whole cluster (`--budget`).
    pub budget: u32,
    /// Every node starts knowing the size of the cluster, as a node does
    /// whose map file survived its last run.
    pub remembered: bool,
    pub net: NetConfig,
    pub script: Vec<Step>,
    /// Threads to run the nodes on: 1 or 2 (more is taken as 2). The run is
    /// the same bit for bit whatever the number.
    pub threads: usize,
    /// With 2 threads, a tick uses both once this many datagrams are queued
    /// (default 256; tests set 0 to run every tick on both).
    pub parallel_from: usize,
    /// Loss on the way into particular nodes, as (node, probability): every
    /// copy that reaches the node, multicast or unicast, is lost with this
    /// probability on top of the network's `loss`; what the node sends is
    /// not affected. Nodes are numbered from 0 in the order they first
    /// start: the initial nodes, then the newcomers in script order.
    pub ingress_loss: Vec<(usize, f64)>,
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario {
            nodes: 16,
            duration_ms: 60_000,
            seed: 1,
            start_window_ms: 0,
            interval_ms: 2000,
            hold_ms: 2000 * crate::cli::DEFAULT_HOLD_INTERVALS,
            budget: crate::cli::DEFAULT_BUDGET,
            remembered: false,
            net: NetConfig::default(),
            script: Vec::new(),
            threads: 1,
            parallel_from: PARALLEL_FROM,
            ingress_loss: Vec::new(),
        }
    }
}

impl Scenario {
    /// Nodes that will ever exist (initial ones plus newcomers).
    fn total_nodes(&self) -> usize {
        let joins: usize = self
            .script
            .iter()
            .map(|s| match s.action {
                Action::Join { count } => count,
                _ => 0,
            })
            .sum();
        self.nodes + joins
    }

    /// Checks what the simulator cannot do.
    pub fn validate(&self) -> Result<(), &'static str> {
        let total = self.total_nodes();
        if total == 0 {
            return Err("no nodes");
        }
        let changes = self
            .script
            .iter()
            .any(|s| matches!(s.action, Action::ChangeAddress { .. }));
        let ids_needed = if changes { 2 * total } else { total };
        if ids_needed > 65_535 {
            return Err("more nodes than node ids (65,535; half with address changes)");
        }
        if self.interval_ms < wire::MIN_INTERVAL_MS || self.hold_ms < self.interval_ms {
            return Err("interval or hold out of range");
        }
        if self.budget > crate::cli::MAX_BUDGET {
            return Err("budget out of range");
        }
        let p = |x: f64| (0.0..=1.0).contains(&x);
        let n = &self.net;
        if !(p(n.loss) && p(n.duplicate) && p(n.reorder)) {
            return Err("a probability outside 0..1");
        }
        if n.queue == 0 {
            return Err("a receive queue of 0 datagrams");
        }
        for (k, &(node, loss)) in self.ingress_loss.iter().enumerate() {
            if node >= total {
                return Err("ingress loss for a node that never starts");
            }
            if !p(loss) {
                return Err("a probability outside 0..1");
            }
            if self.ingress_loss[..k]
                .iter()
                .any(|&(other, _)| other == node)
            {
                return Err("two ingress losses for one node");
            }
        }
        Ok(())
    }
}

/// How long the cluster took to agree again after something happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// What happened ("cold boot", "join 1", "kill 1", ...).
    pub what: String,
    pub at_ms: u64,
    /// Time from `at_ms` until every live node's published map was exactly
    /// the live nodes of its side; `None`: not within the run (or the next
    /// event came first).
    pub converged_after_ms: Option<u64>,
    /// For a join: datagrams that reached the newcomers (all of them, lost
    /// at a full queue included) from their start until the phase converged
    /// (or ended).
    pub received_by_newcomers: Option<u64>,
    /// For a join: time until every newcomer's own published map was
    /// complete (the others may not have all of them yet).
    pub newcomers_complete_after_ms: Option<u64>,
    /// Datagrams the cluster sent from the event until it converged (or
    /// the next event), and of them unicast.
    pub sent: u64,
    pub unicast: u64,
}

/// Traffic figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Traffic {
    /// Per node and second, averaged over the nodes.
    pub datagrams_mean: f64,
    /// Per node and second, the busiest node.
    pub datagrams_max: f64,
    pub bytes_mean: f64,
    pub bytes_max: f64,
    /// The whole cluster, per second.
    pub cluster_datagrams: f64,
    pub cluster_bytes: f64,
}

/// A node killed by the script, and how long the others kept it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Killed {
    /// The node (numbered as in [`Scenario::ingress_loss`]).
    pub node: usize,
    pub at_ms: u64,
    /// When it last sent a datagram (lost or not); `None`: it never did.
    pub last_sent_ms: Option<u64>,
    /// When no live node's published map held it any more (the kill itself
    /// if none did then); `None`: some live node's map still held it at the
    /// end of the run. If a map takes it back (hearsay), this is when the
    /// last such map dropped it again.
    pub gone_ms: Option<u64>,
    /// The last node whose published map dropped it.
    pub last_holder: Option<usize>,
}

impl Killed {
    /// Time from its last message until it had left every live node's
    /// published map (`None`: not within the run, or it never sent).
    pub fn gone_after_last_message_ms(&self) -> Option<u64> {
        Some(self.gone_ms?.saturating_sub(self.last_sent_ms?))
    }
}

/// What a run showed.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub scenario: Scenario,
    /// Hash of every datagram sent and map published, with times and nodes.
    pub digest: u64,
    pub phases: Vec<Phase>,
    /// Over the whole run.
    pub traffic: Traffic,
    /// Over the steady state: from `steady_from_ms` to the end.
    pub steady: Traffic,
    pub steady_from_ms: u64,
    pub datagrams_sent: u64,
    pub unicast_sent: u64,
    pub bytes_sent: u64,
    /// Copies lost by the network (the loss probability).
    pub lost: u64,
    /// Copies lost on the way into nodes with [`Scenario::ingress_loss`].
    pub ingress_lost: u64,
    /// Copies dropped on a full receive queue.
    pub queue_drops: u64,
    pub false_removals: u64,
    /// The false removals per node that made them (its published map
    /// dropped a live node), indexed by node ...
    pub false_removals_by: Vec<u64>,
    /// ... and per node that was dropped while live.
    pub false_removals_of: Vec<u64>,
    /// The nodes the script killed, in kill order.
    pub killed: Vec<Killed>,
    /// Ghost entries: (live node, dead node) pairs seen past the dead
    /// node's hold time, summed over the checks (one a second).
    pub ghost_observations: u64,
    /// Node-seconds simulated (running nodes times time).
    pub node_seconds: f64,
    /// Map publishes, all nodes.
    pub publishes: u64,
    /// When the last node of the cold boot started.
    pub last_start_ms: u64,
    /// Datagrams sent until the cold boot converged (or the next event).
    pub boot_sent: u64,
    /// Of them unicast.
    pub boot_unicast: u64,
    /// Distinct (sender, receiver) pairs of unicast datagrams in the cold
    /// boot: on a real LAN each costs an ARP resolution.
    pub boot_unicast_pairs: u64,
    /// The same over the whole run.
    pub unicast_pairs: u64,
    /// Probes of silent nodes sent, and replies to probes, by the nodes
    /// running at the end.
    pub probes: u64,
    pub probe_replies: u64,
}

impl Report {
    /// The phase results and figures as a table for people.
    pub fn table(&self) -> String {
        let s = &self.scenario;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} nodes (+{} later), {} s, seed {}, interval {} ms, hold {} ms, budget {}/s{}, loss {:.1} %, digest {:016x}",
            s.nodes,
            s.total_nodes() - s.nodes,
            s.duration_ms / 1000,
            s.seed,
            s.interval_ms,
            s.hold_ms,
            s.budget,
            if s.remembered { ", size remembered" } else { "" },
            s.net.loss * 100.0,
            self.digest
        );
        for &(node, loss) in &s.ingress_loss {
            let _ = writeln!(
                out,
                "node {node} loses {:.1} % of what reaches it (ingress loss)",
                loss * 100.0
            );
        }
        let _ = writeln!(
            out,
            "the last node of the cold boot started at {:.3} s; the cold boot sent {} datagrams ({:.1} per node), {} unicast to {} distinct pairs",
            self.last_start_ms as f64 / 1000.0,
            self.boot_sent,
            self.boot_sent as f64 / s.nodes.max(1) as f64,
            self.boot_unicast,
            self.boot_unicast_pairs
        );
        let _ = writeln!(
            out,
            "probes of silent nodes {}, replies to probes {} (nodes running at the end)",
            self.probes, self.probe_replies
        );
        let _ = writeln!(
            out,
            "| event | at (s) | converged after (s) | sent until then (unicast) | newcomers' maps complete after (s) | datagrams to the newcomers |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for p in &self.phases {
            let after = match p.converged_after_ms {
                Some(ms) => format!("{:.3}", ms as f64 / 1000.0),
                None => "never".to_string(),
            };
            let at = p.at_ms as f64 / 1000.0;
            let rx = p
                .received_by_newcomers
                .map_or(String::new(), |n| n.to_string());
            let own = p
                .newcomers_complete_after_ms
                .map_or(String::new(), |ms| format!("{:.3}", ms as f64 / 1000.0));
            let _ = writeln!(
                out,
                "| {} | {at:.3} | {after} | {} ({}) | {own} | {rx} |",
                p.what, p.sent, p.unicast
            );
        }
        let _ = writeln!(
            out,
            "| traffic | datagrams/node/s mean | max | bytes/node/s mean | max | cluster datagrams/s | cluster bytes/s |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (name, t) in [("whole run", &self.traffic), ("steady", &self.steady)] {
            let _ = writeln!(
                out,
                "| {name} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |",
                t.datagrams_mean,
                t.datagrams_max,
                t.bytes_mean,
                t.bytes_max,
                t.cluster_datagrams,
                t.cluster_bytes
            );
        }
        let _ = writeln!(
            out,
            "sent {} datagrams ({} unicast, {} distinct pairs), lost {}, queue drops {}, false removals {}, ghost observations {}, publishes {}",
            self.datagrams_sent,
            self.unicast_sent,
            self.unicast_pairs,
            self.lost,
            self.queue_drops,
            self.false_removals,
            self.ghost_observations,
            self.publishes
        );
        if self.ingress_lost > 0 {
            let _ = writeln!(out, "lost at ingress {}", self.ingress_lost);
        }
        if self.false_removals > 0 {
            let per = |v: &[u64]| {
                let mut s = String::new();
                for (i, &n) in v.iter().enumerate().filter(|(_, &n)| n > 0) {
                    let _ = write!(s, " {i}:{n}");
                }
                s
            };
            let _ = writeln!(
                out,
                "false removals by node (node:count){}; of node{}",
                per(&self.false_removals_by),
                per(&self.false_removals_of)
            );
        }
        for k in &self.killed {
            let ms = |v: Option<u64>| {
                v.map_or("never".to_string(), |v| format!("{:.3}", v as f64 / 1000.0))
            };
            let _ = writeln!(
                out,
                "node {} killed at {} s, last sent at {} s, left every map at {} s ({} s after its last message, last held by {})",
                k.node,
                ms(Some(k.at_ms)),
                ms(k.last_sent_ms),
                ms(k.gone_ms),
                ms(k.gone_after_last_message_ms()),
                k.last_holder
                    .map_or("nobody".to_string(), |h| format!("node {h}"))
            );
        }
        out
    }

    /// One machine-readable line: `sim key=value ...`.
    pub fn line(&self) -> String {
        let s = &self.scenario;
        let mut out = format!(
            "sim nodes={} joined={} seconds={} seed={} interval_ms={} hold_ms={} budget={} remembered={} loss={} last_start_ms={} digest={:016x}",
            s.nodes,
            s.total_nodes() - s.nodes,
            s.duration_ms / 1000,
            s.seed,
            s.interval_ms,
            s.hold_ms,
            s.budget,
            u8::from(s.remembered),
            s.net.loss,
            self.last_start_ms,
            self.digest
        );
        for (i, p) in self.phases.iter().enumerate() {
            let v = p.converged_after_ms.map_or(-1, |v| v as i64);
            let _ = write!(
                out,
                " phase{i}={}@{}:{v} phase{i}_sent={} phase{i}_unicast={}",
                p.what.replace(' ', "_"),
                p.at_ms,
                p.sent,
                p.unicast
            );
            if let Some(rx) = p.received_by_newcomers {
                let own = p.newcomers_complete_after_ms.map_or(-1, |v| v as i64);
                let _ = write!(
                    out,
                    " phase{i}_newcomer_rx={rx} phase{i}_newcomer_complete={own}"
                );
            }
        }
        let t = &self.traffic;
        let st = &self.steady;
        let _ = write!(
            out,
            " dgrams_node_s_mean={:.3} dgrams_node_s_max={:.3} bytes_node_s_mean={:.1} cluster_dgrams_s={:.1} steady_dgrams_node_s_mean={:.3} steady_dgrams_node_s_max={:.3} steady_cluster_dgrams_s={:.1} boot_sent={} boot_unicast={} boot_pairs={} sent={} unicast={} pairs={} lost={} queue_drops={} false_removals={} ghosts={} publishes={}",
            t.datagrams_mean,
            t.datagrams_max,
            t.bytes_mean,
            t.cluster_datagrams,
            st.datagrams_mean,
            st.datagrams_max,
            st.cluster_datagrams,
            self.boot_sent,
            self.boot_unicast,
            self.boot_unicast_pairs,
            self.datagrams_sent,
            self.unicast_sent,
            self.unicast_pairs,
            self.lost,
            self.queue_drops,
            self.false_removals,
            self.ghost_observations,
            self.publishes
        );
        if !s.ingress_loss.is_empty() {
            let _ = write!(out, " ingress_lost={}", self.ingress_lost);
        }
        for (k, killed) in self.killed.iter().enumerate() {
            let gone = killed.gone_after_last_message_ms().map_or(-1, |v| v as i64);
            let _ = write!(
                out,
                " killed{k}={}@{} killed{k}_gone_after_last_ms={gone}",
                killed.node, killed.at_ms
            );
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table())
    }
}

/// A datagram in flight or queued: which packet, from whom.
#[derive(Clone, Copy, Debug)]
struct Delivery {
    dst: u32,
    pkt: u32,
    src: Ipv4Addr,
    multicast: bool,
}

/// Packets shared by all their copies, freed when the last copy is gone.
#[derive(Default)]
struct Slab {
    bytes: Vec<[u8; MAX_MESSAGE_LEN]>,
    len: Vec<u16>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, data: &[u8]) -> u32 {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.bytes.push([0; MAX_MESSAGE_LEN]);
                self.len.push(0);
                self.refs.push(0);
                (self.bytes.len() - 1) as u32
            }
        };
        let n = data.len().min(MAX_MESSAGE_LEN);
        self.bytes[i as usize][..n].copy_from_slice(&data[..n]);
        self.len[i as usize] = n as u16;
        self.refs[i as usize] = 0;
        i
    }
    fn get(&self, i: u32) -> &[u8] {
        &self.bytes[i as usize][..self.len[i as usize] as usize]
    }
    fn release(&mut self, i: u32) {
        let r = &mut self.refs[i as usize];
        *r -= 1;
        if *r == 0 {
            self.free.push(i);
        }
    }
}

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    NotStarted,
    Running,
    Paused {
        until_ms: u64,
    },
    /// Stopping gracefully: still sending its goodbyes.
    Leaving,
    Dead {
        since_ms: u64,
    },
}

/// Everything about the nodes but their cores: what the network and the
/// bookkeeping read while a core acts.
struct World {
    cfg: NetConfig,
    /// Per node: the probability that a copy is lost on its way in.
    ingress_loss: Vec<f64>,
    rng: Rng,
    now: u64,
    life: Vec<Life>,
    side: Vec<u8>,
    addr: Vec<Ipv4Addr>,
    by_addr: HashMap<Ipv4Addr, u32>,
    /// Live since (start, resume, new address or a partition change).
    live_since: Vec<u64>,
    wheel: Vec<Vec<Delivery>>,
    slab: Slab,
    queues: Vec<VecDeque<Delivery>>,
    /// Per node: (map length, fingerprint) of its last published map.
    published: Vec<(usize, u64)>,
    converged: Vec<bool>,
    /// Per side: (live count, fingerprint of the live set).
    expected: [(usize, u64); 2],
    sent: Vec<u64>,
    sent_bytes: Vec<u64>,
    steady_sent: Vec<u64>,
    steady_bytes: Vec<u64>,
    steady_from_ms: u64,
    running_ms: Vec<u64>,
    /// Datagrams that reached each node (queued or dropped at its queue).
    rx: Vec<u64>,
    /// Datagrams dropped at each node's full queue (what the kernel's
    /// SO_RXQ_OVFL counter tells the daemon).
    drops: Vec<u32>,
    /// Distinct (sender, receiver) unicast pairs.
    pairs: HashSet<(u32, u32)>,
    unicast_sent: u64,
    lost: u64,
    ingress_lost: u64,
    queue_drops: u64,
    false_removals: u64,
    /// False removals per node that made them, and per node dropped.
    false_by: Vec<u64>,
    false_of: Vec<u64>,
    /// When each node last sent.
    last_sent_ms: Vec<Option<u64>>,
    publishes: u64,
    digest: u64,
}

/// Mixes `v` into a running 64-bit hash (splitmix64 finaliser).
fn mix(h: u64, v: u64) -> u64 {
    let mut z = (h ^ v).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn addr_hash(a: Ipv4Addr) -> u64 {
    mix(0, u64::from(u32::from(a)))
}

/// The address of node `i` (0-based): node id `i + 1`, or `base + i + 1`
/// after address changes.
fn node_addr(id: usize) -> Ipv4Addr {
    let id = id as u16;
    let [hi, lo] = id.to_be_bytes();
    Ipv4Addr::new(10, 77, hi, lo)
}

impl World {
    fn is_live(&self, i: usize) -> bool {
        self.life[i] == Life::Running
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.below(PPM) < (p * f64::from(PPM)) as u32
    }

    /// Sends one copy to `dst` through the network.
    fn transmit(&mut self, dst: usize, pkt: u32, src: Ipv4Addr, multicast: bool) {
        if self.chance(self.cfg.loss) {
            self.lost += 1;
            return;
        }
        let copies = if self.chance(self.cfg.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.chance(self.ingress_loss[dst]) {
                self.ingress_lost += 1;
                continue;
            }
            let mut delay = u64::from(self.cfg.delay_ms);
            delay += u64::from(self.rng.below(self.cfg.jitter_ms + 1));
            if self.chance(self.cfg.reorder) {
                delay += u64::from(self.rng.below(self.cfg.reorder_ms + 1));
            }
            let delay = delay.clamp(1, WHEEL_MS as u64 - 1);
            let slot = ((self.now + delay) % WHEEL_MS as u64) as usize;
            self.slab.refs[pkt as usize] += 1;
            self.wheel[slot].push(Delivery {
                dst: dst as u32,
                pkt,
                src,
                multicast,
            });
        }
    }

    /// Recomputes what every side should see and who agrees with it.
    fn recompute_expected(&mut self) {
        self.expected = [(0, 0); 2];
        for i in 0..self.life.len() {
            if self.is_live(i) {
                let e = &mut self.expected[self.side[i] as usize];
                e.0 += 1;
                e.1 = e.1.wrapping_add(addr_hash(self.addr[i]));
            }
        }
        for i in 0..self.life.len() {
            self.converged[i] = self.agrees(i);
        }
    }

    fn agrees(&self, i: usize) -> bool {
        self.is_live(i) && self.published[i] == self.expected[self.side[i] as usize]
    }

    fn all_converged(&self) -> bool {
        (0..self.life.len()).all(|i| !self.is_live(i) || self.converged[i])
    }
}

/// A core's view of the world while it acts.
struct Port<'a> {
    me: usize,
    world: &'a mut World,
}

impl World {
    /// A node sends: counted, hashed into the digest, and fanned out.
    fn send(&mut self, me: usize, to: Dest, bytes: &[u8]) {
        self.sent[me] += 1;
        self.sent_bytes[me] += bytes.len() as u64;
        self.last_sent_ms[me] = Some(self.now);
        if self.now >= self.steady_from_ms {
            self.steady_sent[me] += 1;
            self.steady_bytes[me] += bytes.len() as u64;
        }
        let mut h = mix(self.digest, self.now);
        h = mix(h, me as u64);
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            h = mix(h, u64::from_le_bytes(b));
        }
        self.digest = h;
        let src = self.addr[me];
        let pkt = self.slab.insert(bytes);
        self.slab.refs[pkt as usize] = 1; // held while fanning out
        let side = self.side[me];
        match to {
            Dest::Group => {
                for dst in 0..self.life.len() {
                    let listening = matches!(self.life[dst], Life::Running | Life::Paused { .. });
                    if dst != me && listening && self.side[dst] == side {
                        self.transmit(dst, pkt, src, true);
                    }
                }
            }
            Dest::Node(ip) => {
                self.unicast_sent += 1;
                if let Some(&dst) = self.by_addr.get(&ip) {
                    self.pairs.insert((me as u32, dst));
                    let dst = dst as usize;
                    let listening = matches!(self.life[dst], Life::Running | Life::Paused { .. });
                    if listening && self.side[dst] == side {
                        self.transmit(dst, pkt, src, false);
                    }
                }
            }
        }
        self.slab.release(pkt);
    }

    /// A node published a map of `len` nodes with fingerprint `fp`, which
    /// dropped the live nodes `removed` (false removals).
    fn published(&mut self, me: usize, m: PublishedMap, removed: &[u32]) {
        if m.changes {
            self.publishes += 1;
            self.false_removals += removed.len() as u64;
            self.false_by[me] += removed.len() as u64;
            for &j in removed {
                self.false_of[j as usize] += 1;
            }
        }
        self.published[me] = (m.len, m.fp);
        self.converged[me] = self.agrees(me);
        self.digest = mix(mix(mix(self.digest, self.now), me as u64), m.fp);
    }

    fn view(&self) -> View<'_> {
        View {
            now: self.now,
            slab: &self.slab,
            life: &self.life,
            side: &self.side,
            by_addr: &self.by_addr,
            live_since: &self.live_since,
        }
    }
}

/// What a publish showed, to be booked.
#[derive(Clone, Copy, Debug)]
struct PublishedMap {
    len: usize,
    fp: u64,
    changes: bool,
    /// How many live nodes it dropped (false removals).
    false_removals: usize,
}

/// What the nodes may read of the world while they run (in parallel).
#[derive(Clone, Copy)]
struct View<'a> {
    now: u64,
    slab: &'a Slab,
    life: &'a [Life],
    side: &'a [u8],
    by_addr: &'a HashMap<Ipv4Addr, u32>,
    live_since: &'a [u64],
}

impl View<'_> {
    /// Books a publish: the map's fingerprint, and the nodes it dropped that
    /// are live, on the same side, and have been so for longer than their
    /// hold time (false removals), which are added to `removed`.
    fn publish(&self, me: usize, p: &Publish<'_>, removed: &mut Vec<u32>) -> PublishedMap {
        let mut false_removals = 0;
        if p.changes {
            for gone in p.map.left() {
                let Some(&j) = self.by_addr.get(&gone.addr) else {
                    continue;
                };
                let j = j as usize;
                let settled = self.live_since[j] + u64::from(gone.hold_ms.max(1)) <= self.now;
                if self.life[j] == Life::Running && self.side[j] == self.side[me] && settled {
                    false_removals += 1;
                    removed.push(j as u32);
                }
            }
        }
        let fp = p
            .map
            .iter()
            .fold(0u64, |h, n| h.wrapping_add(addr_hash(n.addr)));
        PublishedMap {
            len: p.map.len(),
            fp,
            changes: p.changes,
            false_removals,
        }
    }
}

impl Actions for Port<'_> {
    fn send(&mut self, d: &Datagram<'_>) -> bool {
        if d.bytes.is_empty() {
            return false;
        }
        self.world.send(self.me, d.to, d.bytes);
        true
    }

    fn publish(&mut self, p: &Publish<'_>) -> Published {
        let mut removed = Vec::new();
        let m = self.world.view().publish(self.me, p, &mut removed);
        self.world.published(self.me, m, &removed);
        Published::default()
    }

    fn event(&mut self, _now_ms: u64, _e: Event) {}
}

/// What a node did while the nodes ran side by side, applied afterwards in
/// node order, so that a run is the same with one thread or two.
#[derive(Clone, Copy, Debug)]
enum Deed {
    Send {
        me: usize,
        to: Dest,
        start: usize,
        len: usize,
    },
    /// The nodes it dropped while live are `removed[start..]`, as many as
    /// `map.false_removals`.
    Publish {
        me: usize,
        map: PublishedMap,
        start: usize,
    },
    Release {
        pkt: u32,
    },
    Finished {
        me: usize,
    },
}

#[derive(Default)]
struct Outbox {
    deeds: Vec<Deed>,
    bytes: Vec<u8>,
    removed: Vec<u32>,
}

/// A core's view of the world while the nodes run side by side: reads go
/// to the [`View`], everything else is written down in the [`Outbox`].
struct Deferred<'a, 'v> {
    me: usize,
    view: &'a View<'v>,
    out: &'a mut Outbox,
}

impl Actions for Deferred<'_, '_> {
    fn send(&mut self, d: &Datagram<'_>) -> bool {
        if d.bytes.is_empty() {
            return false;
        }
        let start = self.out.bytes.len();
        self.out.bytes.extend_from_slice(d.bytes);
        let (me, to, len) = (self.me, d.to, d.bytes.len());
        self.out.deeds.push(Deed::Send { me, to, start, len });
        true
    }

    fn publish(&mut self, p: &Publish<'_>) -> Published {
        let start = self.out.removed.len();
        let map = self.view.publish(self.me, p, &mut self.out.removed);
        self.out.deeds.push(Deed::Publish {
            me: self.me,
            map,
            start,
        });
        Published::default()
    }

    fn event(&mut self, _now_ms: u64, _e: Event) {}
}

/// The per-node state the running phase changes, for one slice of nodes.
struct Lane<'a> {
    /// Index of the first node of the slice.
    base: usize,
    cores: &'a mut [Option<Core>],
    next_poll: &'a mut [u64],
    budget: &'a mut [u32],
    queues: &'a mut [VecDeque<Delivery>],
    running_ms: &'a mut [u64],
    drops: &'a [u32],
    drops_told: &'a mut [u32],
}

impl Lane<'_> {
    /// Every active node of the lane reads what it can, then runs what is due.
    fn run(&mut self, view: &View<'_>, rate: u32, out: &mut Outbox) {
        let now = view.now;
        for k in 0..self.cores.len() {
            let i = self.base + k;
            if !matches!(view.life[i], Life::Running | Life::Leaving) {
                continue;
            }
            self.running_ms[k] += 1;
            let Some(core) = self.cores[k].as_mut() else {
                continue;
            };
            let mut port = Deferred { me: i, view, out };
            if self.drops[k] != self.drops_told[k] {
                // As the daemon reads SO_RXQ_OVFL with each datagram.
                self.drops_told[k] = self.drops[k];
                core.handle(now, Input::KernelDrops(self.drops[k]), &mut port);
            }
            let touched = !self.queues[k].is_empty();
            if touched {
                let mut can = if rate == 0 {
                    usize::MAX
                } else {
                    self.budget[k] += rate;
                    let whole = self.budget[k] / 1000;
                    self.budget[k] %= 1000;
                    whole as usize
                };
                while can > 0 {
                    let Some(d) = self.queues[k].pop_front() else {
                        break;
                    };
                    can -= 1;
                    port.out.deeds.push(Deed::Release { pkt: d.pkt });
                    let r = Received {
                        data: view.slab.get(d.pkt),
                        src: SocketAddrV4::new(d.src, PORT),
                        ifindex: IFINDEX,
                        multicast: d.multicast,
                    };
                    core.handle(now, Input::Datagram(r), &mut port);
                }
                if self.queues[k].len() >= READ_AT_ONCE {
                    // As the daemon after a wake-up that left more waiting
                    // than it reads at once.
                    core.handle(now, Input::Behind, &mut port);
                }
            }
            if self.next_poll[k] <= now || touched {
                core.poll(now, &mut port);
                self.next_poll[k] = core.poll_at().unwrap_or(u64::MAX);
            }
            if core.finished() {
                port.out.deeds.push(Deed::Finished { me: i });
            }
        }
    }
}

/// The simulator. [`run`] is the whole of its use.
struct Sim {
    scenario: Scenario,
    cores: Vec<Option<Core>>,
    next_poll: Vec<u64>,
    budget: Vec<u32>,
    restarts: Vec<u32>,
    /// The cold boot: (start time, node), in order, and the next to start.
    boot: Vec<(u64, usize)>,
    next_boot: usize,
    /// The script in time order (ties in the given order), and the next step.
    script: Vec<Step>,
    next_step: usize,
    /// Nodes paused now.
    paused: usize,
    world: World,
    script_rng: Rng,
    phases: Vec<Phase>,
    /// Index of the phase waiting for convergence.
    open_phase: Option<usize>,
    ghost_observations: u64,
    next_node: usize,
    /// When the last initial node starts.
    boot_ms: u64,
    /// Threads the nodes run on (1 or 2); the run is the same either way.
    threads: usize,
    outboxes: [Outbox; 2],
    /// Newcomers of the open phase, and what had reached them at its start.
    newcomers: Vec<usize>,
    newcomer_rx_at_start: u64,
    /// Unicast pairs when the cold boot converged (or the next event came).
    boot_pairs: u64,
    /// Queue drops already told to each core.
    drops_told: Vec<u32>,
    /// The nodes the script killed, and who still publishes them.
    watches: Vec<Watch>,
    /// Something happened that may change who holds a killed node.
    watch_dirty: bool,
}

/// A killed node, and which nodes' published maps still hold it.
struct Watch {
    killed: Killed,
    addr: Ipv4Addr,
    held: Vec<bool>,
}

/// Whether `map` held `addr` when it was last published (it may have
/// changed since).
fn published_holds(map: &ClusterMap, addr: Ipv4Addr) -> bool {
    let id = wire::node_id_of(addr);
    if map.get(id).is_some_and(|n| n.addr == addr) {
        !map.joined().any(|n| n.id == id)
    } else {
        map.left().any(|n| n.id == id && n.addr == addr)
    }
}

/// Runs a scenario to its end.
pub fn run(scenario: &Scenario) -> Result<Report, &'static str> {
    scenario.validate()?;
    let mut sim = Sim::new(scenario.clone());
    for now in 0..=scenario.duration_ms {
        sim.tick(now);
    }
    Ok(sim.report())
}

impl Sim {
    fn new(scenario: Scenario) -> Sim {
        let total = scenario.total_nodes();
        let mut script_rng = Rng::from_seed(mix(scenario.seed, 0x005C_2197));
        let mut boot: Vec<(u64, usize)> = (0..scenario.nodes)
            .map(|i| {
                let w = scenario.start_window_ms.min(u64::from(u32::MAX)) as u32;
                let at = if w > 0 { script_rng.below(w + 1) } else { 0 };
                (u64::from(at), i)
            })
            .collect();
        boot.sort_unstable();
        let mut script = scenario.script.clone();
        script.sort_by_key(|s| s.at_ms);
        let last_event = scenario.script.iter().map(|s| s.at_ms).max().unwrap_or(0);
        let settle = last_event + u64::from(scenario.hold_ms) + u64::from(scenario.interval_ms);
        let steady_from_ms = settle.max(scenario.duration_ms / 2);
        let mut ingress_loss = vec![0.0; total];
        for &(i, p) in &scenario.ingress_loss {
            ingress_loss[i] = p;
        }
        let world = World {
            cfg: scenario.net,
            ingress_loss,
            rng: Rng::from_seed(mix(scenario.seed, 0x4E37)),
            now: 0,
            life: vec![Life::NotStarted; total],
            side: vec![0; total],
            addr: (0..total).map(|i| node_addr(i + 1)).collect(),
            by_addr: HashMap::new(),
            live_since: vec![0; total],
            wheel: vec![Vec::new(); WHEEL_MS],
            slab: Slab::default(),
            queues: vec![VecDeque::new(); total],
            published: vec![(0, 0); total],
            converged: vec![false; total],
            expected: [(0, 0); 2],
            sent: vec![0; total],
            sent_bytes: vec![0; total],
            steady_sent: vec![0; total],
            steady_bytes: vec![0; total],
            steady_from_ms,
            running_ms: vec![0; total],
            rx: vec![0; total],
            drops: vec![0; total],
            pairs: HashSet::new(),
            unicast_sent: 0,
            lost: 0,
            ingress_lost: 0,
            queue_drops: 0,
            false_removals: 0,
            false_by: vec![0; total],
            false_of: vec![0; total],
            last_sent_ms: vec![None; total],
            publishes: 0,
            digest: scenario.seed,
        };
        let phases = vec![Phase {
            what: "cold boot".to_string(),
            at_ms: 0,
            converged_after_ms: None,
            received_by_newcomers: None,
            newcomers_complete_after_ms: None,
            sent: 0,
            unicast: 0,
        }];
        let boot_ms = boot.last().map_or(0, |&(at, _)| at);
        Sim {
            boot_ms,
            threads: scenario.threads.clamp(1, 2),
            outboxes: Default::default(),
            cores: (0..total).map(|_| None).collect(),
            next_poll: vec![u64::MAX; total],
            budget: vec![0; total],
            restarts: vec![0; total],
            boot,
            next_boot: 0,
            script,
            next_step: 0,
            paused: 0,
            world,
            script_rng,
            phases,
            open_phase: Some(0),
            ghost_observations: 0,
            next_node: scenario.nodes,
            newcomers: Vec::new(),
            newcomer_rx_at_start: 0,
            boot_pairs: 0,
            drops_told: vec![0; total],
            watches: Vec::new(),
            watch_dirty: false,
            scenario,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            interval_ms: self.scenario.interval_ms,
            hold_ms: self.scenario.hold_ms,
            label: Label::DEFAULT,
            routed: false,
            budget: self.scenario.budget,
            expected_nodes: if self.scenario.remembered {
                self.scenario.total_nodes() as u32
            } else {
                0
            },
            auth: crate::auth::Mode::Off,
            clock_s: SIM_EPOCH_S,
        }
    }

    fn links(&self, i: usize) -> [Link; 1] {
        [Link {
            index: IFINDEX,
            addr: Some(self.world.addr[i]),
            up: true,
        }]
    }

    fn start(&mut self, i: usize, now: u64) {
        let seed = mix(
            mix(self.scenario.seed, i as u64),
            u64::from(self.restarts[i]),
        );
        self.restarts[i] += 1;
        let addr = self.world.addr[i];
        let mut settings = self.settings();
        settings.clock_s = SIM_EPOCH_S + (now / 1000) as u32;
        let core = Core::new(settings, addr, &self.links(i), Rng::from_seed(seed), now);
        self.next_poll[i] = core.poll_at().unwrap_or(u64::MAX);
        self.cores[i] = Some(core);
        self.world.life[i] = Life::Running;
        self.world.live_since[i] = now;
        self.world.by_addr.insert(addr, i as u32);
        self.world.published[i] = (0, 0);
    }

    fn kill(&mut self, i: usize, now: u64) {
        self.cores[i] = None;
        self.next_poll[i] = u64::MAX;
        self.world.life[i] = Life::Dead { since_ms: now };
        let q = std::mem::take(&mut self.world.queues[i]);
        for d in q {
            self.world.slab.release(d.pkt);
        }
        // Its map is gone with it.
        for w in &mut self.watches {
            w.held[i] = false;
        }
        self.watch_dirty = true;
    }

    /// Starts watching a node the script killed: who still publishes it.
    fn watch(&mut self, i: usize, now: u64) {
        let addr = self.world.addr[i];
        let held = self
            .cores
            .iter()
            .map(|c| c.as_ref().is_some_and(|c| published_holds(c.map(), addr)))
            .collect();
        self.watches.push(Watch {
            killed: Killed {
                node: i,
                at_ms: now,
                last_sent_ms: self.world.last_sent_ms[i],
                gone_ms: None,
                last_holder: None,
            },
            addr,
            held,
        });
        self.watch_dirty = true;
    }

    /// Node `me` published a changed map: does it still hold the killed nodes?
    fn note_publish(&mut self, me: usize) {
        let Some(core) = self.cores[me].as_ref() else {
            return;
        };
        for w in &mut self.watches {
            let holds = published_holds(core.map(), w.addr);
            if w.held[me] && !holds {
                w.killed.last_holder = Some(me);
            }
            w.held[me] = holds;
        }
        self.watch_dirty = true;
    }

    /// Notes when no live node's published map holds a killed node any more.
    fn check_gone(&mut self, now: u64) {
        self.watch_dirty = false;
        for w in &mut self.watches {
            let held = (0..w.held.len()).any(|i| w.held[i] && self.world.is_live(i));
            if held {
                w.killed.gone_ms = None;
            } else if w.killed.gone_ms.is_none() {
                w.killed.gone_ms = Some(now);
            }
        }
    }

    /// `count` distinct random live nodes.
    fn pick(&mut self, count: usize) -> Vec<usize> {
        let mut live: Vec<usize> = (0..self.cores.len())
            .filter(|&i| self.world.is_live(i))
            .collect();
        let mut out = Vec::new();
        while out.len() < count && !live.is_empty() {
            let k = self.script_rng.below(live.len() as u32) as usize;
            out.push(live.swap_remove(k));
        }
        out.sort_unstable();
        out
    }

    fn open(&mut self, what: String, now: u64) {
        self.close_phase();
        self.phases.push(Phase {
            what,
            at_ms: now,
            converged_after_ms: None,
            received_by_newcomers: None,
            newcomers_complete_after_ms: None,
            sent: self.world.sent.iter().sum(),
            unicast: self.world.unicast_sent,
        });
        self.open_phase = Some(self.phases.len() - 1);
    }

    fn apply(&mut self, step: Step, now: u64) {
        let n = self.phases.len();
        match step.action {
            Action::Join { count } => {
                let first = self.next_node;
                for _ in 0..count {
                    let i = self.next_node;
                    self.next_node += 1;
                    self.start(i, now);
                }
                self.open(format!("join {count} (#{n})"), now);
                self.newcomers = (first..self.next_node).collect();
                self.newcomer_rx_at_start = 0;
                self.phases[n].received_by_newcomers = Some(0);
            }
            Action::Stop { count } => {
                for i in self.pick(count) {
                    self.world.life[i] = Life::Leaving;
                    let mut port = Port {
                        me: i,
                        world: &mut self.world,
                    };
                    if let Some(core) = self.cores[i].as_mut() {
                        core.handle(now, Input::Stop, &mut port);
                        self.next_poll[i] = core.poll_at().unwrap_or(u64::MAX);
                    }
                }
                self.open(format!("stop {count} (#{n})"), now);
            }
            Action::Kill { count } => {
                for i in self.pick(count) {
                    self.kill(i, now);
                    self.watch(i, now);
                }
                self.open(format!("kill {count} (#{n})"), now);
            }
            Action::Pause { count, ms } => {
                for i in self.pick(count) {
                    self.world.life[i] = Life::Paused { until_ms: now + ms };
                    self.paused += 1;
                }
                self.open(format!("pause {count} for {ms} ms (#{n})"), now);
            }
            Action::ChangeAddress { count } => {
                let total = self.cores.len();
                for i in self.pick(count) {
                    let old = self.world.addr[i];
                    self.world.by_addr.remove(&old);
                    let new = node_addr(total + i + 1);
                    self.world.addr[i] = new;
                    self.world.by_addr.insert(new, i as u32);
                    self.world.live_since[i] = now;
                    let links = self.links(i);
                    let mut port = Port {
                        me: i,
                        world: &mut self.world,
                    };
                    if let Some(core) = self.cores[i].as_mut() {
                        core.handle(now, Input::Links(&links), &mut port);
                        self.next_poll[i] = core.poll_at().unwrap_or(u64::MAX);
                    }
                    if !self.watches.is_empty() {
                        self.note_publish(i);
                    }
                }
                self.open(format!("new address for {count} (#{n})"), now);
            }
            Action::Partition { fraction } => {
                let total = self.cores.len();
                let cut = (total as f64 * fraction.clamp(0.0, 1.0)) as usize;
                for i in 0..total {
                    self.world.side[i] = u8::from(i >= cut);
                    self.world.live_since[i] = now;
                }
                self.open(format!("partition {:.0} % (#{n})", fraction * 100.0), now);
            }
            Action::Heal => {
                for i in 0..self.cores.len() {
                    self.world.side[i] = 0;
                    self.world.live_since[i] = now;
                }
                self.open(format!("heal (#{n})"), now);
            }
        }
        self.world.recompute_expected();
        self.watch_dirty = true;
    }

    fn tick(&mut self, now: u64) {
        self.world.now = now;
        let mut membership_changed = false;
        // Cold boot starts, in (time, node) order.
        while let Some(&(at, i)) = self.boot.get(self.next_boot) {
            if at > now {
                break;
            }
            self.next_boot += 1;
            self.start(i, now);
            membership_changed = true;
        }
        // Resumes.
        let mut resumed = 0;
        if self.paused > 0 {
            for i in 0..self.cores.len() {
                if let Life::Paused { until_ms } = self.world.life[i] {
                    if until_ms <= now {
                        self.world.life[i] = Life::Running;
                        self.world.live_since[i] = now;
                        resumed += 1;
                    }
                }
            }
            self.paused -= resumed;
        }
        if resumed > 0 {
            membership_changed = true;
            let n = self.phases.len();
            self.open(format!("resume {resumed} (#{n})"), now);
        }
        while let Some(&step) = self.script.get(self.next_step) {
            if step.at_ms > now {
                break;
            }
            self.next_step += 1;
            self.apply(step, now);
        }
        if membership_changed {
            self.world.recompute_expected();
            self.watch_dirty = true;
        }
        // Arrivals into the receive queues.
        let slot = (now % WHEEL_MS as u64) as usize;
        let arrivals = std::mem::take(&mut self.world.wheel[slot]);
        for d in &arrivals {
            let dst = d.dst as usize;
            let open = matches!(
                self.world.life[dst],
                Life::Running | Life::Paused { .. } | Life::Leaving
            );
            if open {
                self.world.rx[dst] += 1;
            }
            if open && self.world.queues[dst].len() < self.world.cfg.queue {
                self.world.queues[dst].push_back(*d);
            } else {
                if open {
                    self.world.queue_drops += 1;
                    self.world.drops[dst] += 1;
                }
                self.world.slab.release(d.pkt);
            }
        }
        // Give the (emptied) bucket's capacity back for reuse.
        let mut arrivals = arrivals;
        arrivals.clear();
        self.world.wheel[slot] = arrivals;
        // Every running node: read what it can, then run what is due; on
        // both cores when there is enough to do. What the nodes do is booked
        // afterwards, in node order.
        let rate = self.scenario.net.rx_rate;
        let queued: usize = self.world.queues.iter().map(VecDeque::len).sum();
        let threads = if queued >= PARALLEL_FROM {
            self.threads
        } else {
            1
        };
        let n = self.cores.len();
        let mid = if threads > 1 { n / 2 } else { n };
        let (c0, c1) = self.cores.split_at_mut(mid);
        let (p0, p1) = self.next_poll.split_at_mut(mid);
        let (b0, b1) = self.budget.split_at_mut(mid);
        let (q0, q1) = self.world.queues.split_at_mut(mid);
        let (r0, r1) = self.world.running_ms.split_at_mut(mid);
        let (d0, d1) = self.world.drops.split_at(mid);
        let (t0, t1) = self.drops_told.split_at_mut(mid);
        let mut lane0 = Lane {
            base: 0,
            cores: c0,
            next_poll: p0,
            budget: b0,
            queues: q0,
            running_ms: r0,
            drops: d0,
            drops_told: t0,
        };
        let mut lane1 = Lane {
            base: mid,
            cores: c1,
            next_poll: p1,
            budget: b1,
            queues: q1,
            running_ms: r1,
            drops: d1,
            drops_told: t1,
        };
        let view = View {
            now,
            slab: &self.world.slab,
            life: &self.world.life,
            side: &self.world.side,
            by_addr: &self.world.by_addr,
            live_since: &self.world.live_since,
        };
        let [out0, out1] = &mut self.outboxes;
        if threads > 1 {
            std::thread::scope(|s| {
                s.spawn(|| lane1.run(&view, rate, out1));
                lane0.run(&view, rate, out0);
            });
        } else {
            lane0.run(&view, rate, out0);
            lane1.run(&view, rate, out1);
        }
        let mut outboxes = std::mem::take(&mut self.outboxes);
        for out in &mut outboxes {
            for &deed in &out.deeds {
                match deed {
                    Deed::Send { me, to, start, len } => {
                        self.world.send(me, to, &out.bytes[start..start + len]);
                    }
                    Deed::Publish { me, map, start } => {
                        let removed = &out.removed[start..start + map.false_removals];
                        self.world.published(me, map, removed);
                        if map.changes && !self.watches.is_empty() {
                            self.note_publish(me);
                        }
                    }
                    Deed::Release { pkt } => self.world.slab.release(pkt),
                    Deed::Finished { me } => {
                        self.kill(me, now);
                        self.world.recompute_expected();
                    }
                }
            }
            out.deeds.clear();
            out.bytes.clear();
            out.removed.clear();
        }
        self.outboxes = outboxes;
        if self.watch_dirty && !self.watches.is_empty() {
            self.check_gone(now);
        }
        if now % 1000 == 0 {
            self.count_ghosts(now);
        }
        if let Some(p) = self.open_phase {
            let started = self.phases[p].at_ms;
            let phase = &mut self.phases[p];
            if phase.received_by_newcomers.is_some()
                && phase.newcomers_complete_after_ms.is_none()
                && self.newcomers.iter().all(|&i| self.world.converged[i])
            {
                phase.newcomers_complete_after_ms = Some(now - started);
            }
            // The cold boot is over only once every initial node has started.
            let booted = now >= self.boot_ms;
            if now > started && booted && self.world.all_converged() {
                self.phases[p].converged_after_ms = Some(now - started);
                self.close_phase();
            }
        }
    }

    /// Ends the open phase: takes the figures that are counted until then.
    fn close_phase(&mut self) {
        let Some(p) = self.open_phase.take() else {
            return;
        };
        if p == 0 {
            self.boot_pairs = self.world.pairs.len() as u64;
        }
        let sent: u64 = self.world.sent.iter().sum();
        let phase = &mut self.phases[p];
        phase.sent = sent - phase.sent;
        phase.unicast = self.world.unicast_sent - phase.unicast;
        if let Some(rx) = self.phases[p].received_by_newcomers.as_mut() {
            let now: u64 = self.newcomers.iter().map(|&i| self.world.rx[i]).sum();
            *rx = now - self.newcomer_rx_at_start;
        }
    }

    /// Dead nodes still in a live node's map past the hold time that map
    /// holds them for (the hold they last advertised, plus the window in
    /// which they are probed, plus the expiry granularity).
    fn count_ghosts(&mut self, now: u64) {
        let dead: Vec<(Ipv4Addr, u64)> = (0..self.cores.len())
            .filter_map(|i| match self.world.life[i] {
                Life::Dead { since_ms } => Some((self.world.addr[i], since_ms)),
                _ => None,
            })
            .collect();
        if dead.is_empty() {
            return;
        }
        for core in self.cores.iter().flatten() {
            for &(a, since_ms) in &dead {
                let id = wire::node_id_of(a);
                let held = core.map().get(id).filter(|n| n.addr == a);
                let limit = |n: &crate::map::Node| {
                    since_ms + u64::from(n.hold_ms) + u64::from(n.probe_ms) + EXPIRY_GRANULARITY_MS
                };
                if held.is_some_and(|n| limit(&n) < now) {
                    self.ghost_observations += 1;
                }
            }
        }
    }

    fn report(mut self) -> Report {
        self.close_phase();
        let (boot_sent, boot_unicast) = (self.phases[0].sent, self.phases[0].unicast);
        let boot_unicast_pairs = self.boot_pairs;
        let w = &self.world;
        let secs = self.scenario.duration_ms as f64 / 1000.0;
        let steady_secs =
            (self.scenario.duration_ms.saturating_sub(w.steady_from_ms)) as f64 / 1000.0;
        let traffic =
            |sent: &[u64], bytes: &[u64], per_node_secs: &dyn Fn(usize) -> f64, total_secs: f64| {
                let mut t = Traffic::default();
                let mut n = 0usize;
                for i in 0..sent.len() {
                    let s = per_node_secs(i);
                    if s < 1.0 {
                        continue;
                    }
                    n += 1;
                    let d = sent[i] as f64 / s;
                    let b = bytes[i] as f64 / s;
                    t.datagrams_mean += d;
                    t.bytes_mean += b;
                    t.datagrams_max = t.datagrams_max.max(d);
                    t.bytes_max = t.bytes_max.max(b);
                }
                if n > 0 {
                    t.datagrams_mean /= n as f64;
                    t.bytes_mean /= n as f64;
                }
                if total_secs > 0.0 {
                    t.cluster_datagrams = sent.iter().sum::<u64>() as f64 / total_secs;
                    t.cluster_bytes = bytes.iter().sum::<u64>() as f64 / total_secs;
                }
                t
            };
        let running = |i: usize| w.running_ms[i] as f64 / 1000.0;
        let steady_running = |i: usize| {
            if w.life[i] == Life::Running {
                steady_secs
            } else {
                0.0
            }
        };
        Report {
            digest: mix(mix(w.digest, w.queue_drops), w.lost + w.ingress_lost),
            phases: self.phases.clone(),
            traffic: traffic(&w.sent, &w.sent_bytes, &running, secs),
            steady: traffic(
                &w.steady_sent,
                &w.steady_bytes,
                &steady_running,
                steady_secs,
            ),
            steady_from_ms: w.steady_from_ms,
            datagrams_sent: w.sent.iter().sum(),
            unicast_sent: w.unicast_sent,
            bytes_sent: w.sent_bytes.iter().sum(),
            lost: w.lost,
            ingress_lost: w.ingress_lost,
            queue_drops: w.queue_drops,
            false_removals: w.false_removals,
            false_removals_by: w.false_by.clone(),
            false_removals_of: w.false_of.clone(),
            killed: self.watches.iter().map(|w| w.killed.clone()).collect(),
            ghost_observations: self.ghost_observations,
            node_seconds: w.running_ms.iter().sum::<u64>() as f64 / 1000.0,
            publishes: w.publishes,
            last_start_ms: self.boot_ms,
            boot_sent,
            boot_unicast,
            boot_unicast_pairs,
            unicast_pairs: w.pairs.len() as u64,
            probes: self
                .cores
                .iter()
                .flatten()
                .map(|c| c.counters().probes)
                .sum(),
            probe_replies: self
                .cores
                .iter()
                .flatten()
                .map(|c| c.counters().probe_replies)
                .sum(),
            scenario: self.scenario,
        }
    }
}
