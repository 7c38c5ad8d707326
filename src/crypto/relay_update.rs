//! Signed relay updates: "reach me at this relay from now on", from a host to the
//! guests it paired, as one pasteable string (`arru1.…`, PROTOCOL.md §4.3).
//!
//! When a room comes back at a new public URL (a new quick tunnel, a port taken
//! meanwhile), a guest whose only route was the old URL cannot fetch the
//! encrypted `relay_moved`. The host then prints this string; the guest applies it
//! with `agentroom peers update`. Signed by the host's identity, so whoever
//! carries it (chat, mail) cannot redirect the guest; `seq` only grows, so an old
//! string cannot be replayed to move the guest back.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::keys::{IdentityKeyPair, IdentityPublicKey, Signature};

/// The string's prefix (format version 1).
pub const PREFIX: &str = "arru1.";
/// Domain separation for the signature; never used for anything else.
const LABEL: &[u8] = b"agentroom relay update v1\0";
/// Longest relay URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// A verified relay update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUpdate {
    /// The host that signed it.
    pub host: IdentityPublicKey,
    /// Increasing number (the host's clock, unix ms): newer wins.
    pub seq: u64,
    /// The relay URL to use from now on (not yet normalised).
    pub relay: String,
}

/// Why a string is not a valid relay update.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayUpdateError {
    /// Not `arru1.` + base64url.
    #[error("not a relay update (expected a string starting with `{PREFIX}`)")]
    Format,
    /// Too short or too long.
    #[error("relay update of {0} bytes is truncated or too long")]
    Length(usize),
    /// The URL is not UTF-8.
    #[error("relay update carries a URL that is not UTF-8")]
    Url,
    /// The signature does not verify under the named host.
    #[error("relay update signature does not verify (forged or damaged)")]
    BadSignature,
}

fn signed_bytes(host: &IdentityPublicKey, seq: u64, relay: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(LABEL.len() + 40 + relay.len());
    m.extend_from_slice(LABEL);
    m.extend_from_slice(host.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(relay.as_bytes());
    m
}

/// `arru1.` + b64u(host (32) || u64be(seq) || relay URL || signature (64)).
pub fn sign(identity: &IdentityKeyPair, seq: u64, relay: &str) -> String {
    let host = identity.public();
    let sig = identity.sign(&signed_bytes(&host, seq, relay));
    let mut raw = Vec::with_capacity(40 + relay.len() + 64);
    raw.extend_from_slice(host.as_bytes());
    raw.extend_from_slice(&seq.to_be_bytes());
    raw.extend_from_slice(relay.as_bytes());
    raw.extend_from_slice(sig.as_bytes());
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
}

/// Parse and verify the signature (against the host named inside; the caller
/// checks that host is a peer and that `seq` is newer than the last one applied).
pub fn verify(s: &str) -> Result<RelayUpdate, RelayUpdateError> {
    let b64 = s.trim().strip_prefix(PREFIX).ok_or(RelayUpdateError::Format)?;
    if b64.len() > (40 + MAX_URL_BYTES + 64) * 4 / 3 + 4 {
        return Err(RelayUpdateError::Length(b64.len()));
    }
    let raw = URL_SAFE_NO_PAD.decode(b64).map_err(|_| RelayUpdateError::Format)?;
    if raw.len() < 40 + 1 + 64 || raw.len() > 40 + MAX_URL_BYTES + 64 {
        return Err(RelayUpdateError::Length(raw.len()));
    }
    let (head, sig) = raw.split_at(raw.len() - 64);
    let host = IdentityPublicKey::from_bytes(&head[..32]).map_err(|_| RelayUpdateError::Format)?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&head[32..40]);
    let seq = u64::from_be_bytes(seq);
    let relay = std::str::from_utf8(&head[40..]).map_err(|_| RelayUpdateError::Url)?;
    let sig = Signature::from_bytes(sig).map_err(|_| RelayUpdateError::Length(raw.len()))?;
    host.verify(&signed_bytes(&host, seq, relay), &sig)
        .map_err(|_| RelayUpdateError::BadSignature)?;
    Ok(RelayUpdate { host, seq, relay: relay.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SystemRng;

    #[test]
    fn roundtrip_and_forgeries() {
        crate::crypto::init().unwrap();
        let host = IdentityKeyPair::generate(&mut SystemRng).unwrap();
        let s = sign(&host, 1_700_000_000_000, "wss://new.example.com/ws");
        let u = verify(&s).unwrap();
        assert_eq!(u.host, host.public());
        assert_eq!(u.seq, 1_700_000_000_000);
        assert_eq!(u.relay, "wss://new.example.com/ws");

        // Another key re-signing the same fields under the host's name fails.
        let mallory = IdentityKeyPair::generate(&mut SystemRng).unwrap();
        let forged = sign(&mallory, 1_700_000_000_001, "wss://evil.example.com/ws");
        let mut raw = URL_SAFE_NO_PAD.decode(forged.strip_prefix(PREFIX).unwrap()).unwrap();
        raw[..32].copy_from_slice(host.public().as_bytes());
        let forged = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(verify(&forged), Err(RelayUpdateError::BadSignature));

        // Any flipped byte fails; garbage never panics.
        let mut raw = URL_SAFE_NO_PAD.decode(s.strip_prefix(PREFIX).unwrap()).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 0x20;
            let t = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw));
            assert!(verify(&t).is_err(), "byte {i}");
            raw[i] ^= 0x20;
        }
        assert_eq!(verify("ar1.abc"), Err(RelayUpdateError::Format));
        assert_eq!(verify("arru1.!!"), Err(RelayUpdateError::Format));
        assert!(matches!(verify("arru1.AAAA"), Err(RelayUpdateError::Length(3))));
    }
}
