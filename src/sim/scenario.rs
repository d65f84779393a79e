//! The script of a run: what happens to whom, and when.

use super::net::{node_addr, Life, NetConfig, Port};
use super::{Sim, PARALLEL_FROM};

use crate::node::Input;
use crate::wire;

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
            hold_ms: 2000 * crate::config::DEFAULT_HOLD_INTERVALS,
            budget: crate::config::DEFAULT_BUDGET,
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
    pub(super) fn total_nodes(&self) -> usize {
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
        if self.budget > crate::config::MAX_BUDGET {
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

impl Sim {
    /// `count` distinct random live nodes.
    pub(super) fn pick(&mut self, count: usize) -> Vec<usize> {
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

    pub(super) fn open(&mut self, what: String, now: u64) {
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

    pub(super) fn apply(&mut self, step: Step, now: u64) {
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
