//! A two-party session: X3DH from an invite, then the Double Ratchet, wrapped in the
//! message body of PROTOCOL.md §2.7:
//!
//! ```text
//! body = 0x01 (version) || kind || [invite_id 16 || guest_ik_ed 32 || ek_pub 32] || header 40 || ct
//! kind 0x01 = prekey message (the bracketed fields present), 0x02 = normal message
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::dh::DhKeyPair;
use super::invite::{Invite, InviteId, OneTimePrekey};
use super::keys::{CryptoRng, IdentityKeyPair, IdentityPublicKey, KeyError};
use super::ratchet::{HEADER_LEN, Ratchet, RatchetError};
use super::x3dh;

/// First byte of every body.
pub const BODY_VERSION: u8 = 0x01;
/// Kind byte of a prekey message (carries the X3DH fields).
pub const KIND_PREKEY: u8 = 0x01;
/// Kind byte of a normal message.
pub const KIND_NORMAL: u8 = 0x02;
/// invite_id (16) || guest_ik_ed (32) || ek_pub (32).
pub const PREKEY_FIELDS_LEN: usize = 80;
/// Version of the serialised [`Session`] state.
pub const SESSION_STATE_VERSION: u32 = 1;
/// The smallest valid body: version, kind, header and an empty plaintext's tag.
pub const MIN_BODY_LEN: usize = 2 + HEADER_LEN + super::aead::TAG_LEN;

/// Errors from sessions and message bodies. None of them changes the session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// The body is too short or its lengths do not add up.
    #[error("malformed message body")]
    Malformed,
    /// The body's version byte is not one this build speaks.
    #[error("unknown message body version {0}")]
    UnknownVersion(u8),
    /// The body's kind byte is neither 0x01 nor 0x02.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// `respond` needs a prekey message (kind 0x01).
    #[error("not a prekey message")]
    NotPrekey,
    /// A prekey message for another invite, another guest or another ephemeral key
    /// than this session's (or than the one-time prekey given to `respond`).
    #[error("prekey message does not belong to this session")]
    PrekeyMismatch,
    /// A prekey message sent to the guest, who never receives one.
    #[error("unexpected prekey message")]
    UnexpectedPrekey,
    /// The ratchet refused the message (duplicate, too far ahead, undecryptable, ...).
    #[error(transparent)]
    Ratchet(#[from] RatchetError),
    /// A key could not be used (an invalid or small-order public key).
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The X3DH fields a guest's prekey message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrekeyFields {
    /// The invite being claimed.
    pub invite_id: InviteId,
    /// The guest's Ed25519 identity.
    pub guest: IdentityPublicKey,
    /// The guest's ephemeral X25519 key.
    #[serde(with = "super::serde_hex")]
    pub ek_pub: [u8; 32],
}

impl PrekeyFields {
    fn to_bytes(self) -> [u8; PREKEY_FIELDS_LEN] {
        let mut out = [0u8; PREKEY_FIELDS_LEN];
        out[..16].copy_from_slice(self.invite_id.as_bytes());
        out[16..48].copy_from_slice(self.guest.as_bytes());
        out[48..].copy_from_slice(&self.ek_pub);
        out
    }

    fn parse(bytes: &[u8; PREKEY_FIELDS_LEN]) -> Result<Self, SessionError> {
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[..16]);
        let guest =
            IdentityPublicKey::from_bytes(&bytes[16..48]).map_err(|_| SessionError::Malformed)?;
        let mut ek_pub = [0u8; 32];
        ek_pub.copy_from_slice(&bytes[48..]);
        Ok(Self { invite_id: InviteId(id), guest, ek_pub })
    }
}

/// A body split into its parts (no key needed).
struct Body<'a> {
    prekey: Option<PrekeyFields>,
    header: &'a [u8],
    ciphertext: &'a [u8],
}

fn split_body(body: &[u8]) -> Result<Body<'_>, SessionError> {
    let [version, kind, rest @ ..] = body else { return Err(SessionError::Malformed) };
    if *version != BODY_VERSION {
        return Err(SessionError::UnknownVersion(*version));
    }
    let (prekey, rest) = match *kind {
        KIND_PREKEY => {
            let (fields, rest) =
                rest.split_first_chunk::<PREKEY_FIELDS_LEN>().ok_or(SessionError::Malformed)?;
            (Some(PrekeyFields::parse(fields)?), rest)
        }
        KIND_NORMAL => (None, rest),
        other => return Err(SessionError::UnknownKind(other)),
    };
    if rest.len() < HEADER_LEN + super::aead::TAG_LEN {
        return Err(SessionError::Malformed);
    }
    let (header, ciphertext) = rest.split_at(HEADER_LEN);
    Ok(Body { prekey, header, ciphertext })
}

/// Read the prekey fields of a body without any key, so the host can find the
/// invite (and its [`OneTimePrekey`]) and compare the claimed guest identity with the
/// relay-authenticated sender before calling [`Session::respond`].
/// `Ok(None)` for a well-formed normal (kind 0x02) body.
pub fn peek_prekey(body: &[u8]) -> Result<Option<PrekeyFields>, SessionError> {
    Ok(split_body(body)?.prekey)
}

/// Which side of the invite we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepted the invite; sends the first message (Alice).
    Guest,
    /// Created the invite (Bob).
    Host,
}

/// An end-to-end session with one peer. Serialises (serde) with a `version` field so
/// the client can persist it; the state holds secrets, so store it like a key file.
#[derive(Serialize, Deserialize)]
pub struct Session {
    #[serde(deserialize_with = "state_version")]
    version: u32,
    role: Role,
    local: IdentityPublicKey,
    peer: IdentityPublicKey,
    prekey: PrekeyFields,
    /// Guest: whether a host message has decrypted yet (then bodies become kind 0x02).
    confirmed: bool,
    ratchet: Ratchet,
}

