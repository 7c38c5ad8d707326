//! SQLite store-and-forward on one dedicated writer thread, with group commit.
//!
//! rusqlite is blocking, so no async worker ever touches the database: every
//! operation is a [`Cmd`] sent to the store thread, which takes the first command
//! and everything already queued behind it (up to [`MAX_BATCH`]), runs them in one
//! transaction and answers only after `COMMIT`. Under load one commit covers many
//! envelopes ("group commit"); when idle a lone envelope commits at once.
//!
//! Durability: WAL with `synchronous=NORMAL`. A commit is in the WAL file (the OS
//! page cache) before anyone is told `stored`, so a crash of the relay process,
//! including `kill -9`, loses nothing; a power cut or kernel crash can lose the last
//! commits since the previous checkpoint fsync. See PROTOCOL.md §3.4.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, params};
use rusqlite_migration::{M, Migrations};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::queries::{NewRow, claim, insert, load, pk, publish, revoke_peer};
use crate::crypto::IdentityPublicKey;
use crate::protocol::{EnvelopeId, InviteHash};

/// Most commands folded into one transaction: bounds the time a batch holds the
/// writer, so replies keep flowing under a flood.
const MAX_BATCH: usize = 2048;
/// SQLite waits this long for a lock held by another process (e.g. a backup).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands waiting for the store thread. Bounded so a stalled disk cannot grow the
/// relay's memory without limit: inserts and deletes, enqueued without waiting,
/// are refused when it is full (`internal` to the sender; an undeleted row is
/// delivered again); other callers wait for room. Four batches deep, far above the
/// in-flight windows of the load benchmark.
const STORE_QUEUE: usize = 4 * MAX_BATCH;
/// How long a caller that must wait for room in the queue sleeps between tries.
const QUEUE_RETRY: Duration = Duration::from_millis(2);

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migration(rusqlite_migration::Error),
    /// The database directory could not be created.
    #[error("cannot create database directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database file (or its -wal/-shm) could not be created or made 0600.
    #[error("cannot make {path} private (mode 0600)")]
    Private {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store thread has stopped (relay shutting down).
    #[error("store is closed")]
    Closed,
    /// The batch holding this operation failed to commit.
    #[error("commit failed")]
    CommitFailed,
    /// The store thread's queue is full (the disk is not keeping up).
    #[error("store queue is full")]
    Busy,
    /// The PostgreSQL store failed (see `relay::pg`).
    #[error(transparent)]
    Postgres(#[from] super::pg::PgError),
}

/// An envelope read back from the queue.
#[derive(Debug, Clone)]
pub(crate) struct StoredEnvelope {
    /// The relay's accept order (see `hub`).
    pub(crate) ord: i64,
    pub(crate) sender: IdentityPublicKey,
    pub(crate) id: EnvelopeId,
    pub(crate) body: Vec<u8>,
    pub(crate) accepted_ms: u64,
}

/// Result of queueing an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertOutcome {
    /// Committed; the row's `ord`.
    Stored(i64),
    /// Already queued with the same recipient and body (its `ord`).
    Duplicate(i64),
    /// The id is queued with a different recipient or body.
    Conflict,
    /// The recipient already has `max_pending` envelopes waiting.
    QueueFull,
}

/// Result of claiming an invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimOutcome {
    /// The pair exists now.
    Paired,
    /// No such invite from this host.
    Unknown,
    /// Past its expiry.
    Expired,
    /// Claimed by another identity.
    Claimed,
    /// Revoked by the host (or the pair it made was revoked).
    Revoked,
}

/// Result of publishing an invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishOutcome {
    /// Published (or refreshed by the same host).
    Published,
    /// The hash belongs to another host's invite.
    Conflict,
    /// A new invite, but the host already has the allowed number open.
    Quota,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One operation for the store thread.
