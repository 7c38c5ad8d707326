//! Inserts and deletes of one node, in the order the hub enqueued them, on the
//! node's own connection, group-committed.
//!
//! Order across nodes (PROTOCOL.md §3.4): each batch first takes the advisory
//! lock of every recipient it inserts for (sorted, so two nodes never deadlock on
//! them) and only then inserts, so `ord` comes from the sequence while the lock is
//! held and is released only by the commit. Per recipient, rows therefore commit
//! in `ord` order on the whole cluster: a reader that has read through `ord` N
//! never finds a smaller `ord` committed later, whichever node inserted it. Per
//! sender, one node's inserts keep their FIFO order; a sender that moves to
//! another node resends what was not answered `sent`, in order, and the
//! `(sender, id)` key makes a late first copy a duplicate, not a second row.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::cluster::Note;
use super::{CHANNEL, RECIPIENT_LOCK, i64_of, lock_key};
use crate::crypto::IdentityPublicKey;
use crate::protocol::EnvelopeId;
use crate::relay::metrics::Metrics;
use crate::relay::store::{InsertOutcome, StoreError, StoreOptions, now_ms};

/// Most commands in one transaction (as the SQLite store's batch).
const MAX_BATCH: usize = 2048;
/// Wait between attempts to reconnect a lost writer connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write for the writer.
pub(super) enum Cmd {
    Insert {
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
        body: Vec<u8>,
        accepted_ms: u64,
        enforce_limit: bool,
        reply: Reply<InsertOutcome>,
    },
    Delete {
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
    },
    /// Answered once everything queued before it has committed (or failed): a
    /// read on the pool after it sees this node's earlier writes, as a read
    /// through the SQLite store's FIFO does.
    Sync(oneshot::Sender<()>),
    Close,
}

impl Cmd {
    /// Answer a command that will not run.
    pub(super) fn fail(self, err: StoreError) {
        match self {
            Self::Insert { reply, .. } => drop(reply.send(Err(err))),
            Self::Sync(reply) => drop(reply.send(())),
            Self::Delete { .. } | Self::Close => {}
        }
    }
}

struct Statements {
    insert: Statement,
    existing: Statement,
    delete: Statement,
    lock: Statement,
    counts: Statement,
    notify: Statement,
}

struct Conn {
    client: Client,
    st: Statements,
}

pub(super) struct Writer {
    cfg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    conn: Option<Conn>,
    opts: StoreOptions,
    metrics: Arc<Metrics>,
    node: Arc<str>,
}

async fn connect(
    cfg: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
) -> Result<Conn, tokio_postgres::Error> {
    let (client, connection) = cfg.connect(tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL writer connection ended");
        }
    });
    let st = Statements {
        insert: client
            .prepare(
                "INSERT INTO envelopes (recipient, sender, id, body, accepted_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sender, id) DO NOTHING RETURNING ord",
            )
            .await?,
        existing: client
            .prepare("SELECT ord, recipient, body FROM envelopes WHERE sender = $1 AND id = $2")
            .await?,
        delete: client
            .prepare("DELETE FROM envelopes WHERE sender = $1 AND id = $2 AND recipient = $3")
            .await?,
        // The function scan yields the array in order: locks are taken sorted.
        lock: client
            .prepare("SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k")
            .await?,
        counts: client
            .prepare(
                "SELECT recipient, count(*) FROM envelopes WHERE recipient = ANY($1) \
                 GROUP BY recipient",
            )
            .await?,
        notify: client.prepare("SELECT pg_notify($1, $2)").await?,
    };
    Ok(Conn { client, st })
}

impl Writer {
    pub(super) async fn connect(
        cfg: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        opts: StoreOptions,
        metrics: Arc<Metrics>,
        node: Arc<str>,
    ) -> Result<Self, StoreError> {
        let conn = connect(&cfg, &tls).await?;
        Ok(Self { cfg, tls, conn: Some(conn), opts, metrics, node })
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut buf = Vec::with_capacity(MAX_BATCH);
        loop {
            if rx.recv_many(&mut buf, MAX_BATCH).await == 0 {
                return;
            }
            let closing = buf.iter().position(|c| matches!(c, Cmd::Close));
            if let Some(i) = closing {
                buf.truncate(i);
            }
            let batch = std::mem::take(&mut buf);
            if !batch.is_empty() {
                self.run_batch(batch).await;
            }
            if closing.is_some() {
                tracing::debug!("PostgreSQL writer closing");
                return;
            }
        }
    }

