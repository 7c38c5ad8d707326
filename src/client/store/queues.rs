//! Inbox (decrypted messages, deduplicated by `(peer, id)`), outbox (sealed
//! envelopes until the relay has them) and resume tokens.

use rusqlite::{Connection, OptionalExtension, params};

use super::CachedSql;
use super::{StoreError, get_u64, to_i64, to_u64};
use crate::crypto::IdentityPublicKey;
use crate::protocol::EnvelopeId;

/// Where an inbox message stands (column `inbox.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxState {
    /// Not yet shown or handled: `listen`, `serve` and `next_message` take it.
    New,
    /// Consumed (shown, handled, acked), or a control message stored as such.
    Done,
}

impl InboxState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxState::New => "new",
            InboxState::Done => "done",
        }
    }
}

impl rusqlite::types::FromSql for InboxState {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match v.as_str()? {
            "new" => Ok(InboxState::New),
            "done" => Ok(InboxState::Done),
            _ => Err(rusqlite::types::FromSqlError::InvalidType),
        }
    }
}

/// A decrypted message.
#[derive(Debug, Clone)]
pub struct InboxRow {
    /// Local order.
    pub seq: i64,
    /// Sender.
    pub peer: IdentityPublicKey,
    /// Sender's envelope id.
    pub id: EnvelopeId,
    /// Payload kind (`text`, `hello`, ...).
    pub kind: String,
    /// Text (empty for non-text kinds).
    pub text: String,
    /// The envelope this answers.
    pub reply_to: Option<EnvelopeId>,
    /// Relay accept time, unix ms.
    pub relay_ts: u64,
    /// New or done.
    pub state: InboxState,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewInbox<'a> {
    /// Sender.
    pub peer: &'a IdentityPublicKey,
    /// Envelope id.
    pub id: &'a EnvelopeId,
    /// Payload kind.
    pub kind: &'a str,
    /// Text.
    pub text: &'a str,
    /// Reply-to id.
    pub reply_to: Option<EnvelopeId>,
    /// Relay ts (ms).
    pub relay_ts: u64,
    /// Initial state: new for messages a consumer must see, done otherwise.
    pub state: InboxState,
}

/// Whether `(peer, id)` was already received (dedupe across redeliveries).
pub fn inbox_seen(
    conn: &Connection,
    peer: &IdentityPublicKey,
    id: &EnvelopeId,
) -> Result<Option<InboxRow>, StoreError> {
    let sql = format!("{INBOX_SELECT} WHERE peer = ?1 AND id = ?2");
    conn.query_row_cached(&sql, [peer.to_b64u(), id.to_b64u()], inbox_from_row)
        .optional()?
        .transpose()
}

const INBOX_SELECT: &str = "SELECT seq, peer, id, kind, text, reply_to, relay_ts, state FROM inbox";

#[allow(clippy::type_complexity)]
fn inbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<InboxRow, StoreError>> {
    let peer: String = r.get(1)?;
    let id: String = r.get(2)?;
    let reply_to: Option<String> = r.get(5)?;
    let bad = || StoreError::BadRecord("inbox");
    let build = || -> Result<InboxRow, StoreError> {
        Ok(InboxRow {
            seq: r.get(0)?,
            peer: IdentityPublicKey::from_b64u(&peer).map_err(|_| bad())?,
            id: EnvelopeId::from_b64u(&id).ok_or_else(bad)?,
            kind: r.get(3)?,
            text: r.get(4)?,
            reply_to: reply_to.as_deref().and_then(EnvelopeId::from_b64u),
            relay_ts: get_u64(r, 6)?,
            state: r.get(7)?,
        })
    };
    Ok(build())
}

/// Store a decrypted message; returns its row.
pub fn insert_inbox(
    conn: &Connection,
    m: &NewInbox<'_>,
    now_ms: u64,
) -> Result<InboxRow, StoreError> {
    conn.execute_cached(
        "INSERT INTO inbox (peer, id, kind, text, reply_to, relay_ts, received_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            m.peer.to_b64u(),
            m.id.to_b64u(),
            m.kind,
            m.text,
            m.reply_to.map(|r| r.to_b64u()),
            to_i64(m.relay_ts),
            to_i64(now_ms),
            m.state.as_str()
        ],
    )?;
    Ok(InboxRow {
        seq: conn.last_insert_rowid(),
        peer: *m.peer,
        id: *m.id,
        kind: m.kind.to_owned(),
        text: m.text.to_owned(),
        reply_to: m.reply_to,
        relay_ts: m.relay_ts,
        state: m.state,
    })
}

/// Messages not yet consumed, in arrival order, optionally from one peer.
pub fn inbox_new(
    conn: &Connection,
    from: Option<&IdentityPublicKey>,
) -> Result<Vec<InboxRow>, StoreError> {
    let sql =
        format!("{INBOX_SELECT} WHERE state = 'new' AND (?1 IS NULL OR peer = ?1) ORDER BY seq");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([from.map(|p| p.to_b64u())], inbox_from_row)?;
    rows.map(|r| r?).collect()
}

/// Mark a message consumed (and no longer worked on). Returns false if someone
/// else already did.
pub fn inbox_done(conn: &Connection, seq: i64) -> Result<bool, StoreError> {
    Ok(conn.execute_cached(
        "UPDATE inbox SET state = 'done', handler_pgid = NULL, handler_start = NULL
         WHERE seq = ?1 AND state = 'new'",
        [seq],
    )? > 0)
}

/// Record the handler process group working on a message (see
/// `process::end_orphaned_group`).
pub fn inbox_set_handler(
    conn: &Connection,
    seq: i64,
    pgid: i32,
    leader_start: Option<u64>,
) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE inbox SET handler_pgid = ?2, handler_start = ?3 WHERE seq = ?1",
        params![seq, pgid, leader_start.map(to_i64)],
    )?;
    Ok(())
}