enum Cmd {
    Insert {
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
        body: Vec<u8>,
        accepted_ms: u64,
        ord: i64,
        enforce_limit: bool,
        reply: Reply<InsertOutcome>,
    },
    Delete {
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
    },
    Load {
        recipient: IdentityPublicKey,
        after_ord: i64,
        limit: usize,
        reply: Reply<Vec<StoredEnvelope>>,
    },
    Pending {
        recipient: IdentityPublicKey,
        reply: Reply<u64>,
    },
    Publish {
        host: IdentityPublicKey,
        hash: InviteHash,
        expires_at: u64,
        max_open: u64,
        reply: Reply<PublishOutcome>,
    },
    RevokeInvite {
        host: IdentityPublicKey,
        hash: InviteHash,
        reply: Reply<bool>,
    },
    Claim {
        host: IdentityPublicKey,
        guest: IdentityPublicKey,
        hash: InviteHash,
        now: u64,
        reply: Reply<ClaimOutcome>,
    },
    RevokePeer {
        a: IdentityPublicKey,
        b: IdentityPublicKey,
        reply: Reply<u64>,
    },
    Pairs {
        reply: Reply<Vec<(IdentityPublicKey, IdentityPublicKey)>>,
    },
    Health {
        reply: Reply<()>,
    },
    Close,
}

/// Handle to the store thread. Cheap to share; every call is a message.
#[derive(Debug)]
pub(crate) struct Store {
    tx: mpsc::SyncSender<Cmd>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// One above the highest `ord` queued when the store opened.
    next_ord: i64,
}

/// Store settings.
#[derive(Debug, Clone)]
pub(crate) struct StoreOptions {
    pub(crate) max_pending: u64,
    pub(crate) ttl: Duration,
    pub(crate) sweep_interval: Duration,
}

fn open_db(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_private_dir(dir)
            .map_err(|source| StoreError::Dir { path: dir.to_path_buf(), source })?;
    }
    // Pairings, invites and queued ciphertext: 0600 from the first byte, -wal and
    // -shm too, whatever the umask.
    crate::fsutil::private_sqlite_files(path)
        .map_err(|source| StoreError::Private { path: path.to_path_buf(), source })?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // One owner: the relay keeps routing state in memory, so a second process on
    // the same file would be wrong anyway; exclusive mode also saves the lock
    // syscalls SQLite otherwise makes around every transaction.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Migrations::new(vec![
        M::up(include_str!("../../migrations/relay/001_init.sql")),
        M::up(include_str!("../../migrations/relay/002_envelope_order.sql")),
        M::up(include_str!("../../migrations/relay/003_invites_by_host.sql")),
    ])
    .to_latest(&mut conn)?;
    Ok(conn)
}

