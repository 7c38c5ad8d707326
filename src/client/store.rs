//! The client's SQLite database (`state.db`): peers and their ratchet sessions,
//! invites with their one-time prekeys, inbox, outbox and resume tokens.
//!
//! Every function takes a plain `&Connection` so it runs the same inside or
//! outside a transaction. Flows that advance a ratchet open an IMMEDIATE
//! transaction ([`Store::immediate`]), read the session, and write the session
//! together with the message it produced or consumed: two processes sharing a
//! home (say `listen` and `send`) then never work from a stale session.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};

use crate::crypto::IdentityPublicKey;
use crate::protocol::EnvelopeId;

/// Schema migrations, applied in order on open.
const MIGRATIONS: &[M<'static>] = &[M::up(include_str!("../../migrations/client/0001_init.sql"))];

/// How long a writer waits for another process's transaction to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors from the state database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be created or opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// Database path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a SQLite database, or is damaged.
    #[error("state database {0} is corrupt; move it away or restore it from a backup")]
    Corrupt(PathBuf),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the state database: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// A query failed.
    #[error("state database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored value does not parse (a damaged row).
    #[error("corrupt {0} record in the state database")]
    BadRecord(&'static str),
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (creating it 0600 if missing) and migrate.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsutil::ensure_private_dir(dir).map_err(open_err)?;
        }
        // Create the file ourselves so it is 0600 from its first byte.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::fsutil::PRIVATE_FILE_MODE)
            .open(path)
            .map_err(open_err)?;
        let corrupt = |e: rusqlite::Error| classify(e, path);
        let mut conn = Connection::open(path).map_err(corrupt)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(corrupt)?;
        // WAL lets `listen` read while `send` writes; FULL makes a commit durable
        // before we ack the relay (exactly-once depends on it).
        conn.pragma_update(None, "journal_mode", "WAL").map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(corrupt)?;
        let check: String =
            conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(corrupt)?;
        if check != "ok" {
            return Err(StoreError::Corrupt(path.to_path_buf()));
        }
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn).map_err(|e| match e {
            rusqlite_migration::Error::RusqliteError { err, .. } => classify(err, path),
            other => StoreError::Migration(other),
        })?;
        Ok(Self { conn })
    }

    /// The connection, for reads and single-statement writes.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Begin an IMMEDIATE transaction (takes the write lock now, so the
    /// read-modify-write of a session cannot interleave with another process).
    pub fn immediate(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// SQLite integers are i64; times and counters here are u64 (never near 2^63).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn get_u64(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    r.get::<_, i64>(i).map(to_u64)
}

fn classify(e: rusqlite::Error, path: &Path) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match e.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => StoreError::Corrupt(path.to_path_buf()),
        _ => StoreError::Sql(e),
    }
}

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
}

impl PeerRow {
    /// Label if set, else the short key.
    pub fn display_name(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.pk.fmt_short())
    }
}

const PEER_COLS: &str = "pk, label, role, relay_url, invite_id, created_at, last_seen";

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
    })
}

/// Every peer, oldest first.
pub fn list_peers(conn: &Connection) -> Result<Vec<PeerRow>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {PEER_COLS} FROM peers ORDER BY created_at"))?;
    let rows = stmt.query_map([], peer_from_row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(build_peer).collect()
}

/// One peer by key.
pub fn get_peer(conn: &Connection, pk: &IdentityPublicKey) -> Result<Option<PeerRow>, StoreError> {
    let sql = format!("SELECT {PEER_COLS} FROM peers WHERE pk = ?1");
    conn.query_row(&sql, [pk.to_b64u()], peer_from_row).optional()?.map(build_peer).transpose()
}

/// Insert a new peer with its first session.
pub fn insert_peer(conn: &Connection, peer: &PeerRow, session: &[u8]) -> Result<(), StoreError> {
    conn.execute(
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

/// Whether `label` is taken by a peer.
pub fn label_taken(conn: &Connection, label: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row("SELECT 1 FROM peers WHERE label = ?1", [label], |_| Ok(()))
        .optional()?
        .is_some())
}

/// A peer's serialized session.
pub fn load_session(
    conn: &Connection,
    pk: &IdentityPublicKey,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row("SELECT session FROM peers WHERE pk = ?1", [pk.to_b64u()], |r| r.get(0))
        .optional()?)
}

