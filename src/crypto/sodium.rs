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