/// The handler group an earlier run recorded for a message, cleared as it is read.
pub fn inbox_take_handler(
    conn: &Connection,
    seq: i64,
) -> Result<Option<(i32, Option<u64>)>, StoreError> {
    let found: Option<(Option<i32>, Option<i64>)> = conn
        .query_row_cached(
            "SELECT handler_pgid, handler_start FROM inbox WHERE seq = ?1",
            [seq],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((Some(pgid), start)) = found else { return Ok(None) };
    conn.execute_cached(
        "UPDATE inbox SET handler_pgid = NULL, handler_start = NULL WHERE seq = ?1",
        [seq],
    )?;
    Ok(Some((pgid, start.map(to_u64))))
}

/// A sealed envelope waiting for the relay.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Envelope id.
    pub id: EnvelopeId,
    /// Recipient.
    pub peer: IdentityPublicKey,
    /// Relay to send through.
    pub relay_url: String,
    /// Sealed body.
    pub body: Vec<u8>,
    /// Invite claim, first contact only.
    pub claim: Option<[u8; 16]>,
}

/// Queue an envelope (before the first attempt to send it).
pub fn insert_outbox(
    conn: &Connection,
    row: &OutboxRow,
    reply_to: Option<&EnvelopeId>,
    now: u64,
) -> Result<(), StoreError> {
    conn.execute_cached(
        "INSERT INTO outbox (id, peer, relay_url, body, claim, reply_to, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
        params![
            row.id.to_b64u(),
            row.peer.to_b64u(),
            row.relay_url,
            row.body,
            row.claim.map(|c| crate::protocol::b64::encode(&c)),
            reply_to.map(|r| r.to_b64u()),
            to_i64(now)
        ],
    )?;
    Ok(())
}

/// Pending envelopes for one relay, oldest first.
pub fn outbox_pending(conn: &Connection, relay_url: &str) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, peer, relay_url, body, claim FROM outbox
         WHERE status = 'pending' AND relay_url = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([relay_url], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let bad = || StoreError::BadRecord("outbox");
    rows.map(|r| {
        let (id, peer, relay_url, body, claim) = r?;
        Ok(OutboxRow {
            id: EnvelopeId::from_b64u(&id).ok_or_else(bad)?,
            peer: IdentityPublicKey::from_b64u(&peer).map_err(|_| bad())?,
            relay_url,
            body,
            claim: match claim {
                Some(c) => Some(crate::protocol::b64::decode_array::<16>(&c).ok_or_else(bad)?),
                None => None,
            },
        })
    })
    .collect()
}

/// Number of pending envelopes (all relays).
pub fn outbox_pending_count(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn
        .query_row_cached("SELECT count(*) FROM outbox WHERE status = 'pending'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(to_u64)?)
}

/// The relay has the envelope: its ciphertext is no longer needed (the relay
/// stores or delivers it from here on), so it is dropped with the status change
/// and the outbox stays small however long the home runs.
pub fn outbox_sent(conn: &Connection, id: &EnvelopeId, now: u64) -> Result<bool, StoreError> {
    Ok(conn.execute_cached(
        "UPDATE outbox SET status = 'sent', sent_at = ?2, body = X'' WHERE id = ?1 AND status = 'pending'",
        params![id.to_b64u(), to_i64(now)],
    )? > 0)
}

/// The peer reported (signed notice) that it could not decrypt envelope `id`:
/// mark it failed, whether or not the relay had acked it. Returns whether it
/// was one of ours, addressed to `peer`.
pub fn outbox_undecryptable(
    conn: &Connection,
    id: &EnvelopeId,
    peer: &IdentityPublicKey,
) -> Result<bool, StoreError> {
    Ok(conn.execute_cached(
        "UPDATE outbox SET status = 'failed', error = 'undecryptable', body = X''
         WHERE id = ?1 AND peer = ?2",
        params![id.to_b64u(), peer.to_b64u()],
    )? > 0)
}

/// The relay refused the envelope for good.
pub fn outbox_failed(conn: &Connection, id: &EnvelopeId, error: &str) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE outbox SET status = 'failed', error = ?2 WHERE id = ?1 AND status = 'pending'",
        params![id.to_b64u(), error],
    )?;
    Ok(())
}

/// Status of one envelope (`pending`, `sent`, `failed`) and its error.
pub fn outbox_status(
    conn: &Connection,
    id: &EnvelopeId,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    Ok(conn
        .query_row_cached("SELECT status, error FROM outbox WHERE id = ?1", [id.to_b64u()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

/// The stored resume token for a relay, if unexpired.
pub fn get_token(
    conn: &Connection,
    relay_url: &str,
    now: u64,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row_cached(
            "SELECT token FROM relay_tokens WHERE relay_url = ?1 AND expires_at > ?2",
            params![relay_url, to_i64(now.saturating_add(30))],
            |r| r.get(0),
        )
        .optional()?)
}

/// Keep a resume token.
pub fn put_token(
    conn: &Connection,
    relay_url: &str,
    token: &str,
    expires_at: u64,
) -> Result<(), StoreError> {
    conn.execute_cached(
        "INSERT INTO relay_tokens (relay_url, token, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (relay_url) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at",
        params![relay_url, token, to_i64(expires_at)],
    )?;
    Ok(())
}

/// Drop a resume token the relay refused.
pub fn clear_token(conn: &Connection, relay_url: &str) -> Result<(), StoreError> {
    conn.execute_cached("DELETE FROM relay_tokens WHERE relay_url = ?1", [relay_url])?;
    Ok(())
}
