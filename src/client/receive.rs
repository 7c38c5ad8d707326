//! Receiving: one delivery is decrypted and stored in one IMMEDIATE
//! transaction, after checking `(from, id)` was not stored before, so a
//! redelivered envelope is never decrypted or handled twice. A stranger's first
//! message pairs only if it claims one of our open invites.

use rusqlite::Connection;

use super::payload::Payload;
use super::relay_url::RelayUrl;
use super::seal::session_bytes;
use super::store::{self, InboxRow, InboxState, NewInbox, PeerRole, PeerRow, Store};
use super::{ClientError, now_ms, now_secs};
use crate::crypto::{IdentityKeyPair, IdentityPublicKey, OneTimePrekey, Session, SystemRng};
use crate::protocol::EnvelopeId;

/// What became of one delivery.
#[derive(Debug)]
pub enum Received {
    Stored(InboxRow),
    Duplicate(InboxRow),
    Paired(PeerRow),
    Moved(IdentityPublicKey, RelayUrl),
    Dropped(String),
    /// A signed notice from this peer: it could not decrypt our envelope `id`.
    Undecryptable(EnvelopeId),
}

/// Decrypt and store one delivery in a single IMMEDIATE transaction.
pub(super) fn receive(
    store: &mut Store,
    identity: &IdentityKeyPair,
    relay: &RelayUrl,
    id: &EnvelopeId,
    from: &IdentityPublicKey,
    body: &[u8],
    ts: u64,
) -> Result<Received, ClientError> {
    // Not a message but a signed notice about one of ours (never answered by a
    // notice: nothing loops). Only its signature decides; nothing is stored.
    match crate::crypto::notice::read_undecryptable(body, from, &identity.public()) {
        Some(Ok(ours)) => return Ok(Received::Undecryptable(EnvelopeId(ours))),
        Some(Err(e)) => return Ok(Received::Dropped(e.to_string())),
        None => {}
    }
    let tx = store.immediate()?;
    if let Some(row) = store::inbox_seen(&tx, from, id)? {
        return Ok(Received::Duplicate(row));
    }
    let mut paired = None;
    let plaintext = match store::load_session(&tx, from)?.map(zeroize::Zeroizing::new) {
        Some(bytes) => {
            // A damaged session must not crash-loop `serve` on every redelivery.
            let Ok(mut session) = serde_json::from_slice::<Session>(&bytes) else {
                return Ok(Received::Dropped(
                    "the stored session with this peer is corrupt; remove the peer and pair again"
                        .into(),
                ));
            };
            match session.decrypt(body, &mut SystemRng) {
                Ok(pt) => {
                    store::save_session(&tx, from, &session_bytes(&session))?;
                    pt
                }
                // A known peer that removed us and accepted a new invite of ours:
                // its prekey message starts a new session, which replaces the old
                // one once it is verified (our invite, open, naming the sender) and
                // decrypts. Anything else stays undecryptable.
                Err(e) => match first_contact(&tx, identity, relay, from, body)? {
                    Ok((peer, pt)) => {
                        tracing::info!(peer = %from.fmt_short(), "peer paired again through a new invite");
                        paired = Some(peer);
                        pt
                    }
                    Err(_) => return Ok(Received::Dropped(format!("cannot decrypt: {e}"))),
                },
            }
        }
        None => match first_contact(&tx, identity, relay, from, body)? {
            Ok((peer, pt)) => {
                paired = Some(peer);
                pt
            }
            Err(reason) => return Ok(Received::Dropped(reason)),
        },
    };
    let now = now_secs();
    store::touch_peer(&tx, from, now)?;
    let payload =
        Payload::parse(&plaintext).unwrap_or(Payload::Unknown { kind: String::from("invalid") });
    let mut moved = None;
    let (text, state, reply_to) = match &payload {
        Payload::Text { text, reply_to } => (text.as_str(), InboxState::New, *reply_to),
        Payload::RelayMoved { relay: url } => {
            if let Ok(new_relay) = RelayUrl::parse(url) {
                store::set_peer_relay(&tx, from, new_relay.as_str())?;
                moved = Some(new_relay);
            }
            ("", InboxState::Done, None)
        }
        Payload::Hello { .. } | Payload::Unknown { .. } => ("", InboxState::Done, None),
    };
    let m = NewInbox { peer: from, id, kind: payload.kind(), text, reply_to, relay_ts: ts, state };
    let row = store::insert_inbox(&tx, &m, now_ms())?;
    if let Payload::Text { text, reply_to } = &payload {
        let h = store::NewHistory {
            peer: from,
            direction: store::Direction::In,
            id,
            text,
            reply_to: *reply_to,
            at: now_ms(),
            relay_ts: Some(ts),
        };
        store::insert_history(&tx, &h)?;
    }
    tx.commit().map_err(store::StoreError::from)?;
    Ok(match (paired, moved) {
        (Some(peer), _) => Received::Paired(peer),
        (None, Some(r)) => Received::Moved(*from, r),
        (None, None) => Received::Stored(row),
    })
}

/// A prekey message from a stranger (or from a known peer whose session it does
/// not fit: re-pairing): pair only if it claims an open invite of ours, names the
/// authenticated sender as the guest, and decrypts. Nothing is written otherwise.
#[allow(clippy::type_complexity)]
fn first_contact(
    tx: &Connection,
    identity: &IdentityKeyPair,
    relay: &RelayUrl,
    from: &IdentityPublicKey,
    body: &[u8],
) -> Result<Result<(PeerRow, Vec<u8>), String>, ClientError> {
    let fields = match crate::crypto::peek_prekey(body) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(Err("message from an unknown sender".into())),
        Err(e) => return Ok(Err(format!("malformed first message: {e}"))),
    };
    if fields.guest != *from {
        return Ok(Err("prekey message names another identity".into()));
    }
    let invite_id = fields.invite_id.to_b64u();
    let Some((invite, opk_bytes)) = store::open_invite_prekey(tx, &invite_id)? else {
        return Ok(Err("claims an invite that is not open here (used, revoked or unknown)".into()));
    };
    let opk: OneTimePrekey = serde_json::from_slice(&opk_bytes)
        .map_err(|_| store::StoreError::BadRecord("invite prekey"))?;
    let (session, plaintext) = match Session::respond(identity, &opk, body, &mut SystemRng) {
        Ok(r) => r,
        Err(e) => return Ok(Err(format!("first message does not decrypt: {e}"))),
    };
    if session.peer() != *from {
        return Ok(Err("prekey message names another identity".into()));
    }
    let known = store::get_peer(tx, from)?;
    let label = match invite.label {
        Some(l) if !store::label_taken(tx, &l)? => Some(l),
        _ => None,
    };
    let peer = PeerRow {
        pk: *from,
        label,
        role: PeerRole::Guest,
        relay_url: RelayUrl::parse(&invite.relay_url)
            .map_or_else(|_| relay.to_string(), |r| r.to_string()),
        invite_id: invite_id.clone(),
        created_at: now_secs(),
        last_seen: None,
        verified_safety: None,
    };
    match known {
        Some(_) => store::replace_peer(tx, &peer, &session_bytes(&session))?,
        None => store::insert_peer(tx, &peer, &session_bytes(&session))?,
    }
    store::claim_invite(tx, &invite_id, from)?;
    Ok(Ok((peer, plaintext)))
}