fn state_version<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == SESSION_STATE_VERSION {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format_args!("unsupported session state version {v}")))
    }
}

impl Session {
    /// Guest side, from a parsed and fresh invite: draws ek (32 bytes) then the first
    /// ratchet key (32 bytes) from `rng`; X3DH + RatchetInitAlice.
    pub fn initiate(
        guest: &IdentityKeyPair,
        invite: &Invite,
        rng: &mut dyn CryptoRng,
    ) -> Result<Session, SessionError> {
        let ek = DhKeyPair::generate(rng)?;
        let host = invite.host();
        let opk_pub = invite.opk_pub();
        let sk = x3dh::guest_agree(guest, &ek, &host, &opk_pub)?;
        let ad = x3dh::associated_data(&guest.public(), &host);
        let ratchet = Ratchet::init_alice(sk, ad, opk_pub, rng)?;
        Ok(Session {
            version: SESSION_STATE_VERSION,
            role: Role::Guest,
            local: guest.public(),
            peer: host,
            prekey: PrekeyFields {
                invite_id: invite.id(),
                guest: guest.public(),
                ek_pub: ek.public(),
            },
            confirmed: false,
            ratchet,
        })
    }

    /// Host side, on the first prekey body from a guest: X3DH + RatchetInitBob, then
    /// decrypt it (which draws the host's next ratchet key from `rng`).
    pub fn respond(
        host: &IdentityKeyPair,
        opk: &OneTimePrekey,
        body: &[u8],
        rng: &mut dyn CryptoRng,
    ) -> Result<(Session, Vec<u8>), SessionError> {
        let parts = split_body(body)?;
        let prekey = parts.prekey.ok_or(SessionError::NotPrekey)?;
        if prekey.invite_id != opk.invite_id() {
            return Err(SessionError::PrekeyMismatch);
        }
        let sk = x3dh::host_agree(host, opk.keypair(), &prekey.guest, &prekey.ek_pub)?;
        let ad = x3dh::associated_data(&prekey.guest, &host.public());
        let mut ratchet = Ratchet::init_bob(sk, ad, opk.keypair().clone());
        let plaintext = ratchet.decrypt(parts.header, parts.ciphertext, rng)?;
        let session = Session {
            version: SESSION_STATE_VERSION,
            role: Role::Host,
            local: host.public(),
            peer: prekey.guest,
            prekey,
            confirmed: true,
            ratchet,
        };
        Ok((session, plaintext))
    }

    /// Encrypt `plaintext` into a complete body. The guest sends kind 0x01 until a host
    /// message has decrypted, then 0x02. `rng` is unused by the ratchet (nonces come
    /// from the message key) and kept so callers need not change if that ever differs.
    pub fn encrypt(
        &mut self,
        plaintext: &[u8],
        _rng: &mut dyn CryptoRng,
    ) -> Result<Vec<u8>, SessionError> {
        let (header, ct) = self.ratchet.encrypt(plaintext)?;
        let prekey = (self.role == Role::Guest && !self.confirmed).then_some(self.prekey);
        let mut body = Vec::with_capacity(2 + PREKEY_FIELDS_LEN + HEADER_LEN + ct.len());
        body.push(BODY_VERSION);
        match prekey {
            Some(fields) => {
                body.push(KIND_PREKEY);
                body.extend_from_slice(&fields.to_bytes());
            }
            None => body.push(KIND_NORMAL),
        }
        body.extend_from_slice(&header);
        body.extend_from_slice(&ct);
        Ok(body)
    }

    /// Decrypt a body (kind 0x01 with this session's prekey fields, or 0x02). Commits
    /// state only on success: a replay, tamper or gap above `MAX_SKIP` is an error
    /// and leaves the session exactly as it was.
    pub fn decrypt(
        &mut self,
        body: &[u8],
        rng: &mut dyn CryptoRng,
    ) -> Result<Vec<u8>, SessionError> {
        let parts = split_body(body)?;
        if let Some(fields) = parts.prekey {
            if self.role == Role::Guest {
                return Err(SessionError::UnexpectedPrekey);
            }
            if fields != self.prekey {
                return Err(SessionError::PrekeyMismatch);
            }
        }
        let plaintext = self.ratchet.decrypt(parts.header, parts.ciphertext, rng)?;
        self.confirmed = true;
        Ok(plaintext)
    }

    /// The other side's Ed25519 identity.
    pub fn peer(&self) -> IdentityPublicKey {
        self.peer
    }
    /// Our own Ed25519 identity in this session.
    pub fn local(&self) -> IdentityPublicKey {
        self.local
    }
    /// The invite this session came from.
    pub fn invite_id(&self) -> InviteId {
        self.prekey.invite_id
    }
    /// Guest or host.
    pub fn role(&self) -> Role {
        self.role
    }
    /// Stored skipped message keys (for diagnostics).
    pub fn skipped_keys(&self) -> usize {
        self.ratchet.skipped_len()
    }

    #[cfg(test)]
    pub(crate) fn ratchet(&self) -> &Ratchet {
        &self.ratchet
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ns, nr, pn) = self.ratchet.counters();
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("confirmed", &self.confirmed)
            .field("ratchet_pub", &hex::encode(self.ratchet.ratchet_public()))
            .field("peer_ratchet_pub", &self.ratchet.peer_ratchet_public().map(hex::encode))
            .field("ns", &ns)
            .field("nr", &nr)
            .field("pn", &pn)
            .field("skipped", &self.ratchet.skipped_len())
            .finish_non_exhaustive()
    }
}
