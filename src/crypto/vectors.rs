//! Known-answer vectors: `protocol/vectors/*.json` (format pinned by crypto-v1).
//!
//! `AGENTROOM_REGEN_VECTORS=1 cargo test --lib crypto::vectors` rewrites the files from
//! the fixed inputs below; without it the test only checks. The check recomputes every
//! field of every entry from that entry's own inputs (not from the generator), and
//! replays each session transcript in `deliver_order` with the listed ratchet keys.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::aead;
use super::dh::DhKeyPair;
use super::invite::{Invite, signed_bytes};
use super::kdf::{ChainKey, MessageKey, RootKey, kdf_ck, kdf_rk};
use super::keys::{CryptoRng, IdentityKeyPair};
use super::ratchet::{Header, Ratchet};
use super::x3dh::{associated_data, guest_agree, host_agree};

/// Environment variable that makes the test rewrite the vector files.
const REGEN_ENV: &str = "AGENTROOM_REGEN_VECTORS";

/// Hands out exactly the chunks it was given, in order; a draw of another size, or
/// past the end, fails the test (the vectors pin how many bytes each step draws).
pub(crate) struct FixedRng(VecDeque<Vec<u8>>);

impl FixedRng {
    pub(crate) fn new<I: IntoIterator<Item = Vec<u8>>>(chunks: I) -> Self {
        Self(chunks.into_iter().collect())
    }
    pub(crate) fn remaining(&self) -> usize {
        self.0.len()
    }
}

impl CryptoRng for FixedRng {
    fn fill(&mut self, out: &mut [u8]) {
        let chunk = self.0.pop_front().expect("FixedRng exhausted");
        assert_eq!(chunk.len(), out.len(), "FixedRng draw of unexpected size");
        out.copy_from_slice(&chunk);
    }
}

/// Draws deterministic bytes (SHA-256 of a label and counter) and records each draw:
/// the generator's way to produce "random" keys that end up listed in the vectors.
struct RecordingRng {
    label: String,
    counter: u32,
    drawn: Vec<Vec<u8>>,
}

impl RecordingRng {
    fn new(label: &str) -> Self {
        Self { label: label.to_owned(), counter: 0, drawn: Vec::new() }
    }
}

impl CryptoRng for RecordingRng {
    fn fill(&mut self, out: &mut [u8]) {
        let mut pos = 0;
        while pos < out.len() {
            let block = det(&self.label, self.counter);
            self.counter += 1;
            let n = (out.len() - pos).min(32);
            out[pos..pos + n].copy_from_slice(&block[..n]);
            pos += n;
        }
        self.drawn.push(out.to_vec());
    }
}

/// Deterministic 32 bytes: SHA-256("agentroom/vectors/" || label || u32be(i)).
fn det(label: &str, i: u32) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"agentroom/vectors/")
        .chain_update(label.as_bytes())
        .chain_update(i.to_be_bytes())
        .finalize()
        .into()
}

fn h(b: impl AsRef<[u8]>) -> String {
    hex::encode(b)
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).expect("hex of the right length");
    out
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("protocol").join("vectors")
}

