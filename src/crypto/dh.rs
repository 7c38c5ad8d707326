//! X25519 keys for X3DH and the DH ratchet.
//!
//! The private half is a zeroizing newtype without `Debug` (as vodozemac's
//! `Curve25519SecretKey`); the public half is plain bytes since it is on the wire.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::keys::{CryptoRng, KeyError};
use super::sodium;

/// An X25519 public key (32 bytes).
pub(crate) type DhPublic = [u8; 32];

/// An X25519 keypair: raw 32-byte private key (clamped inside libsodium) and
/// `crypto_scalarmult_base` of it.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub(crate) struct DhKeyPair {
    #[serde(with = "super::serde_hex")]
    secret: [u8; 32],
    #[zeroize(skip)]
    #[serde(with = "super::serde_hex")]
    public: DhPublic,
}

impl DhKeyPair {
    /// From a raw private key (vectors, persisted one-time prekeys).
    pub(crate) fn from_secret(secret: [u8; 32]) -> Result<Self, KeyError> {
        let public = sodium::x25519_base(&secret)?;
        Ok(Self { secret, public })
    }

    /// Draw exactly 32 bytes from `rng` as the private key.
    pub(crate) fn generate(rng: &mut dyn CryptoRng) -> Result<Self, KeyError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill(secret.as_mut());
        Self::from_secret(*secret)
    }

    pub(crate) fn public(&self) -> DhPublic {
        self.public
    }

    /// DH(self, peer); an all-zero result (small-order peer key) is an error.
    pub(crate) fn dh(&self, peer: &DhPublic) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        sodium::x25519(&self.secret, peer)
    }
}

/// DH with a raw private key (the identity key converted to X25519).
pub(crate) fn dh_raw(secret: &[u8; 32], peer: &DhPublic) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    sodium::x25519(secret, peer)
}
