//! A control socket request line, then bytes a cluster map is built from:
//! see `omdiscd::control::fuzz_check` for the format and the invariant (the
//! request parser never panics and round-trips; every answer, rendered chunk
//! by chunk, ends and matches the map file).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = omdiscd::control::fuzz_check(data);
});
