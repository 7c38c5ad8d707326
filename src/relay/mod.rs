//! The relay: routes sealed envelopes between Ed25519 identities and never sees a
//! key or a plaintext (PROTOCOL.md §3).
//!
//! - [`config`]: [`RelayConfig`] from defaults and the environment.
//! - `server`: axum routes on one port (`/ws`, `/health`, `/metrics`).
//! - `accept`: the accept loop in front of them: TLS, header-read timeout,
//!   per-address cap before the upgrade, back-off when descriptors run out.
//! - [`tls`]: the relay's own certificate, reloaded on SIGHUP or file change.
//! - `conn`: one actor per WebSocket (frames, backpressure, pings); `login` is its
//!   first phase, `commit` answers senders once their envelope is on disk.
//! - `auth`: challenge signatures and HMAC session tokens.
//! - `hub`: who is online, pairs, live envelopes awaiting their ack; `recent` its
//!   memory of delivered ids (a ring and a compact index).
//! - `store`: SQLite on a dedicated thread with group commit.
//! - [`storage`]: the seam in front of the stores (SQLite, or `pg`: PostgreSQL
//!   shared by several relay nodes, with their cross-node wake-ups).
//! - `limits`, [`metrics`].
//!
//! Embedding: [`start`] binds and spawns; [`RelayHandle::shutdown`] stops cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod accept;
mod auth;
mod commit;
pub mod config;
mod conn;
mod hub;
mod limits;
mod lock;
mod login;
pub mod metrics;
mod pg;
mod queries;
mod recent;
mod server;
pub mod storage;
mod store;
pub mod tls;

pub use auth::{AuthError, SecretFileError};
pub use config::{ConfigError, HmacSecret, RelayConfig, TlsFiles};
pub use lock::{LockError, lock_file_path};
pub use metrics::Metrics;
pub use pg::{PgError, PgUrl};
pub use storage::Backend;
pub use store::StoreError;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// libsodium could not be initialised.
    #[error("crypto init failed: {0}")]
    Crypto(crate::crypto::KeyError),
    /// The HMAC secret file could not be read or created.
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    /// The database could not be opened or migrated.
    #[error("relay database {path}")]
    Store {
        /// The database path.
        path: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsConfigError),
    /// The database directory could not be created.
    #[error("cannot create the relay's directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another relay uses this database (or its lock file is unusable).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A blocking setup task died.
    #[error("relay setup task failed")]
    Setup,
    /// Several nodes on one PostgreSQL database must accept each other's tokens.
    #[error("AGENTROOM_DB is a PostgreSQL URL: set HMAC_SECRET, the same on every relay node")]
    SharedSecretRequired,
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) config: RelayConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Arc<storage::Store>,
    /// With PostgreSQL: this node's logins as the other nodes hear of them.
    pub(crate) cluster: Option<Arc<pg::Cluster>>,
    pub(crate) hub: hub::Hub,
    pub(crate) keys: auth::TokenKeys,
    pub(crate) limiter: Arc<limits::ConnLimiter>,
    /// Per-address login attempts; `None` with `RATE_LIMIT_DISABLED`.
    pub(crate) logins: Option<limits::LoginLimiter>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) started: Instant,
    pub(crate) next_conn_id: AtomicU64,
}

/// Unix seconds now.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A snapshot for `room status` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Logged-in identities online.
    pub online: usize,
    /// Envelopes waiting in SQLite.
    pub pending: u64,
}

/// A running relay. Dropping it without [`RelayHandle::shutdown`] cancels it too,
/// but without waiting for connections and commits to finish.
pub struct RelayHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<tokio::task::JoinHandle<()>>,
    tls: Option<Arc<tls::TlsCerts>>,
    /// Held until the handle is gone: one relay per SQLite database (PostgreSQL
    /// is shared by design).
    _lock: Option<lock::DbLock>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Open the database, bind, and serve in the background.
