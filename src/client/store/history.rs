//! The conversation history (both directions, text messages only) and the
//! per-peer expiry behind disappearing messages. Rows are written inside the
//! caller's seal/receive transaction; see [`crate::client::history`] for the
//! query API.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::CachedSql;
use super::{StoreError, get_u64, to_i64, to_u64};
use crate::crypto::IdentityPublicKey;
use crate::protocol::{DeliveryStatus, EnvelopeId};

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the peer to us.
    In,
    /// From us to the peer.
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// What is known about a message's delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Out: sealed and in the outbox; the relay has not confirmed it yet.
    Queued,
    /// Out: the relay holds it for the peer (the peer was offline).
    Stored,
    /// Out: the peer has it (the relay said `delivered`, or the peer answered it).
    Delivered,
    /// Out: the relay refused it for good.
    Failed,
    /// In: decrypted and stored here.
    Received,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Stored => "stored",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Received => "received",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => DeliveryState::Queued,
            "stored" => DeliveryState::Stored,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            "received" => DeliveryState::Received,
            _ => return None,
        })
    }
}

/// One message of the history, as the CLI (`history --json`) and the local API
/// return it. Keys and ids are base64url strings, times unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Local order (increases with every stored message; stable across queries).
    pub seq: i64,
    /// The other side's identity key (b64u).
    pub peer: String,
    /// The other side's local label, if it has one (and is still paired).
    pub label: Option<String>,
    /// `in` (from the peer) or `out` (from us).
    pub direction: Direction,
    /// Envelope id (b64u), the sender's.
    pub id: String,
    /// The envelope this message answers (b64u).
    pub reply_to: Option<String>,
    /// The message text.
    pub text: String,
    /// Unix ms: when it was sealed (out) or decrypted and stored (in).
    pub at: u64,
    /// When the relay accepted it (unix ms): their message (in), or ours (out;
    /// null while it waits in the outbox). The same field as a `message`
    /// event's `sent_at`.
    pub sent_at: Option<u64>,
    /// Delivery state.
    pub state: DeliveryState,
}

/// A message to record.
#[derive(Debug, Clone)]
pub struct NewHistory<'a> {
    /// The other side.
    pub peer: &'a IdentityPublicKey,
    /// Which way.
    pub direction: Direction,
    /// Envelope id.
    pub id: &'a EnvelopeId,
    /// Text.
    pub text: &'a str,
    /// The envelope it answers.
    pub reply_to: Option<EnvelopeId>,
    /// Unix ms.
    pub at: u64,
    /// Relay accept time (in only).
    pub relay_ts: Option<u64>,
}

/// Record a message (inside the seal/receive transaction). An incoming answer
/// (`reply_to` naming one of ours) also proves our message was delivered.
pub fn insert_history(conn: &Connection, m: &NewHistory<'_>) -> Result<(), StoreError> {
    let state = match m.direction {
        Direction::In => DeliveryState::Received,
        Direction::Out => DeliveryState::Queued,
    };
    let pk = m.peer.to_b64u();
    conn.execute_cached(
        "INSERT INTO history (peer, direction, id, text, reply_to, at, relay_ts, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            pk,
            m.direction.as_str(),
            m.id.to_b64u(),
            m.text,
            m.reply_to.map(|r| r.to_b64u()),
            to_i64(m.at),
            m.relay_ts.map(to_i64),
            state.as_str()
        ],
    )?;
    if let (Direction::In, Some(r)) = (m.direction, m.reply_to) {
        conn.execute_cached(
            "UPDATE history SET state = 'delivered'
             WHERE peer = ?1 AND direction = 'out' AND id = ?2 AND state IN ('queued', 'stored')",
            params![pk, r.to_b64u()],
        )?;
    }
    Ok(())
}

/// The relay took one of our envelopes. `queued` moves to the relay's status;
/// `stored` may still become `delivered`; nothing moves back.
pub fn history_sent(
    conn: &Connection,
    id: &EnvelopeId,
    status: DeliveryStatus,
    now_ms: u64,
) -> Result<(), StoreError> {
    let to = match status {
        DeliveryStatus::Delivered => DeliveryState::Delivered,
        DeliveryStatus::Stored => DeliveryState::Stored,
    };
    conn.execute_cached(
        "UPDATE history SET sent_at = coalesce(sent_at, ?2),
            state = CASE WHEN state = 'queued' OR (state = 'stored' AND ?3 = 'delivered')
                         THEN ?3 ELSE state END
         WHERE direction = 'out' AND id = ?1",
        params![id.to_b64u(), to_i64(now_ms), to.as_str()],
    )?;
    Ok(())
}

/// The relay refused one of our envelopes for good.
pub fn history_failed(conn: &Connection, id: &EnvelopeId) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE history SET state = 'failed' WHERE direction = 'out' AND id = ?1 AND state = 'queued'",
        [id.to_b64u()],
    )?;
    Ok(())
}

