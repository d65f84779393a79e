//! The core's receive path per accepted ANNOUNCE (`Core::handle` of a
//! datagram: parse, label, sender check, MAC, map update), unsigned with
//! `--auth off` and signed with `enforce`, with `Repr::parse` and
//! `Keyring::verify` of the same message as the baselines in the same run.
//!
//! 5,000 nodes (10.77.0.2, .0.4, ...; one map slot each) are known; every
//! measured datagram is the next node's next ANNOUNCE, round-robin, from the
//! node's own address (the accepted path, as `scripts/measure` drives the
//! daemon). The message is made (and signed) outside the timed part.
//!
//! `cargo bench --bench receive -- --warm-up-time 1 --measurement-time 3`
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use omdiscd::auth::{Keyring, Mode};
use omdiscd::node::{
    Actions, Core, Datagram, Event, Input, Link, Publish, Published, Received, Settings,
};
use omdiscd::rng::Rng;
use omdiscd::wire::{Auth, Label, MessageType, Repr, MAC_LEN, MAX_MESSAGE_LEN};

const KEY_FILE: &[u8] = b"1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
const NODES: u32 = 5000;
const IFINDEX: u32 = 1;
const OWN: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// The world of the bench: sends and publishes succeed, events are ignored.
struct Quiet;

impl Actions for Quiet {
    fn send(&mut self, d: &Datagram<'_>) -> bool {
        black_box(d);
        true
    }
    fn publish(&mut self, p: &Publish<'_>) -> Published {
        black_box(p);
        Published::default()
    }
    fn event(&mut self, _now_ms: u64, e: Event) {
        black_box(e);
    }
}

fn node_addr(i: u32) -> Ipv4Addr {
    let id = 2 + 2 * i;
    Ipv4Addr::new(10, 77, (id >> 8) as u8, id as u8)
}

/// Node `i`'s ANNOUNCE number `seq`, signed with `keys` if any (stamp 2).
fn announce(i: u32, seq: u32, keys: Option<&Keyring>) -> ([u8; MAX_MESSAGE_LEN], usize) {
    let mut r = Repr::new(
        MessageType::Announce,
        node_addr(i),
        0x1234_0000 + i,
        Label::DEFAULT,
        2000,
        6000,
    );
    r.sequence = seq;
    r.auth = Some(Auth {
        key_id: 0,
        stamp: 2,
        mac: [0; MAC_LEN],
    });
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let n = r.emit(&mut buf).expect("a valid ANNOUNCE");
    match keys {
        Some(k) => k.sign(&mut buf[..n]),
        None => Keyring::default().sign(&mut buf[..n]),
    }
    (buf, n)
}

fn received(data: &[u8], i: u32) -> Input<'_> {
    Input::Datagram(Received {
        data,
        src: SocketAddrV4::new(node_addr(i), 7742),
        ifindex: IFINDEX,
        multicast: false,
    })
}

/// A core that knows every node (each announced once).
fn core(auth: Mode, keys: Option<&Keyring>) -> Core {
    let settings = Settings {
        interval_ms: 2000,
        hold_ms: 600_000,
        label: Label::DEFAULT,
        routed: false,
        budget: 1000,
        expected_nodes: 0,
        auth,
        clock_s: 1_000_000,
    };
    let links = [Link {
        index: IFINDEX,
        addr: Some(OWN),
        up: true,
    }];
    let mut c = Core::new(settings, OWN, &links, Rng::from_seed(7), 0);
    if let Some(k) = keys {
        c.set_keys(k.clone());
    }
    for i in 0..NODES {
        let (m, n) = announce(i, 1, keys);
        c.handle(1, received(&m[..n], i), &mut Quiet);
    }
    assert_eq!(c.map().len() as u32, NODES + 1, "every node joined");
    c
}

fn bench(c: &mut Criterion) {
    let keys = Keyring::parse(KEY_FILE).expect("a valid key file");
    let mut g = c.benchmark_group("receive_announce_5000_nodes");
    let (one, n) = announce(0, 2, Some(&keys));
    g.bench_function("baseline_parse", |b| {
        b.iter(|| Repr::parse(black_box(&one[..n])))
    });
    g.bench_function("baseline_verify", |b| {
        b.iter(|| keys.verify(black_box(&one[..n]), true))
    });
    for (name, mode, k) in [
        ("handle_unsigned_auth_off", Mode::Off, None),
        ("handle_signed_enforce", Mode::Enforce, Some(&keys)),
    ] {
        let mut core = core(mode, k);
        let received_before = core.counters().received;
        let (mut next, mut seq) = (0u32, 2u32);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let i = next;
                    let (m, n) = announce(i, seq, k);
                    next += 1;
                    if next == NODES {
                        next = 0;
                        seq += 1;
                    }
                    let mut short = [0u8; 128];
                    short[..n].copy_from_slice(&m[..n]);
                    (i, short, n)
                },
                |(i, m, n)| core.handle(1000, received(&m[..*n], *i), &mut Quiet),
                BatchSize::SmallInput,
            )
        });
        let cnt = core.counters();
        let refused = cnt.spoofed + cnt.auth_failed + cnt.unsigned + cnt.replayed;
        assert!(
            cnt.received > received_before && refused == 0,
            "all accepted"
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
