//! Replays the committed fuzz seed corpora on stable, so every seed (and every
//! crash ever found and added) is checked by the normal test suite.
//!
//! The `fuzz_check` functions are test scaffolding, compiled into the library
//! only with the `fuzzing` feature: scripts/test runs `cargo test --features
//! fuzzing`. Without it this file says so instead of passing silently.
#![cfg_attr(not(feature = "fuzzing"), allow(dead_code, unused_imports))]

use std::path::Path;

#[cfg(not(feature = "fuzzing"))]
#[test]
#[ignore = "SKIPPED: the fuzz seed replay needs `--features fuzzing` (scripts/test passes it)"]
fn fuzz_seed_replay_needs_the_fuzzing_feature() {}

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {target} fails on {}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 5, "the {target} seed corpus has only {n} files");
}

#[cfg(feature = "fuzzing")]
#[test]
fn wire_corpus() {
    replay("wire", omdiscd::wire::fuzz_check);
}

#[cfg(feature = "fuzzing")]
#[test]
fn mapfile_corpus() {
    replay("mapfile", omdiscd::mapfile::fuzz_check);
}

#[cfg(feature = "fuzzing")]
#[test]
fn netlink_corpus() {
    replay("netlink", omdiscd::netlink::fuzz_check);
}
