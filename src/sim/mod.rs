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

use crate::node::{Core, Link, Settings};
use crate::rng::Rng;
use crate::wire::Label;

mod lane;
mod net;
mod report;
mod scenario;

pub use self::net::NetConfig;
pub use self::report::{Killed, Report, Traffic};
pub use self::scenario::{Action, Phase, Scenario, Step};

use self::lane::{Deed, Lane, Outbox};
use self::net::{mix, node_addr, Life, Slab, View, World};
use self::report::Watch;

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
}
