//! The Double Ratchet (Signal spec rev. 1 §3) with crypto-v1's KDFs, header and limits.
//!
//! Decryption never mutates `self` until the AEAD tag has verified: the candidate
//! chain key, root key, new ratchet keypair and newly skipped keys are computed into
//! locals and committed together (like vodozemac's `decrypt_decoded`). Cloning the
//! whole state instead would copy up to 2000 stored keys per message.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::aead;
use super::dh::{DhKeyPair, DhPublic};
use super::kdf::{ChainKey, MessageKey, RootKey, kdf_ck, kdf_rk};
use super::keys::{CryptoRng, KeyError};
use super::x3dh::AssociatedData;

/// Most message keys one message may make us skip in one chain (Signal's MAX_SKIP).
/// Bounds the work (two HMACs per key) an attacker can force with a forged counter.
pub const MAX_SKIP: u32 = 1000;
/// Most skipped keys kept per session; the oldest (insertion order) goes first.
/// Two full chains' worth, so one message that skips `MAX_SKIP` in the old chain and
/// `MAX_SKIP` in the new one still fits.
pub const MAX_STORED_SKIPPED: usize = 2000;
/// HEADER = dh_pub (32) || u32be(pn) || u32be(n).
pub const HEADER_LEN: usize = 40;

/// Errors from the ratchet. Every one leaves the state as it was.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RatchetError {
    /// The header is not 40 bytes.
    #[error("malformed message header")]
    MalformedHeader,
    /// The message's key was already used (a replay or duplicate delivery).
    #[error("duplicate message: its key was already used")]
    Duplicate,
    /// Accepting the message would skip more than `MAX_SKIP` keys in one chain.
    #[error("message too far ahead: more than {MAX_SKIP} skipped messages")]
    TooManySkipped,
    /// Authentication failed: tampered, forged, or from another session.
    #[error("message does not decrypt")]
    Undecryptable,
    /// No sending chain yet (the host must receive the guest's first message).
    #[error("no sending chain yet")]
    NoSendingChain,
    /// A chain counter reached 2^32 - 1; the session must be replaced.
    #[error("message counter exhausted")]
    CounterExhausted,
    /// A DH failed (peer sent a small-order ratchet key) or libsodium failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A parsed message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) dh: DhPublic,
    pub(crate) pn: u32,
    pub(crate) n: u32,
}

impl Header {
    pub(crate) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(&self.dh);
        out[32..36].copy_from_slice(&self.pn.to_be_bytes());
        out[36..].copy_from_slice(&self.n.to_be_bytes());
        out
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, RatchetError> {
        let bytes: &[u8; HEADER_LEN] =
            bytes.try_into().map_err(|_| RatchetError::MalformedHeader)?;
        let mut dh = [0u8; 32];
        dh.copy_from_slice(&bytes[..32]);
        let pn = u32::from_be_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]);
        let n = u32::from_be_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]);
        Ok(Self { dh, pn, n })
    }
}

/// A stored key of a message that has not arrived yet.
#[derive(Clone, Serialize, Deserialize)]
struct SkippedKey {
    #[serde(with = "super::serde_hex")]
    dh: DhPublic,
    n: u32,
    mk: MessageKey,
}

/// Double Ratchet state of one party.
#[derive(Serialize, Deserialize)]
pub(crate) struct Ratchet {
    #[serde(with = "super::serde_hex")]
    ad: AssociatedData,
    dhs: DhKeyPair,
    #[serde(with = "super::serde_hex::option")]
    dhr: Option<DhPublic>,
    rk: RootKey,
    cks: Option<ChainKey>,
    ckr: Option<ChainKey>,
    ns: u32,
    nr: u32,
    pn: u32,
    skipped: VecDeque<SkippedKey>,
}

/// Walk a chain from counter `from` up to `until` (exclusive), collecting the keys
/// passed over. Callers have bounded `until - from` by `MAX_SKIP`.
fn skip_chain(
    ck: &ChainKey,
    dh: DhPublic,
    from: u32,
    until: u32,
    out: &mut Vec<SkippedKey>,
) -> ChainKey {
    let mut ck = ck.clone();
    for n in from..until {
        let (next, mk) = kdf_ck(&ck);
        out.push(SkippedKey { dh, n, mk });
        ck = next;
    }
    ck
}

fn too_many(from: u32, until: u32) -> bool {
    until.saturating_sub(from) > MAX_SKIP
}

