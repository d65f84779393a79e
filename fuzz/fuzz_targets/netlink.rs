//! Arbitrary bytes as rtnetlink dump replies and notification batches: must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| omdiscd::netlink::fuzz_check(data));
