//! The nodes running side by side: what each did, written down and applied
//! afterwards in node order, so that a run is the same on one thread or two.

use super::net::{Delivery, Life, PublishedMap, View};
use super::{IFINDEX, PORT};
use std::collections::VecDeque;
use std::net::SocketAddrV4;

use crate::node::{
    Actions, Core, Datagram, Dest, Event, Input, Publish, Published, Received, READ_AT_ONCE,
};

/// What a node did while the nodes ran side by side, applied afterwards in
/// node order, so that a run is the same with one thread or two.
#[derive(Clone, Copy, Debug)]
pub(super) enum Deed {
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
pub(super) struct Outbox {
    pub(super) deeds: Vec<Deed>,
    pub(super) bytes: Vec<u8>,
    pub(super) removed: Vec<u32>,
}

/// A core's view of the world while the nodes run side by side: reads go
/// to the [`View`], everything else is written down in the [`Outbox`].
pub(super) struct Deferred<'a, 'v> {
    pub(super) me: usize,
    pub(super) view: &'a View<'v>,
    pub(super) out: &'a mut Outbox,
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
pub(super) struct Lane<'a> {
    /// Index of the first node of the slice.
    pub(super) base: usize,
    pub(super) cores: &'a mut [Option<Core>],
    pub(super) next_poll: &'a mut [u64],
    pub(super) budget: &'a mut [u32],
    pub(super) queues: &'a mut [VecDeque<Delivery>],
    pub(super) running_ms: &'a mut [u64],
    pub(super) drops: &'a [u32],
    pub(super) drops_told: &'a mut [u32],
}

impl Lane<'_> {
    /// Every active node of the lane reads what it can, then runs what is due.
    pub(super) fn run(&mut self, view: &View<'_>, rate: u32, out: &mut Outbox) {
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
