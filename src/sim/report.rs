//! What a run showed: the phases, the traffic, the killed nodes, and the
//! report's table and line.

use super::net::{mix, Life};
use super::scenario::{Phase, Scenario};
use super::Sim;
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use crate::map::ClusterMap;
use crate::node::EXPIRY_GRANULARITY_MS;
use crate::wire;

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
    /// Failure detection, summed the same way, in the order of
    /// `DETECTION` (below).
    pub detection: [u64; 6],
}

/// The failure-detection counters of [`Report::detection`]: the label in
/// the report and the key of the `sim ...` line (the counter's name).
const DETECTION: [(&str, &str); 6] = [
    ("silences checked", "suspected"),
    ("members asked", "indirect_asks"),
    ("asks answered", "asks_answered"),
    ("deaths confirmed", "deaths_confirmed"),
    ("removed on a notice", "death_notices"),
    ("notices refuted", "refutations"),
];

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
        for (k, ((label, _), n)) in DETECTION.iter().zip(self.detection).enumerate() {
            let sep = if k == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}{label} {n}");
        }
        let _ = writeln!(out);
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
        let _ = write!(
            out,
            " probes={} probe_replies={}",
            self.probes, self.probe_replies
        );
        for ((_, key), n) in DETECTION.iter().zip(self.detection) {
            let _ = write!(out, " {key}={n}");
        }
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

/// A killed node, and which nodes' published maps still hold it.
pub(super) struct Watch {
    pub(super) killed: Killed,
    pub(super) addr: Ipv4Addr,
    pub(super) held: Vec<bool>,
}

/// Whether `map` held `addr` when it was last published (it may have
/// changed since).
pub(super) fn published_holds(map: &ClusterMap, addr: Ipv4Addr) -> bool {
    let id = wire::node_id_of(addr);
    if map.get(id).is_some_and(|n| n.addr == addr) {
        !map.joined().any(|n| n.id == id)
    } else {
        map.left().any(|n| n.id == id && n.addr == addr)
    }
}

impl Sim {
    /// Starts watching a node the script killed: who still publishes it.
    pub(super) fn watch(&mut self, i: usize, now: u64) {
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
    pub(super) fn note_publish(&mut self, me: usize) {
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
    pub(super) fn check_gone(&mut self, now: u64) {
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

    /// Ends the open phase: takes the figures that are counted until then.
    pub(super) fn close_phase(&mut self) {
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
    pub(super) fn count_ghosts(&mut self, now: u64) {
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

    pub(super) fn report(mut self) -> Report {
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
            detection: self.cores.iter().flatten().fold([0; 6], |mut d, c| {
                let k = c.counters();
                let each = [
                    k.suspected,
                    k.indirect_asks,
                    k.asks_answered,
                    k.deaths_confirmed,
                    k.death_notices,
                    k.refutations,
                ];
                d.iter_mut().zip(each).for_each(|(d, v)| *d += v);
                d
            }),
            scenario: self.scenario,
        }
    }
}
