//! The three key derivations of the Double Ratchet (crypto-v1: KDF_RK, KDF_CK and the
//! message-key expansion), and the zeroizing newtypes that carry their outputs.
//!
//! Like vodozemac's `root_key.rs`/`chain_key.rs`, the key types have no `Debug` and
//! compare in constant time, so a secret can neither be printed nor leak through an
//! early-exit comparison.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// HKDF info of KDF_RK: separates root-chain output from every other HKDF use.
pub(crate) const RATCHET_INFO: &[u8] = b"agentroom/ratchet/v1";
/// HKDF info of the per-message key/nonce expansion.
pub(crate) const MESSAGE_INFO: &[u8] = b"agentroom/message/v1";
/// HMAC input that turns a chain key into a message key (Signal's 0x01).
const MESSAGE_KEY_SEED: &[u8] = &[0x01];
/// HMAC input that turns a chain key into the next chain key (Signal's 0x02).
const CHAIN_KEY_SEED: &[u8] = &[0x02];

/// HKDF-SHA256 (RFC 5869) filling `out`. Every caller asks for at most 64 bytes,
/// far below HKDF's 255 * 32 limit, so expansion cannot fail.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    hk.expand(info, out).expect("HKDF-SHA256 output of at most 64 bytes, far below 8160");
}

fn hmac_sha256(mac: &Hmac<Sha256>, msg: &[u8]) -> [u8; 32] {
    let mut m = mac.clone();
    m.update(msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(&m.finalize().into_bytes());
    out
}

macro_rules! secret_key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
        #[serde(transparent)]
        pub(crate) struct $name(#[serde(with = "super::serde_hex")] [u8; 32]);

        // Not every key type uses both accessors outside the vector tests.
        #[allow(dead_code)]
        impl $name {
            /// Wrap raw bytes (vectors, X3DH output).
            pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
            /// The raw bytes, for the next derivation step only.
            pub(crate) fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }
        impl Eq for $name {}
    };
}

secret_key_type!(
    /// RK: the root key, advanced by every DH ratchet step.
    RootKey
);
secret_key_type!(
    /// CKs / CKr: a sending or receiving chain key.
    ChainKey
);
secret_key_type!(
    /// MK: a single message's key; used once, or stored while its message is missing.
    MessageKey
);

/// KDF_RK(rk, dh_out) = HKDF-SHA256(salt = rk, ikm = dh_out, info = "agentroom/ratchet/v1", 64)
/// split into (rk', ck).
pub(crate) fn kdf_rk(rk: &RootKey, dh_out: &[u8; 32]) -> (RootKey, ChainKey) {
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf_sha256(&rk.0, dh_out, RATCHET_INFO, okm.as_mut());
    let mut next = [0u8; 32];
    let mut ck = [0u8; 32];
    next.copy_from_slice(&okm[..32]);
    ck.copy_from_slice(&okm[32..]);
    (RootKey(next), ChainKey(ck))
}

/// KDF_CK(ck): mk = HMAC(ck, 0x01), ck' = HMAC(ck, 0x02). Returns (ck', mk).
pub(crate) fn kdf_ck(ck: &ChainKey) -> (ChainKey, MessageKey) {
    // Keying HMAC once and cloning it saves one SHA-256 key schedule per message.
    let Ok(mac) = Hmac::<Sha256>::new_from_slice(&ck.0) else {
        // HMAC accepts keys of any length; unreachable, but never panic.
        return (ChainKey([0; 32]), MessageKey([0; 32]));
    };
    let mk = hmac_sha256(&mac, MESSAGE_KEY_SEED);
    let next = hmac_sha256(&mac, CHAIN_KEY_SEED);
    (ChainKey(next), MessageKey(mk))
}

/// AEAD key and nonce of one message: HKDF-SHA256(salt = 32 zero bytes, ikm = mk,
/// info = "agentroom/message/v1", 56) split 32 + 24. Deriving the nonce from the
/// single-use key means no nonce is ever sent or reused.
pub(crate) struct MessageCipherKey {
    pub(crate) key: Zeroizing<[u8; 32]>,
    pub(crate) nonce: [u8; 24],
}

pub(crate) fn message_cipher_key(mk: &MessageKey) -> MessageCipherKey {
    let mut okm = Zeroizing::new([0u8; 56]);
    hkdf_sha256(&[0u8; 32], &mk.0, MESSAGE_INFO, okm.as_mut());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&okm[32..]);
    MessageCipherKey { key, nonce }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &info, &mut okm);
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn chain_steps_differ_and_are_deterministic() {
        let ck = ChainKey::from_bytes([3; 32]);
        let (ck1, mk1) = kdf_ck(&ck);
        let (ck1b, mk1b) = kdf_ck(&ck);
        assert!(ck1 == ck1b && mk1 == mk1b);
        assert!(ck1 != ck && mk1.as_bytes() != ck1.as_bytes());
    }
}
