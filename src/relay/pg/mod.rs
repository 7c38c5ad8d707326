//! The PostgreSQL store: several relay nodes on one database (issue 16).
//!
//! - `writer`: inserts and deletes through one connection per node, in the order
//!   the hub enqueued them, group-committed like the SQLite store; each commit
//!   wakes the nodes holding the recipients (`NOTIFY`).
//! - `cluster`: what each node hears from the others over `LISTEN`: wake-ups for
//!   its connected recipients, newer logins of its identities elsewhere, unpairs.
//! - `pairs`: invites and pairs, short transactions on the pool;
//! - `setup`: the TLS connector, migrations under an advisory lock, the TTL sweep;
//! - here: the store's handle, its queue reads on the pool, and its errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::metrics::Metrics;
use super::store::{InsertOutcome, StoreError, StoreOptions, StoredEnvelope};
use crate::crypto::IdentityPublicKey;
use crate::protocol::EnvelopeId;

mod cluster;
mod pairs;
mod setup;
mod writer;

pub(crate) use cluster::{Cluster, listen};

/// The `LISTEN`/`NOTIFY` channel every node uses.
const CHANNEL: &str = "agentroom";
/// Advisory-lock class (first key) of per-recipient insert locks.
const RECIPIENT_LOCK: i32 = 0x6172_0002;
/// Pooled connections per node: reads of the queue and invite/pair transactions.
/// The writer and the listener have their own connection each.
const POOL_SIZE: usize = 16;
/// A database that does not answer a connection attempt within this is down (a
/// URL's own `connect_timeout` wins).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a pooled connection before the operation fails (`internal`).
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Commands waiting for the writer; like the SQLite store's queue, a full one
/// answers inserts `internal` (the sender retries).
const WRITER_QUEUE: usize = 8192;
/// A PostgreSQL connection URL; its password never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// Wrap a `postgres://` URL.
    pub(crate) fn new(url: String) -> Self {
        Self(url)
    }

    fn config(&self) -> Result<tokio_postgres::Config, PgError> {
        let mut cfg: tokio_postgres::Config = self.0.parse().map_err(PgError::Url)?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(CONNECT_TIMEOUT);
        }
        if cfg.get_application_name().is_none() {
            cfg.application_name("agentroom-relay");
        }
        // TLS only when asked for (`sslmode=require`), and then verified. The
        // default `prefer` would meet self-signed server certificates (Debian's
        // default) with a verification failure instead of plain TCP.
        if cfg.get_ssl_mode() == SslMode::Prefer {
            cfg.ssl_mode(SslMode::Disable);
        }
        Ok(cfg)
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                f.write_str(u.as_str())
            }
            Err(_) => f.write_str("postgres://<unparsable URL>"),
        }
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