pub async fn start(config: RelayConfig) -> Result<RelayHandle, RelayError> {
    crate::crypto::init()?;
    let backend = Backend::of(&config.db_path);
    let mut db_lock = match backend {
        Backend::Sqlite(_) => Some(sqlite_setup(&config)?),
        Backend::Postgres(_) if config.hmac_secret.is_none() => {
            return Err(RelayError::SharedSecretRequired);
        }
        Backend::Postgres(_) => None,
    };
    accept::raise_fd_limit();
    let certs = match &config.tls {
        Some(f) => Some(tls::TlsCerts::load(&f.cert, &f.key)?),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let current = match &config.hmac_secret {
        Some(s) => s.clone(),
        None => {
            let path = config::secret_file_path(&config.db_path);
            tokio::task::spawn_blocking(move || auth::load_or_create_secret(&path))
                .await
                .map_err(|_| RelayError::Setup)??
        }
    };
    let keys = auth::TokenKeys::new(current, config.hmac_secret_previous.clone());
    let opts = store::StoreOptions {
        max_pending: config.max_pending,
        ttl: config.pending_ttl,
        sweep_interval: config.sweep_interval,
    };
    let node: Arc<str> = Arc::from(config.node_id.as_str());
    let store_err = |source| RelayError::Store { path: backend.display(), source };
    let ca = config.db_ca_file.as_deref();
    let store = storage::open(&backend, ca, opts, Arc::clone(&metrics), Arc::clone(&node))
        .await
        .map_err(store_err)?;
    let store = Arc::new(store);
    let cluster = match &*store {
        storage::Store::Postgres(pg) => Some(Arc::new(pg::Cluster::new(pg))),
        storage::Store::Sqlite(_) => None,
    };
    let pairs = store.pairs().await.map_err(store_err)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| RelayError::Bind { addr: config.bind, source })?;
    let addr =
        listener.local_addr().map_err(|source| RelayError::Bind { addr: config.bind, source })?;
    if let Some(l) = db_lock.as_mut() {
        l.record_port(addr.port())?;
    }
    let shared = Arc::new(Shared {
        hub: hub::Hub::new(Arc::clone(&store), pairs, store.next_ord()),
        limiter: limits::ConnLimiter::new(config.max_connections, config.max_connections_per_ip),
        logins: limits::LoginLimiter::new(
            config.rate_limit,
            config.login_rate_per_sec,
            config.login_burst,
        ),
        config,
        metrics,
        store,
        cluster,
        keys,
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        started: Instant::now(),
        next_conn_id: AtomicU64::new(1),
    });
    shared.tracker.spawn(sweep_held(Arc::clone(&shared)));
    if let (Some(c), Backend::Postgres(url)) = (&shared.cluster, &backend) {
        tokio::spawn(pg::listen(Arc::clone(&shared), Arc::clone(c), url.clone()));
        tracing::info!(node = %shared.config.node_id, db = %url, "relay node on PostgreSQL");
    }
    let opts = accept::AcceptOptions {
        header_read_timeout: shared.config.header_read_timeout,
        // Behind a trusted proxy every connection has the proxy's address, and the
        // proxy reads slow clients' headers itself: only the timeout applies then.
        max_unupgraded_per_ip: if shared.config.trust_proxy {
            usize::MAX
        } else {
            shared.config.max_unupgraded_per_ip
        },
        tls: certs.as_ref().map(tls::TlsCerts::server_config),
        plain_loopback: shared.config.tls_plain_loopback,
    };
    if let Some(c) = &certs {
        tokio::spawn(Arc::clone(c).watch(shared.shutdown.clone()));
    }
    let app = server::router(Arc::clone(&shared));
    let server = tokio::spawn(accept::serve(listener, app, opts, shared.shutdown.clone()));
    tracing::info!(%addr, "relay listening");
    Ok(RelayHandle { addr, shared, server: Some(server), tls: certs, _lock: db_lock })
}

/// A SQLite relay's directory (made private if new) and its exclusive lock.
fn sqlite_setup(config: &RelayConfig) -> Result<lock::DbLock, RelayError> {
    // A fresh machine has no home yet: make the database's directory, private,
    // as `room open` does for its home. An existing directory is left as it is.
    if let Some(dir) = config.db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            crate::fsutil::ensure_private_dir(dir)
                .map_err(|source| RelayError::Dir { path: dir.display().to_string(), source })?;
        }
    }
    Ok(lock::DbLock::acquire(&config.db_path)?)
}

/// Prune the hub's held-back ids whose stored envelope the store's TTL sweep
/// deleted (same interval and cutoff), until shutdown.
async fn sweep_held(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let ttl_ms = u64::try_from(shared.config.pending_ttl.as_millis()).unwrap_or(u64::MAX);
                let n = shared.hub.sweep_held(store::now_ms().saturating_sub(ttl_ms));
                if n > 0 {
                    tracing::debug!(pruned = n, "forgot held-back ids of expired envelopes");
                }
            }
        }
    }
}

impl RelayHandle {
    /// The bound address (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://addr/ws`, or `wss://addr/ws` when the relay serves TLS itself.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.addr)
    }

    /// Whether the relay serves TLS itself.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The certificate the relay serves, when it serves TLS itself.
    pub fn tls_certs(&self) -> Option<&tls::TlsCerts> {
        self.tls.as_deref()
    }

    /// Read the TLS certificate and key again (SIGHUP); without TLS, nothing.
    /// On error the previous certificate stays in use.
    pub fn reload_tls(&self) -> Result<(), tls::TlsConfigError> {
        self.tls.as_ref().map_or(Ok(()), |c| c.reload())
    }

    /// Live counters.
    pub fn stats(&self) -> RelayStats {
        let m = &self.shared.metrics;
        RelayStats {
            connections: m.connections.load(Ordering::Relaxed),
            online: self.shared.hub.online(),
            pending: m.pending_total.load(Ordering::Relaxed),
        }
    }

    /// All metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stop accepting, tell every socket `shutting_down` with a close frame, commit
    /// everything queued, and stop the store thread. Connections get
    /// [`crate::defaults::RELAY_SHUTDOWN_DEADLINE`] to end (a socket whose peer
    /// stopped reading is given up after a short grace); then what is queued is
    /// committed regardless.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        let server = self.server.take();
        let shared = Arc::clone(&self.shared);
        let wait = async move {
            if let Some(server) = server {
                let _ = server.await;
            }
            shared.tracker.close();
            shared.tracker.wait().await;
        };
        if tokio::time::timeout(crate::defaults::RELAY_SHUTDOWN_DEADLINE, wait).await.is_err() {
            tracing::warn!("connections still open at the shutdown deadline; stopping anyway");
        }
        self.shared.store.close().await;
        tracing::info!("relay stopped");
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

// The cause is printed in these variants' messages, so they are not `#[source]`
// (an error chain would print it twice); hence hand-written `From`s.
impl From<crate::crypto::KeyError> for RelayError {
    fn from(e: crate::crypto::KeyError) -> Self {
        Self::Crypto(e)
    }
}
