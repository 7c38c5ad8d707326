//! Paired peers and their serialized ratchet sessions.

use rusqlite::{Connection, OptionalExtension, params};

use super::CachedSql;
use super::{StoreError, get_u64, to_i64, to_u64};
use crate::crypto::IdentityPublicKey;

/// Which side of the invite a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer created the invite; we accepted it.
    Host,
    /// We created the invite; the peer accepted it.
    Guest,
}

impl PeerRole {
    fn as_str(self) -> &'static str {
        match self {
            PeerRole::Host => "host",
            PeerRole::Guest => "guest",
        }
    }
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}

/// A paired peer (without its session).
#[derive(Debug, Clone)]
pub struct PeerRow {
    /// Identity.
    pub pk: IdentityPublicKey,
    /// Local name.
    pub label: Option<String>,
    /// Their side of the invite.
    pub role: PeerRole,
    /// Relay we reach them through.
    pub relay_url: String,
    /// Invite that paired us (b64u).
    pub invite_id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of their last message.
    pub last_seen: Option<u64>,
    /// The safety number compared by `agentroom peers verify` (None: never
    /// verified). See [`PeerRow::verified`].
    pub verified_safety: Option<String>,
}

impl PeerRow {
    /// Whether the peer is verified: the safety number marked verified is the
    /// pair's current one (`current`). A new key on either side drops the mark.
    pub fn verified(&self, current: &str) -> bool {
        self.verified_safety.as_deref() == Some(current)
    }

    /// Label if set, else the short key.
    pub fn display_name(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.pk.fmt_short())
    }
}

const PEER_COLS: &str =
    "pk, label, role, relay_url, invite_id, created_at, last_seen, verified_safety";

fn peer_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, PeerRowParts)> {
    Ok((
        r.get(0)?,
        PeerRowParts {
            label: r.get(1)?,
            role: r.get(2)?,
            relay_url: r.get(3)?,
            invite_id: r.get(4)?,
            created_at: get_u64(r, 5)?,
            last_seen: r.get::<_, Option<i64>>(6)?.map(to_u64),
            verified_safety: r.get(7)?,
        },
    ))
}

struct PeerRowParts {
    label: Option<String>,
    role: String,
    relay_url: String,
    invite_id: String,
    created_at: u64,
    last_seen: Option<u64>,
    verified_safety: Option<String>,
}

fn build_peer((pk, p): (String, PeerRowParts)) -> Result<PeerRow, StoreError> {
    let pk = IdentityPublicKey::from_b64u(&pk).map_err(|_| StoreError::BadRecord("peer"))?;
    let role = match p.role.as_str() {
        "host" => PeerRole::Host,
        "guest" => PeerRole::Guest,
        _ => return Err(StoreError::BadRecord("peer")),
    };
    Ok(PeerRow {
        pk,
        label: p.label,
        role,
        relay_url: p.relay_url,
        invite_id: p.invite_id,
        created_at: p.created_at,
        last_seen: p.last_seen,
        verified_safety: p.verified_safety,
    })
}

/// Every peer, oldest first.
pub fn list_peers(conn: &Connection) -> Result<Vec<PeerRow>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {PEER_COLS} FROM peers ORDER BY created_at"))?;
    let rows = stmt.query_map([], peer_from_row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(build_peer).collect()
}

/// One peer by key.
pub fn get_peer(conn: &Connection, pk: &IdentityPublicKey) -> Result<Option<PeerRow>, StoreError> {
    let sql = format!("SELECT {PEER_COLS} FROM peers WHERE pk = ?1");
    conn.query_row_cached(&sql, [pk.to_b64u()], peer_from_row)
        .optional()?
        .map(build_peer)
        .transpose()
}

/// Insert a new peer with its first session.
pub fn insert_peer(conn: &Connection, peer: &PeerRow, session: &[u8]) -> Result<(), StoreError> {
    conn.execute_cached(
        "INSERT INTO peers (pk, label, role, relay_url, invite_id, session, created_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            peer.pk.to_b64u(),
            peer.label,
            peer.role.as_str(),
            peer.relay_url,
            peer.invite_id,
            session,
            to_i64(peer.created_at),
            peer.last_seen.map(to_i64)
        ],
    )?;
    Ok(())
}

