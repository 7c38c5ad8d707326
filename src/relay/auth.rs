//! Login by signed challenge and HMAC session tokens (PROTOCOL.md §3.2).

use std::path::Path;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::config::HmacSecret;
use crate::crypto::{CryptoRng, IdentityPublicKey, Signature, SystemRng};
use crate::defaults::LOGIN_MAX_SKEW_SECS;
use crate::protocol::{b64, login_signed_bytes};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Domain label for token MACs, so a token MAC can never be confused with another use of the key.
const TOKEN_LABEL: &[u8] = b"agentroom/token/v1";
/// Token format version prefix.
const TOKEN_PREFIX: &str = "v1.";
/// identity(32) || token_id(16) || u64be(expires_at)
const PAYLOAD_LEN: usize = 32 + 16 + 8;

/// Why a login or token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The signature does not verify for the identity.
    #[error("bad login signature")]
    BadSignature,
    /// The login timestamp is too far from the relay clock.
    #[error("login timestamp outside the accepted skew")]
    StaleTimestamp,
    /// The origin header is missing or not a valid authority.
    #[error("no usable Host header")]
    NoOrigin,
    /// The token is malformed or its MAC verifies under no known key.
    #[error("invalid session token")]
    BadToken,
    /// The token verified but has expired.
    #[error("session token expired")]
    TokenExpired,
}

/// The generated HMAC secret file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("HMAC secret file {path}")]
pub struct SecretFileError {
    /// The file.
    pub path: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// The token keys in force: the current one signs, both verify.
#[derive(Debug, Clone)]
pub(crate) struct TokenKeys {
    current: HmacSecret,
    previous: Option<HmacSecret>,
}

impl TokenKeys {
    pub(crate) fn new(current: HmacSecret, previous: Option<HmacSecret>) -> Self {
        Self { current, previous }
    }

    fn mac(key: &HmacSecret, payload: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.expose())
            .unwrap_or_else(|_| unreachable_hmac());
        m.update(TOKEN_LABEL);
        m.update(payload);
        m
    }

    /// A fresh token for `identity`, expiring at `expires_at` (unix seconds).
    pub(crate) fn issue(&self, identity: &IdentityPublicKey, expires_at: u64) -> String {
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[..32].copy_from_slice(identity.as_bytes());
        SystemRng.fill(&mut payload[32..48]);
        payload[48..].copy_from_slice(&expires_at.to_be_bytes());
        let tag = Self::mac(&self.current, &payload).finalize().into_bytes();
        format!("{TOKEN_PREFIX}{}.{}", b64::encode(&payload), b64::encode(&tag))
    }

