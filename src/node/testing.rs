//! Fixtures of the core's unit tests: a recording [`Actions`], cores set up
//! as the tests need them, and messages from peers.

pub(super) use core::net::{Ipv4Addr, SocketAddrV4};

pub(super) use crate::auth::{Keyring, Mode};
pub(super) use crate::map::Collision;
pub(super) use crate::node::*;
pub(super) use crate::rng::Rng;
pub(super) use crate::wire::{self, flags, Auth, Label, MessageType, Repr, SyncEntry};

pub(super) const IF0: u32 = 2;
pub(super) const IF1: u32 = 3;
pub(super) const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// Records everything the core does.
#[derive(Default)]
pub(super) struct Rec {
    pub(super) sent: Vec<(u64, Dest, u32, Repr)>,
    pub(super) publishes: Vec<(u64, bool, bool, bool, usize)>,
    pub(super) events: Vec<Event>,
    pub(super) now: u64,
    pub(super) fail_file: bool,
}

impl Actions for Rec {
    fn send(&mut self, d: &Datagram<'_>) -> bool {
        let repr = Repr::parse(d.bytes).expect("the core sends valid messages");
        self.sent.push((self.now, d.to, d.ifindex, repr));
        true
    }
    fn publish(&mut self, p: &Publish<'_>) -> Published {
        let n = p.map.len();
        self.publishes
            .push((self.now, p.file, p.kernel, p.changes, n));
        Published {
            file_failed: self.fail_file,
            kernel_failed: false,
        }
    }
    fn event(&mut self, _now_ms: u64, e: Event) {
        self.events.push(e);
    }
}

impl Rec {
    pub(super) fn announces(&self) -> Vec<u64> {
        let group =
            |s: &&(u64, Dest, u32, Repr)| s.1 == Dest::Group && s.3.kind == MessageType::Announce;
        self.sent.iter().filter(group).map(|s| s.0).collect()
    }
    pub(super) fn replies(&self) -> Vec<&(u64, Dest, u32, Repr)> {
        self.sent
            .iter()
            .filter(|s| s.3.flags & flags::REPLY != 0)
            .collect()
    }
    /// The JOIN flag of each group announcement, in order.
    pub(super) fn asks(&self) -> Vec<bool> {
        self.sent
            .iter()
            .filter(|s| s.1 == Dest::Group && s.3.kind == MessageType::Announce)
            .map(|s| s.3.flags & flags::JOIN != 0)
            .collect()
    }
}

pub(super) fn settings(interval_ms: u32) -> Settings {
    Settings {
        interval_ms,
        hold_ms: 3 * interval_ms,
        label: Label::DEFAULT,
        routed: false,
        budget: 1000,
        expected_nodes: 0,
        auth: Mode::Off,
        clock_s: 1_000_000,
    }
}

pub(super) fn link(index: u32, addr: Ipv4Addr) -> Link {
    Link {
        index,
        addr: Some(addr),
        up: true,
    }
}

pub(super) fn core(interval_ms: u32, seed: u64) -> Core {
    Core::new(
        settings(interval_ms),
        ME,
        &[link(IF0, ME)],
        Rng::from_seed(seed),
        0,
    )
}

/// Polls at every instant the core asks for, up to `until`.
pub(super) fn run(c: &mut Core, rec: &mut Rec, until: u64) {
    while let Some(at) = c.poll_at().filter(|&at| at <= until) {
        rec.now = at;
        c.poll(at, rec);
    }
    rec.now = until;
}

pub(super) fn peer(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, last)
}