impl Store {
    /// Open (creating and migrating) the database and start the store thread.
    /// Blocking: call from `spawn_blocking`.
    pub(crate) fn open(
        path: &Path,
        opts: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let conn = open_db(path)?;
        let max_ord: i64 =
            conn.query_row("SELECT COALESCE(MAX(ord), 0) FROM envelopes", [], |r| r.get(0))?;
        let mut worker = Worker { conn, opts, metrics, counts: HashMap::new() };
        worker.recount()?;
        let (tx, rx) = mpsc::sync_channel(STORE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("agentroom-store".into())
            .spawn(move || worker.run(&rx))
            .map_err(|source| StoreError::Dir { path: path.to_path_buf(), source })?;
        Ok(Self { tx, thread: std::sync::Mutex::new(Some(thread)), next_ord: max_ord + 1 })
    }

    /// The first `ord` this process may give out.
    pub(crate) fn next_ord(&self) -> i64 {
        self.next_ord
    }

    /// Enqueue a command, waiting for room in the bounded queue.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let mut cmd = make(reply);
        loop {
            match self.tx.try_send(cmd) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(c)) => {
                    cmd = c;
                    tokio::time::sleep(QUEUE_RETRY).await;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
            }
        }
        flatten(rx.await)
    }

    /// Queue an envelope under its `ord`; the receiver resolves after the commit.
    /// Enqueued in call order without waiting (callers hold the hub lock), so
    /// envelopes keep their order; a full queue answers [`StoreError::Busy`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
        body: Vec<u8>,
        accepted_ms: u64,
        ord: i64,
        enforce_limit: bool,
    ) -> oneshot::Receiver<Result<InsertOutcome, StoreError>> {
        let (reply, rx) = oneshot::channel();
        let cmd =
            Cmd::Insert { recipient, sender, id, body, accepted_ms, ord, enforce_limit, reply };
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(c)) => fail(c, StoreError::Busy),
            Err(mpsc::TrySendError::Disconnected(c)) => fail(c, StoreError::Closed),
        }
        rx
    }

    /// Forget an acked envelope (fire and forget; it commits with the next batch).
    /// Dropped when the queue is full: the row is then delivered again, which
    /// at-least-once delivery allows.
    pub(crate) fn delete(
        &self,
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
    ) {
        if self.tx.try_send(Cmd::Delete { recipient, sender, id }).is_err() {
            tracing::debug!("store queue full or closed; an acked row stays queued");
        }
    }

    /// Queued envelopes for `recipient` with `ord > after_ord`, oldest first.
    pub(crate) async fn load(
        &self,
        recipient: IdentityPublicKey,
        after_ord: i64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.call(|reply| Cmd::Load { recipient, after_ord, limit, reply }).await
    }

    /// How many envelopes wait for `recipient`.
    pub(crate) async fn pending(&self, recipient: IdentityPublicKey) -> Result<u64, StoreError> {
        self.call(|reply| Cmd::Pending { recipient, reply }).await
    }

    /// Publish (or refresh) an invite; a new one only while `host` has fewer than
    /// `max_open` open invites.
    pub(crate) async fn publish(
        &self,
        host: IdentityPublicKey,
        hash: InviteHash,
        expires_at: u64,
        max_open: u64,
    ) -> Result<PublishOutcome, StoreError> {
        self.call(|reply| Cmd::Publish { host, hash, expires_at, max_open, reply }).await
    }

    /// `false` when `host` has no such invite.
    pub(crate) async fn revoke_invite(
        &self,
        host: IdentityPublicKey,
        hash: InviteHash,
    ) -> Result<bool, StoreError> {
        self.call(|reply| Cmd::RevokeInvite { host, hash, reply }).await
    }

    pub(crate) async fn claim(
        &self,
        host: IdentityPublicKey,
        guest: IdentityPublicKey,
        hash: InviteHash,
        now: u64,
    ) -> Result<ClaimOutcome, StoreError> {
        self.call(|reply| Cmd::Claim { host, guest, hash, now, reply }).await
    }

    /// Unpair and drop everything queued between the two; returns envelopes dropped.
    pub(crate) async fn revoke_peer(
        &self,
        a: IdentityPublicKey,
        b: IdentityPublicKey,
    ) -> Result<u64, StoreError> {
        self.call(|reply| Cmd::RevokePeer { a, b, reply }).await
    }

    pub(crate) async fn pairs(
        &self,
    ) -> Result<Vec<(IdentityPublicKey, IdentityPublicKey)>, StoreError> {
        self.call(|reply| Cmd::Pairs { reply }).await
    }

    /// A round trip through the store thread and SQLite.
    pub(crate) async fn health(&self) -> Result<(), StoreError> {
        self.call(|reply| Cmd::Health { reply }).await
    }

    /// Commit everything queued so far, then stop the thread and wait for it.
    pub(crate) async fn close(&self) {
        let tx = self.tx.clone();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        // Blocking: waits for room behind what is queued, then for the last commit.
        let _ = tokio::task::spawn_blocking(move || {
            let _ = tx.send(Cmd::Close);
            if let Some(t) = thread {
                let _ = t.join();
            }
        })
        .await;
    }
}

fn flatten<T>(
    r: Result<Result<T, StoreError>, oneshot::error::RecvError>,
) -> Result<T, StoreError> {
    r.unwrap_or(Err(StoreError::Closed))
}

/// A reply to send once the batch's fate is known.
type Deferred = Box<dyn FnOnce(bool) + Send>;

