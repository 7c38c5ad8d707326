//! The PostgreSQL store: several relay nodes on one database (issue 16).
//!
//! - `writer`: inserts and deletes through one connection per node, in the order
//!   the hub enqueued them, group-committed like the SQLite store; each commit
//!   wakes the nodes holding the recipients (`NOTIFY`).
//! - `cluster`: what each node hears from the others over `LISTEN`: wake-ups for
//!   its connected recipients, newer logins of its identities elsewhere, unpairs.
//! - here: the pooled reads and short transactions (invites, pairs, queue reads),
//!   migrations under an advisory lock, and the TTL sweep.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::metrics::Metrics;
use super::store::{
    ClaimOutcome, InsertOutcome, PublishOutcome, StoreError, StoreOptions, StoredEnvelope, now_ms,
};
use crate::crypto::IdentityPublicKey;
use crate::protocol::{EnvelopeId, InviteHash};

mod cluster;
mod writer;

pub(crate) use cluster::{Cluster, listen};

/// The `LISTEN`/`NOTIFY` channel every node uses.
const CHANNEL: &str = "agentroom";
/// Advisory-lock class (first key) of the migration lock.
const MIGRATION_LOCK: i32 = 0x6172_0001;
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
/// The PostgreSQL migrations, in order; applied once each, recorded in
/// `agentroom_migrations`.
const MIGRATIONS: &[(i32, &str)] =
    &[(1, include_str!("../../../migrations/postgres/001_init.sql"))];

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

/// The TLS connector of every database connection: the bundled and OS roots, plus
/// `ca_file`. Used only for URLs with `sslmode=require` (see [`PgUrl::config`]).
fn connector(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, PgError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|source| PgError::CaFile { path: path.to_path_buf(), source })?;
        let bad = || PgError::CaCertificate { path: path.to_path_buf() };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().map_err(|_| bad())?;
        if certs.is_empty() {
            return Err(bad());
        }
        for c in certs {
            roots.add(c).map_err(|_| bad())?;
        }
    }
    let config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
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

