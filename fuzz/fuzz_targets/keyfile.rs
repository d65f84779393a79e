#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = omdiscd::auth::fuzz_check(data);
});
