//! Arbitrary argument lists (the input split at NUL bytes), after a kernel
//! command line if the input starts with `K\0`, into the command-line parser:
//! must never panic. See `fuzz/argv.rs` for the format and the invariants;
//! tests/fuzz_corpus.rs replays `corpus/cli` with the same code on stable.
#![no_main]

#[path = "../argv.rs"]
mod argv;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = argv::check(data);
});
