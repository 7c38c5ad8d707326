//! libFuzzer entry for `fuzz/targets/frame_decode.rs` (Relay frame decoding); the stable runner in
//! `tests/fuzz` drives the same function.
#![no_main]

#[path = "../targets/frame_decode.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    target::run(data);
});
