//! Relay frame decoding on arbitrary text: never panics, and whatever decodes
//! re-encodes to JSON that decodes to the same frame (both directions), and the
//! relay's flat decoder (`protocol::fast`) agrees with the general one.
//! Shared by the libFuzzer target and the stable runner (`tests/fuzz`).

use agentroom::protocol::fast::{Inbound, decode_inbound};
use agentroom::protocol::{
    ClientFrame, b64, decode_client_frame, decode_server_frame, encode_frame,
};

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
    match (decode_client_frame(text, MAX), decode_inbound(text, MAX)) {
        (Ok(g), Ok(Inbound::Send { id, to, body, body_b64, claim })) => {
            assert_eq!(body_b64, b64::encode(&body), "the flat path keeps canonical base64");
            assert_eq!(ClientFrame::Send { id, to, body, claim }, g);
        }
        (Ok(g), Ok(Inbound::Other(f))) => assert_eq!(f, g),
        (Err(g), Err(f)) => assert_eq!(g.to_string(), f.to_string()),
        (g, f) => panic!("the flat and the general decoder disagree: {g:?} / {f:?}"),
    }
    if let Ok(frame) = decode_server_frame(text, MAX) {
        let again = decode_server_frame(&encode_frame(&frame), usize::MAX).expect("re-decodes");
        assert_eq!(again, frame);
        decoded = true;
    }
    decoded
}
