//! The undecryptable notice (PROTOCOL.md §2.7, body kind `0x03`): "I could not
//! decrypt your envelope `id`", signed with the identity key of whoever failed.
//!
//! It cannot be encrypted: it is sent exactly when the two sessions disagree. It
//! is signed instead, so the relay (which routes it like any body) cannot forge
//! one to make a delivered message look lost, and it names both parties, so it
//! cannot be replayed towards someone else.

use super::keys::{IdentityKeyPair, IdentityPublicKey, Signature};
use super::session::BODY_VERSION;

/// Body kind of a notice (after the version byte).
pub const KIND_UNDECRYPTABLE: u8 = 0x03;
/// Domain separation for the signature; never used for anything else.
const LABEL: &[u8] = b"agentroom undecryptable v1\0";
/// version (1) + kind (1) + envelope id (16) + Ed25519 signature (64).
pub const NOTICE_LEN: usize = 2 + 16 + 64;

/// A body of kind 0x03 that does not hold a valid notice.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    /// Not exactly [`NOTICE_LEN`] bytes.
    #[error("undecryptable notice of {0} bytes (expected {NOTICE_LEN})")]
    Length(usize),
    /// The signature is not the sender's over these parties and id.
    #[error("undecryptable notice with a bad signature")]
    BadSignature,
}

fn signed_bytes(
    failed: &IdentityPublicKey,
    original_sender: &IdentityPublicKey,
    id: &[u8; 16],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(LABEL.len() + 32 + 32 + 16);
    m.extend_from_slice(LABEL);
    m.extend_from_slice(failed.as_bytes());
    m.extend_from_slice(original_sender.as_bytes());
    m.extend_from_slice(id);
    m
}

/// The body telling `to` that we (`identity`) could not decrypt its envelope `id`.
pub fn undecryptable_notice(
    identity: &IdentityKeyPair,
    to: &IdentityPublicKey,
    id: &[u8; 16],
) -> Vec<u8> {
    let sig = identity.sign(&signed_bytes(&identity.public(), to, id));
    let mut body = Vec::with_capacity(NOTICE_LEN);
    body.extend_from_slice(&[BODY_VERSION, KIND_UNDECRYPTABLE]);
    body.extend_from_slice(id);
    body.extend_from_slice(sig.as_bytes());
    body
}

/// Whether `body` is a notice (version 1, kind 0x03).
pub fn is_notice(body: &[u8]) -> bool {
    body.len() >= 2 && body[0] == BODY_VERSION && body[1] == KIND_UNDECRYPTABLE
}

/// Read a notice `from` a peer about one of the envelopes `me` sent: the id.
/// `None` when `body` is not a notice at all (an ordinary message).
pub fn read_undecryptable(
    body: &[u8],
    from: &IdentityPublicKey,
    me: &IdentityPublicKey,
) -> Option<Result<[u8; 16], NoticeError>> {
    if !is_notice(body) {
        return None;
    }
    Some((|| {
        if body.len() != NOTICE_LEN {
            return Err(NoticeError::Length(body.len()));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&body[2..18]);
        let sig =
            Signature::from_bytes(&body[18..]).map_err(|_| NoticeError::Length(body.len()))?;
        from.verify(&signed_bytes(from, me, &id), &sig).map_err(|_| NoticeError::BadSignature)?;
        Ok(id)
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SystemRng;

    #[test]
    fn notice_roundtrip_and_forgeries_fail() {
        crate::crypto::init().unwrap();
        let host = IdentityKeyPair::generate(&mut SystemRng).unwrap();
        let guest = IdentityKeyPair::generate(&mut SystemRng).unwrap();
        let other = IdentityKeyPair::generate(&mut SystemRng).unwrap();
        let id = [7u8; 16];
        let body = undecryptable_notice(&host, &guest.public(), &id);
        assert_eq!(body.len(), NOTICE_LEN);
        assert_eq!(read_undecryptable(&body, &host.public(), &guest.public()), Some(Ok(id)));
        // Claimed by someone else, or replayed towards someone else.
        let bad = Some(Err(NoticeError::BadSignature));
        assert_eq!(read_undecryptable(&body, &other.public(), &guest.public()), bad);
        assert_eq!(read_undecryptable(&body, &host.public(), &other.public()), bad);
        let mut flipped = body.clone();
        flipped[5] ^= 1;
        assert_eq!(read_undecryptable(&flipped, &host.public(), &guest.public()), bad);
        assert_eq!(
            read_undecryptable(&body[..40], &host.public(), &guest.public()),
            Some(Err(NoticeError::Length(40)))
        );
        // Ordinary bodies are not notices.
        assert_eq!(read_undecryptable(&[1, 2, 0, 0], &host.public(), &guest.public()), None);
        assert_eq!(read_undecryptable(&[], &host.public(), &guest.public()), None);
    }
}