    /// Check a token's MAC (constant time, current key then previous) and expiry.
    pub(crate) fn verify(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(IdentityPublicKey, u64), AuthError> {
        let rest = token.strip_prefix(TOKEN_PREFIX).ok_or(AuthError::BadToken)?;
        let (p, t) = rest.split_once('.').ok_or(AuthError::BadToken)?;
        let payload = b64::decode_array::<PAYLOAD_LEN>(p).ok_or(AuthError::BadToken)?;
        let tag = b64::decode_array::<32>(t).ok_or(AuthError::BadToken)?;
        let ok_current = Self::mac(&self.current, &payload).verify_slice(&tag).is_ok();
        let ok = ok_current
            || self
                .previous
                .as_ref()
                .is_some_and(|k| Self::mac(k, &payload).verify_slice(&tag).is_ok());
        if !ok {
            return Err(AuthError::BadToken);
        }
        let identity =
            IdentityPublicKey::from_bytes(&payload[..32]).map_err(|_| AuthError::BadToken)?;
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&payload[48..]);
        let expires_at = u64::from_be_bytes(exp);
        if expires_at <= now {
            return Err(AuthError::TokenExpired);
        }
        Ok((identity, expires_at))
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> HmacSha256 {
    // HMAC accepts any key length (RFC 2104): long keys are hashed, short ones padded.
    panic!("HMAC-SHA256 rejected a key")
}

/// Verify a login answer against the challenge this socket was sent.
pub(crate) fn verify_login(
    identity: &IdentityPublicKey,
    signature: &[u8; 64],
    ts: u64,
    origin: &str,
    challenge: &[u8; 32],
    now: u64,
) -> Result<(), AuthError> {
    if ts.abs_diff(now) > LOGIN_MAX_SKEW_SECS {
        return Err(AuthError::StaleTimestamp);
    }
    let sig = Signature::from_bytes(signature).map_err(|_| AuthError::BadSignature)?;
    identity
        .verify(&login_signed_bytes(origin, challenge, ts), &sig)
        .map_err(|_| AuthError::BadSignature)
}

/// Read the relay's generated HMAC key, or create it (32 random bytes, hex, mode 0600,
/// written to a temp file and renamed so a crash never leaves half a key).
pub(crate) fn load_or_create_secret(path: &Path) -> Result<HmacSecret, SecretFileError> {
    let err = |source| SecretFileError { path: path.display().to_string(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = zeroize::Zeroizing::new(hex::decode(text.trim()).map_err(|_| {
                err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not hex"))
            })?);
            HmacSecret::new(bytes.to_vec()).ok_or_else(|| {
                err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "key shorter than 32 bytes",
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = zeroize::Zeroizing::new(vec![0u8; 32]);
            SystemRng.fill(&mut key);
            let text = zeroize::Zeroizing::new(hex::encode(&*key));
            // The key sits beside the database: its directory may not exist yet.
            if let Some(dir) = path.parent() {
                crate::fsutil::create_private_dir(dir).map_err(err)?;
            }
            crate::fsutil::write_private_atomic(path, text.as_bytes()).map_err(err)?;
            Ok(HmacSecret::new(key.to_vec()).expect("32 random bytes meet the 32-byte minimum"))
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::IdentityKeyPair;

    fn key(b: u8) -> HmacSecret {
        HmacSecret::new(vec![b; 32]).unwrap()
    }

    #[test]
    fn token_roundtrip_expiry_and_rotation() {
        crate::crypto::init().unwrap();
        let id = IdentityKeyPair::from_seed(&[7; 32]).unwrap().public();
        let old = TokenKeys::new(key(1), None);
        let t = old.issue(&id, 1000);
        assert_eq!(old.verify(&t, 999).unwrap(), (id, 1000));
        assert_eq!(old.verify(&t, 1000), Err(AuthError::TokenExpired));
        // Rotated: the old key becomes previous and still verifies.
        let rotated = TokenKeys::new(key(2), Some(key(1)));
        assert!(rotated.verify(&t, 10).is_ok());
        // Rotated out entirely.
        let gone = TokenKeys::new(key(3), Some(key(2)));
        assert_eq!(gone.verify(&t, 10), Err(AuthError::BadToken));
        // Tampered payload.
        let mut bad = t.clone().into_bytes();
        bad[5] ^= 1;
        assert!(old.verify(std::str::from_utf8(&bad).unwrap(), 10).is_err());
        assert_eq!(old.verify("garbage", 10), Err(AuthError::BadToken));
    }

    #[test]
    fn login_signature_checked() {
        crate::crypto::init().unwrap();
        let kp = IdentityKeyPair::from_seed(&[9; 32]).unwrap();
        let ch = [3u8; 32];
        let sig = *kp.sign(&login_signed_bytes("127.0.0.1:1", &ch, 100)).as_bytes();
        assert!(verify_login(&kp.public(), &sig, 100, "127.0.0.1:1", &ch, 150).is_ok());
        assert_eq!(
            verify_login(&kp.public(), &sig, 100, "127.0.0.1:2", &ch, 150),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_login(&kp.public(), &sig, 100, "127.0.0.1:1", &ch, 1000),
            Err(AuthError::StaleTimestamp)
        );
    }

    #[test]
    fn secret_file_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        crate::crypto::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("relay.db.hmac");
        let a = load_or_create_secret(&p).unwrap();
        let b = load_or_create_secret(&p).unwrap();
        assert_eq!(a.expose(), b.expose());
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&p, "zz").unwrap();
        assert!(load_or_create_secret(&p).is_err());
    }
}