/// Re-pair a known peer: its old session (and the pending envelopes sealed with
/// it, which it can no longer open) give way to the new pairing. Keeps the label
/// and the history of received messages.
pub fn replace_peer(conn: &Connection, peer: &PeerRow, session: &[u8]) -> Result<(), StoreError> {
    let k = peer.pk.to_b64u();
    conn.execute_cached("DELETE FROM outbox WHERE peer = ?1 AND status = 'pending'", [&k])?;
    conn.execute_cached(
        "UPDATE peers SET role = ?2, relay_url = ?3, invite_id = ?4, session = ?5,
         label = COALESCE(label, ?6), relay_update_seq = 0 WHERE pk = ?1",
        params![k, peer.role.as_str(), peer.relay_url, peer.invite_id, session, peer.label],
    )?;
    Ok(())
}

/// Mark a peer verified with the safety number the user compared (`Some`), or
/// take the mark away (`None`). Returns false when no such peer exists.
pub fn set_peer_verified(
    conn: &Connection,
    pk: &IdentityPublicKey,
    safety: Option<&str>,
    now: u64,
) -> Result<bool, StoreError> {
    let n = conn.execute_cached(
        "UPDATE peers SET verified_safety = ?2, verified_at = ?3 WHERE pk = ?1",
        params![pk.to_b64u(), safety, safety.map(|_| to_i64(now))],
    )?;
    Ok(n > 0)
}

/// Whether `label` is taken by a peer.
pub fn label_taken(conn: &Connection, label: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row_cached("SELECT 1 FROM peers WHERE label = ?1", [label], |_| Ok(()))
        .optional()?
        .is_some())
}

/// A peer's serialized session.
pub fn load_session(
    conn: &Connection,
    pk: &IdentityPublicKey,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row_cached("SELECT session FROM peers WHERE pk = ?1", [pk.to_b64u()], |r| r.get(0))
        .optional()?)
}

/// Replace a peer's serialized session.
pub fn save_session(
    conn: &Connection,
    pk: &IdentityPublicKey,
    session: &[u8],
) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE peers SET session = ?2 WHERE pk = ?1",
        params![pk.to_b64u(), session],
    )?;
    Ok(())
}

/// Record that a peer was just heard from.
pub fn touch_peer(conn: &Connection, pk: &IdentityPublicKey, now: u64) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE peers SET last_seen = ?2 WHERE pk = ?1",
        params![pk.to_b64u(), to_i64(now)],
    )?;
    Ok(())
}

/// Give a peer a new local label (`peers rename`).
pub fn set_peer_label(
    conn: &Connection,
    pk: &IdentityPublicKey,
    label: &str,
) -> Result<(), StoreError> {
    conn.execute_cached("UPDATE peers SET label = ?2 WHERE pk = ?1", params![pk.to_b64u(), label])?;
    Ok(())
}

/// Point a peer at a new relay (a `relay_moved` message).
pub fn set_peer_relay(
    conn: &Connection,
    pk: &IdentityPublicKey,
    url: &str,
) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE peers SET relay_url = ?2 WHERE pk = ?1",
        params![pk.to_b64u(), url],
    )?;
    // Envelopes still waiting follow the peer to its new relay.
    conn.execute_cached(
        "UPDATE outbox SET relay_url = ?2 WHERE peer = ?1 AND status = 'pending'",
        params![pk.to_b64u(), url],
    )?;
    Ok(())
}

/// The `seq` of the last relay update applied for a peer (0: none).
pub fn relay_update_seq(conn: &Connection, pk: &IdentityPublicKey) -> Result<u64, StoreError> {
    Ok(conn
        .query_row_cached("SELECT relay_update_seq FROM peers WHERE pk = ?1", [pk.to_b64u()], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .map_or(0, to_u64))
}

/// Record the `seq` of a relay update just applied.
pub fn set_relay_update_seq(
    conn: &Connection,
    pk: &IdentityPublicKey,
    seq: u64,
) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE peers SET relay_update_seq = ?2 WHERE pk = ?1",
        params![pk.to_b64u(), to_i64(seq)],
    )?;
    Ok(())
}

/// Forget a peer with its session, inbox, queued envelopes and history.
pub fn remove_peer(conn: &Connection, pk: &IdentityPublicKey) -> Result<bool, StoreError> {
    let k = pk.to_b64u();
    super::delete_peer_history(conn, pk)?;
    conn.execute_cached("DELETE FROM outbox WHERE peer = ?1", [&k])?;
    conn.execute_cached("DELETE FROM inbox WHERE peer = ?1", [&k])?;
    Ok(conn.execute_cached("DELETE FROM peers WHERE pk = ?1", [&k])? > 0)
}
