//! Relay wire protocol, version 1: the JSON frames exchanged over the relay's
//! WebSocket (`PROTOCOL.md` §3). Pure: no sockets, no clock. Size is checked
//! before parsing; bad bytes are an `Err`, never a panic.

pub mod b64;
pub mod close;
pub mod fast;
pub mod frames;

pub use close::CloseReason;
pub use frames::{
    ClientFrame, DeliveryStatus, EnvelopeId, ErrorCode, FrameError, InviteHash, ServerFrame,
    decode_client_frame, decode_server_frame, encode_frame,
};

/// The protocol label signed in a login and advertised in the challenge.
pub const PROTOCOL_LABEL: &str = "agentroom/relay/v1";
/// Relay protocol versions this build speaks.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];
/// Domain-separation label for the login signature.
pub const LOGIN_LABEL: &[u8] = b"agentroom/login/v1";

/// The exact bytes a client signs to log in (PROTOCOL.md §3.2):
/// `"agentroom/login/v1" || u16be(len(origin)) || origin || challenge(32) || u64be(ts)`.
///
/// `origin` is the authority (`host[:port]`, lowercase) the client dialled, which
/// is what the relay sees in the `Host` header of the upgrade request. Binding it
/// stops a malicious relay from replaying a challenge it got from another relay.
pub fn login_signed_bytes(origin: &str, challenge: &[u8; 32], ts: u64) -> Vec<u8> {
    let origin = origin.as_bytes();
    let origin_len = u16::try_from(origin.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(LOGIN_LABEL.len() + 2 + origin.len() + 32 + 8);
    out.extend_from_slice(LOGIN_LABEL);
    out.extend_from_slice(&origin_len.to_be_bytes());
    out.extend_from_slice(&origin[..usize::from(origin_len)]);
    out.extend_from_slice(challenge);
    out.extend_from_slice(&ts.to_be_bytes());
    out
}
