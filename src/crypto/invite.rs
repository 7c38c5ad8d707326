//! Signed single-use invites (crypto-v1 "Invite") and their string form.
//!
//! String form (PROTOCOL.md §2.4): `ar1.` || base64url-unpadded(version 0x01 ||
//! invite_id 16 || host_ik_ed 32 || opk_pub 32 || u64be(expires_at) ||
//! u16be(len(relay_url)) || relay_url || signature 64). Only `[A-Za-z0-9._-]`, so it
//! needs no quoting in a shell and no escaping in a URL; it is also accepted after a
//! `#` (`https://relay.example/#ar1.…`), where browsers and servers never send or log it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::dh::DhKeyPair;
use super::keys::{CryptoRng, IdentityKeyPair, IdentityPublicKey, KeyError, Signature};

/// Domain label that starts the signed bytes, so an invite signature can never be
/// mistaken for a login or any other signature made by the same identity.
pub const INVITE_LABEL: &[u8] = b"agentroom/invite/v1";
/// Version byte inside the binary invite and digit in the `ar1.` prefix.
pub const INVITE_VERSION: u8 = 1;
/// Prefix of the string form.
pub const INVITE_PREFIX: &str = "ar1.";
/// Largest relay URL accepted (bytes): generous for any real URL, and keeps the
/// whole invite well under the 4 KiB a shell argument or a chat line comfortably holds.
pub const MAX_RELAY_URL_LEN: usize = 2048;
/// Largest `expires_at`: 2^53 - 1, exact in JSON numbers (crypto-v1).
pub const MAX_EXPIRES_AT: u64 = (1 << 53) - 1;
/// Fixed part of the binary form: version + id + host + opk + expiry + url length.
const FIXED_LEN: usize = 1 + 16 + 32 + 32 + 8 + 2;
/// Longest string `parse` looks at; anything longer is malformed before decoding. The
/// largest token is `ar1.` + 2948 characters; the rest leaves room for a link prefix.
pub const MAX_INVITE_STRING_LEN: usize = 4096;
const _: () =
    assert!(4 + (FIXED_LEN + MAX_RELAY_URL_LEN + 64).div_ceil(3) * 4 < MAX_INVITE_STRING_LEN);

/// Errors from creating or reading an invite. Each is distinct so the CLI can say
/// exactly what is wrong with a pasted invite.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InviteError {
    /// Not an invite string: wrong prefix, bad base64url, wrong lengths, non-UTF-8 URL.
    #[error("malformed invite")]
    Malformed,
    /// An invite of a version this build does not speak.
    #[error("unknown invite version {0}")]
    UnknownVersion(u8),
    /// The host's signature does not verify: altered or forged.
    #[error("invite signature does not verify")]
    BadSignature,
    /// `now >= expires_at`.
    #[error("invite expired")]
    Expired,
    /// The relay URL is empty or longer than [`MAX_RELAY_URL_LEN`] bytes.
    #[error("relay url must be 1..={MAX_RELAY_URL_LEN} bytes")]
    RelayUrl,
    /// `expires_at` above 2^53 - 1.
    #[error("expires_at out of range")]
    ExpiresAt,
    /// Key generation failed in libsodium.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A 16-byte invite id: the claim secret the guest shows the relay once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InviteId(#[serde(with = "super::serde_hex")] pub [u8; 16]);

impl InviteId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    /// Unpadded base64url (the relay `claim` field).
    pub fn to_b64u(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
    /// SHA-256 of the id: what the host publishes to the relay (`invite_publish`), so
    /// the relay can recognise the claim without ever holding the id before it.
    pub fn relay_hash(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.0).into()
    }
    /// Parse unpadded base64url of exactly 16 bytes.
    pub fn from_b64u(s: &str) -> Result<Self, KeyError> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| KeyError::Encoding)?;
        let arr: [u8; 16] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length { expected: 16, got: bytes.len() })?;
        Ok(Self(arr))
    }
}

impl fmt::Debug for InviteId {
    /// Redacted: the id is what claims the invite at the relay.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteId(…)")
    }
}

