//! X3DH-style 3-DH agreement from an invite (crypto-v1 "X3DH").
//!
//! The invite's signed one-time prekey plays Signal's signed prekey: the host signs it
//! inside the invite, so the guest knows it really is the host's. Three DHs bind the
//! guest identity (DH1), the host identity (DH2) and forward secrecy (DH3).

use zeroize::Zeroizing;

use super::dh::{DhKeyPair, DhPublic, dh_raw};
use super::kdf::{RootKey, hkdf_sha256};
use super::keys::{IdentityKeyPair, IdentityPublicKey, KeyError};
use super::sodium;

/// HKDF info of the X3DH secret.
pub(crate) const X3DH_INFO: &[u8] = b"agentroom/x3dh/v1";
/// Signal's "F": 32 bytes of 0xFF before the DH outputs, so the HKDF input never
/// starts like a valid X25519 output under another protocol sharing the keys.
const X3DH_PAD: [u8; 32] = [0xFF; 32];

/// Associated data bound into every message: guest_ik_ed || host_ik_ed.
pub(crate) type AssociatedData = [u8; 64];

/// `AD = guest_ik_ed || host_ik_ed`.
pub(crate) fn associated_data(
    guest: &IdentityPublicKey,
    host: &IdentityPublicKey,
) -> AssociatedData {
    let mut ad = [0u8; 64];
    ad[..32].copy_from_slice(guest.as_bytes());
    ad[32..].copy_from_slice(host.as_bytes());
    ad
}

fn derive_sk(dh1: &[u8; 32], dh2: &[u8; 32], dh3: &[u8; 32]) -> RootKey {
    let mut ikm = Zeroizing::new([0u8; 128]);
    ikm[..32].copy_from_slice(&X3DH_PAD);
    ikm[32..64].copy_from_slice(dh1);
    ikm[64..96].copy_from_slice(dh2);
    ikm[96..].copy_from_slice(dh3);
    let mut sk = [0u8; 32];
    hkdf_sha256(&[0u8; 32], ikm.as_ref(), X3DH_INFO, &mut sk);
    RootKey::from_bytes(sk)
}

/// Guest side: DH1 = DH(guest_ik_x, opk), DH2 = DH(ek, host_ik_x), DH3 = DH(ek, opk).
pub(crate) fn guest_agree(
    guest: &IdentityKeyPair,
    ek: &DhKeyPair,
    host: &IdentityPublicKey,
    opk_pub: &DhPublic,
) -> Result<RootKey, KeyError> {
    let guest_x = sodium::ed25519_sk_to_x25519(guest.secret_key_bytes())?;
    let host_x = sodium::ed25519_pk_to_x25519(host.as_bytes())?;
    let dh1 = dh_raw(&guest_x, opk_pub)?;
    let dh2 = ek.dh(&host_x)?;
    let dh3 = ek.dh(opk_pub)?;
    Ok(derive_sk(&dh1, &dh2, &dh3))
}

/// Host side: DH1 = DH(opk, guest_ik_x), DH2 = DH(host_ik_x, ek), DH3 = DH(opk, ek).
pub(crate) fn host_agree(
    host: &IdentityKeyPair,
    opk: &DhKeyPair,
    guest: &IdentityPublicKey,
    ek_pub: &DhPublic,
) -> Result<RootKey, KeyError> {
    let host_x = sodium::ed25519_sk_to_x25519(host.secret_key_bytes())?;
    let guest_x = sodium::ed25519_pk_to_x25519(guest.as_bytes())?;
    let dh1 = opk.dh(&guest_x)?;
    let dh2 = dh_raw(&host_x, ek_pub)?;
    let dh3 = opk.dh(ek_pub)?;
    Ok(derive_sk(&dh1, &dh2, &dh3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_wrong_opk_differs() {
        let guest = IdentityKeyPair::from_seed(&[1; 32]).unwrap();
        let host = IdentityKeyPair::from_seed(&[2; 32]).unwrap();
        let opk = DhKeyPair::from_secret([3; 32]).unwrap();
        let ek = DhKeyPair::from_secret([4; 32]).unwrap();
        let g = guest_agree(&guest, &ek, &host.public(), &opk.public()).unwrap();
        let h = host_agree(&host, &opk, &guest.public(), &ek.public()).unwrap();
        assert!(g == h);
        let other = DhKeyPair::from_secret([5; 32]).unwrap();
        let h2 = host_agree(&host, &other, &guest.public(), &ek.public()).unwrap();
        assert!(g != h2);
    }

    #[test]
    fn small_order_prekey_is_refused() {
        let guest = IdentityKeyPair::from_seed(&[1; 32]).unwrap();
        let host = IdentityKeyPair::from_seed(&[2; 32]).unwrap();
        let ek = DhKeyPair::from_secret([4; 32]).unwrap();
        assert_eq!(
            guest_agree(&guest, &ek, &host.public(), &[0u8; 32]).err(),
            Some(KeyError::WeakKey)
        );
    }
}