fn ordered(a: IdentityPublicKey, b: IdentityPublicKey) -> (IdentityPublicKey, IdentityPublicKey) {
    if a <= b { (a, b) } else { (b, a) }
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
        let tls = connector(ca_file)?;
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
        migrate(&pool).await?;
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
        let sweeper = tokio::spawn(sweep_loop(pool.clone(), opts, Arc::clone(&metrics)));
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

    pub(crate) async fn publish(
        &self,
        host: IdentityPublicKey,
        hash: InviteHash,
        expires_at: u64,
        max_open: u64,
    ) -> Result<PublishOutcome, StoreError> {
        let t = Instant::now();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let host_b = host.as_bytes().as_slice();
        let hash_b = hash.0.as_slice();
        // Serialise one host's publishes, so two nodes cannot both pass the quota.
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&RECIPIENT_LOCK, &lock_key(&host)])
            .await?;
        let owner = tx.query_opt("SELECT host FROM invites WHERE hash = $1", &[&hash_b]).await?;
        let out = match owner {
            Some(row) if row.get::<_, &[u8]>(0) != host_b => PublishOutcome::Conflict,
            Some(_) => {
                tx.execute(
                    "UPDATE invites SET expires_at = $2 WHERE hash = $1 AND claimed_by IS NULL",
                    &[&hash_b, &i64_of(expires_at)],
                )
                .await?;
                PublishOutcome::Published
            }
            None => {
                let open: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM invites WHERE host = $1 AND claimed_by IS NULL \
                         AND NOT revoked AND expires_at > $2",
                        &[&host_b, &i64_of(crate::relay::now_secs())],
                    )
                    .await?
                    .get(0);
                if u64::try_from(open).unwrap_or(0) >= max_open {
                    PublishOutcome::Quota
                } else {
                    let n = tx
                        .execute(
                            "INSERT INTO invites (hash, host, expires_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (hash) DO NOTHING",
                            &[&hash_b, &host_b, &i64_of(expires_at)],
                        )
                        .await?;
                    // Lost a race with another host publishing the same hash.
                    if n == 1 { PublishOutcome::Published } else { PublishOutcome::Conflict }
                }
            }
        };
        tx.commit().await?;
        self.timed(t);
        Ok(out)
    }

    pub(crate) async fn revoke_invite(
        &self,
        host: IdentityPublicKey,
        hash: InviteHash,
    ) -> Result<bool, StoreError> {
        let t = Instant::now();
        let c = self.pool.get().await?;
        let n = c
            .execute(
                "UPDATE invites SET revoked = TRUE WHERE hash = $1 AND host = $2",
                &[&hash.0.as_slice(), &host.as_bytes().as_slice()],
            )
            .await?;
        self.timed(t);
        Ok(n > 0)
    }

    /// Single use across nodes: the invite's row is locked (`FOR UPDATE`) for the
    /// whole check-and-claim, so of two guests claiming at once on two nodes the
    /// second sees the first's claim.
    pub(crate) async fn claim(
        &self,
        host: IdentityPublicKey,
        guest: IdentityPublicKey,
        hash: InviteHash,
        now: u64,
    ) -> Result<ClaimOutcome, StoreError> {
        let t = Instant::now();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let hash_b = hash.0.as_slice();
        let guest_b = guest.as_bytes().as_slice();
        let row = tx
            .query_opt(
                "SELECT host, expires_at, revoked, claimed_by FROM invites WHERE hash = $1 \
                 FOR UPDATE",
                &[&hash_b],
            )
            .await?;
        let Some(row) = row else {
            return Ok(ClaimOutcome::Unknown);
        };
        if row.get::<_, &[u8]>(0) != host.as_bytes().as_slice() {
            return Ok(ClaimOutcome::Unknown);
        }
        if row.get::<_, bool>(2) {
            return Ok(ClaimOutcome::Revoked);
        }
        match row.get::<_, Option<&[u8]>>(3) {
            Some(g) if g != guest_b => return Ok(ClaimOutcome::Claimed),
            Some(_) => {}
            None => {
                if u64::try_from(row.get::<_, i64>(1)).unwrap_or(0) <= now {
                    return Ok(ClaimOutcome::Expired);
                }
                tx.execute(
                    "UPDATE invites SET claimed_by = $2 WHERE hash = $1",
                    &[&hash_b, &guest_b],
                )
                .await?;
            }
        }
        let (a, b) = ordered(host, guest);
        tx.execute(
            "INSERT INTO pairs (a, b, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&a.as_bytes().as_slice(), &b.as_bytes().as_slice(), &i64_of(now)],
        )
        .await?;
        tx.commit().await?;
        self.timed(t);
        Ok(ClaimOutcome::Paired)
    }

    /// Unpair, drop the queue between the two, and tell the other nodes (their
    /// hubs forget the pair when the notification arrives).
    pub(crate) async fn revoke_peer(
        &self,
        a: IdentityPublicKey,
        b: IdentityPublicKey,
    ) -> Result<u64, StoreError> {
        let t = Instant::now();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let (x, y) = ordered(a, b);
        let (a_b, b_b) = (a.as_bytes().as_slice(), b.as_bytes().as_slice());
        tx.execute(
            "DELETE FROM pairs WHERE a = $1 AND b = $2",
            &[&x.as_bytes().as_slice(), &y.as_bytes().as_slice()],
        )
        .await?;
        tx.execute(
            "UPDATE invites SET revoked = TRUE WHERE (host = $1 AND claimed_by = $2) \
             OR (host = $2 AND claimed_by = $1)",
            &[&a_b, &b_b],
        )
        .await?;
        let n = tx
            .execute(
                "DELETE FROM envelopes WHERE (recipient = $1 AND sender = $2) \
                 OR (recipient = $2 AND sender = $1)",
                &[&a_b, &b_b],
            )
            .await?;
        let note = cluster::Note::Unpair { node: self.node.to_string(), a, b }.encode();
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &note]).await?;
        tx.commit().await?;
        self.timed(t);
        let _ =
            self.metrics
                .pending_total
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
        Ok(n)
    }

    pub(crate) async fn pairs(
        &self,
    ) -> Result<Vec<(IdentityPublicKey, IdentityPublicKey)>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c.query("SELECT a, b FROM pairs", &[]).await?;
        rows.iter()
            .map(|r| Ok((pk(r.get(0))?, pk(r.get(1))?)))
            .collect::<Result<Vec<_>, PgError>>()
            .map_err(StoreError::Postgres)
    }

    pub(crate) async fn is_paired(
        &self,
        a: IdentityPublicKey,
        b: IdentityPublicKey,
    ) -> Result<bool, StoreError> {
        let t = Instant::now();
        let (x, y) = ordered(a, b);
        let c = self.pool.get().await?;
        let st =
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM pairs WHERE a = $1 AND b = $2)").await?;
        let yes: bool =
            c.query_one(&st, &[&x.as_bytes().as_slice(), &y.as_bytes().as_slice()]).await?.get(0);
        self.timed(t);
        Ok(yes)
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