fn defer<T: Send + 'static>(
    out: &mut Vec<Deferred>,
    reply: Reply<T>,
    result: Result<T, StoreError>,
) {
    out.push(Box::new(move |committed| {
        let _ = reply.send(if committed { result } else { Err(StoreError::CommitFailed) });
    }));
}

struct Worker {
    conn: Connection,
    opts: StoreOptions,
    metrics: Arc<Metrics>,
    /// Envelopes queued per recipient, for `queue_full` without a COUNT query.
    counts: HashMap<IdentityPublicKey, u64>,
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Cmd>) {
        let mut next_sweep = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_sweep {
                if let Err(e) = self.sweep() {
                    tracing::warn!(error = %e, "pending TTL sweep failed");
                }
                next_sweep = now + self.opts.sweep_interval;
            }
            let first = match rx.recv_timeout(next_sweep.saturating_duration_since(now)) {
                Ok(c) => c,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = Vec::with_capacity(64);
            let mut closing = false;
            for cmd in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                if matches!(cmd, Cmd::Close) {
                    closing = true;
                    break;
                }
                batch.push(cmd);
                if batch.len() >= MAX_BATCH {
                    break;
                }
            }
            if !batch.is_empty() {
                self.run_batch(batch);
            }
            if closing {
                tracing::debug!("store thread closing");
                return;
            }
        }
    }

    fn run_batch(&mut self, batch: Vec<Cmd>) {
        let started = Instant::now();
        let n = batch.len();
        let mut deferred: Vec<Deferred> = Vec::with_capacity(n);
        let committed = match self.conn.transaction() {
            Ok(tx) => {
                for cmd in batch {
                    apply(&tx, &mut self.counts, &self.opts, &self.metrics, cmd, &mut deferred);
                }
                match tx.commit() {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "commit failed");
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot begin transaction");
                // Answer every command with a failure.
                for cmd in batch {
                    fail(cmd, StoreError::CommitFailed);
                }
                false
            }
        };
        if !committed {
            self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            let _ = self.recount();
        }
        self.metrics.store_commits.fetch_add(1, Ordering::Relaxed);
        self.metrics.store_batched_ops.fetch_add(n as u64, Ordering::Relaxed);
        self.metrics.observe_commit(started.elapsed());
        for d in deferred {
            d(committed);
        }
    }

    fn recount(&mut self) -> Result<(), StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT recipient, COUNT(*) FROM envelopes GROUP BY recipient")?;
        let rows =
            stmt.query_map([], |r| Ok((pk(&r.get::<_, Vec<u8>>(0)?)?, r.get::<_, i64>(1)?)))?;
        self.counts.clear();
        let mut total = 0u64;
        for row in rows {
            let (k, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            total += n;
            self.counts.insert(k, n);
        }
        self.metrics.pending_total.store(total, Ordering::Relaxed);
        Ok(())
    }

    fn sweep(&mut self) -> Result<(), StoreError> {
        let ttl_ms = u64::try_from(self.opts.ttl.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms().saturating_sub(ttl_ms);
        let cutoff = i64::try_from(cutoff).unwrap_or(i64::MAX);
        let n = self.conn.execute("DELETE FROM envelopes WHERE accepted_ms < ?1", [cutoff])?;
        let now = i64::try_from(crate::relay::now_secs()).unwrap_or(i64::MAX);
        self.conn.execute(
            "DELETE FROM invites WHERE claimed_by IS NULL AND expires_at < ?1",
            [now.saturating_sub(86_400)],
        )?;
        if n > 0 {
            tracing::info!(expired = n, "swept expired envelopes");
            self.recount()?;
            self.metrics.envelopes_expired.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Answer a command that will not run with `err`.
fn fail(cmd: Cmd, err: StoreError) {
    match cmd {
        Cmd::Insert { reply, .. } => drop(reply.send(Err(err))),
        Cmd::Load { reply, .. } => drop(reply.send(Err(err))),
        Cmd::Pending { reply, .. } => drop(reply.send(Err(err))),
        Cmd::Publish { reply, .. } => drop(reply.send(Err(err))),
        Cmd::RevokeInvite { reply, .. } => drop(reply.send(Err(err))),
        Cmd::Claim { reply, .. } => drop(reply.send(Err(err))),
        Cmd::RevokePeer { reply, .. } => drop(reply.send(Err(err))),
        Cmd::Pairs { reply } => drop(reply.send(Err(err))),
        Cmd::Health { reply } => drop(reply.send(Err(err))),
        Cmd::Delete { .. } | Cmd::Close => {}
    }
}

fn apply(
    tx: &Transaction<'_>,
    counts: &mut HashMap<IdentityPublicKey, u64>,
    opts: &StoreOptions,
    metrics: &Metrics,
    cmd: Cmd,
    out: &mut Vec<Deferred>,
) {
    match cmd {
        Cmd::Insert { recipient, sender, id, body, accepted_ms, ord, enforce_limit, reply } => {
            let env = NewRow { recipient, sender, id, body: &body, accepted_ms, ord };
            let r = insert(tx, counts, opts, &env, enforce_limit);
            if matches!(r, Ok(InsertOutcome::Stored(_))) {
                metrics.pending_total.fetch_add(1, Ordering::Relaxed);
            }
            defer(out, reply, r);
        }
        Cmd::Delete { recipient, sender, id } => {
            let r = tx
                .prepare_cached(
                    "DELETE FROM envelopes WHERE sender = ?1 AND id = ?2 AND recipient = ?3",
                )
                .and_then(|mut s| {
                    s.execute(params![sender.as_bytes(), id.0, recipient.as_bytes()])
                });
            match r {
                Ok(n) if n > 0 => {
                    if let Some(c) = counts.get_mut(&recipient) {
                        *c = c.saturating_sub(1);
                        if *c == 0 {
                            counts.remove(&recipient);
                        }
                    }
                    metrics.pending_total.fetch_sub(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "delete failed"),
            }
        }
        Cmd::Load { recipient, after_ord, limit, reply } => {
            defer(out, reply, load(tx, recipient, after_ord, limit));
        }
        Cmd::Pending { recipient, reply } => {
            defer(out, reply, Ok(counts.get(&recipient).copied().unwrap_or(0)));
        }
        Cmd::Publish { host, hash, expires_at, max_open, reply } => {
            defer(out, reply, publish(tx, host, hash, expires_at, max_open));
        }
        Cmd::RevokeInvite { host, hash, reply } => {
            let r = tx
                .execute(
                    "UPDATE invites SET revoked = 1 WHERE hash = ?1 AND host = ?2",
                    params![hash.0, host.as_bytes()],
                )
                .map(|n| n > 0)
                .map_err(StoreError::from);
            defer(out, reply, r);
        }
        Cmd::Claim { host, guest, hash, now, reply } => {
            defer(out, reply, claim(tx, host, guest, hash, now));
        }
        Cmd::RevokePeer { a, b, reply } => {
            let r = revoke_peer(tx, counts, a, b);
            if let Ok(n) = r {
                metrics.pending_total.fetch_sub(n, Ordering::Relaxed);
            }
            defer(out, reply, r);
        }
        Cmd::Pairs { reply } => {
            let r = (|| {
                let mut s = tx.prepare("SELECT a, b FROM pairs")?;
                let rows = s.query_map([], |r| {
                    Ok((pk(&r.get::<_, Vec<u8>>(0)?)?, pk(&r.get::<_, Vec<u8>>(1)?)?))
                })?;
                rows.collect::<Result<Vec<_>, _>>().map_err(StoreError::from)
            })();
            defer(out, reply, r);
        }
        Cmd::Health { reply } => {
            let r = tx.query_row("SELECT 1", [], |_| Ok(())).map_err(StoreError::from);
            defer(out, reply, r);
        }
        Cmd::Close => {}
    }
}

// The cause is printed in these variants' messages, so they are not `#[source]`
// (an error chain would print it twice); hence hand-written `From`s.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<rusqlite_migration::Error> for StoreError {
    fn from(e: rusqlite_migration::Error) -> Self {
        Self::Migration(e)
    }
}
