//! Wire codec cost, with a plain 76-byte copy as the baseline in the same run so
//! results can be read as ratios independent of the machine.
//!
//! The cost of authentication is measured against parsing: the group
//! `auth_100B` times `Repr::parse`, `Keyring::verify` and `Keyring::sign` of
//! the same signed 100-byte ANNOUNCE (76 bytes and the trailer), so the cost of
//! the MAC reads as a multiple of the cost of parsing. Beside `verify`, in the
//! same run: `verify_keyed_per_message`, the same check with HMAC-SHA256
//! keyed for every message (two more SHA-256 blocks: the inner and outer
//! pads), which is what the keyring saves by keying once per key; and
//! `sha256_one_block`, one SHA-256 block (a 55-byte digest), the floor: a
//! 100-byte message costs three (two inner, one outer).
//!
//! `cargo bench --bench wire -- --warm-up-time 1 --measurement-time 3`
use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use omdiscd::auth::{Keyring, Verdict};
use omdiscd::wire::{
    field, Auth, Label, MessageType, Repr, SyncEntry, ANNOUNCE_LEN, MAC_LEN, MAX_HOLD_MS,
    MAX_MESSAGE_LEN, MAX_SYNC_ENTRIES, TRAILER_LEN,
};

/// A key file with one 32-byte key (id 1): what `--key-file` reads.
const KEY_FILE: &[u8] = b"1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
/// Its secret, in bytes.
const SECRET: [u8; 32] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

/// The baseline of `verify`: HMAC-SHA256 keyed for this message (the inner
/// and outer pads hashed again), the message fed around `hops`, the MAC
/// compared by `hmac`.
fn verify_keyed_per_message(msg: &[u8]) -> bool {
    let covered = msg.len() - MAC_LEN;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&SECRET).expect("any key length");
    mac.update(&msg[..field::HOPS]);
    mac.update(&[0]);
    mac.update(&msg[field::HOPS + 1..covered]);
    mac.verify_truncated_left(&msg[covered..]).is_ok()
}

fn announce() -> Repr {
    let mut r = Repr::new(
        MessageType::Announce,
        Ipv4Addr::new(192, 168, 10, 220),
        0x1234_5678,
        Label::from_str_checked("mosix").expect("short label"),
        2000,
        6000,
    );
    r.sequence = 42;
    r.aliases.push(Ipv4Addr::new(10, 0, 0, 220));
    r.aliases.push(Ipv4Addr::new(172, 16, 5, 220));
    r
}

fn full_sync() -> Repr {
    let mut r = Repr::new(
        MessageType::Sync,
        Ipv4Addr::new(192, 168, 10, 1),
        7,
        Label::from_str_checked("mosix").expect("short label"),
        2000,
        MAX_HOLD_MS,
    );
    for i in 0..MAX_SYNC_ENTRIES as u8 {
        r.entries.push(SyncEntry {
            addr: Ipv4Addr::new(192, 168, 10, i + 1),
            incarnation: u32::from(i),
            hold_ms: 5000,
        });
    }
    r
}

fn encode(r: &Repr) -> Vec<u8> {
    let mut buf = [0u8; MAX_MESSAGE_LEN];
    let n = r.emit(&mut buf).expect("valid Repr");
    buf[..n].to_vec()
}

/// The announce of [`announce`] with its trailer (stamp 1), signed with the
/// first key of `keys`: 100 bytes.
fn signed_announce(keys: &Keyring) -> Vec<u8> {
    let mut r = announce();
    r.auth = Some(Auth {
        key_id: 0,
        stamp: 1,
        mac: [0; MAC_LEN],
    });
    let mut msg = encode(&r);
    assert_eq!(msg.len(), ANNOUNCE_LEN + TRAILER_LEN);
    keys.sign(&mut msg);
    assert_eq!(keys.verify(&msg, true), Verdict::Valid);
    msg
}

fn bench_auth(c: &mut Criterion) {
    let keys = Keyring::parse(KEY_FILE).expect("a valid key file");
    let msg = signed_announce(&keys);
    let mut g = c.benchmark_group("auth_100B");
    g.bench_function("parse_announce_signed", |b| {
        b.iter(|| Repr::parse(black_box(&msg[..])))
    });
    g.bench_function("verify", |b| {
        b.iter(|| keys.verify(black_box(&msg[..]), true))
    });
    assert!(verify_keyed_per_message(&msg));
    g.bench_function("verify_keyed_per_message", |b| {
        b.iter(|| verify_keyed_per_message(black_box(&msg[..])))
    });
    g.bench_function("sha256_one_block", |b| {
        use sha2::Digest;
        b.iter(|| sha2::Sha256::digest(black_box(&msg[..55])))
    });
    g.bench_function("sign", |b| {
        let mut out = msg.clone();
        b.iter(|| keys.sign(black_box(&mut out[..])))
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let announce_repr = announce();
    let announce_bytes = encode(&announce_repr);
    let sync_bytes = encode(&full_sync());
    assert_eq!(announce_bytes.len(), ANNOUNCE_LEN);

    c.bench_function("copy_76_bytes_baseline", |b| {
        let mut out = [0u8; MAX_MESSAGE_LEN];
        b.iter(|| {
            let src = black_box(&announce_bytes[..]);
            out[..src.len()].copy_from_slice(src);
            black_box(&out);
        })
    });
    c.bench_function("parse_announce", |b| {
        b.iter(|| Repr::parse(black_box(&announce_bytes[..])))
    });
    c.bench_function("parse_sync_36_entries", |b| {
        b.iter(|| Repr::parse(black_box(&sync_bytes[..])))
    });
    c.bench_function("emit_announce", |b| {
        let mut out = [0u8; MAX_MESSAGE_LEN];
        b.iter(|| {
            let n = black_box(&announce_repr).emit(&mut out);
            black_box(&out);
            n
        })
    });
}

criterion_group!(benches, bench, bench_auth);
criterion_main!(benches);
