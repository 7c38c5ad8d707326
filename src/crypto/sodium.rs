//! The one door to libsodium (libsodium-sys-stable, bundled, through libsodium-rs).
//!
//! Keeping every libsodium call here means the rest of the crate handles plain byte
//! arrays wrapped in our own zeroizing newtypes, never libsodium-rs types (which
//! derive `Debug` and would print secrets).

use libsodium_rs as ls;
use zeroize::Zeroizing;

use super::keys::KeyError;

pub(crate) const ED25519_SEED_LEN: usize = 32;
pub(crate) const ED25519_PUBLIC_LEN: usize = 32;
pub(crate) const ED25519_SIGNATURE_LEN: usize = 64;

/// `sodium_init`; idempotent.
pub(crate) fn init() -> Result<(), KeyError> {
    ls::ensure_init().map_err(|_| KeyError::SodiumInit)
}

/// Fill `out` from libsodium's CSPRNG (`randombytes_buf`).
pub(crate) fn random_fill(out: &mut [u8]) {
    // ensure_init is idempotent; randombytes works even before it on Linux, but
    // calling it keeps the contract of the library.
    let _ = ls::ensure_init();
    ls::random::fill_bytes(out);
}

/// Ed25519 keypair from a 32-byte seed: returns (public key, 64-byte secret key).
pub(crate) fn ed25519_from_seed(
    seed: &[u8; ED25519_SEED_LEN],
) -> Result<([u8; ED25519_PUBLIC_LEN], Zeroizing<[u8; 64]>), KeyError> {
    let kp = ls::crypto_sign::keypair_from_seed(seed).map_err(|_| KeyError::Sodium)?;
    let (pk, sk) = kp.into_tuple();
    let mut secret = Zeroizing::new([0u8; 64]);
    secret.copy_from_slice(sk.as_bytes());
    Ok((*pk.as_bytes(), secret))
}

/// Detached Ed25519 signature (deterministic).
pub(crate) fn ed25519_sign(
    secret: &[u8; 64],
    msg: &[u8],
) -> Result<[u8; ED25519_SIGNATURE_LEN], KeyError> {
    let sk = ls::crypto_sign::SecretKey::from_bytes_exact(*secret);
    ls::crypto_sign::sign_detached(msg, &sk).map_err(|_| KeyError::Sodium)
}

/// Verify a detached Ed25519 signature.
pub(crate) fn ed25519_verify(
    public: &[u8; ED25519_PUBLIC_LEN],
    msg: &[u8],
    sig: &[u8; ED25519_SIGNATURE_LEN],
) -> bool {
    let pk = ls::crypto_sign::PublicKey::from_bytes_exact(*public);
    ls::crypto_sign::verify_detached(sig, msg, &pk)
}

/// Length of an X25519 key or DH output.
pub(crate) const X25519_LEN: usize = 32;
/// XChaCha20-Poly1305 tag length, appended to every ciphertext.
pub(crate) const AEAD_TAG_LEN: usize = 16;

/// `crypto_scalarmult_base`: the X25519 public key of a raw 32-byte private key
/// (clamped inside libsodium).
pub(crate) fn x25519_base(secret: &[u8; X25519_LEN]) -> Result<[u8; X25519_LEN], KeyError> {
    ls::crypto_scalarmult::curve25519::scalarmult_base(secret).map_err(|_| KeyError::Sodium)
}

/// `crypto_scalarmult`: X25519 DH. libsodium refuses (and we report) an all-zero
/// output, which a small-order peer key would produce.
pub(crate) fn x25519(
    secret: &[u8; X25519_LEN],
    public: &[u8; X25519_LEN],
) -> Result<Zeroizing<[u8; X25519_LEN]>, KeyError> {
    let out = Zeroizing::new(
        ls::crypto_scalarmult::curve25519::scalarmult(secret, public)
            .map_err(|_| KeyError::WeakKey)?,
    );
    if out.iter().all(|&b| b == 0) {
        return Err(KeyError::WeakKey);
    }
    Ok(out)
}

/// `crypto_sign_ed25519_pk_to_curve25519`: fails on keys that are not valid points.
pub(crate) fn ed25519_pk_to_x25519(
    public: &[u8; ED25519_PUBLIC_LEN],
) -> Result<[u8; X25519_LEN], KeyError> {
    let pk = ls::crypto_sign::PublicKey::from_bytes_exact(*public);
    ls::crypto_sign::ed25519_pk_to_curve25519(&pk).map_err(|_| KeyError::WeakKey)
}

/// `crypto_sign_ed25519_sk_to_curve25519`.
pub(crate) fn ed25519_sk_to_x25519(
    secret: &[u8; 64],
) -> Result<Zeroizing<[u8; X25519_LEN]>, KeyError> {
    let sk = ls::crypto_sign::SecretKey::from_bytes_exact(*secret);
    Ok(Zeroizing::new(
        ls::crypto_sign::ed25519_sk_to_curve25519(&sk).map_err(|_| KeyError::Sodium)?,
    ))
}

/// XChaCha20-Poly1305-IETF seal: returns ciphertext || 16-byte tag.
pub(crate) fn aead_seal(
    key: &[u8; 32],
    nonce: &[u8; 24],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, KeyError> {
    use ls::crypto_aead::xchacha20poly1305 as x;
    let key = x::Key::from_bytes(key).map_err(|_| KeyError::Sodium)?;
    let nonce = x::Nonce::from_bytes(*nonce);
    x::encrypt(plaintext, Some(aad), &nonce, &key).map_err(|_| KeyError::Sodium)
}

/// XChaCha20-Poly1305-IETF open: `None` when the tag does not verify (or the input
/// is shorter than a tag). The plaintext is returned only after authentication.
pub(crate) fn aead_open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    ciphertext: &[u8],
    aad: &[u8],
) -> Option<Vec<u8>> {
    use ls::crypto_aead::xchacha20poly1305 as x;
    if ciphertext.len() < AEAD_TAG_LEN {
        return None;
    }
    let key = x::Key::from_bytes(key).expect("an XChaCha20-Poly1305 key is 32 bytes");
    let nonce = x::Nonce::from_bytes(*nonce);
    x::decrypt(ciphertext, Some(aad), &nonce, &key).ok()
}
