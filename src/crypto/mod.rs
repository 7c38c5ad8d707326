//! End-to-end cryptography, version 1 (see `PROTOCOL.md` §2 and `shared/crypto-v1.md`).
//!
//! Everything here is pure: no I/O, no clock and no hidden randomness. Randomness
//! comes in through [`CryptoRng`], the current time through plain `u64` arguments,
//! so fixed test vectors can pin every byte. libsodium is reached only through
//! [`sodium`]; no other module sees a libsodium type.

pub mod keys;
mod sodium;

pub use keys::{CryptoRng, IdentityKeyPair, IdentityPublicKey, KeyError, Signature, SystemRng};

/// Initialise libsodium once. Safe to call many times; cheap after the first.
pub fn init() -> Result<(), KeyError> {
    sodium::init()
}
