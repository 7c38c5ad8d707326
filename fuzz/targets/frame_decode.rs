//! Relay frame decoding on arbitrary text: never panics, and whatever decodes
//! re-encodes to JSON that decodes to the same frame (both directions).
//! Shared by the libFuzzer target and the stable runner (`tests/fuzz`).

use agentroom::protocol::{decode_client_frame, decode_server_frame, encode_frame};

const MAX: usize = 64 * 1024;

/// One input; `true` when it decoded as a frame (the runner keeps those).
pub(crate) fn run(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let mut decoded = false;
    if let Ok(frame) = decode_client_frame(text, MAX) {
        let again = decode_client_frame(&encode_frame(&frame), usize::MAX).expect("re-decodes");
        assert_eq!(again, frame);
        decoded = true;
    }
    if let Ok(frame) = decode_server_frame(text, MAX) {
        let again = decode_server_frame(&encode_frame(&frame), usize::MAX).expect("re-decodes");
        assert_eq!(again, frame);
        decoded = true;
    }
    decoded
}
