//! libFuzzer entry for `fuzz/targets/decrypt_body.rs` (`Session::decrypt` of a live session); the stable runner in
//! `tests/fuzz` drives the same function.
#![no_main]

#[path = "../targets/decrypt_body.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    target::run(data);
});
