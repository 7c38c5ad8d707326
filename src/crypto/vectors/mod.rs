//! Known-answer vectors: `protocol/vectors/*.json` (format pinned by crypto-v1).
//!
//! Two separate kinds of test. The *checks* (`kdf_rk_vectors` …) recompute every field
//! of every entry from that entry's own inputs and replay each session transcript in
//! `deliver_order` with the listed ratchet keys, and nothing else: a conforming file
//! made by another implementation passes (`checks_accept_valid_vectors_made_elsewhere`).
//! `generator_reproduces_committed_vectors` is the one test comparing the files with
//! this crate's generator; `AGENTROOM_REGEN_VECTORS=1 cargo test --lib crypto::vectors`
//! rewrites them from the fixed inputs.

mod check;
mod generate;

use check::{
    check_aead, check_invite, check_kdf_ck, check_kdf_rk, check_session, check_x3dh,
    has_reversed_pair,
};
use generate::{gen_aead, gen_invite, gen_kdf_ck, gen_kdf_rk, gen_session, gen_x3dh};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

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

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    load_from(&vectors_dir(), name)
}

fn load_from<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Vec<T> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Deterministic 32 bytes for the generators: [`det`] of `salt || label`.
fn det_s(salt: &str, label: &str, i: u32) -> [u8; 32] {
    det(&format!("{salt}{label}"), i)
}

/// One vector file: its name, the generator (by salt) and the per-entry check.
/// Each file in `dir` is checked by recomputation only: any file whose entries are
/// right passes, whoever made it.
struct VectorFile {
    name: &'static str,
    /// Generate the entries with `salt` and serialise them as the file's JSON.
    generate: fn(&str) -> String,
    /// Load `name` from a directory and check every entry from its own inputs.
    check: fn(&Path),
}

fn json<T: Serialize>(entries: &[T]) -> String {
    let mut text = serde_json::to_string_pretty(entries).expect("vector entries serialise");
    text.push('\n');
    text
}

fn check_all<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str, check: impl Fn(&T)) {
    let entries: Vec<T> = load_from(dir, name);
    assert!(entries.len() >= 3, "{name}: fewer than 3 entries");
    for entry in &entries {
        check(entry);
    }
}

fn check_session_entry(v: &SessionVec) {
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
}

const FILES: [VectorFile; 6] = [
    VectorFile {
        name: "kdf_rk.json",
        generate: |salt| json(&gen_kdf_rk(salt)),
        check: |dir| check_all(dir, "kdf_rk.json", check_kdf_rk),
    },
    VectorFile {
        name: "kdf_ck.json",
        generate: |salt| json(&gen_kdf_ck(salt)),
        check: |dir| check_all(dir, "kdf_ck.json", check_kdf_ck),
    },
    VectorFile {
        name: "aead.json",
        generate: |salt| json(&gen_aead(salt)),
        check: |dir| check_all(dir, "aead.json", check_aead),
    },
    VectorFile {
        name: "invite.json",
        generate: |salt| json(&gen_invite(salt)),
        check: |dir| check_all(dir, "invite.json", check_invite),
    },
    VectorFile {
        name: "x3dh.json",
        generate: |salt| json(&gen_x3dh(salt)),
        check: |dir| check_all(dir, "x3dh.json", check_x3dh),
    },
    VectorFile {
        name: "session.json",
        generate: |salt| json(&gen_session(salt)),
        check: |dir| check_all(dir, "session.json", check_session_entry),
    },
];

fn file(name: &str) -> &'static VectorFile {
    FILES.iter().find(|f| f.name == name).expect("a listed vector file")
}

#[test]
fn kdf_rk_vectors() {
    (file("kdf_rk.json").check)(&vectors_dir());
}

#[test]
fn kdf_ck_vectors() {
    (file("kdf_ck.json").check)(&vectors_dir());
}

#[test]
fn aead_vectors() {
    (file("aead.json").check)(&vectors_dir());
}

#[test]
fn invite_vectors() {
    (file("invite.json").check)(&vectors_dir());
}

#[test]
fn x3dh_vectors() {
    (file("x3dh.json").check)(&vectors_dir());
}

#[test]
fn session_vectors() {
    (file("session.json").check)(&vectors_dir());
}

/// Separately from the checks above: the committed files are exactly what the
/// generator makes (`AGENTROOM_REGEN_VECTORS=1` rewrites them first).
#[test]
fn generator_reproduces_committed_vectors() {
    let regen = std::env::var_os(REGEN_ENV).is_some_and(|v| v == "1");
    for f in &FILES {
        let generated = (f.generate)("");
        let path = vectors_dir().join(f.name);
        if regen {
            std::fs::create_dir_all(vectors_dir()).expect("mkdir");
            std::fs::write(&path, &generated).expect("write vectors");
        }
        let committed = std::fs::read_to_string(&path).expect("committed vector file");
        assert!(
            committed == generated,
            "{} differs from the generator; regenerate with {REGEN_ENV}=1",
            f.name
        );
    }
}

/// The checks accept vector files made elsewhere: entries generated from other
/// inputs (another salt) are all different from the committed ones, yet pass.
#[test]
fn checks_accept_valid_vectors_made_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in &FILES {
        let other = (f.generate)("elsewhere/");
        assert_ne!(other, (f.generate)(""), "{}: the salt changes the entries", f.name);
        std::fs::write(dir.path().join(f.name), other).expect("write");
        (f.check)(dir.path());
    }
}

/// And they still catch a wrong entry: one flipped output digit fails.
#[test]
fn checks_reject_a_wrong_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entries = gen_kdf_rk("elsewhere/");
    let last = entries[1].ck.pop().expect("hex");
    entries[1].ck.push(if last == '0' { '1' } else { '0' });
    std::fs::write(dir.path().join("kdf_rk.json"), json(&entries)).expect("write");
    let check = file("kdf_rk.json").check;
    let result = std::panic::catch_unwind(|| check(dir.path()));
    assert!(result.is_err(), "a wrong ck must fail the check");
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
