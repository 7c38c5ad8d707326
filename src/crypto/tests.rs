//! Session-level tests: the full guest/host flow, failure without state change,
//! limits, persistence, redaction, and proptest transcripts with loss, reordering and
//! duplication.

use proptest::prelude::*;

use super::invite::OneTimePrekey;
use super::ratchet::MAX_SKIP;
use super::session::{KIND_NORMAL, KIND_PREKEY};
use super::vectors::FixedRng;
use super::*;

const NOW: u64 = 1_800_000_000;

struct Pair {
    guest_id: IdentityKeyPair,
    host_id: IdentityKeyPair,
    invite: Invite,
    opk: OneTimePrekey,
}

fn pair(n: u8) -> Pair {
    let guest_id = IdentityKeyPair::from_seed(&[n; 32]).unwrap();
    let host_id = IdentityKeyPair::from_seed(&[n.wrapping_add(100); 32]).unwrap();
    let (invite, opk) =
        Invite::create(&host_id, "wss://relay.example/ws", NOW + 3600, &mut SystemRng).unwrap();
    Pair { guest_id, host_id, invite, opk }
}

/// A guest and host session after the first message and the first reply.
fn established() -> (Session, Session) {
    let p = pair(1);
    let mut guest = Session::initiate(&p.guest_id, &p.invite, &mut SystemRng).unwrap();
    let first = guest.encrypt(b"hi", &mut SystemRng).unwrap();
    let (mut host, pt) = Session::respond(&p.host_id, &p.opk, &first, &mut SystemRng).unwrap();
    assert_eq!(pt, b"hi");
    let reply = host.encrypt(b"hello", &mut SystemRng).unwrap();
    assert_eq!(guest.decrypt(&reply, &mut SystemRng).unwrap(), b"hello");
    (guest, host)
}

fn state(s: &Session) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn full_flow_through_the_invite_string() {
    let p = pair(2);
    let text = p.invite.encode();
    let invite = Invite::parse(&text).unwrap();
    invite.check_fresh(NOW).unwrap();
    assert_eq!(invite.host(), p.host_id.public());

    let mut guest = Session::initiate(&p.guest_id, &invite, &mut SystemRng).unwrap();
    let b1 = guest.encrypt(b"one", &mut SystemRng).unwrap();
    let b2 = guest.encrypt(b"two", &mut SystemRng).unwrap();
    assert_eq!(b1[..2], [0x01, KIND_PREKEY]);
    let fields = peek_prekey(&b1).unwrap().unwrap();
    assert_eq!(fields.invite_id, invite.id());
    assert_eq!(fields.guest, p.guest_id.public());

    let (mut host, pt) = Session::respond(&p.host_id, &p.opk, &b1, &mut SystemRng).unwrap();
    assert_eq!(pt, b"one");
    // Later prekey bodies of the same session are ordinary messages to the host.
    assert_eq!(host.decrypt(&b2, &mut SystemRng).unwrap(), b"two");
    assert_eq!(
        (host.peer(), host.invite_id(), host.role()),
        (p.guest_id.public(), invite.id(), Role::Host)
    );
    assert_eq!(
        (guest.peer(), guest.invite_id(), guest.role()),
        (p.host_id.public(), invite.id(), Role::Guest)
    );

    let r = host.encrypt(b"reply", &mut SystemRng).unwrap();
    assert_eq!(r[..2], [0x01, KIND_NORMAL]);
    assert_eq!(peek_prekey(&r).unwrap(), None);
    assert_eq!(guest.decrypt(&r, &mut SystemRng).unwrap(), b"reply");
    let b3 = guest.encrypt(b"three", &mut SystemRng).unwrap();
    assert_eq!(b3[1], KIND_NORMAL, "guest switches to normal bodies after a reply");
    assert_eq!(host.decrypt(&b3, &mut SystemRng).unwrap(), b"three");
    assert_eq!(
        safety_number(&guest.local(), &guest.peer()),
        safety_number(&host.local(), &host.peer())
    );
}

