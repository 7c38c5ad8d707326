//! ENCRYPT / DECRYPT of crypto-v1: XChaCha20-Poly1305 under a key and nonce derived
//! from the message key, with `aad = ad || header`.

use super::kdf::{MessageKey, message_cipher_key};
use super::sodium;

/// Bytes the AEAD adds to a plaintext.
pub(crate) const TAG_LEN: usize = sodium::AEAD_TAG_LEN;

fn aad(ad: &[u8], header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(ad.len() + header.len());
    aad.extend_from_slice(ad);
    aad.extend_from_slice(header);
    aad
}

/// Seal `plaintext`; `None` only if libsodium fails on valid sizes (never observed).
pub(crate) fn seal(mk: &MessageKey, ad: &[u8], header: &[u8], plaintext: &[u8]) -> Option<Vec<u8>> {
    let ck = message_cipher_key(mk);
    sodium::aead_seal(&ck.key, &ck.nonce, plaintext, &aad(ad, header)).ok()
}

/// Open `ciphertext`; `None` when authentication fails.
pub(crate) fn open(
    mk: &MessageKey,
    ad: &[u8],
    header: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    let ck = message_cipher_key(mk);
    sodium::aead_open(&ck.key, &ck.nonce, ciphertext, &aad(ad, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let mk = MessageKey::from_bytes([9; 32]);
        let ct = seal(&mk, b"ad", b"hdr", b"hello").unwrap();
        assert_eq!(ct.len(), 5 + TAG_LEN);
        assert_eq!(open(&mk, b"ad", b"hdr", &ct).unwrap(), b"hello");
        assert!(open(&mk, b"ad", b"hds", &ct).is_none());
        assert!(open(&mk, b"ae", b"hdr", &ct).is_none());
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(open(&mk, b"ad", b"hdr", &bad).is_none());
        assert!(open(&mk, b"ad", b"hdr", &ct[..10]).is_none());
    }
}
