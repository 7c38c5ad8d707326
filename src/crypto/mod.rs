//! End-to-end cryptography, version 1 (see `PROTOCOL.md` §2 and `shared/crypto-v1.md`).
//!
//! Everything here is pure: no I/O, no clock and no hidden randomness. Randomness
//! comes in through [`CryptoRng`], the current time through plain `u64` arguments,
//! so fixed test vectors can pin every byte. libsodium is reached only through
//! `sodium`; no other module sees a libsodium type.
//!
//! - `keys`: Ed25519 identities, signatures, the randomness trait.
//! - `dh`, `kdf`, `aead`: X25519, the ratchet KDFs, the message AEAD.
//! - `invite`: signed single-use invites and their `ar1.` string form.
//! - `x3dh`, `ratchet`, `session`: key agreement, Double Ratchet, message bodies.
//! - `notice`: the signed "could not decrypt your envelope" body (kind 0x03).
//! - `relay_update`: the host-signed `arru1.` "reach me at this relay" string.
//! - `fingerprint`: human-checkable fingerprints and safety numbers.

mod aead;
mod dh;
pub mod fingerprint;
pub mod invite;
mod kdf;
pub mod keys;
pub mod notice;
pub mod ratchet;
pub mod relay_update;
mod serde_hex;
pub mod session;
mod sodium;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
mod x3dh;

pub use fingerprint::{fingerprint, safety_number};
pub use invite::{Invite, InviteError, InviteId, OneTimePrekey};
pub use keys::{CryptoRng, IdentityKeyPair, IdentityPublicKey, KeyError, Signature, SystemRng};
pub use ratchet::{MAX_SKIP, MAX_STORED_SKIPPED, RatchetError};
pub use session::{PrekeyFields, Role, Session, SessionError, peek_prekey};

/// Initialise libsodium once. Safe to call many times; cheap after the first.
pub fn init() -> Result<(), KeyError> {
    sodium::init()
}