#[test]
fn wrong_one_time_prekey_fails_the_first_message() {
    let p = pair(3);
    let other = pair(4);
    let mut guest = Session::initiate(&p.guest_id, &p.invite, &mut SystemRng).unwrap();
    let b = guest.encrypt(b"x", &mut SystemRng).unwrap();
    // Another invite's prekey: refused by id before any DH.
    assert_eq!(
        Session::respond(&p.host_id, &other.opk, &b, &mut SystemRng).err(),
        Some(SessionError::PrekeyMismatch)
    );
    // Same id, wrong private key: X3DH disagrees, the message does not authenticate.
    let forged = OneTimePrekey::from_parts(p.invite.id(), [0x42; 32]).unwrap();
    assert_eq!(
        Session::respond(&p.host_id, &forged, &b, &mut SystemRng).err(),
        Some(SessionError::Ratchet(RatchetError::Undecryptable))
    );
    // Wrong host identity: DH2 differs.
    assert_eq!(
        Session::respond(&other.host_id, &p.opk, &b, &mut SystemRng).err(),
        Some(SessionError::Ratchet(RatchetError::Undecryptable))
    );
    // A normal body cannot start a session.
    let (_, mut host) = established();
    let normal = host.encrypt(b"n", &mut SystemRng).unwrap();
    assert_eq!(
        Session::respond(&p.host_id, &p.opk, &normal, &mut SystemRng).err(),
        Some(SessionError::NotPrekey)
    );
}

#[test]
fn prekey_fields_must_match_the_session() {
    let p = pair(5);
    let mut guest = Session::initiate(&p.guest_id, &p.invite, &mut SystemRng).unwrap();
    let b1 = guest.encrypt(b"a", &mut SystemRng).unwrap();
    let b2 = guest.encrypt(b"b", &mut SystemRng).unwrap();
    let (mut host, _) = Session::respond(&p.host_id, &p.opk, &b1, &mut SystemRng).unwrap();
    for offset in [2, 2 + 16, 2 + 48] {
        let mut bad = b2.clone();
        bad[offset] ^= 1;
        let before = state(&host);
        assert!(host.decrypt(&bad, &mut SystemRng).is_err());
        assert_eq!(before, state(&host));
    }
    // The guest never accepts a prekey body.
    let mut g2 = Session::initiate(&p.guest_id, &p.invite, &mut SystemRng).unwrap();
    assert_eq!(g2.decrypt(&b1, &mut SystemRng).err(), Some(SessionError::UnexpectedPrekey));
}

/// Flip every bit position class of every byte of header and ciphertext.
fn assert_tamper_rejected(receiver: &mut Session, body: &[u8]) {
    let before = state(receiver);
    let start = if body[1] == KIND_PREKEY { 2 + 80 } else { 2 };
    for i in start..body.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = body.to_vec();
            bad[i] ^= bit;
            assert!(receiver.decrypt(&bad, &mut SystemRng).is_err(), "byte {i} bit {bit:#x}");
            assert_eq!(before, state(receiver), "state changed by tampered byte {i}");
        }
    }
    // Truncated and extended bodies too.
    assert!(receiver.decrypt(&body[..body.len() - 1], &mut SystemRng).is_err());
    let mut longer = body.to_vec();
    longer.push(0);
    assert!(receiver.decrypt(&longer, &mut SystemRng).is_err());
    assert_eq!(before, state(receiver));
}

#[test]
fn tampering_fails_and_leaves_state_unchanged() {
    let (mut guest, mut host) = established();
    // Same-chain message.
    let m1 = host.encrypt(b"same chain", &mut SystemRng).unwrap();
    assert_tamper_rejected(&mut guest, &m1);
    assert_eq!(guest.decrypt(&m1, &mut SystemRng).unwrap(), b"same chain");
    // A message that makes the receiver take a DH ratchet step (after a skip).
    let _lost = guest.encrypt(b"lost", &mut SystemRng).unwrap();
    let m2 = guest.encrypt(b"ratchet step", &mut SystemRng).unwrap();
    let m3 = guest.encrypt(b"after", &mut SystemRng).unwrap();
    assert_tamper_rejected(&mut host, &m3);
    assert_eq!(host.decrypt(&m3, &mut SystemRng).unwrap(), b"after");
    // A message from the skipped-key store.
    assert_tamper_rejected(&mut host, &m2);
    assert_eq!(host.decrypt(&m2, &mut SystemRng).unwrap(), b"ratchet step");
}

