//! The client's SQLite database (`state.db`): peers and their ratchet sessions,
//! invites with their one-time prekeys, inbox, outbox, resume tokens and the
//! conversation history.
//!
//! Every function takes a plain `&Connection` so it runs the same inside or
//! outside a transaction. Flows that advance a ratchet open an IMMEDIATE
//! transaction ([`Store::immediate`]), read the session, and write the session
//! together with the message it produced or consumed: two processes sharing a
//! home (say `listen` and `send`) then never work from a stale session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

mod cached;
mod history;
mod invites;
mod peers;
mod queues;
mod settings;

pub(crate) use cached::CachedSql;
pub use history::*;
pub use invites::*;
pub use peers::*;
pub use queues::*;
pub use settings::*;

/// Schema migrations, applied in order on open.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../../migrations/client/0001_init.sql")),
    M::up(include_str!("../../../migrations/client/0002_inbox_lease.sql")),
    M::up(include_str!("../../../migrations/client/0003_lifecycle.sql")),
    M::up(include_str!("../../../migrations/client/0004_history.sql")),
    M::up(include_str!("../../../migrations/client/0005_peer_verified.sql")),
    M::up(include_str!("../../../migrations/client/0006_queue_indexes.sql")),
];

/// How long a writer waits for another process's transaction to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors from the state database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be created or opened.
    #[error("cannot open {path}")]
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
    /// The file exists but is empty or another program's SQLite database: treating
    /// it as a new store would silently forget every session.
    #[error(
        "state database {0} is empty or not an agentroom database; move it away or restore it from a backup"
    )]
    Foreign(PathBuf),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the state database: {0}")]
    Migration(rusqlite_migration::Error),
    /// A query failed.
    #[error("state database error: {0}")]
    Sql(rusqlite::Error),
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
        // Only a missing file means "new store": an existing one must already be ours.
        let existed = path.exists();
        // Create the file ourselves so it is 0600 from its first byte (its -wal and
        // -shm inherit that mode); tighten files an older version left looser.
        crate::fsutil::private_sqlite_files(path).map_err(open_err)?;
        let corrupt = |e: rusqlite::Error| classify(e, path);
        let mut conn = Connection::open(path).map_err(corrupt)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(corrupt)?;
        conn.set_prepared_statement_cache_capacity(cached::STATEMENT_CACHE);
        // Checked before anything writes (the WAL switch would give an empty file a header).
        if existed && !is_agentroom(&conn).map_err(corrupt)? {
            return Err(StoreError::Foreign(path.to_path_buf()));
        }
        // WAL lets `listen` read while `send` writes; FULL makes a commit durable
        // before we ack the relay (exactly-once depends on it).
        conn.pragma_update(None, "journal_mode", "WAL").map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(corrupt)?;
        // Deleted rows (expired or retained-out plaintext) are overwritten, not
        // just unlinked, so disappearing messages leave the file too.
        conn.pragma_update(None, "secure_delete", "ON").map_err(corrupt)?;
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

    /// Run `f` in one IMMEDIATE transaction whose commit skips the fsync
    /// (`synchronous = NORMAL` for it): the rows are in the WAL file when this
    /// returns, so they survive a crash of this process, and the next ordinary
    /// commit (or checkpoint) makes them durable against the OS going down too.
    /// Only for bookkeeping whose loss with the OS is harmless: a relay's `sent`
    /// mark (the outbox re-sends the same id and body; the relay drops the
    /// duplicate), a consumed reply (offered again: at least once). Never for
    /// ratchet state, an inbox row before its ack, or anything sealed.
    pub fn relaxed<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = (|| {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        // Back to FULL before anything else commits on this connection.
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        out
    }
}

/// SQLite integers are i64; times and counters here are u64 (never near 2^63).
pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn get_u64(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    r.get::<_, i64>(i).map(to_u64)
}

/// Whether an existing database was made by us: migrated at least once (the
/// migrations keep their number in `user_version`) and holding our tables. A
/// 0-byte file reads as an empty database and fails both.
fn is_agentroom(conn: &Connection) -> rusqlite::Result<bool> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'
         AND name IN ('peers', 'invites', 'inbox', 'outbox')",
        [],
        |r| r.get(0),
    )?;
    Ok(version > 0 && tables == 4)
}

fn classify(e: rusqlite::Error, path: &Path) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match e.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => StoreError::Corrupt(path.to_path_buf()),
        _ => StoreError::Sql(e),
    }
}

// The cause is printed in these variants' messages, so they are not `#[source]`
// (an error chain would print it twice); hence hand-written `From`s.
impl From<rusqlite_migration::Error> for StoreError {
    fn from(e: rusqlite_migration::Error) -> Self {
        Self::Migration(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::IdentityPublicKey;
    use crate::protocol::EnvelopeId;

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
    fn empty_or_foreign_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::Foreign(_))));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
        let other = dir.path().join("other.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x);").unwrap();
        assert!(matches!(Store::open(&other), Err(StoreError::Foreign(_))));
        let mut c = Connection::open(&other).unwrap();
        let n: i64 =
            c.transaction().unwrap().query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "the foreign database is still there, untouched");
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
            state: InboxState::New,
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
        let body: Vec<u8> = store
            .conn()
            .query_row("SELECT body FROM outbox WHERE id = ?1", [id.to_b64u()], |r| r.get(0))
            .unwrap();
        assert!(body.is_empty(), "the ciphertext is dropped once the relay has it");
        assert!(outbox_pending(store.conn(), "ws://r/ws").unwrap().is_empty());
        assert_eq!(outbox_status(store.conn(), &id).unwrap().unwrap().0, "sent");
    }

    /// The query plans of the per-message lookups: what is pending or new is
    /// found through the partial indexes, not by scanning every row the home
    /// ever sent or consumed.
    #[test]
    fn pending_and_new_lookups_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = store.conn().prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let outbox = plan(
            "SELECT id FROM outbox WHERE status = 'pending' AND relay_url = 'ws://r/ws' ORDER BY seq",
        );
        assert!(outbox.contains("USING INDEX outbox_pending"), "{outbox}");
        let count = plan("SELECT count(*) FROM outbox WHERE status = 'pending'");
        assert!(count.contains("outbox_pending"), "{count}");
        let inbox =
            plan("SELECT seq FROM inbox WHERE state = 'new' AND kind = 'text' ORDER BY seq");
        assert!(inbox.contains("USING INDEX inbox_new"), "{inbox}");
        let sent = plan("UPDATE history SET state = 'failed' WHERE direction = 'out' AND id = 'x'");
        assert!(sent.contains("USING INDEX history_out_id"), "{sent}");
    }
}