/// The host's secret half of an invite's one-time prekey, kept until the invite is
/// claimed, then consumed by [`crate::crypto::Session::respond`].
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct OneTimePrekey {
    #[zeroize(skip)]
    invite_id: InviteId,
    key: DhKeyPair,
}

impl OneTimePrekey {
    /// The X25519 public half published in the invite.
    pub fn public(&self) -> [u8; 32] {
        self.key.public()
    }
    /// The invite this prekey belongs to.
    pub fn invite_id(&self) -> InviteId {
        self.invite_id
    }
    pub(crate) fn keypair(&self) -> &DhKeyPair {
        &self.key
    }
    /// From raw parts (vectors, tests).
    #[cfg(test)]
    pub(crate) fn from_parts(invite_id: InviteId, secret: [u8; 32]) -> Result<Self, KeyError> {
        Ok(Self { invite_id, key: DhKeyPair::from_secret(secret)? })
    }
}

impl fmt::Debug for OneTimePrekey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimePrekey")
            .field("public", &hex::encode(self.key.public()))
            .finish_non_exhaustive()
    }
}

/// A signed invite (created here, or parsed and signature-checked).
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    id: InviteId,
    host: IdentityPublicKey,
    opk_pub: [u8; 32],
    expires_at: u64,
    relay_url: String,
    signature: Signature,
}

/// The u16 length prefix of a relay URL. `create` and `parse` refuse URLs longer
/// than [`MAX_RELAY_URL_LEN`], so every `Invite` fits.
fn url_len(url: &[u8]) -> u16 {
    u16::try_from(url.len()).expect("invite URLs are at most MAX_RELAY_URL_LEN (2048) bytes")
}

/// crypto-v1 signed_bytes: label || id || host || opk || u64be(exp) || u16be(len) || url.
pub(crate) fn signed_bytes(
    id: &InviteId,
    host: &IdentityPublicKey,
    opk_pub: &[u8; 32],
    expires_at: u64,
    relay_url: &str,
) -> Vec<u8> {
    let url = relay_url.as_bytes();
    let mut out = Vec::with_capacity(INVITE_LABEL.len() + FIXED_LEN - 1 + url.len());
    out.extend_from_slice(INVITE_LABEL);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(opk_pub);
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(&url_len(url).to_be_bytes());
    out.extend_from_slice(url);
    out
}

impl Invite {
    /// Create an invite: draws the 16-byte id, then the 32-byte one-time prekey, from
    /// `rng` (in that order), and signs. `expires_at` is unix seconds.
    pub fn create(
        host: &IdentityKeyPair,
        relay_url: &str,
        expires_at: u64,
        rng: &mut dyn CryptoRng,
    ) -> Result<(Invite, OneTimePrekey), InviteError> {
        if relay_url.is_empty() || relay_url.len() > MAX_RELAY_URL_LEN {
            return Err(InviteError::RelayUrl);
        }
        if expires_at > MAX_EXPIRES_AT {
            return Err(InviteError::ExpiresAt);
        }
        let mut id = InviteId([0; 16]);
        rng.fill(&mut id.0);
        let key = DhKeyPair::generate(rng)?;
        let opk_pub = key.public();
        let host_pub = host.public();
        let signature = host.sign(&signed_bytes(&id, &host_pub, &opk_pub, expires_at, relay_url));
        let invite = Invite {
            id,
            host: host_pub,
            opk_pub,
            expires_at,
            relay_url: relay_url.to_owned(),
            signature,
        };
        Ok((invite, OneTimePrekey { invite_id: id, key }))
    }