impl Ratchet {
    /// RatchetInitAlice (guest): draws DHs from `rng`; (RK, CKs) = KDF_RK(SK, DH(DHs, opk)).
    pub(crate) fn init_alice(
        sk: RootKey,
        ad: AssociatedData,
        opk_pub: DhPublic,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self, RatchetError> {
        let dhs = DhKeyPair::generate(rng)?;
        let (rk, cks) = kdf_rk(&sk, &*dhs.dh(&opk_pub)?);
        Ok(Self {
            ad,
            dhs,
            dhr: Some(opk_pub),
            rk,
            cks: Some(cks),
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: VecDeque::new(),
        })
    }

    /// RatchetInitBob (host): DHs = the one-time prekey, RK = SK, no chains yet.
    pub(crate) fn init_bob(sk: RootKey, ad: AssociatedData, opk: DhKeyPair) -> Self {
        Self {
            ad,
            dhs: opk,
            dhr: None,
            rk: sk,
            cks: None,
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: VecDeque::new(),
        }
    }

    /// The header the next `encrypt` will use, if we can send.
    #[cfg(test)]
    pub(crate) fn next_header(&self) -> Option<Header> {
        self.cks.as_ref().map(|_| Header { dh: self.dhs.public(), pn: self.pn, n: self.ns })
    }

    /// RatchetEncrypt: returns (header, ciphertext).
    pub(crate) fn encrypt(
        &mut self,
        plaintext: &[u8],
    ) -> Result<([u8; HEADER_LEN], Vec<u8>), RatchetError> {
        let cks = self.cks.as_ref().ok_or(RatchetError::NoSendingChain)?;
        let next_ns = self.ns.checked_add(1).ok_or(RatchetError::CounterExhausted)?;
        let (next_ck, mk) = kdf_ck(cks);
        let header = Header { dh: self.dhs.public(), pn: self.pn, n: self.ns }.to_bytes();
        let ct = aead::seal(&mk, &self.ad, &header, plaintext)
            .ok_or(RatchetError::Key(KeyError::Sodium))?;
        self.cks = Some(next_ck);
        self.ns = next_ns;
        Ok((header, ct))
    }

    /// RatchetDecrypt with commit-on-success. `rng` is drawn from (32 bytes) exactly
    /// when the header carries a new ratchet key.
    pub(crate) fn decrypt(
        &mut self,
        header_bytes: &[u8],
        ciphertext: &[u8],
        rng: &mut dyn CryptoRng,
    ) -> Result<Vec<u8>, RatchetError> {
        let header = Header::parse(header_bytes)?;

        // 1. A key stored for a message that was skipped earlier.
        if let Some(pos) = self.skipped.iter().position(|k| k.dh == header.dh && k.n == header.n) {
            let mk = &self.skipped[pos].mk;
            let pt = aead::open(mk, &self.ad, header_bytes, ciphertext)
                .ok_or(RatchetError::Undecryptable)?;
            self.skipped.remove(pos);
            return Ok(pt);
        }

        // 2. The current receiving chain.
        if self.dhr == Some(header.dh) {
            let ckr = self.ckr.as_ref().ok_or(RatchetError::Undecryptable)?;
            if header.n < self.nr {
                return Err(RatchetError::Duplicate);
            }
            if too_many(self.nr, header.n) {
                return Err(RatchetError::TooManySkipped);
            }
            let next_nr = header.n.checked_add(1).ok_or(RatchetError::CounterExhausted)?;
            let mut new_skipped = Vec::new();
            let ck = skip_chain(ckr, header.dh, self.nr, header.n, &mut new_skipped);
            let (next_ck, mk) = kdf_ck(&ck);
            let pt = aead::open(&mk, &self.ad, header_bytes, ciphertext)
                .ok_or(RatchetError::Undecryptable)?;
            self.store_skipped(new_skipped);
            self.ckr = Some(next_ck);
            self.nr = next_nr;
            return Ok(pt);
        }

        // 3. A new ratchet key: DH ratchet step. Limits first, before any work.
        if too_many(self.nr, header.pn) || too_many(0, header.n) {
            return Err(RatchetError::TooManySkipped);
        }
        let next_nr = header.n.checked_add(1).ok_or(RatchetError::CounterExhausted)?;
        let mut new_skipped = Vec::new();
        if let (Some(ckr), Some(dhr)) = (self.ckr.as_ref(), self.dhr) {
            skip_chain(ckr, dhr, self.nr, header.pn, &mut new_skipped);
        }
        let (rk1, ckr_new) = kdf_rk(&self.rk, &*self.dhs.dh(&header.dh)?);
        let dhs_new = DhKeyPair::generate(rng)?;
        let (rk2, cks_new) = kdf_rk(&rk1, &*dhs_new.dh(&header.dh)?);
        let ck = skip_chain(&ckr_new, header.dh, 0, header.n, &mut new_skipped);
        let (next_ck, mk) = kdf_ck(&ck);
        let pt = aead::open(&mk, &self.ad, header_bytes, ciphertext)
            .ok_or(RatchetError::Undecryptable)?;

        self.store_skipped(new_skipped);
        self.pn = self.ns;
        self.ns = 0;
        self.nr = next_nr;
        self.dhr = Some(header.dh);
        self.dhs = dhs_new;
        self.rk = rk2;
        self.cks = Some(cks_new);
        self.ckr = Some(next_ck);
        Ok(pt)
    }

    fn store_skipped(&mut self, keys: Vec<SkippedKey>) {
        for key in keys {
            if self.skipped.len() >= MAX_STORED_SKIPPED {
                self.skipped.pop_front();
            }
            self.skipped.push_back(key);
        }
    }

    /// Number of stored skipped keys.
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// Counters (ns, nr, pn), for `Debug` and tests.
    pub(crate) fn counters(&self) -> (u32, u32, u32) {
        (self.ns, self.nr, self.pn)
    }

    /// Our current ratchet public key.
    pub(crate) fn ratchet_public(&self) -> DhPublic {
        self.dhs.public()
    }

    /// The peer's current ratchet public key.
    pub(crate) fn peer_ratchet_public(&self) -> Option<DhPublic> {
        self.dhr
    }
}

impl fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ratchet")
            .field("dhs_pub", &hex::encode(self.dhs.public()))
            .field("dhr", &self.dhr.map(hex::encode))
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("pn", &self.pn)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}
