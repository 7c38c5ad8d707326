//! The relay: routes sealed envelopes between Ed25519 identities and never sees a
//! key or a plaintext (PROTOCOL.md §3).
//!
//! - [`config`]: [`RelayConfig`] from defaults and the environment.
//! - `server`: axum on one port (`/ws`, `/health`, `/metrics`).
//! - `conn`: one actor per WebSocket (frames, backpressure, pings); `login` is its
//!   first phase, `commit` answers senders once their envelope is on disk.
//! - `auth`: challenge signatures and HMAC session tokens.
//! - `hub`: who is online, pairs, live envelopes awaiting their ack.
//! - `store`: SQLite on a dedicated thread with group commit.
//! - `limits`, [`metrics`].
//!
//! Embedding: [`start`] binds and spawns; [`RelayHandle::shutdown`] stops cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::serve::ListenerExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod auth;
mod commit;
pub mod config;
mod conn;
mod hub;
mod limits;
mod login;
pub mod metrics;
mod queries;
mod server;
mod store;

pub use auth::{AuthError, SecretFileError};
pub use config::{ConfigError, HmacSecret, RelayConfig};
pub use metrics::Metrics;
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
    /// A blocking setup task died.
    #[error("relay setup task failed")]
    Setup,
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) config: RelayConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Arc<store::Store>,
    pub(crate) hub: hub::Hub,
    pub(crate) keys: auth::TokenKeys,
    pub(crate) limiter: Arc<limits::ConnLimiter>,
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
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Open the database, bind, and serve in the background.
pub async fn start(config: RelayConfig) -> Result<RelayHandle, RelayError> {
    crate::crypto::init()?;
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
    let db_path = config.db_path.clone();
    let m = Arc::clone(&metrics);
    let store_err =
        |source| RelayError::Store { path: config.db_path.display().to_string(), source };
    let store = tokio::task::spawn_blocking(move || store::Store::open(&db_path, opts, m))
        .await
        .map_err(|_| RelayError::Setup)?
        .map_err(store_err)?;
    let store = Arc::new(store);
    let pairs = store.pairs().await.map_err(store_err)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| RelayError::Bind { addr: config.bind, source })?;
    let addr =
        listener.local_addr().map_err(|source| RelayError::Bind { addr: config.bind, source })?;
    // Frames are small and already batched before each flush: Nagle would hold a
    // batch back until the peer's delayed ACK (up to 40 ms on Linux), which showed
    // up as 40-120 ms stalls at a steady 20k envelopes/s.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    let shared = Arc::new(Shared {
        hub: hub::Hub::new(Arc::clone(&store), pairs),
        limiter: limits::ConnLimiter::new(config.max_connections, config.max_connections_per_ip),
        config,
        metrics,
        store,
        keys,
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        started: Instant::now(),
        next_conn_id: AtomicU64::new(1),
    });
    let app =
        server::router(Arc::clone(&shared)).into_make_service_with_connect_info::<SocketAddr>();
    let token = shared.shutdown.clone();
    let server = tokio::spawn(async move {
        let r = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "relay server stopped with an error");
        }
    });
    tracing::info!(%addr, "relay listening");
    Ok(RelayHandle { addr, shared, server: Some(server) })
}

impl RelayHandle {
    /// The bound address (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://addr/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
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
    /// everything queued, and stop the store thread.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
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
