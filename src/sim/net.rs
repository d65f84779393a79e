//! The simulated network: its settings, the packets in flight, every node's
//! queue and place, and what a core sees of it while it acts.

use super::{PPM, WHEEL_MS};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;

use crate::node::{Actions, Datagram, Dest, Event, Publish, Published};
use crate::rng::Rng;
use crate::wire::MAX_MESSAGE_LEN;

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

/// A datagram in flight or queued: which packet, from whom.
#[derive(Clone, Copy, Debug)]
pub(super) struct Delivery {
    pub(super) dst: u32,
    pub(super) pkt: u32,
    pub(super) src: Ipv4Addr,
    pub(super) multicast: bool,
}

/// Packets shared by all their copies, freed when the last copy is gone.
#[derive(Default)]
pub(super) struct Slab {
    pub(super) bytes: Vec<[u8; MAX_MESSAGE_LEN]>,
    pub(super) len: Vec<u16>,
    pub(super) refs: Vec<u32>,
    pub(super) free: Vec<u32>,
}

impl Slab {
    pub(super) fn insert(&mut self, data: &[u8]) -> u32 {
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
    pub(super) fn get(&self, i: u32) -> &[u8] {
        &self.bytes[i as usize][..self.len[i as usize] as usize]
    }
    pub(super) fn release(&mut self, i: u32) {
        let r = &mut self.refs[i as usize];
        *r -= 1;
        if *r == 0 {
            self.free.push(i);
        }
    }
}

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
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
pub(super) struct World {
    pub(super) cfg: NetConfig,
    /// Per node: the probability that a copy is lost on its way in.
    pub(super) ingress_loss: Vec<f64>,
    pub(super) rng: Rng,
    pub(super) now: u64,
    pub(super) life: Vec<Life>,
    pub(super) side: Vec<u8>,
    pub(super) addr: Vec<Ipv4Addr>,
    pub(super) by_addr: HashMap<Ipv4Addr, u32>,
    /// Live since (start, resume, new address or a partition change).
    pub(super) live_since: Vec<u64>,
    pub(super) wheel: Vec<Vec<Delivery>>,
    pub(super) slab: Slab,
    pub(super) queues: Vec<VecDeque<Delivery>>,
    /// Per node: (map length, fingerprint) of its last published map.
    pub(super) published: Vec<(usize, u64)>,
    pub(super) converged: Vec<bool>,
    /// Per side: (live count, fingerprint of the live set).
    pub(super) expected: [(usize, u64); 2],
    pub(super) sent: Vec<u64>,
    pub(super) sent_bytes: Vec<u64>,
    pub(super) steady_sent: Vec<u64>,
    pub(super) steady_bytes: Vec<u64>,
    pub(super) steady_from_ms: u64,
    pub(super) running_ms: Vec<u64>,
    /// Datagrams that reached each node (queued or dropped at its queue).
    pub(super) rx: Vec<u64>,
    /// Datagrams dropped at each node's full queue (what the kernel's
    /// SO_RXQ_OVFL counter tells the daemon).
    pub(super) drops: Vec<u32>,
    /// Distinct (sender, receiver) unicast pairs.
    pub(super) pairs: HashSet<(u32, u32)>,
    pub(super) unicast_sent: u64,
    pub(super) lost: u64,
    pub(super) ingress_lost: u64,
    pub(super) queue_drops: u64,
    pub(super) false_removals: u64,
    /// False removals per node that made them, and per node dropped.
    pub(super) false_by: Vec<u64>,
    pub(super) false_of: Vec<u64>,
    /// When each node last sent.
    pub(super) last_sent_ms: Vec<Option<u64>>,
    pub(super) publishes: u64,
    pub(super) digest: u64,
}

/// Mixes `v` into a running 64-bit hash (splitmix64 finaliser).
pub(super) fn mix(h: u64, v: u64) -> u64 {
    let mut z = (h ^ v).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) fn addr_hash(a: Ipv4Addr) -> u64 {
    mix(0, u64::from(u32::from(a)))
}

/// The address of node `i` (0-based): node id `i + 1`, or `base + i + 1`
/// after address changes.
pub(super) fn node_addr(id: usize) -> Ipv4Addr {
    let id = id as u16;
    let [hi, lo] = id.to_be_bytes();
    Ipv4Addr::new(10, 77, hi, lo)
}

impl World {
    pub(super) fn is_live(&self, i: usize) -> bool {
        self.life[i] == Life::Running
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.below(PPM) < (p * f64::from(PPM)) as u32
    }

    /// Sends one copy to `dst` through the network.
    pub(super) fn transmit(&mut self, dst: usize, pkt: u32, src: Ipv4Addr, multicast: bool) {
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
    pub(super) fn recompute_expected(&mut self) {
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

    pub(super) fn agrees(&self, i: usize) -> bool {
        self.is_live(i) && self.published[i] == self.expected[self.side[i] as usize]
    }

    pub(super) fn all_converged(&self) -> bool {
        (0..self.life.len()).all(|i| !self.is_live(i) || self.converged[i])
    }
}

/// A core's view of the world while it acts.
pub(super) struct Port<'a> {
    pub(super) me: usize,
    pub(super) world: &'a mut World,
}

impl World {
    /// A node sends: counted, hashed into the digest, and fanned out.
    pub(super) fn send(&mut self, me: usize, to: Dest, bytes: &[u8]) {
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
    pub(super) fn published(&mut self, me: usize, m: PublishedMap, removed: &[u32]) {
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

    pub(super) fn view(&self) -> View<'_> {
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
pub(super) struct PublishedMap {
    pub(super) len: usize,
    pub(super) fp: u64,
    pub(super) changes: bool,
    /// How many live nodes it dropped (false removals).
    pub(super) false_removals: usize,
}

/// What the nodes may read of the world while they run (in parallel).
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) now: u64,
    pub(super) slab: &'a Slab,
    pub(super) life: &'a [Life],
    pub(super) side: &'a [u8],
    pub(super) by_addr: &'a HashMap<Ipv4Addr, u32>,
    pub(super) live_since: &'a [u64],
}

impl View<'_> {
    /// Books a publish: the map's fingerprint, and the nodes it dropped that
    /// are live, on the same side, and have been so for longer than their
    /// hold time (false removals), which are added to `removed`.
    pub(super) fn publish(
        &self,
        me: usize,
        p: &Publish<'_>,
        removed: &mut Vec<u32>,
    ) -> PublishedMap {
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
