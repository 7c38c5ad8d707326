//! libFuzzer entry for `fuzz/targets/invite_parse.rs` (`Invite::parse`); the stable runner in
//! `tests/fuzz` drives the same function.
#![no_main]

#[path = "../targets/invite_parse.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    target::run(data);
});