    async fn conn(&mut self) -> Option<&mut Conn> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            match connect(&self.cfg, &self.tls).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reconnect the PostgreSQL writer");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
        }
        self.conn.as_mut()
    }

    async fn run_batch(&mut self, batch: Vec<Cmd>) {
        if batch.iter().all(|c| matches!(c, Cmd::Sync(_))) {
            // Nothing to write: everything before these has committed already.
            batch.into_iter().for_each(|c| c.fail(StoreError::Closed));
            return;
        }
        let started = Instant::now();
        let n = batch.len();
        let max_pending = self.opts.max_pending;
        let node = Arc::clone(&self.node);
        let result = match self.conn().await {
            Some(conn) => apply(conn, &batch, max_pending, &node).await.map_err(Some),
            None => Err(None),
        };
        let m = &self.metrics;
        m.store_commits.fetch_add(1, Ordering::Relaxed);
        m.store_batched_ops.fetch_add(n as u64, Ordering::Relaxed);
        m.observe_commit(started.elapsed());
        m.db_roundtrip.observe(started.elapsed());
        match result {
            Ok(mut outcomes) => {
                let mut outcomes = outcomes.drain(..);
                for cmd in batch {
                    let done = match cmd {
                        Cmd::Close => continue,
                        Cmd::Sync(reply) => {
                            let _ = reply.send(());
                            continue;
                        }
                        _ => outcomes.next().expect("apply gives one outcome per command"),
                    };
                    match (cmd, done) {
                        (Cmd::Insert { reply, .. }, Done::Insert(r)) => {
                            if matches!(r, InsertOutcome::Stored(_)) {
                                m.pending_total.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = reply.send(Ok(r));
                        }
                        (Cmd::Delete { .. }, Done::Delete(gone)) => {
                            if gone {
                                let _ = m.pending_total.fetch_update(
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                    |v| Some(v.saturating_sub(1)),
                                );
                            }
                        }
                        (cmd, _) => cmd.fail(StoreError::CommitFailed),
                    }
                }
            }
            Err(e) => {
                if let Some(e) = e {
                    tracing::warn!(error = %e, "PostgreSQL batch failed");
                }
                m.store_errors.fetch_add(1, Ordering::Relaxed);
                for cmd in batch {
                    cmd.fail(StoreError::CommitFailed);
                }
            }
        }
    }
}

/// What one statement of a batch did (before duplicates are looked up).
enum Step {
    /// The insert's new `ord`, or `None` when it wrote no row.
    Inserted(Option<i64>),
    /// Whether a row was deleted.
    Deleted(bool),
}

/// What one command of a committed batch did.
enum Done {
    Insert(InsertOutcome),
    /// Whether a row was deleted.
    Delete(bool),
}