/// Replace a peer's serialized session.
pub fn save_session(
    conn: &Connection,
    pk: &IdentityPublicKey,
    session: &[u8],
) -> Result<(), StoreError> {
    conn.execute("UPDATE peers SET session = ?2 WHERE pk = ?1", params![pk.to_b64u(), session])?;
    Ok(())
}

/// Record that a peer was just heard from.
pub fn touch_peer(conn: &Connection, pk: &IdentityPublicKey, now: u64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE peers SET last_seen = ?2 WHERE pk = ?1",
        params![pk.to_b64u(), to_i64(now)],
    )?;
    Ok(())
}

/// Point a peer at a new relay (a `relay_moved` message).
pub fn set_peer_relay(
    conn: &Connection,
    pk: &IdentityPublicKey,
    url: &str,
) -> Result<(), StoreError> {
    conn.execute("UPDATE peers SET relay_url = ?2 WHERE pk = ?1", params![pk.to_b64u(), url])?;
    // Envelopes still waiting follow the peer to its new relay.
    conn.execute(
        "UPDATE outbox SET relay_url = ?2 WHERE peer = ?1 AND status = 'pending'",
        params![pk.to_b64u(), url],
    )?;
    Ok(())
}

/// Forget a peer with its session, inbox and queued envelopes.
pub fn remove_peer(conn: &Connection, pk: &IdentityPublicKey) -> Result<bool, StoreError> {
    let k = pk.to_b64u();
    conn.execute("DELETE FROM outbox WHERE peer = ?1", [&k])?;
    conn.execute("DELETE FROM inbox WHERE peer = ?1", [&k])?;
    Ok(conn.execute("DELETE FROM peers WHERE pk = ?1", [&k])? > 0)
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
    /// `open`, `claimed` or `revoked`.
    pub status: String,
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
    conn.execute(
        "INSERT INTO invites (id, label, relay_url, encoded, opk, status, claimed_by, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'open', NULL, ?6, ?7)",
        params![inv.id, inv.label, inv.relay_url, inv.encoded, opk, to_i64(inv.expires_at), to_i64(inv.created_at)],
    )?;
    Ok(())
}

/// Every invite, newest first.
pub fn list_invites(conn: &Connection) -> Result<Vec<InviteRow>, StoreError> {
    let mut stmt =
        conn.prepare(&format!("SELECT {INVITE_COLS} FROM invites ORDER BY created_at DESC, id"))?;
    Ok(stmt.query_map([], invite_from_row)?.collect::<Result<Vec<_>, _>>()?)
}

/// One invite by id, or by a unique prefix of its id.
pub fn find_invite(conn: &Connection, id_or_prefix: &str) -> Result<Vec<InviteRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
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
        .query_row(&sql, [id], |r| Ok((invite_from_row(r)?, r.get::<_, Option<Vec<u8>>>(8)?)))
        .optional()?
        .and_then(|(row, opk)| opk.map(|o| (row, o))))
}

/// Mark an invite claimed and delete its prekey (single use).
pub fn claim_invite(conn: &Connection, id: &str, by: &IdentityPublicKey) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE invites SET status = 'claimed', opk = NULL, claimed_by = ?2 WHERE id = ?1",
        params![id, by.to_b64u()],
    )?;
    Ok(())
}

/// Revoke an open invite and delete its prekey. Returns whether it was open.
pub fn revoke_invite(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE invites SET status = 'revoked', opk = NULL WHERE id = ?1 AND status = 'open'",
        [id],
    )? > 0)
}

/// Delete an invite row (rolls back a failed `invite create`).
pub fn delete_invite(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM invites WHERE id = ?1", [id])?;
    Ok(())
}

/// Relays of open invites (to listen on, so a guest's first message is seen).
pub fn open_invite_relays(conn: &Connection, now: u64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT relay_url FROM invites WHERE status = 'open' AND expires_at > ?1",
    )?;
    Ok(stmt.query_map([to_i64(now)], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?)
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
    /// `new` or `done`.
    pub state: String,
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
    /// Initial state: `new` for messages a consumer must see, `done` otherwise.
    pub state: &'a str,
}

