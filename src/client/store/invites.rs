//! Invites this identity created, with their one-time prekeys until used.

use rusqlite::{Connection, OptionalExtension, params};

use super::CachedSql;
use super::{StoreError, get_u64, to_i64};
use crate::crypto::IdentityPublicKey;

/// Where an invite we created stands (column `invites.status`). Expiry is not a
/// state: it is read from `expires_at` against the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteStatus {
    /// Waiting for a guest; its one-time prekey is kept.
    Open,
    /// A guest paired through it; the prekey is deleted.
    Claimed,
    /// Revoked by us; the prekey is deleted.
    Revoked,
}

impl InviteStatus {
    /// The stored (and printed) form.
    pub fn as_str(self) -> &'static str {
        match self {
            InviteStatus::Open => "open",
            InviteStatus::Claimed => "claimed",
            InviteStatus::Revoked => "revoked",
        }
    }
}

impl rusqlite::types::FromSql for InviteStatus {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match v.as_str()? {
            "open" => Ok(InviteStatus::Open),
            "claimed" => Ok(InviteStatus::Claimed),
            "revoked" => Ok(InviteStatus::Revoked),
            _ => Err(rusqlite::types::FromSqlError::InvalidType),
        }
    }
}

/// An invite we created.
#[derive(Debug, Clone)]
pub struct InviteRow {
    /// b64u invite id.
    pub id: String,
    /// Label for whoever accepts.
    pub label: Option<String>,
    /// Relay named in the invite.
    pub relay_url: String,
    /// The invite string (carries no secret: only public keys and a signature).
    pub encoded: String,
    /// Open, claimed or revoked.
    pub status: InviteStatus,
    /// Who claimed it.
    pub claimed_by: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix seconds.
    pub created_at: u64,
}

const INVITE_COLS: &str =
    "id, label, relay_url, encoded, status, claimed_by, expires_at, created_at";

fn invite_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InviteRow> {
    Ok(InviteRow {
        id: r.get(0)?,
        label: r.get(1)?,
        relay_url: r.get(2)?,
        encoded: r.get(3)?,
        status: r.get(4)?,
        claimed_by: r.get(5)?,
        expires_at: get_u64(r, 6)?,
        created_at: get_u64(r, 7)?,
    })
}

/// Store a new invite with its one-time prekey (serialized, secret).
pub fn insert_invite(conn: &Connection, inv: &InviteRow, opk: &[u8]) -> Result<(), StoreError> {
    conn.execute_cached(
        "INSERT INTO invites (id, label, relay_url, encoded, opk, status, claimed_by, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'open', NULL, ?6, ?7)",
        params![inv.id, inv.label, inv.relay_url, inv.encoded, opk, to_i64(inv.expires_at), to_i64(inv.created_at)],
    )?;
    Ok(())
}

/// Every invite, newest first.
pub fn list_invites(conn: &Connection) -> Result<Vec<InviteRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {INVITE_COLS} FROM invites ORDER BY created_at DESC, id"
    ))?;
    Ok(stmt.query_map([], invite_from_row)?.collect::<Result<Vec<_>, _>>()?)
}

/// One invite by id, or by a unique prefix of its id.
pub fn find_invite(conn: &Connection, id_or_prefix: &str) -> Result<Vec<InviteRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {INVITE_COLS} FROM invites WHERE id = ?1 OR substr(id, 1, length(?1)) = ?1"
    ))?;
    let rows = stmt.query_map([id_or_prefix], invite_from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(match rows.iter().find(|r| r.id == id_or_prefix) {
        Some(exact) => vec![exact.clone()],
        None => rows,
    })
}

/// The invite and its prekey, if still open.
pub fn open_invite_prekey(
    conn: &Connection,
    id: &str,
) -> Result<Option<(InviteRow, Vec<u8>)>, StoreError> {
    let sql = format!("SELECT {INVITE_COLS}, opk FROM invites WHERE id = ?1 AND status = 'open'");
    Ok(conn
        .query_row_cached(&sql, [id], |r| {
            Ok((invite_from_row(r)?, r.get::<_, Option<Vec<u8>>>(8)?))
        })
        .optional()?
        .and_then(|(row, opk)| opk.map(|o| (row, o))))
}

/// Mark an invite claimed and delete its prekey (single use).
pub fn claim_invite(conn: &Connection, id: &str, by: &IdentityPublicKey) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE invites SET status = 'claimed', opk = NULL, claimed_by = ?2 WHERE id = ?1",
        params![id, by.to_b64u()],
    )?;
    Ok(())
}

/// Revoke an open invite and delete its prekey. Returns whether it was open.
pub fn revoke_invite(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute_cached(
        "UPDATE invites SET status = 'revoked', opk = NULL WHERE id = ?1 AND status = 'open'",
        [id],
    )? > 0)
}

/// Delete an invite row (rolls back a failed `invite create`).
pub fn delete_invite(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute_cached("DELETE FROM invites WHERE id = ?1", [id])?;
    Ok(())
}

/// Relays of open invites (to listen on, so a guest's first message is seen).
/// An invite that expired recently still counts: a guest may have claimed it
/// just in time, and its hello waits at the relay for as long as the relay keeps
/// envelopes.
pub fn open_invite_relays(conn: &Connection, now: u64) -> Result<Vec<String>, StoreError> {
    let horizon = now.saturating_sub(crate::defaults::PENDING_TTL_DAYS * 86_400);
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT relay_url FROM invites WHERE status = 'open' AND expires_at > ?1",
    )?;
    Ok(stmt.query_map([to_i64(horizon)], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?)
}