/// Run one batch in one transaction: one [`Done`] per insert and delete, in order.
async fn apply(
    conn: &mut Conn,
    batch: &[Cmd],
    max_pending: u64,
    node: &str,
) -> Result<Vec<Done>, tokio_postgres::Error> {
    let st = &conn.st;
    let txn = conn.client.transaction().await?;
    let tx = &txn;
    let recips: BTreeSet<[u8; 32]> = batch
        .iter()
        .filter_map(|c| match c {
            Cmd::Insert { recipient, .. } => Some(*recipient.as_bytes()),
            _ => None,
        })
        .collect();
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    if !recips.is_empty() {
        let mut keys: Vec<i32> =
            recips.iter().filter_map(|r| super::pk(r).ok()).map(|k| lock_key(&k)).collect();
        keys.sort_unstable();
        keys.dedup();
        tx.query_one(&st.lock, &[&RECIPIENT_LOCK, &keys]).await?;
        let list: Vec<&[u8]> = recips.iter().map(<[u8; 32]>::as_slice).collect();
        for row in tx.query(&st.counts, &[&list]).await? {
            counts.insert(row.get(0), u64::try_from(row.get::<_, i64>(1)).unwrap_or(0));
        }
    }
    // Every statement of a phase is sent at once: tokio-postgres pipelines
    // requests in the order their futures are first polled, and `try_join_all`
    // polls in order, so a batch costs a few round trips, not one per envelope.
    let mut steps: Vec<BoxFuture<'_, Result<Step, tokio_postgres::Error>>> = Vec::new();
    for cmd in batch {
        match cmd {
            Cmd::Insert { recipient, sender, id, body, accepted_ms, enforce_limit, .. } => {
                let count = counts.entry(recipient.as_bytes().to_vec()).or_insert(0);
                // Counted when tried: a duplicate in the same batch as the cap is
                // reached may make a later envelope `queue_full` (its sender retries).
                if !*enforce_limit || *count < max_pending {
                    *count += 1;
                    steps.push(Box::pin(async move {
                        let row = tx
                            .query_opt(
                                &st.insert,
                                &[
                                    &recipient.as_bytes().as_slice(),
                                    &sender.as_bytes().as_slice(),
                                    &id.0.as_slice(),
                                    body,
                                    &i64_of(*accepted_ms),
                                ],
                            )
                            .await?;
                        Ok(Step::Inserted(row.map(|r| r.get(0))))
                    }));
                } else {
                    steps.push(Box::pin(std::future::ready(Ok(Step::Inserted(None)))));
                }
            }
            Cmd::Delete { recipient, sender, id } => steps.push(Box::pin(async move {
                let n = tx
                    .execute(
                        &st.delete,
                        &[
                            &sender.as_bytes().as_slice(),
                            &id.0.as_slice(),
                            &recipient.as_bytes().as_slice(),
                        ],
                    )
                    .await?;
                Ok(Step::Deleted(n > 0))
            })),
            Cmd::Sync(_) | Cmd::Close => {}
        }
    }
    let steps = futures_util::future::try_join_all(steps).await?;
    // Inserts that wrote no row: a duplicate, a conflict, or over the cap.
    let writes = batch.iter().filter(|c| matches!(c, Cmd::Insert { .. } | Cmd::Delete { .. }));
    let mut lookups: Vec<BoxFuture<'_, Result<InsertOutcome, tokio_postgres::Error>>> = Vec::new();
    let mut woken: Vec<IdentityPublicKey> = Vec::new();
    for (cmd, step) in writes.clone().zip(&steps) {
        match (cmd, step) {
            (Cmd::Insert { recipient, .. }, Step::Inserted(Some(_)))
                if !woken.contains(recipient) =>
            {
                woken.push(*recipient);
            }
            (Cmd::Insert { recipient, sender, id, body, .. }, Step::Inserted(None)) => {
                lookups.push(Box::pin(async move {
                    let row = tx
                        .query_opt(&st.existing, &[&sender.as_bytes().as_slice(), &id.0.as_slice()])
                        .await?;
                    let to = recipient.as_bytes().as_slice();
                    Ok(match row {
                        Some(r) if r.get::<_, &[u8]>(1) == to && r.get::<_, &[u8]>(2) == body => {
                            InsertOutcome::Duplicate(r.get(0))
                        }
                        Some(_) => InsertOutcome::Conflict,
                        None => InsertOutcome::QueueFull,
                    })
                }));
            }
            _ => {}
        }
    }
    let mut looked_up = futures_util::future::try_join_all(lookups).await?.into_iter();
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        out.push(match step {
            Step::Inserted(Some(ord)) => Done::Insert(InsertOutcome::Stored(ord)),
            Step::Inserted(None) => {
                Done::Insert(looked_up.next().expect("one lookup per insert without a row"))
            }
            Step::Deleted(gone) => Done::Delete(gone),
        });
    }
    // Delivered at commit, to every node listening (this one skips its own).
    let at = now_ms();
    let notes: Vec<String> = woken
        .into_iter()
        .map(|r| Note::Wake { node: node.to_owned(), at_ms: at, recipient: r }.encode())
        .collect();
    futures_util::future::try_join_all(
        notes.iter().map(|note| async move { tx.query_one(&st.notify, &[&CHANNEL, note]).await }),
    )
    .await?;
    txn.commit().await?;
    Ok(out)
}