#[test]
fn replays_are_rejected_without_state_change() {
    let (mut guest, mut host) = established();
    let a = guest.encrypt(b"a", &mut SystemRng).unwrap();
    let b = guest.encrypt(b"b", &mut SystemRng).unwrap();
    assert_eq!(host.decrypt(&b, &mut SystemRng).unwrap(), b"b");
    assert_eq!(host.decrypt(&a, &mut SystemRng).unwrap(), b"a"); // from the store
    for body in [&a, &b] {
        let before = state(&host);
        let err = host.decrypt(body, &mut SystemRng).unwrap_err();
        assert_eq!(err, SessionError::Ratchet(RatchetError::Duplicate));
        assert_eq!(before, state(&host));
    }
    // Still usable both ways.
    let c = host.encrypt(b"c", &mut SystemRng).unwrap();
    assert_eq!(guest.decrypt(&c, &mut SystemRng).unwrap(), b"c");
    // Replays of an older chain fail as well.
    let d = guest.encrypt(b"d", &mut SystemRng).unwrap();
    assert_eq!(host.decrypt(&d, &mut SystemRng).unwrap(), b"d");
    assert!(host.decrypt(&a, &mut SystemRng).is_err());
}

#[test]
fn gap_above_max_skip_is_an_error_and_exactly_max_skip_is_fine() {
    let (mut guest, mut host) = established();
    let bodies: Vec<Vec<u8>> = (0..=MAX_SKIP + 1)
        .map(|i| guest.encrypt(&i.to_be_bytes(), &mut SystemRng).unwrap())
        .collect();
    // bodies[0] opens a new chain for the host (DH step): reaching n = 1001 in it would
    // skip 1001 keys.
    let before = state(&host);
    let too_far = usize::try_from(MAX_SKIP + 1).unwrap();
    assert_eq!(
        host.decrypt(&bodies[too_far], &mut SystemRng).unwrap_err(),
        SessionError::Ratchet(RatchetError::TooManySkipped)
    );
    assert_eq!(before, state(&host));
    // n = 1000 skips exactly 1000: allowed, and every skipped one decrypts later.
    let edge = usize::try_from(MAX_SKIP).unwrap();
    assert_eq!(host.decrypt(&bodies[edge], &mut SystemRng).unwrap(), MAX_SKIP.to_be_bytes());
    assert_eq!(host.skipped_keys(), edge);
    assert_eq!(
        host.decrypt(&bodies[too_far], &mut SystemRng).unwrap(),
        (MAX_SKIP + 1).to_be_bytes()
    );
    assert_eq!(host.decrypt(&bodies[7], &mut SystemRng).unwrap(), 7u32.to_be_bytes());
}

#[test]
fn forged_huge_counters_fail_fast() {
    let (mut guest, mut host) = established();
    let body = guest.encrypt(b"x", &mut SystemRng).unwrap();
    let before = state(&host);
    // header = body[2..42]: dh 32 || pn 4 || n 4. Same chain (current key) and new key.
    // The host has received one message of the old chain (nr = 1): pn = 1002 skips 1001.
    for (pn, n) in [(u32::MAX, 0), (0, u32::MAX), (1002, 0), (0, 1001)] {
        let mut bad = body.clone();
        bad[34..38].copy_from_slice(&pn.to_be_bytes());
        bad[38..42].copy_from_slice(&n.to_be_bytes());
        assert_eq!(
            host.decrypt(&bad, &mut SystemRng).unwrap_err(),
            SessionError::Ratchet(RatchetError::TooManySkipped)
        );
    }
    assert_eq!(before, state(&host));
    let h = host.encrypt(b"y", &mut SystemRng).unwrap();
    let mut bad = h.clone();
    bad[38..42].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        guest.decrypt(&bad, &mut SystemRng).unwrap_err(),
        SessionError::Ratchet(RatchetError::TooManySkipped)
    );
    assert_eq!(host.decrypt(&body, &mut SystemRng).unwrap(), b"x");
}

