//! Fuzzes the protocol v1 parser: see `omdiscd::wire::fuzz_check` for the invariant
//! (never panic; whatever parses re-emits and parses back to the same `Repr`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| omdiscd::wire::fuzz_check(data));