/// Whether `(peer, id)` was already received (dedupe across redeliveries).
pub fn inbox_seen(
    conn: &Connection,
    peer: &IdentityPublicKey,
    id: &EnvelopeId,
) -> Result<Option<InboxRow>, StoreError> {
    let sql = format!("{INBOX_SELECT} WHERE peer = ?1 AND id = ?2");
    conn.query_row(&sql, [peer.to_b64u(), id.to_b64u()], inbox_from_row).optional()?.transpose()
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
    conn.execute(
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
            m.state
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
        state: m.state.to_owned(),
    })
}

/// Messages not yet consumed, in arrival order, optionally from one peer.
pub fn inbox_new(
    conn: &Connection,
    from: Option<&IdentityPublicKey>,
) -> Result<Vec<InboxRow>, StoreError> {
    let sql =
        format!("{INBOX_SELECT} WHERE state = 'new' AND (?1 IS NULL OR peer = ?1) ORDER BY seq");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([from.map(|p| p.to_b64u())], inbox_from_row)?;
    rows.map(|r| r?).collect()
}

/// Mark a message consumed. Returns false if someone else already did.
pub fn inbox_done(conn: &Connection, seq: i64) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE inbox SET state = 'done' WHERE seq = ?1 AND state = 'new'", [seq])? > 0)
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
    conn.execute(
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
    let mut stmt = conn.prepare(
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
        .query_row("SELECT count(*) FROM outbox WHERE status = 'pending'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(to_u64)?)
}

/// The relay has the envelope.
pub fn outbox_sent(conn: &Connection, id: &EnvelopeId, now: u64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?2 WHERE id = ?1 AND status = 'pending'",
        params![id.to_b64u(), to_i64(now)],
    )? > 0)
}

/// The relay refused the envelope for good.
pub fn outbox_failed(conn: &Connection, id: &EnvelopeId, error: &str) -> Result<(), StoreError> {
    conn.execute(
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
        .query_row("SELECT status, error FROM outbox WHERE id = ?1", [id.to_b64u()], |r| {
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
        .query_row(
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
    conn.execute(
        "INSERT INTO relay_tokens (relay_url, token, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (relay_url) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at",
        params![relay_url, token, to_i64(expires_at)],
    )?;
    Ok(())
}

/// Drop a resume token the relay refused.
pub fn clear_token(conn: &Connection, relay_url: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM relay_tokens WHERE relay_url = ?1", [relay_url])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(n: u8) -> IdentityPublicKey {
        IdentityPublicKey::from_bytes(&[n; 32]).unwrap()
    }

    #[test]
    fn open_migrates_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        assert!(list_peers(store.conn()).unwrap().is_empty());
        drop(store);
        Store::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn garbage_file_is_reported_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn inbox_dedupes_and_outbox_tracks_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let id = EnvelopeId([7; 16]);
        let tx = store.immediate().unwrap();
        let m = NewInbox {
            peer: &pk(1),
            id: &id,
            kind: "text",
            text: "hi",
            reply_to: None,
            relay_ts: 5,
            state: "new",
        };
        insert_inbox(&tx, &m, 1).unwrap();
        assert!(insert_inbox(&tx, &m, 1).is_err(), "(peer, id) is unique");
        tx.commit().unwrap();
        assert!(inbox_seen(store.conn(), &pk(1), &id).unwrap().is_some());
        assert!(inbox_seen(store.conn(), &pk(2), &id).unwrap().is_none());
        let new = inbox_new(store.conn(), None).unwrap();
        assert_eq!(new.len(), 1);
        assert!(inbox_done(store.conn(), new[0].seq).unwrap());
        assert!(!inbox_done(store.conn(), new[0].seq).unwrap());

        let row = OutboxRow {
            id,
            peer: pk(2),
            relay_url: "ws://r/ws".into(),
            body: vec![1, 2],
            claim: Some([3; 16]),
        };
        insert_outbox(store.conn(), &row, None, 1).unwrap();
        let pending = outbox_pending(store.conn(), "ws://r/ws").unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].claim, Some([3; 16]));
        assert!(outbox_sent(store.conn(), &id, 2).unwrap());
        assert!(outbox_pending(store.conn(), "ws://r/ws").unwrap().is_empty());
        assert_eq!(outbox_status(store.conn(), &id).unwrap().unwrap().0, "sent");
    }
}