/// PostgreSQL failures.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The server answered with an error, or the connection failed.
    #[error("PostgreSQL: {0}")]
    Db(tokio_postgres::Error),
    /// No pooled connection could be had.
    #[error("PostgreSQL pool: {0}")]
    Pool(deadpool_postgres::PoolError),
    /// `AGENTROOM_DB` does not parse as a PostgreSQL URL.
    #[error("invalid PostgreSQL URL")]
    Url(#[source] tokio_postgres::Error),
    /// A stored key or id has the wrong length.
    #[error("malformed row in the PostgreSQL store")]
    Corrupt,
    /// `AGENTROOM_DB_CA_FILE` could not be read.
    #[error("cannot read the database CA file {path}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `AGENTROOM_DB_CA_FILE` holds no usable PEM certificate.
    #[error("no usable PEM certificate in the database CA file {path}")]
    CaCertificate {
        /// The file.
        path: std::path::PathBuf,
    },
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Pool(e)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(PgError::Db(e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Postgres(PgError::Pool(e))
    }
}

pub(super) fn pk(bytes: &[u8]) -> Result<IdentityPublicKey, PgError> {
    IdentityPublicKey::from_bytes(bytes).map_err(|_| PgError::Corrupt)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The PostgreSQL store of one relay node.
pub(crate) struct PgStore {
    pool: Pool,
    tls: MakeRustlsConnect,
    writer: mpsc::Sender<writer::Cmd>,
    writer_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    sweeper: tokio::task::JoinHandle<()>,
    node: Arc<str>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("node", &self.node).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect, migrate (one node at a time), and start the writer and the sweep.
    pub(crate) async fn open(
        url: &PgUrl,
        ca_file: Option<&std::path::Path>,
        opts: StoreOptions,
        metrics: Arc<Metrics>,
        node: Arc<str>,
    ) -> Result<Self, StoreError> {
        let cfg = url.config()?;
        let tls = setup::connector(ca_file)?;
        let mgr = Manager::from_config(
            cfg.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|_| StoreError::Closed)?;
        setup::migrate(&pool).await?;
        let w = writer::Writer::connect(
            cfg,
            tls.clone(),
            opts.clone(),
            Arc::clone(&metrics),
            Arc::clone(&node),
        )
        .await?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer_task = tokio::spawn(w.run(rx));
        let sweeper = tokio::spawn(setup::sweep_loop(pool.clone(), opts, Arc::clone(&metrics)));
        Ok(Self {
            pool,
            tls,
            writer: tx,
            writer_task: std::sync::Mutex::new(Some(writer_task)),
            sweeper,
            node,
            metrics,
        })
    }

    /// This node's name in notifications and `/health`.
    pub(crate) fn node(&self) -> &Arc<str> {
        &self.node
    }

    /// The pool (the cluster's login notifications use it).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The TLS connector of every connection (the listener's too).
    pub(crate) fn tls(&self) -> &MakeRustlsConnect {
        &self.tls
    }

    pub(crate) fn insert(
        &self,
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
        body: Vec<u8>,
        accepted_ms: u64,
        enforce_limit: bool,
    ) -> oneshot::Receiver<Result<InsertOutcome, StoreError>> {
        let (reply, rx) = oneshot::channel();
        let cmd =
            writer::Cmd::Insert { recipient, sender, id, body, accepted_ms, enforce_limit, reply };
        match self.writer.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(c)) => c.fail(StoreError::Busy),
            Err(mpsc::error::TrySendError::Closed(c)) => c.fail(StoreError::Closed),
        }
        rx
    }

    pub(crate) fn delete(
        &self,
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
    ) {
        if self.writer.try_send(writer::Cmd::Delete { recipient, sender, id }).is_err() {
            tracing::debug!("writer queue full or closed; an acked row stays queued");
        }
    }

    /// Wait until this node's writes queued so far have committed.
    async fn sync(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer.send(writer::Cmd::Sync(reply)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Time one pooled round trip into the database histogram.
    fn timed(&self, started: Instant) {
        self.metrics.db_roundtrip.observe(started.elapsed());
    }

    pub(crate) async fn load(
        &self,
        recipient: IdentityPublicKey,
        after_ord: i64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.sync().await?;
        let t = Instant::now();
        let c = self.pool.get().await?;
        let st = c
            .prepare_cached(
                "SELECT ord, sender, id, body, accepted_ms FROM envelopes \
                 WHERE recipient = $1 AND ord > $2 ORDER BY ord LIMIT $3",
            )
            .await?;
        let rows = c
            .query(&st, &[&recipient.as_bytes().as_slice(), &after_ord, &i64_of(limit as u64)])
            .await?;
        self.timed(t);
        rows.iter()
            .map(|r| {
                let id: &[u8] = r.get(2);
                Ok(StoredEnvelope {
                    ord: r.get(0),
                    sender: pk(r.get(1))?,
                    id: EnvelopeId(id.try_into().map_err(|_| PgError::Corrupt)?),
                    body: r.get(3),
                    accepted_ms: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, PgError>>()
            .map_err(StoreError::Postgres)
    }

    pub(crate) async fn pending(&self, recipient: IdentityPublicKey) -> Result<u64, StoreError> {
        self.sync().await?;
        let t = Instant::now();
        let c = self.pool.get().await?;
        let st = c.prepare_cached("SELECT count(*) FROM envelopes WHERE recipient = $1").await?;
        let n: i64 = c.query_one(&st, &[&recipient.as_bytes().as_slice()]).await?.get(0);
        self.timed(t);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn health(&self) -> Result<(), StoreError> {
        let t = Instant::now();
        let c = self.pool.get().await?;
        c.query_one("SELECT 1", &[]).await?;
        self.timed(t);
        Ok(())
    }

    /// Commit what the writer holds, then stop it and the sweep.
    pub(crate) async fn close(&self) {
        let _ = self.writer.send(writer::Cmd::Close).await;
        let task = self.writer_task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
        self.sweeper.abort();
        self.pool.close();
    }
}

/// The per-recipient advisory lock's second key (collisions only serialise more).
pub(super) fn lock_key(k: &IdentityPublicKey) -> i32 {
    let b = k.as_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