#[test]
fn skipped_store_is_capped_and_evicts_oldest() {
    let (mut guest, mut host) = established();
    let mut oldest = Vec::new();
    // Three guest chains, each with 1000 undelivered messages before a delivered one.
    for round in 0..3 {
        let skipped: Vec<Vec<u8>> =
            (0..MAX_SKIP).map(|_| guest.encrypt(b"s", &mut SystemRng).unwrap()).collect();
        let last = guest.encrypt(b"last", &mut SystemRng).unwrap();
        assert_eq!(host.decrypt(&last, &mut SystemRng).unwrap(), b"last");
        if round == 0 {
            oldest = skipped.clone();
        }
        let r = host.encrypt(b"r", &mut SystemRng).unwrap();
        assert_eq!(guest.decrypt(&r, &mut SystemRng).unwrap(), b"r");
        if round == 2 {
            assert_eq!(host.skipped_keys(), MAX_STORED_SKIPPED);
            // The newest skipped keys are still there.
            assert_eq!(host.decrypt(&skipped[999], &mut SystemRng).unwrap(), b"s");
        }
    }
    // The first chain's keys were evicted.
    assert!(host.decrypt(&oldest[0], &mut SystemRng).is_err());
    assert_eq!(host.skipped_keys(), MAX_STORED_SKIPPED - 1);
}

#[test]
fn state_roundtrips_through_json_and_checks_its_version() {
    let (guest, host) = established();
    let mut guest: Session = serde_json::from_str(&state(&guest)).unwrap();
    let mut host: Session = serde_json::from_str(&state(&host)).unwrap();
    let m = guest.encrypt(b"persisted", &mut SystemRng).unwrap();
    assert_eq!(host.decrypt(&m, &mut SystemRng).unwrap(), b"persisted");
    let mut v: serde_json::Value = serde_json::from_str(&state(&host)).unwrap();
    assert_eq!(v["version"], 1);
    v["version"] = 2.into();
    assert!(serde_json::from_value::<Session>(v).is_err());
    let opk = pair(6).opk;
    let back: OneTimePrekey = serde_json::from_str(&serde_json::to_string(&opk).unwrap()).unwrap();
    assert_eq!((back.public(), back.invite_id()), (opk.public(), opk.invite_id()));
}

#[test]
fn debug_output_is_redacted() {
    let (guest, _host) = established();
    let json: serde_json::Value = serde_json::from_str(&state(&guest)).unwrap();
    let dbg = format!("{guest:?}");
    let secrets = [
        json["ratchet"]["rk"].as_str().unwrap(),
        json["ratchet"]["cks"].as_str().unwrap(),
        json["ratchet"]["ckr"].as_str().unwrap(),
        json["ratchet"]["dhs"]["secret"].as_str().unwrap(),
    ];
    for s in secrets {
        assert_eq!(s.len(), 64);
        assert!(!dbg.contains(s) && !dbg.contains(&s[..16]), "{dbg}");
    }
    assert!(dbg.contains("ns") && dbg.contains("ed25519:"), "{dbg}");

    let p = pair(7);
    let opk_json: serde_json::Value = serde_json::to_value(&p.opk).unwrap();
    let opk_secret = opk_json["key"]["secret"].as_str().unwrap();
    assert!(!format!("{:?}", p.opk).contains(&opk_secret[..16]));
    let inv = format!("{:?}", p.invite);
    let id = p.invite.id();
    assert!(
        !inv.contains(&id.to_b64u()[..8]) && !inv.contains(&hex::encode(id.as_bytes())[..8]),
        "{inv}"
    );
    assert!(!format!("{id:?}").contains(&hex::encode(id.as_bytes())[..8]));
}