// ---------- file formats (field order as in crypto-v1) ----------

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct KdfRk {
    rk: String,
    dh_out: String,
    rk_next: String,
    ck: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct KdfCk {
    ck: String,
    ck_next: String,
    mk: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct AeadVec {
    mk: String,
    ad: String,
    header: String,
    plaintext: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct InviteVec {
    host_seed: String,
    invite_id: String,
    opk_priv: String,
    opk_pub: String,
    expires_at: u64,
    relay_url: String,
    signed_bytes: String,
    signature: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct X3dhVec {
    guest_seed: String,
    host_seed: String,
    opk_priv: String,
    ek_priv: String,
    sk: String,
    ad: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Party {
    Guest,
    Host,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct MessageVec {
    from: Party,
    plaintext: String,
    header: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct SessionVec {
    guest_seed: String,
    host_seed: String,
    opk_priv: String,
    ek_priv: String,
    guest_ratchet_privs: Vec<String>,
    host_ratchet_privs: Vec<String>,
    messages: Vec<MessageVec>,
    deliver_order: Vec<usize>,
}

// ---------- generators ----------

fn gen_kdf_rk() -> Vec<KdfRk> {
    (0..4)
        .map(|i| {
            let rk = RootKey::from_bytes(det("kdf_rk/rk", i));
            let dh = det("kdf_rk/dh_out", i);
            let (next, ck) = kdf_rk(&rk, &dh);
            KdfRk {
                rk: h(rk.as_bytes()),
                dh_out: h(dh),
                rk_next: h(next.as_bytes()),
                ck: h(ck.as_bytes()),
            }
        })
        .collect()
}

fn gen_kdf_ck() -> Vec<KdfCk> {
    // Entry 0 starts from all zeros; the rest continue one chain, as a ratchet would.
    let mut out = Vec::new();
    let mut ck = ChainKey::from_bytes([0; 32]);
    for i in 0..4 {
        if i == 1 {
            ck = ChainKey::from_bytes(det("kdf_ck/ck", 1));
        }
        let (next, mk) = kdf_ck(&ck);
        out.push(KdfCk { ck: h(ck.as_bytes()), ck_next: h(next.as_bytes()), mk: h(mk.as_bytes()) });
        ck = next;
    }
    out
}

fn gen_aead() -> Vec<AeadVec> {
    let cases: [(usize, usize, Vec<u8>); 4] = [
        (64, 40, b"hello, agentroom".to_vec()),
        (64, 40, Vec::new()),
        (0, 0, b"no associated data at all".to_vec()),
        (3, 7, (0..=255u8).cycle().take(300).collect()),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (ad_len, hdr_len, pt))| {
            let i = u32::try_from(i).expect("few cases");
            let mk = MessageKey::from_bytes(det("aead/mk", i));
            let ad: Vec<u8> = det("aead/ad", i)
                .iter()
                .chain(det("aead/ad2", i).iter())
                .copied()
                .take(ad_len)
                .collect();
            let header: Vec<u8> = det("aead/header", i)
                .iter()
                .chain(det("aead/header2", i).iter())
                .copied()
                .take(hdr_len)
                .collect();
            let ct = aead::seal(&mk, &ad, &header, &pt).expect("seal");
            AeadVec {
                mk: h(mk.as_bytes()),
                ad: h(ad),
                header: h(header),
                plaintext: h(pt),
                ciphertext: h(ct),
            }
        })
        .collect()
}

fn gen_invite() -> Vec<InviteVec> {
    let cases = [
        (1_767_225_600u64, "wss://relay.example.com/ws"),
        ((1u64 << 53) - 1, "https://a-long-tunnel-name.trycloudflare.com"),
        (1, "ws://127.0.0.1:8787/ws?q=ünïcødé"),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (expires_at, url))| {
            let i = u32::try_from(i).expect("few cases");
            let seed = det("invite/host_seed", i);
            let host = IdentityKeyPair::from_seed(&seed).expect("seed");
            let mut rng = RecordingRng::new(&format!("invite/rng/{i}"));
            let (invite, _opk) = Invite::create(&host, url, expires_at, &mut rng).expect("create");
            InviteVec {
                host_seed: h(seed),
                invite_id: h(invite.id().as_bytes()),
                opk_priv: h(&rng.drawn[1]),
                opk_pub: h(invite.opk_pub()),
                expires_at,
                relay_url: url.to_owned(),
                signed_bytes: h(invite.signed_bytes()),
                signature: h(invite.signature().as_bytes()),
            }
        })
        .collect()
}

fn gen_x3dh() -> Vec<X3dhVec> {
    (0..3)
        .map(|i| {
            let guest_seed = det("x3dh/guest_seed", i);
            let host_seed = det("x3dh/host_seed", i);
            let opk_priv = det("x3dh/opk_priv", i);
            let ek_priv = det("x3dh/ek_priv", i);
            let guest = IdentityKeyPair::from_seed(&guest_seed).expect("seed");
            let host = IdentityKeyPair::from_seed(&host_seed).expect("seed");
            let opk = DhKeyPair::from_secret(opk_priv).expect("opk");
            let ek = DhKeyPair::from_secret(ek_priv).expect("ek");
            let sk = guest_agree(&guest, &ek, &host.public(), &opk.public()).expect("x3dh");
            X3dhVec {
                guest_seed: h(guest_seed),
                host_seed: h(host_seed),
                opk_priv: h(opk_priv),
                ek_priv: h(ek_priv),
                sk: h(sk.as_bytes()),
                ad: h(associated_data(&guest.public(), &host.public())),
            }
        })
        .collect()
}

// ---------- session transcripts ----------

/// One step of a generator script: a party sends its next message, or message `k`
/// (index in send order) is delivered to the other party.
#[derive(Clone, Copy)]
enum Step {
    G,
    H,
    D(usize),
}
use Step::{D, G, H};

/// Three transcripts. Each has ≥12 messages both ways, several DH ratchet steps,
/// reversed pairs, lost messages and decrypts with stored skipped keys (including a
/// key skipped from the *old* chain during a DH ratchet step, via `pn`).
fn scripts() -> Vec<Vec<Step>> {
    vec![
        // Host gets g2 first (skips g0, g1), then g0 from the store; guest gets h4 before
        // h3; g1 arrives last from the store. No loss.
        vec![
            G,
            G,
            G,
            D(2),
            D(0),
            H,
            H,
            D(4),
            D(3),
            G,
            G,
            G,
            D(5),
            D(7),
            D(6),
            H,
            D(8),
            G,
            D(9),
            H,
            H,
            D(11),
            D(10),
            G,
            D(12),
            D(1),
        ],
        // h2 and h8 are lost; guest stores h1/h2, host stores g4; late deliveries use them.
        vec![
            G,
            D(0),
            H,
            H,
            H,
            D(3),
            G,
            G,
            D(5),
            H,
            D(6),
            D(1),
            G,
            D(7),
            D(4),
            H,
            H,
            H,
            D(10),
            G,
            G,
            D(12),
            D(11),
            D(9),
            H,
            D(13),
        ],
        // The host's ratchet step on g5 skips g1 of the old chain (pn = 2 > nr = 1) and
        // g3, g4 of the new one; h7 arrives only at the very end.
        vec![
            G,
            G,
            D(0),
            H,
            D(2),
            G,
            G,
            G,
            D(5),
            D(3),
            H,
            H,
            H,
            D(8),
            D(6),
            G,
            D(9),
            D(1),
            D(4),
            H,
            D(10),
            G,
            D(11),
            G,
            D(12),
            D(7),
        ],
    ]
}

fn plaintext_for(i: usize, k: usize, from: Party) -> Vec<u8> {
    match k % 5 {
        // An empty message is legal and must still authenticate.
        3 => Vec::new(),
        4 => format!("{from:?} #{k} of transcript {i}: {}", "~".repeat(100)).into_bytes(),
        _ => format!("{from:?} message {k} (transcript {i})").into_bytes(),
    }
}

fn gen_session() -> Vec<SessionVec> {
    scripts()
        .into_iter()
        .enumerate()
        .map(|(i, script)| {
            let label = |what: &str| format!("session/{i}/{what}");
            let ix = u32::try_from(i).expect("few");
            let guest_seed = det("session/guest_seed", ix);
            let host_seed = det("session/host_seed", ix);
            let opk_priv = det("session/opk_priv", ix);
            let ek_priv = det("session/ek_priv", ix);
            let guest_id = IdentityKeyPair::from_seed(&guest_seed).expect("seed");
            let host_id = IdentityKeyPair::from_seed(&host_seed).expect("seed");
            let opk = DhKeyPair::from_secret(opk_priv).expect("opk");
            let ek = DhKeyPair::from_secret(ek_priv).expect("ek");
            let ad = associated_data(&guest_id.public(), &host_id.public());
            let mut grng = RecordingRng::new(&label("guest"));
            let mut hrng = RecordingRng::new(&label("host"));
            let sk_g = guest_agree(&guest_id, &ek, &host_id.public(), &opk.public()).expect("x3dh");
            let sk_h = host_agree(&host_id, &opk, &guest_id.public(), &ek.public()).expect("x3dh");
            let mut guest = Ratchet::init_alice(sk_g, ad, opk.public(), &mut grng).expect("init");
            let mut host = Ratchet::init_bob(sk_h, ad, opk.clone());
            let mut messages: Vec<MessageVec> = Vec::new();
            let mut deliver_order = Vec::new();
            for step in script {
                match step {
                    G | H => {
                        let from = if matches!(step, G) { Party::Guest } else { Party::Host };
                        let pt = plaintext_for(i, messages.len(), from);
                        let r = if from == Party::Guest { &mut guest } else { &mut host };
                        let (hdr, ct) = r.encrypt(&pt).expect("encrypt");
                        messages.push(MessageVec {
                            from,
                            plaintext: h(&pt),
                            header: h(hdr),
                            ciphertext: h(ct),
                        });
                    }
                    D(k) => {
                        let m = &messages[k];
                        let (r, rng): (&mut Ratchet, &mut dyn CryptoRng) = match m.from {
                            Party::Guest => (&mut host, &mut hrng),
                            Party::Host => (&mut guest, &mut grng),
                        };
                        let hdr = hex::decode(&m.header).expect("hex");
                        let ct = hex::decode(&m.ciphertext).expect("hex");
                        let pt = r.decrypt(&hdr, &ct, rng).expect("scripted delivery decrypts");
                        assert_eq!(h(pt), m.plaintext);
                        deliver_order.push(k);
                    }
                }
            }
            SessionVec {
                guest_seed: h(guest_seed),
                host_seed: h(host_seed),
                opk_priv: h(opk_priv),
                ek_priv: h(ek_priv),
                guest_ratchet_privs: grng.drawn.iter().map(h).collect(),
                host_ratchet_privs: hrng.drawn.iter().map(h).collect(),
                messages,
                deliver_order,
            }
        })
        .collect()
}

// ---------- checks: recompute each entry from its own inputs ----------

fn check_kdf_rk(v: &KdfRk) {
    let (next, ck) = kdf_rk(&RootKey::from_bytes(unhex(&v.rk)), &unhex(&v.dh_out));
    assert_eq!(h(next.as_bytes()), v.rk_next);
    assert_eq!(h(ck.as_bytes()), v.ck);
}

fn check_kdf_ck(v: &KdfCk) {
    let (next, mk) = kdf_ck(&ChainKey::from_bytes(unhex(&v.ck)));
    assert_eq!(h(next.as_bytes()), v.ck_next);
    assert_eq!(h(mk.as_bytes()), v.mk);
}

fn check_aead(v: &AeadVec) {
    let mk = MessageKey::from_bytes(unhex(&v.mk));
    let ad = hex::decode(&v.ad).expect("hex");
    let header = hex::decode(&v.header).expect("hex");
    let pt = hex::decode(&v.plaintext).expect("hex");
    let ct = aead::seal(&mk, &ad, &header, &pt).expect("seal");
    assert_eq!(h(&ct), v.ciphertext);
    assert_eq!(aead::open(&mk, &ad, &header, &ct).expect("open"), pt);
}

fn check_invite(v: &InviteVec) {
    let host = IdentityKeyPair::from_seed(&unhex(&v.host_seed)).expect("seed");
    let mut rng = FixedRng::new([
        hex::decode(&v.invite_id).expect("hex"),
        hex::decode(&v.opk_priv).expect("hex"),
    ]);
    let (invite, opk) =
        Invite::create(&host, &v.relay_url, v.expires_at, &mut rng).expect("create");
    assert_eq!(rng.remaining(), 0);
    assert_eq!(h(invite.id().as_bytes()), v.invite_id);
    assert_eq!(h(invite.opk_pub()), v.opk_pub);
    assert_eq!(h(opk.public()), v.opk_pub);
    assert_eq!(h(invite.signed_bytes()), v.signed_bytes);
    assert_eq!(
        h(signed_bytes(
            &invite.id(),
            &host.public(),
            &unhex(&v.opk_pub),
            v.expires_at,
            &v.relay_url
        )),
        v.signed_bytes
    );
    assert_eq!(h(invite.signature().as_bytes()), v.signature);
    let parsed = Invite::parse(&invite.encode()).expect("own string form parses");
    assert_eq!(parsed, invite);
}

fn check_x3dh(v: &X3dhVec) {
    let guest = IdentityKeyPair::from_seed(&unhex(&v.guest_seed)).expect("seed");
    let host = IdentityKeyPair::from_seed(&unhex(&v.host_seed)).expect("seed");
    let opk = DhKeyPair::from_secret(unhex(&v.opk_priv)).expect("opk");
    let ek = DhKeyPair::from_secret(unhex(&v.ek_priv)).expect("ek");
    let g = guest_agree(&guest, &ek, &host.public(), &opk.public()).expect("guest");
    let hs = host_agree(&host, &opk, &guest.public(), &ek.public()).expect("host");
    assert_eq!(h(g.as_bytes()), v.sk);
    assert_eq!(h(hs.as_bytes()), v.sk);
    assert_eq!(h(associated_data(&guest.public(), &host.public())), v.ad);
}

/// What a replay observed, so the test can check the transcript exercises the cases
/// crypto-v1 requires.
#[derive(Default)]
struct ReplayStats {
    ratchet_steps: usize,
    stored_key_decrypts: usize,
}

/// Replay one transcript. Sends happen in `messages` order and deliveries in
/// `deliver_order`; the next message is sent as soon as its header equals what its
/// sender would put on its next message (a party's sending header changes only when
/// it sends or ratchets, so this recovers the interleaving), otherwise the next
/// delivery happens.
fn check_session(v: &SessionVec) -> ReplayStats {
    let guest_id = IdentityKeyPair::from_seed(&unhex(&v.guest_seed)).expect("seed");
    let host_id = IdentityKeyPair::from_seed(&unhex(&v.host_seed)).expect("seed");
    let opk = DhKeyPair::from_secret(unhex(&v.opk_priv)).expect("opk");
    let ek = DhKeyPair::from_secret(unhex(&v.ek_priv)).expect("ek");
    let ad = associated_data(&guest_id.public(), &host_id.public());
    let privs = |l: &Vec<String>| FixedRng::new(l.iter().map(|p| hex::decode(p).expect("hex")));
    let mut grng = privs(&v.guest_ratchet_privs);
    let mut hrng = privs(&v.host_ratchet_privs);
    let sk_g = guest_agree(&guest_id, &ek, &host_id.public(), &opk.public()).expect("x3dh");
    let sk_h = host_agree(&host_id, &opk, &guest_id.public(), &ek.public()).expect("x3dh");
    let mut guest = Ratchet::init_alice(sk_g, ad, opk.public(), &mut grng).expect("init");
    let mut host = Ratchet::init_bob(sk_h, ad, opk);

    let mut stats = ReplayStats::default();
    let (mut s, mut d) = (0, 0);
    while s < v.messages.len() || d < v.deliver_order.len() {
        if let Some(m) = v.messages.get(s) {
            let sender = if m.from == Party::Guest { &mut guest } else { &mut host };
            let want: [u8; 40] = unhex(&m.header);
            if sender.next_header().map(Header::to_bytes) == Some(want) {
                let (hdr, ct) =
                    sender.encrypt(&hex::decode(&m.plaintext).expect("hex")).expect("encrypt");
                assert_eq!(h(hdr), m.header, "message {s} header");
                assert_eq!(h(ct), m.ciphertext, "message {s} ciphertext");
                s += 1;
                continue;
            }
        }
        let k = *v.deliver_order.get(d).unwrap_or_else(|| panic!("message {s} can never be sent"));
        assert!(k < s, "message {k} delivered before it can have been sent");
        let m = &v.messages[k];
        let (r, rng): (&mut Ratchet, &mut dyn CryptoRng) = match m.from {
            Party::Guest => (&mut host, &mut hrng),
            Party::Host => (&mut guest, &mut grng),
        };
        let (dhs_before, skipped_before) = (r.ratchet_public(), r.skipped_len());
        let pt = r
            .decrypt(
                &hex::decode(&m.header).expect("hex"),
                &hex::decode(&m.ciphertext).expect("hex"),
                rng,
            )
            .unwrap_or_else(|e| panic!("delivery of message {k}: {e}"));
        assert_eq!(h(pt), m.plaintext, "message {k} plaintext");
        stats.ratchet_steps += usize::from(r.ratchet_public() != dhs_before);
        stats.stored_key_decrypts += usize::from(r.skipped_len() < skipped_before);
        d += 1;
    }
    assert_eq!(grng.remaining(), 0, "unused guest ratchet keys");
    assert_eq!(hrng.remaining(), 0, "unused host ratchet keys");
    stats
}

fn has_reversed_pair(v: &SessionVec) -> bool {
    let o = &v.deliver_order;
    (0..o.len()).any(|p| {
        (p + 1..o.len()).any(|q| o[p] > o[q] && v.messages[o[p]].from == v.messages[o[q]].from)
    })
}

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Write (under the env var) or compare the generator's output with the file, then
/// check every entry of the file from its inputs.
fn run<T, F>(name: &str, generated: Vec<T>, check: F)
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    F: Fn(&T),
{
    if std::env::var_os(REGEN_ENV).is_some_and(|v| v == "1") {
        let mut text = serde_json::to_string_pretty(&generated).expect("json");
        text.push('\n');
        std::fs::create_dir_all(vectors_dir()).expect("mkdir");
        std::fs::write(vectors_dir().join(name), text).expect("write vectors");
    }
    let from_file: Vec<T> = load(name);
    assert!(from_file.len() >= 3, "{name}: fewer than 3 entries");
    assert!(
        from_file == generated,
        "{name} differs from the generator; regenerate with {REGEN_ENV}=1"
    );
    for entry in &from_file {
        check(entry);
    }
}

#[test]
fn kdf_rk_vectors() {
    run("kdf_rk.json", gen_kdf_rk(), check_kdf_rk);
}

#[test]
fn kdf_ck_vectors() {
    run("kdf_ck.json", gen_kdf_ck(), check_kdf_ck);
}

#[test]
fn aead_vectors() {
    run("aead.json", gen_aead(), check_aead);
}

#[test]
fn invite_vectors() {
    run("invite.json", gen_invite(), check_invite);
}

#[test]
fn x3dh_vectors() {
    run("x3dh.json", gen_x3dh(), check_x3dh);
}

#[test]
fn session_vectors() {
    run("session.json", gen_session(), |v: &SessionVec| {
        let stats = check_session(v);
        assert!(v.messages.len() >= 12);
        assert!(v.messages.iter().any(|m| m.from == Party::Guest));
        assert!(v.messages.iter().any(|m| m.from == Party::Host));
        assert!(stats.ratchet_steps >= 3, "only {} DH ratchet steps", stats.ratchet_steps);
        assert!(stats.stored_key_decrypts >= 1);
        assert!(has_reversed_pair(v));
        let mut seen = v.deliver_order.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), v.deliver_order.len(), "an index delivered twice");
    });
}

/// The string form of invite.json entry 0, as given in PROTOCOL.md §2.3 (computed
/// independently of this crate).
const INVITE_0_STRING: &str = "ar1.AZTRtbVLIAZIsQ_xl164lE3QjKAROp_sGbb2stG01Eic2n8SOlqenQhNgROEf700PjZnoR75NVp3BaXDSmGgG1TtME4CWBRcchbQTOjbNPoLAAAAAGlVuQAAGndzczovL3JlbGF5LmV4YW1wbGUuY29tL3dzFRiispDyvh0osNVyV9iFelpuQd8Lx3O_44BInkXWYqV5JWhgdq86hWljtxr_bPwzLgxiLwmFKI3BNWxud8kfDg";

#[test]
fn invite_string_form_matches_protocol_example() {
    let v = &load::<InviteVec>("invite.json")[0];
    let host = IdentityKeyPair::from_seed(&unhex(&v.host_seed)).expect("seed");
    let mut rng = FixedRng::new([
        hex::decode(&v.invite_id).expect("hex"),
        hex::decode(&v.opk_priv).expect("hex"),
    ]);
    let (invite, _) = Invite::create(&host, &v.relay_url, v.expires_at, &mut rng).expect("create");
    assert_eq!(invite.encode(), INVITE_0_STRING);
    let parsed = Invite::parse(INVITE_0_STRING).expect("parse");
    assert_eq!(h(parsed.id().as_bytes()), v.invite_id);
    assert_eq!(parsed.relay_url(), v.relay_url);
    assert_eq!(parsed.expires_at(), v.expires_at);
    assert_eq!(h(parsed.opk_pub()), v.opk_pub);
    assert_eq!(parsed.host(), host.public());
}