    /// The bytes the host signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(&self.id, &self.host, &self.opk_pub, self.expires_at, &self.relay_url)
    }

    /// The string form: `ar1.<base64url>` (see the module doc).
    pub fn encode(&self) -> String {
        let url = self.relay_url.as_bytes();
        let mut bin = Vec::with_capacity(FIXED_LEN + url.len() + 64);
        bin.push(INVITE_VERSION);
        bin.extend_from_slice(&self.id.0);
        bin.extend_from_slice(self.host.as_bytes());
        bin.extend_from_slice(&self.opk_pub);
        bin.extend_from_slice(&self.expires_at.to_be_bytes());
        bin.extend_from_slice(&url_len(url).to_be_bytes());
        bin.extend_from_slice(url);
        bin.extend_from_slice(self.signature.as_bytes());
        format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bin))
    }

    /// Parse the string form (bare, or after a `#` in a URL; surrounding whitespace is
    /// ignored) and verify the signature. Freshness is a separate step,
    /// [`Invite::check_fresh`], because it needs the clock.
    pub fn parse(s: &str) -> Result<Invite, InviteError> {
        let s = s.trim();
        if s.len() > MAX_INVITE_STRING_LEN {
            return Err(InviteError::Malformed);
        }
        // A link: take what follows the last '#'.
        let token = s.rsplit_once('#').map_or(s, |(_, frag)| frag);
        let rest = parse_prefix(token)?;
        let bin = URL_SAFE_NO_PAD.decode(rest).map_err(|_| InviteError::Malformed)?;
        let (&version, bin) = bin.split_first().ok_or(InviteError::Malformed)?;
        if version != INVITE_VERSION {
            return Err(InviteError::UnknownVersion(version));
        }
        let mut r = Reader(bin);
        let id = InviteId(r.array()?);
        let host =
            IdentityPublicKey::from_bytes(&r.array::<32>()?).map_err(|_| InviteError::Malformed)?;
        let opk_pub: [u8; 32] = r.array()?;
        let expires_at = u64::from_be_bytes(r.array()?);
        let url_len = usize::from(u16::from_be_bytes(r.array()?));
        let url = r.take(url_len)?;
        let signature =
            Signature::from_bytes(&r.array::<64>()?).map_err(|_| InviteError::Malformed)?;
        if !r.0.is_empty() || url_len == 0 || url_len > MAX_RELAY_URL_LEN {
            return Err(InviteError::Malformed);
        }
        if expires_at > MAX_EXPIRES_AT {
            return Err(InviteError::Malformed);
        }
        let relay_url = std::str::from_utf8(url).map_err(|_| InviteError::Malformed)?.to_owned();
        let invite = Invite { id, host, opk_pub, expires_at, relay_url, signature };
        host.verify(&invite.signed_bytes(), &invite.signature)
            .map_err(|_| InviteError::BadSignature)?;
        Ok(invite)
    }

    /// `Err(Expired)` when `now_unix >= expires_at`.
    pub fn check_fresh(&self, now_unix: u64) -> Result<(), InviteError> {
        if now_unix >= self.expires_at { Err(InviteError::Expired) } else { Ok(()) }
    }

    /// The invite id (the relay claim secret).
    pub fn id(&self) -> InviteId {
        self.id
    }
    /// The host's Ed25519 identity.
    pub fn host(&self) -> IdentityPublicKey {
        self.host
    }
    /// Where the host's relay listens.
    pub fn relay_url(&self) -> &str {
        &self.relay_url
    }
    /// Unix seconds after which the invite is refused.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
    /// The one-time prekey's X25519 public half.
    pub fn opk_pub(&self) -> [u8; 32] {
        self.opk_pub
    }
    /// The host's signature.
    pub fn signature(&self) -> Signature {
        self.signature
    }
}

/// `ar<digits>.` → the rest; a prefix with another number is an unknown version.
fn parse_prefix(token: &str) -> Result<&str, InviteError> {
    if let Some(rest) = token.strip_prefix(INVITE_PREFIX) {
        return Ok(rest);
    }
    let after_ar = token.strip_prefix("ar").ok_or(InviteError::Malformed)?;
    let (digits, _) = after_ar.split_once('.').ok_or(InviteError::Malformed)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InviteError::Malformed);
    }
    let n = digits.parse::<u8>().unwrap_or(u8::MAX);
    Err(InviteError::UnknownVersion(n))
}

/// A cursor over the binary invite; running short is `Malformed`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InviteError> {
        if self.0.len() < n {
            return Err(InviteError::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], InviteError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

impl fmt::Debug for Invite {
    /// The id is redacted: whoever holds it can claim the invite.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("id", &self.id)
            .field("host", &self.host)
            .field("relay_url", &self.relay_url)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
