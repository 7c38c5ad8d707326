//! Relay frame decoding on arbitrary text: never panics, and whatever decodes
//! re-encodes to JSON that decodes to the same frame (both directions).
#![no_main]

use agentroom::protocol::{decode_client_frame, decode_server_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(frame) = decode_client_frame(text, MAX) {
        let again = decode_client_frame(&encode_frame(&frame), usize::MAX).expect("re-decodes");
        assert_eq!(again, frame);
    }
    if let Ok(frame) = decode_server_frame(text, MAX) {
        let again = decode_server_frame(&encode_frame(&frame), usize::MAX).expect("re-decodes");
        assert_eq!(again, frame);
    }
});