#[test]
fn invite_errors_are_distinct() {
    let p = pair(8);
    let text = p.invite.encode();
    assert!(text.starts_with("ar1."));
    assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    // Link and whitespace forms.
    assert_eq!(Invite::parse(&format!("https://relay.example/#{text}")).unwrap(), p.invite);
    assert_eq!(Invite::parse(&format!("  {text}\n")).unwrap(), p.invite);
    // Freshness.
    assert_eq!(p.invite.check_fresh(NOW + 3600), Err(InviteError::Expired));
    assert_eq!(p.invite.check_fresh(NOW + 3599), Ok(()));

    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bin = b64.decode(&text[4..]).unwrap();
    let reencode = |bin: &[u8]| format!("ar1.{}", b64.encode(bin));
    // Any flipped byte after the version: bad signature or malformed, never accepted.
    for i in 1..bin.len() {
        let mut bad = bin.clone();
        bad[i] ^= 0x01;
        let err = Invite::parse(&reencode(&bad)).unwrap_err();
        assert!(
            matches!(err, InviteError::BadSignature | InviteError::Malformed),
            "byte {i}: {err:?}"
        );
    }
    // A flipped URL byte (still UTF-8) or expiry byte is precisely a bad signature.
    let mut bad = bin.clone();
    bad[1 + 16 + 32 + 32 + 7] ^= 1;
    assert_eq!(Invite::parse(&reencode(&bad)), Err(InviteError::BadSignature));
    let mut v2 = bin.clone();
    v2[0] = 2;
    assert_eq!(Invite::parse(&reencode(&v2)), Err(InviteError::UnknownVersion(2)));
    assert_eq!(Invite::parse(&format!("ar2.{}", &text[4..])), Err(InviteError::UnknownVersion(2)));
    for junk in ["", "ar1.", "ar1.!!!", "hello", "ar.x", "arx.abc", &text[..text.len() - 3]] {
        assert_eq!(Invite::parse(junk), Err(InviteError::Malformed), "{junk:?}");
    }
    let mut extra = bin.clone();
    extra.push(0);
    assert_eq!(Invite::parse(&reencode(&extra)), Err(InviteError::Malformed));
    assert_eq!(Invite::parse(&"a".repeat(100_000)), Err(InviteError::Malformed));
    // Creation limits; the largest invite still parses.
    let host = &p.host_id;
    let (big, _) = Invite::create(host, &"é".repeat(1024), NOW, &mut SystemRng).unwrap();
    assert!(big.encode().len() < invite::MAX_INVITE_STRING_LEN);
    assert_eq!(Invite::parse(&big.encode()).unwrap(), big);
    assert_eq!(Invite::create(host, "", NOW, &mut SystemRng).err(), Some(InviteError::RelayUrl));
    assert_eq!(
        Invite::create(host, &"u".repeat(2049), NOW, &mut SystemRng).err(),
        Some(InviteError::RelayUrl)
    );
    assert_eq!(
        Invite::create(host, "wss://x", 1 << 53, &mut SystemRng).err(),
        Some(InviteError::ExpiresAt)
    );
}

#[test]
fn malformed_bodies_are_errors() {
    let (_, mut host) = established();
    let before = state(&host);
    for body in [&[][..], &[1], &[1, 2], &[2, 2, 0, 0], &[1, 9], &[1, 1, 0, 0]] {
        assert!(host.decrypt(body, &mut SystemRng).is_err());
        assert!(peek_prekey(body).is_err());
    }
    assert_eq!(peek_prekey(&[9, 2]).unwrap_err(), SessionError::UnknownVersion(9));
    assert_eq!(peek_prekey(&[1, 7, 0]).unwrap_err(), SessionError::UnknownKind(7));
    assert_eq!(before, state(&host));
}

#[test]
fn fixed_rng_makes_sessions_deterministic() {
    let p = pair(9);
    let run = || {
        let mut rng = FixedRng::new([vec![1u8; 32], vec![2u8; 32]]);
        let mut g = Session::initiate(&p.guest_id, &p.invite, &mut rng).unwrap();
        assert_eq!(rng.remaining(), 0);
        g.encrypt(b"same", &mut rng).unwrap()
    };
    assert_eq!(run(), run());
    let (guest, _) = established();
    assert!(guest.ratchet().next_header().is_some());
}

// ---------- proptest transcripts ----------

#[derive(Debug, Clone)]
enum Op {
    /// `true` = guest sends.
    Send(bool, u8),
    /// Deliver an undelivered message (index into the undelivered list, modulo).
    Deliver(usize),
    /// Deliver a message again.
    Duplicate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), any::<u8>()).prop_map(|(g, n)| Op::Send(g, n)),
        3 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Duplicate),
    ]
}