/// Apply the migrations not yet recorded, one node at a time (session advisory
/// lock: a node that starts while another migrates waits, then finds it done).
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut c = pool.get().await?;
    c.execute("SELECT pg_advisory_lock($1, 0)", &[&MIGRATION_LOCK]).await?;
    let r = async {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS agentroom_migrations (
                 version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        for (version, sql) in MIGRATIONS {
            let tx = c.transaction().await?;
            let done = tx
                .query_opt("SELECT 1 FROM agentroom_migrations WHERE version = $1", &[version])
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO agentroom_migrations (version, applied_at) VALUES ($1, $2)",
                    &[version, &i64_of(crate::relay::now_secs())],
                )
                .await?;
                tracing::info!(version, "PostgreSQL migration applied");
            }
            tx.commit().await?;
        }
        Ok::<(), tokio_postgres::Error>(())
    }
    .await;
    c.execute("SELECT pg_advisory_unlock($1, 0)", &[&MIGRATION_LOCK]).await?;
    r.map_err(StoreError::from)
}

/// Every node sweeps (the deletes are idempotent) and refreshes the queue-depth
/// gauge, which between sweeps moves only with this node's own inserts and deletes.
async fn sweep_loop(pool: Pool, opts: StoreOptions, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(opts.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&pool, &opts, &metrics).await {
            tracing::warn!(error = %e, "pending TTL sweep failed");
        }
    }
}

async fn sweep(pool: &Pool, opts: &StoreOptions, metrics: &Metrics) -> Result<(), StoreError> {
    let c = pool.get().await?;
    let ttl_ms = u64::try_from(opts.ttl.as_millis()).unwrap_or(u64::MAX);
    let cutoff = i64_of(now_ms().saturating_sub(ttl_ms));
    let n = c.execute("DELETE FROM envelopes WHERE accepted_ms < $1", &[&cutoff]).await?;
    let now = i64_of(crate::relay::now_secs());
    c.execute(
        "DELETE FROM invites WHERE claimed_by IS NULL AND expires_at < $1",
        &[&now.saturating_sub(86_400)],
    )
    .await?;
    if n > 0 {
        tracing::info!(expired = n, "swept expired envelopes");
        metrics.envelopes_expired.fetch_add(n, Ordering::Relaxed);
    }
    let total: i64 = c.query_one("SELECT count(*) FROM envelopes", &[]).await?.get(0);
    metrics.pending_total.store(u64::try_from(total).unwrap_or(0), Ordering::Relaxed);
    Ok(())
}