/// The latest `limit` messages (all with `None`), optionally of one peer and at
/// or after `since_ms`, returned oldest first.
pub fn query_history(
    conn: &Connection,
    peer: Option<&IdentityPublicKey>,
    since_ms: Option<u64>,
    limit: Option<u32>,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM (
            SELECT h.seq, h.peer, p.label, h.direction, h.id, h.reply_to, h.text, h.at,
                   h.relay_ts, h.sent_at, h.state
            FROM history h LEFT JOIN peers p ON p.pk = h.peer
            WHERE (?1 IS NULL OR h.peer = ?1) AND (?2 IS NULL OR h.at >= ?2)
            ORDER BY h.seq DESC LIMIT ?3
         ) ORDER BY seq",
    )?;
    let limit = limit.map_or(-1, i64::from);
    let rows = stmt.query_map(
        params![peer.map(IdentityPublicKey::to_b64u), since_ms.map(to_i64), limit],
        |r| {
            Ok((
                HistoryEntry {
                    seq: r.get(0)?,
                    peer: r.get(1)?,
                    label: r.get(2)?,
                    direction: Direction::In,
                    id: r.get(4)?,
                    reply_to: r.get(5)?,
                    text: r.get(6)?,
                    at: get_u64(r, 7)?,
                    // relay_ts (in) and sent_at (out) are the same moment, per direction.
                    sent_at: r
                        .get::<_, Option<i64>>(8)?
                        .or(r.get::<_, Option<i64>>(9)?)
                        .map(to_u64),
                    state: DeliveryState::Received,
                },
                r.get::<_, String>(3)?,
                r.get::<_, String>(10)?,
            ))
        },
    )?;
    let bad = || StoreError::BadRecord("history");
    rows.map(|r| {
        let (mut e, direction, state) = r?;
        e.direction = match direction.as_str() {
            "in" => Direction::In,
            "out" => Direction::Out,
            _ => return Err(bad()),
        };
        e.state = DeliveryState::parse(&state).ok_or_else(bad)?;
        Ok(e)
    })
    .collect()
}

/// A peer's disappearing-message time in seconds (`None`: keep).
pub fn peer_expiry(conn: &Connection, pk: &IdentityPublicKey) -> Result<Option<u64>, StoreError> {
    Ok(conn
        .query_row_cached("SELECT expire_secs FROM peers WHERE pk = ?1", [pk.to_b64u()], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .map(to_u64))
}

/// Set or clear a peer's disappearing-message time. False if no such peer.
pub fn set_peer_expiry(
    conn: &Connection,
    pk: &IdentityPublicKey,
    secs: Option<u64>,
) -> Result<bool, StoreError> {
    Ok(conn.execute_cached(
        "UPDATE peers SET expire_secs = ?2 WHERE pk = ?1",
        params![pk.to_b64u(), secs.map(to_i64)],
    )? > 0)
}

/// Every peer with disappearing messages on: (b64u key, seconds).
pub fn peer_expiries(conn: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT pk, expire_secs FROM peers WHERE expire_secs IS NOT NULL")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, get_u64(r, 1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Rows deleted by one sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// History rows.
    pub history: u64,
    /// Consumed inbox rows.
    pub inbox: u64,
    /// Finished (sent or failed) outbox rows.
    pub outbox: u64,
}

/// Delete what a peer's expiry says is past its time: history, consumed
/// (`done`) inbox rows, and outbox rows the relay already has (a `pending` one
/// still has to go out). `cut_ms` is now minus the peer's expiry.
pub fn delete_peer_expired(conn: &Connection, pk: &str, cut_ms: u64) -> Result<Swept, StoreError> {
    let history = conn.execute_cached(
        "DELETE FROM history WHERE peer = ?1 AND at <= ?2",
        params![pk, to_i64(cut_ms)],
    )?;
    let inbox = conn.execute_cached(
        "DELETE FROM inbox WHERE peer = ?1 AND state = 'done' AND received_at <= ?2",
        params![pk, to_i64(cut_ms)],
    )?;
    // Outbox times are unix seconds.
    let outbox = conn.execute_cached(
        "DELETE FROM outbox WHERE peer = ?1 AND status <> 'pending' AND created_at <= ?2",
        params![pk, to_i64(cut_ms / 1000)],
    )?;
    Ok(Swept { history: count(history), inbox: count(inbox), outbox: count(outbox) })
}

/// Retention: delete history and consumed inbox rows stored at or before `cut_ms`.
pub fn delete_older_than(conn: &Connection, cut_ms: u64) -> Result<Swept, StoreError> {
    let history = conn.execute_cached("DELETE FROM history WHERE at <= ?1", [to_i64(cut_ms)])?;
    let inbox = conn.execute_cached(
        "DELETE FROM inbox WHERE state = 'done' AND received_at <= ?1",
        [to_i64(cut_ms)],
    )?;
    Ok(Swept { history: count(history), inbox: count(inbox), outbox: 0 })
}

/// Whether [`delete_older_than`] would delete anything (a read, so an idle
/// process does not take the write lock every sweep).
pub fn any_older_than(conn: &Connection, cut_ms: u64) -> Result<bool, StoreError> {
    Ok(conn.query_row_cached(
        "SELECT EXISTS (SELECT 1 FROM history WHERE at <= ?1)
             OR EXISTS (SELECT 1 FROM inbox WHERE state = 'done' AND received_at <= ?1)",
        [to_i64(cut_ms)],
        |r| r.get(0),
    )?)
}

/// Delete a peer's whole history (the peer is being forgotten).
pub fn delete_peer_history(conn: &Connection, pk: &IdentityPublicKey) -> Result<(), StoreError> {
    conn.execute_cached("DELETE FROM history WHERE peer = ?1", [pk.to_b64u()])?;
    Ok(())
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