struct InFlight {
    from_guest: bool,
    body: Vec<u8>,
    plaintext: Vec<u8>,
    delivered: bool,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Random bidirectional traffic with loss (never delivered), reordering and
    /// duplication: every first delivery decrypts to its plaintext, every duplicate is
    /// rejected without state change, and both sides still talk afterwards.
    #[test]
    fn random_transcripts(ops in proptest::collection::vec(op(), 1..80), finish_all in any::<bool>()) {
        let p = pair(10);
        let mut guest = Session::initiate(&p.guest_id, &p.invite, &mut SystemRng).unwrap();
        let mut host: Option<Session> = None;
        let mut flight: Vec<InFlight> = Vec::new();
        let deliver = |m: &mut InFlight, guest: &mut Session, host: &mut Option<Session>| {
            let pt = if m.from_guest {
                match host {
                    Some(h) => h.decrypt(&m.body, &mut SystemRng).unwrap(),
                    None => {
                        let (h, pt) = Session::respond(&p.host_id, &p.opk, &m.body, &mut SystemRng).unwrap();
                        *host = Some(h);
                        pt
                    }
                }
            } else {
                guest.decrypt(&m.body, &mut SystemRng).unwrap()
            };
            assert_eq!(pt, m.plaintext);
            m.delivered = true;
        };
        for (k, op) in ops.into_iter().enumerate() {
            match op {
                Op::Send(from_guest, len) => {
                    let plaintext = vec![u8::try_from(k % 256).unwrap(); usize::from(len)];
                    let body = if from_guest {
                        guest.encrypt(&plaintext, &mut SystemRng).unwrap()
                    } else if let Some(h) = host.as_mut() {
                        h.encrypt(&plaintext, &mut SystemRng).unwrap()
                    } else {
                        continue;
                    };
                    flight.push(InFlight { from_guest, body, plaintext, delivered: false });
                }
                Op::Deliver(i) => {
                    let open: Vec<usize> = (0..flight.len()).filter(|&j| !flight[j].delivered).collect();
                    if open.is_empty() { continue; }
                    let j = open[i % open.len()];
                    deliver(&mut flight[j], &mut guest, &mut host);
                }
                Op::Duplicate(i) => {
                    let done: Vec<usize> = (0..flight.len()).filter(|&j| flight[j].delivered).collect();
                    if done.is_empty() { continue; }
                    let m = &flight[done[i % done.len()]];
                    let receiver = if m.from_guest { host.as_mut().unwrap() } else { &mut guest };
                    let before = state(receiver);
                    prop_assert!(receiver.decrypt(&m.body, &mut SystemRng).is_err());
                    prop_assert_eq!(before, state(receiver));
                }
            }
        }
        if finish_all {
            for m in flight.iter_mut().filter(|m| !m.delivered) {
                deliver(m, &mut guest, &mut host);
            }
        }
        // Still usable both ways.
        let b = guest.encrypt(b"final-g", &mut SystemRng).unwrap();
        let mut m = InFlight { from_guest: true, body: b, plaintext: b"final-g".to_vec(), delivered: false };
        deliver(&mut m, &mut guest, &mut host);
        let h = host.as_mut().unwrap();
        let b = h.encrypt(b"final-h", &mut SystemRng).unwrap();
        prop_assert_eq!(guest.decrypt(&b, &mut SystemRng).unwrap(), b"final-h".to_vec());
    }
}

#[test]
fn invite_id_forms() {
    let id = InviteId([0; 16]);
    assert_eq!(
        hex::encode(id.relay_hash()),
        "374708fff7719dd5979ec875d56cd2286f6d3cf7ec317a3b25632aab28ec37bb"
    );
    let p = pair(11);
    let id = p.invite.id();
    assert_eq!(InviteId::from_b64u(&id.to_b64u()).unwrap(), id);
    assert_eq!(p.opk.invite_id(), id);
    assert_eq!(p.opk.public(), p.invite.opk_pub());
    assert!(InviteId::from_b64u("AAAA").is_err());
}
