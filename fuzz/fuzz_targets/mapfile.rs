#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| omdiscd::mapfile::fuzz_check(data));
