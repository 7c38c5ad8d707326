//! Sealing: one payload becomes one outbox row (and, for text, one history
//! row), with the session advanced in the same transaction (the caller's), so
//! a crash can never send a message under a ratchet state the database does
//! not have.

use rusqlite::Connection;

use super::payload::Payload;
use super::store::{self, OutboxRow, PeerRow};
use super::{ClientError, now_secs};
use crate::crypto::{Session, SystemRng};
use crate::protocol::EnvelopeId;

/// Seal `payload` for `peer` inside the caller's transaction: advance the
/// session, store it, and queue the envelope.
pub fn seal_in(
    tx: &Connection,
    peer: &PeerRow,
    payload: &Payload,
    claim: Option<[u8; 16]>,
) -> Result<OutboxRow, ClientError> {
    let bytes = store::load_session(tx, &peer.pk)?
        .map(zeroize::Zeroizing::new)
        .ok_or_else(|| ClientError::UnknownPeer(peer.pk.to_b64u()))?;
    let mut session: Session =
        serde_json::from_slice(&bytes).map_err(|_| store::StoreError::BadRecord("session"))?;
    let plaintext = payload.to_bytes();
    if plaintext.len() > super::payload::MAX_PAYLOAD_BYTES {
        return Err(ClientError::TooLarge(plaintext.len()));
    }
    let body = session.encrypt(&plaintext, &mut SystemRng)?;
    store::save_session(tx, &peer.pk, &session_bytes(&session))?;
    let mut id = [0u8; 16];
    crate::crypto::CryptoRng::fill(&mut SystemRng, &mut id);
    let reply_to = match payload {
        Payload::Text { reply_to, .. } => *reply_to,
        _ => None,
    };
    let row = OutboxRow {
        id: EnvelopeId(id),
        peer: peer.pk,
        relay_url: peer.relay_url.clone(),
        body,
        claim,
    };
    store::insert_outbox(tx, &row, reply_to.as_ref(), now_secs())?;
    if let Payload::Text { text, reply_to } = payload {
        let m = store::NewHistory {
            peer: &peer.pk,
            direction: store::Direction::Out,
            id: &row.id,
            text,
            reply_to: *reply_to,
            at: super::now_ms(),
            relay_ts: None,
        };
        store::insert_history(tx, &m)?;
    }
    Ok(row)
}

/// Serialise a session for the database.
/// The bytes hold ratchet secrets: wiped when dropped.
pub fn session_bytes(session: &Session) -> zeroize::Zeroizing<Vec<u8>> {
    // An empty blob here would overwrite the ratchet state in the database.
    zeroize::Zeroizing::new(
        serde_json::to_vec(session).expect("a session is keys, counters and maps with string keys"),
    )
}
