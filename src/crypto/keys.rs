//! Ed25519 identity keys, signatures and the randomness parameter.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::sodium;

/// Errors from key handling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// libsodium could not be initialised (no entropy source).
    #[error("libsodium failed to initialise")]
    SodiumInit,
    /// A libsodium primitive reported failure (should not happen with valid sizes).
    #[error("libsodium operation failed")]
    Sodium,
    /// A key or signature had the wrong number of bytes.
    #[error("wrong length: expected {expected} bytes, got {got}")]
    Length {
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A key or signature was not valid base64url.
    #[error("not valid base64url")]
    Encoding,
    /// The signature does not verify under this public key.
    #[error("bad signature")]
    BadSignature,
    /// A public key is not usable for X25519: not a valid point, or of small order
    /// (the DH output would be all zeros).
    #[error("weak or invalid public key")]
    WeakKey,
}

/// Where cryptographic randomness comes from. Production uses [`SystemRng`]
/// (libsodium's `randombytes_buf`); tests and vectors pass fixed lists.
pub trait CryptoRng {
    /// Fill `out` entirely with random bytes.
    fn fill(&mut self, out: &mut [u8]);
}

/// libsodium's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRng;

impl CryptoRng for SystemRng {
    fn fill(&mut self, out: &mut [u8]) {
        sodium::random_fill(out);
    }
}

/// An Ed25519 identity keypair. The seed is the only secret kept; it zeroizes on
/// drop and is never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct IdentityKeyPair {
    seed: [u8; 32],
    secret: [u8; 64],
    #[zeroize(skip)]
    public: IdentityPublicKey,
}

impl IdentityKeyPair {
    /// Derive the keypair from a 32-byte seed (`crypto_sign_seed_keypair`).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let (public, secret) = sodium::ed25519_from_seed(seed)?;
        Ok(Self { seed: *seed, secret: *secret, public: IdentityPublicKey(public) })
    }

    /// Draw a fresh seed from `rng` and derive the keypair.
    pub fn generate(rng: &mut dyn CryptoRng) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The seed, for persisting the identity. Handle with care.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The 64-byte libsodium secret key (seed || public), for X25519 conversion.
    pub(crate) fn secret_key_bytes(&self) -> &[u8; 64] {
        &self.secret
    }

    /// The public half.
    pub fn public(&self) -> IdentityPublicKey {
        self.public
    }

    /// Detached, deterministic Ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(
            sodium::ed25519_sign(&self.secret, msg)
                .expect("libsodium signs with a well-formed 64-byte Ed25519 key"),
        )
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

/// An Ed25519 public key: a peer's identity. Prints as `ed25519:<base64url>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityPublicKey([u8; 32]);

impl IdentityPublicKey {
    /// From exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 32] =
            bytes.try_into().map_err(|_| KeyError::Length { expected: 32, got: bytes.len() })?;
        Ok(Self(arr))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Unpadded base64url (43 characters), the form used on the wire.
    pub fn to_b64u(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parse the wire form.
    pub fn from_b64u(s: &str) -> Result<Self, KeyError> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| KeyError::Encoding)?;
        Self::from_bytes(&bytes)
    }

    /// First 8 characters of the wire form, for logs.
    pub fn fmt_short(&self) -> String {
        self.to_b64u().chars().take(8).collect()
    }

    /// Verify a detached signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        if sodium::ed25519_verify(&self.0, msg, &sig.0) {
            Ok(())
        } else {
            Err(KeyError::BadSignature)
        }
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", self.to_b64u())
    }
}

impl serde::Serialize for IdentityPublicKey {
    /// As its wire form, unpadded base64url.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_b64u())
    }
}

impl<'de> serde::Deserialize<'de> for IdentityPublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_b64u(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_b64u())
    }
}

/// A detached Ed25519 signature (64 bytes).
#[derive(Clone, Copy)]
pub struct Signature([u8; 64]);

impl Signature {
    /// From exactly 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; 64] =
            bytes.try_into().map_err(|_| KeyError::Length { expected: 64, got: bytes.len() })?;
        Ok(Self(arr))
    }

    /// The raw 64 bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Unpadded base64url.
    pub fn to_b64u(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parse unpadded base64url.
    pub fn from_b64u(s: &str) -> Result<Self, KeyError> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| KeyError::Encoding)?;
        Self::from_bytes(&bytes)
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Signature {}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", &self.to_b64u()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let kp = IdentityKeyPair::from_seed(&[7u8; 32]).unwrap();
        let sig = kp.sign(b"hello");
        kp.public().verify(b"hello", &sig).unwrap();
        assert_eq!(kp.public().verify(b"hellp", &sig), Err(KeyError::BadSignature));
        let other = IdentityKeyPair::from_seed(&[8u8; 32]).unwrap();
        assert_eq!(other.public().verify(b"hello", &sig), Err(KeyError::BadSignature));
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let kp = IdentityKeyPair::from_seed(&[0xAB; 32]).unwrap();
        let dbg = format!("{kp:?}");
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
        assert!(dbg.contains("ed25519:"));
    }

    #[test]
    fn public_key_b64u_roundtrip_and_errors() {
        let pk = IdentityKeyPair::from_seed(&[1u8; 32]).unwrap().public();
        assert_eq!(IdentityPublicKey::from_b64u(&pk.to_b64u()).unwrap(), pk);
        assert_eq!(IdentityPublicKey::from_b64u("!!"), Err(KeyError::Encoding));
        assert!(matches!(IdentityPublicKey::from_b64u("AAAA"), Err(KeyError::Length { .. })));
    }
}
