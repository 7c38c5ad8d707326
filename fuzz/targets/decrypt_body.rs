//! `Session::decrypt` of arbitrary bytes against a live session: never panics, and a
//! failed decrypt leaves the session able to read the next genuine message.
//!
//! The first input byte picks how the rest is used, so the fuzzer reaches every
//! layer: 0 = the whole body; 1 = header + ciphertext behind a valid normal-body
//! prefix; 2 = ciphertext behind the genuine next header; 3 = XOR onto a genuine body.
//! Shared by the libFuzzer target and the stable runner (`tests/fuzz`).

use agentroom::crypto::{CryptoRng, IdentityKeyPair, Invite, Session};

/// Deterministic stream (SplitMix64), so every crash reproduces from its input.
struct Stream(u64);

impl CryptoRng for Stream {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *b = (z ^ (z >> 31)) as u8;
        }
    }
}

/// A guest and host after one round trip, plus the guest's next genuine body.
fn live() -> (Session, Vec<u8>) {
    let mut rng = Stream(7);
    let guest_id = IdentityKeyPair::from_seed(&[1; 32]).expect("seed");
    let host_id = IdentityKeyPair::from_seed(&[2; 32]).expect("seed");
    let (invite, opk) =
        Invite::create(&host_id, "wss://fuzz.invalid", u64::MAX >> 11, &mut rng).expect("invite");
    let mut guest = Session::initiate(&guest_id, &invite, &mut rng).expect("initiate");
    let first = guest.encrypt(b"hi", &mut rng).expect("encrypt");
    let (mut host, _) = Session::respond(&host_id, &opk, &first, &mut rng).expect("respond");
    let reply = host.encrypt(b"hello", &mut rng).expect("encrypt");
    guest.decrypt(&reply, &mut rng).expect("decrypt");
    let next = guest.encrypt(GENUINE, &mut rng).expect("encrypt");
    (host, next)
}

/// The genuine next message's plaintext.
const GENUINE: &[u8] = b"next genuine message";

/// One input; `true` when the body decrypted (the runner keeps those).
pub(crate) fn run(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else { return false };
    let (mut host, genuine) = live();
    let body: Vec<u8> = match mode % 4 {
        0 => rest.to_vec(),
        1 => [&[0x01, 0x02][..], rest].concat(),
        2 => [&genuine[..42], rest].concat(),
        _ => {
            let mut b = genuine.clone();
            for (x, y) in b.iter_mut().zip(rest) {
                *x ^= y;
            }
            b
        }
    };
    let mut rng = Stream(u64::from(mode));
    if host.decrypt(&body, &mut rng).is_ok() {
        return true;
    }
    let pt = host.decrypt(&genuine, &mut rng).expect("state survives a failed decrypt");
    assert_eq!(pt, GENUINE);
    false
}
