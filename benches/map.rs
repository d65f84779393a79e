//! Cluster map cost per packet and per publish, with `wire::Repr::parse` of one
//! ANNOUNCE as the baseline in the same run, so results can be read as ratios
//! independent of the machine.
//!
//! `cargo bench --bench map -- --warm-up-time 1 --measurement-time 2`
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use omdiscd::map::{AnnounceOutcome, Announcement, ClusterMap, NodeId};
use omdiscd::mapfile;
use omdiscd::wire::{Label, MessageType, Repr, ANNOUNCE_LEN, MAX_MESSAGE_LEN};

/// This node: 10.0.0.1, id 1.
const OWN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const HOLD_MS: u32 = 6_000;
/// "Now" for every operation: far from any expiry.
const NOW_MS: u64 = 1_000;

/// The address of node `id`: 10.0.o3.o4, so `node_id_of` gives `id` back.
fn addr_of(id: NodeId) -> Ipv4Addr {
    let [hi, lo] = id.to_be_bytes();
    Ipv4Addr::new(10, 0, hi, lo)
}

fn announcement(addr: Ipv4Addr, sequence: u32) -> Announcement<'static> {
    Announcement {
        addr,
        aliases: &[],
        incarnation: 7,
        sequence,
        hold_ms: HOLD_MS,
        started: 0,
        probe_ms: 0,
        ifindex: 0,
        authentic: false,
        watcher: false,
    }
}

/// Addresses of `n` nodes other than this one. `step` 1 gives consecutive ids
/// and addresses (the map file compresses them into one range line); `step` 2
/// leaves gaps, so every node gets a line of its own (the worst case for render).
fn node_addrs(n: usize, step: usize) -> Vec<Ipv4Addr> {
    (0..n)
        .map(|i| {
            let id = 2 + i * step;
            addr_of(NodeId::try_from(id).expect("id fits in 16 bits"))
        })
        .collect()
}

/// A map holding this node and `addrs`, each seen with sequence 1 at `NOW_MS`.
fn filled_map(addrs: &[Ipv4Addr]) -> ClusterMap {
    let mut map = ClusterMap::new(OWN, &[], 1);
    for &a in addrs {
        let out = map.apply_announce(&announcement(a, 1), NOW_MS);
        assert_eq!(out, AnnounceOutcome::Joined, "{a}");
    }
    assert_eq!(map.len(), addrs.len() + 1);
    map
}

fn bench_parse(c: &mut Criterion) {
    let mut r = Repr::new(
        MessageType::Announce,
        addr_of(0x1234),
        7,
        Label::DEFAULT,
        2_000,
        HOLD_MS,
    );
    r.sequence = 42;
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let n = r.emit(&mut buf).expect("valid Repr");
    assert_eq!(n, ANNOUNCE_LEN);
    let bytes = buf[..n].to_vec();
    assert_eq!(Repr::parse(&bytes), Ok(r));
    c.bench_function("baseline_parse_announce", |b| {
        b.iter(|| Repr::parse(black_box(&bytes[..])))
    });
}

fn bench_refresh(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_announce_refresh");
    for n in [1_000usize, 65_000] {
        let addrs = node_addrs(n, 1);
        let mut map = filled_map(&addrs);
        // The same node over and over (its slot stays in cache): the O(1) path.
        let one = addrs[n / 2];
        let mut seq = 1u32;
        g.bench_with_input(BenchmarkId::new("same_node", n), &n, |b, _| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let a = announcement(black_box(one), seq);
                map.apply_announce(&a, black_box(NOW_MS))
            })
        });
        assert_eq!(
            map.apply_announce(&announcement(one, seq.wrapping_add(1)), NOW_MS),
            AnnounceOutcome::Refreshed
        );
        // Every node in turn, as a real cluster's traffic arrives: with 65,000
        // nodes the slots no longer fit in cache, so this adds cache misses.
        let mut map = filled_map(&addrs);
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("round_robin", n), &n, |b, _| {
            b.iter(|| {
                let i = k % n;
                let seq = (k / n) as u32 + 2;
                k += 1;
                let a = announcement(black_box(addrs[i]), seq);
                map.apply_announce(&a, black_box(NOW_MS))
            })
        });
        let (i, seq) = (k % n, (k / n) as u32 + 2);
        assert_eq!(
            map.apply_announce(&announcement(addrs[i], seq), NOW_MS),
            AnnounceOutcome::Refreshed
        );
    }
    g.finish();
}

fn bench_join(c: &mut Criterion) {
    const N: usize = 1_000;
    let addrs = node_addrs(N, 1);
    // One iteration is one node joining; every N joins start on a fresh, empty
    // map (created and dropped outside the timed part).
    c.bench_function("apply_announce_join_1000_fresh_per_node", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(N);
                let mut map = ClusterMap::new(OWN, &[], 1);
                let start = Instant::now();
                for &a in &addrs[..batch] {
                    black_box(map.apply_announce(&announcement(black_box(a), 1), NOW_MS));
                }
                total += start.elapsed();
                assert_eq!(map.len(), batch + 1);
                drop(black_box(map));
                left -= batch;
            }
            total
        })
    });
}

fn bench_expire(c: &mut Criterion) {
    let mut g = c.benchmark_group("expire_nothing_due");
    for n in [1_000usize, 65_000] {
        let mut map = filled_map(&node_addrs(n, 1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| map.expire(black_box(NOW_MS + 1)))
        });
        assert_eq!(map.len(), n + 1);
    }
    g.finish();
}

fn bench_render(c: &mut Criterion) {
    let mut g = c.benchmark_group("mapfile_render_one_line_per_node");
    for n in [1_000usize, 5_000] {
        let map = filled_map(&node_addrs(n, 2));
        let mut out = String::with_capacity(64 * (n + 8));
        mapfile::render(&map, "0.1.0", None, &mut out).expect("render");
        assert_eq!(out.lines().count(), n + 4, "one line per node");
        let cap = out.capacity();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                out.clear();
                mapfile::render(black_box(&map), "0.1.0", None, &mut out).expect("render");
                black_box(out.len())
            })
        });
        assert_eq!(out.capacity(), cap, "the buffer was not reallocated");
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_refresh,
    bench_join,
    bench_expire,
    bench_render
);
criterion_main!(benches);