pub(super) fn message(kind: MessageType, addr: Ipv4Addr, seq: u32, hold_ms: u32) -> Vec<u8> {
    let mut r = Repr::new(kind, addr, 7, Label::DEFAULT, 1000, hold_ms);
    r.sequence = seq;
    if kind == MessageType::Announce {
        // A node of this version.
        r.flags = flags::WATCHER;
    }
    if kind == MessageType::Sync {
        r.flags = flags::REPLY;
        r.entries.push(SyncEntry {
            addr: Ipv4Addr::new(10, 0, 9, 9),
            incarnation: 3,
            hold_ms,
        });
    }
    let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
    let n = r.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

pub(super) fn feed(
    c: &mut Core,
    rec: &mut Rec,
    now: u64,
    data: &[u8],
    ifindex: u32,
    multicast: bool,
) {
    let src = match Repr::parse(data) {
        Ok(r) => r.addr,
        Err(_) => Ipv4Addr::new(10, 0, 7, 7),
    };
    let d = Received {
        data,
        src: SocketAddrV4::new(src, 7742),
        ifindex,
        multicast,
    };
    rec.now = now;
    c.handle(now, Input::Datagram(d), rec);
}

/// An ANNOUNCE from `addr` with these flags and `members`.
pub(super) fn announce_with(addr: Ipv4Addr, seq: u32, flag_bits: u8, members: u16) -> Vec<u8> {
    let mut r = Repr::new(MessageType::Announce, addr, 7, Label::DEFAULT, 1000, 3000);
    r.sequence = seq;
    r.flags = flag_bits;
    r.members = members;
    let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
    let n = r.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// A settled member (past its burst) that knows `peers` other nodes
/// 10.0.1.1 ..= 10.0.1.peers, heard at 4000.
pub(super) fn member(seed: u64, peers: u8) -> (Core, Rec) {
    let mut c = core(1000, seed);
    let mut rec = Rec::default();
    run(&mut c, &mut rec, 4000);
    for i in 1..=peers {
        let m = message(MessageType::Announce, peer(i), 1, 3000);
        feed(&mut c, &mut rec, 4000, &m, IF0, true);
    }
    rec.sent.clear();
    (c, rec)
}

pub(super) fn asker() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 2, 1)
}

/// The asker's first ask, multicast on IF0.
pub(super) fn ask(c: &mut Core, rec: &mut Rec, now: u64) {
    let m = announce_with(asker(), 1, flags::JOIN, 1);
    feed(c, rec, now, &m, IF0, true);
}

/// A test key (not a secret).
pub(super) const KEY: &str = "1 0f1e2d3c4b5a69788796a5b4c3d2e1f000112233445566778899aabbccddeeff\n";

/// A core with `KEY` in `mode`.
pub(super) fn keyed_core(mode: Mode, seed: u64) -> Core {
    let s = Settings {
        auth: mode,
        ..settings(1000)
    };
    let mut c = Core::new(s, ME, &[link(IF0, ME)], Rng::from_seed(seed), 0);
    c.set_keys(Keyring::parse(KEY.as_bytes()).unwrap());
    c
}

/// A message of `addr`'s incarnation `incarnation` that started at
/// `stamp`: signed with `KEY`, or unsigned (key id 0).
pub(super) fn stamped(
    kind: MessageType,
    addr: Ipv4Addr,
    incarnation: u32,
    seq: u32,
    stamp: u32,
    signed: bool,
) -> Vec<u8> {
    let mut r = Repr::new(kind, addr, incarnation, Label::DEFAULT, 1000, 60_000);
    r.sequence = seq;
    r.auth = Some(Auth {
        key_id: 0,
        stamp,
        mac: [0; wire::MAC_LEN],
    });
    let mut buf = vec![0; wire::MAX_MESSAGE_LEN];
    let n = r.emit(&mut buf).unwrap();
    buf.truncate(n);
    if signed {
        Keyring::parse(KEY.as_bytes()).unwrap().sign(&mut buf);
    }
    buf
}

pub(super) fn two_link_core(routed: bool) -> Core {
    let s = Settings {
        routed,
        ..settings(1000)
    };
    let links = [link(IF0, ME), link(IF1, Ipv4Addr::new(10, 5, 0, 1))];
    Core::new(s, ME, &links, Rng::from_seed(8), 0)
}

pub(super) fn relayed(rec: &Rec) -> Vec<(u32, u8)> {
    rec.sent
        .iter()
        .filter(|s| s.3.addr != ME)
        .map(|s| (s.2, s.3.hops))
        .collect()
}
