//! Human-checkable identity fingerprints and pairwise safety numbers (PROTOCOL.md §2.8).

use sha2::{Digest, Sha256};

use super::keys::IdentityPublicKey;

/// Domain label of a fingerprint hash.
pub const FINGERPRINT_LABEL: &[u8] = b"agentroom/fingerprint/v1";
/// Domain label of a safety-number hash.
pub const SAFETY_NUMBER_LABEL: &[u8] = b"agentroom/safety-number/v1";

/// Fingerprint of one identity: the first 16 bytes of
/// SHA-256("agentroom/fingerprint/v1" || ik_ed) as lowercase hex in 8 groups of 4,
/// separated by spaces (`"3f2a 9c01 …"`, 39 characters). 128 bits is beyond any
/// second-preimage search; hex reads aloud without ambiguity.
pub fn fingerprint(pk: &IdentityPublicKey) -> String {
    let digest =
        Sha256::new().chain_update(FINGERPRINT_LABEL).chain_update(pk.as_bytes()).finalize();
    let hex = hex::encode(&digest[..16]);
    let groups: Vec<&str> = (0..8).map(|i| &hex[i * 4..i * 4 + 4]).collect();
    groups.join(" ")
}

/// Safety number of a pair of identities, the same on both sides: with `lo`, `hi` the
/// two 32-byte keys in ascending byte order, h = SHA-256("agentroom/safety-number/v1"
/// || lo || hi); the first 30 bytes give 6 chunks of 5 bytes, each read as a
/// big-endian integer mod 100000 and printed as 5 zero-padded digits; groups are
/// separated by spaces (`"01234 56789 …"`, 35 characters, ~100 bits).
pub fn safety_number(a: &IdentityPublicKey, b: &IdentityPublicKey) -> String {
    let (lo, hi) = if a.as_bytes() <= b.as_bytes() { (a, b) } else { (b, a) };
    let digest = Sha256::new()
        .chain_update(SAFETY_NUMBER_LABEL)
        .chain_update(lo.as_bytes())
        .chain_update(hi.as_bytes())
        .finalize();
    let groups: Vec<String> = digest[..30]
        .chunks_exact(5)
        .map(|c| {
            let v = c.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            format!("{:05}", v % 100_000)
        })
        .collect();
    groups.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::IdentityKeyPair;

    /// The worked example of PROTOCOL.md §2.2 (computed independently).
    #[test]
    fn known_answers() {
        let a = IdentityKeyPair::from_seed(&[1; 32]).unwrap().public();
        let b = IdentityKeyPair::from_seed(&[2; 32]).unwrap().public();
        assert_eq!(
            hex::encode(a.as_bytes()),
            "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
        );
        assert_eq!(fingerprint(&a), "67b1 0099 ed48 08d0 1c4a bf41 4d15 877d");
        assert_eq!(fingerprint(&b), "4d2d 27ea 1451 0b56 101b 6f42 e3d7 f7b6");
        assert_eq!(safety_number(&a, &b), "83416 88452 56712 30167 17810 29827");
    }

    #[test]
    fn shapes_and_symmetry() {
        let a = IdentityKeyPair::from_seed(&[1; 32]).unwrap().public();
        let b = IdentityKeyPair::from_seed(&[2; 32]).unwrap().public();
        let fa = fingerprint(&a);
        assert_eq!(fa.len(), 39);
        assert_ne!(fa, fingerprint(&b));
        let s = safety_number(&a, &b);
        assert_eq!(s, safety_number(&b, &a));
        assert_eq!(s.len(), 35);
        assert!(s.split(' ').all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit())));
        assert_ne!(s, safety_number(&a, &a));
    }
}
