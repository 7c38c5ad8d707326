//! The per-home daemon: the one owner of a home's relay links, inbox, outbox
//! and leases, and the local API everything else uses.
//!
//! - [`lock`]: an exclusive `flock` on `<home>/daemon.lock`; a second owner
//!   gets [`DaemonError::Busy`] naming the running pid.
//! - [`engine`]: the home's [`Client`](crate::client::Client) on its own thread:
//!   links, store-then-ack, events, send/reply/invite calls.
//! - [`api`]: HTTP/1.1 JSON on the Unix socket ([`paths`]) and, with `--http`,
//!   on loopback TCP behind a bearer token ([`http`]); `GET /v1/events` is
//!   Server-Sent Events; `GET /v1/openapi.json` is generated from [`types`].
//! - [`client`]: the CLI's side of the socket. [`attach_or_own`] makes the
//!   first consumer of a home its owner and every later one a client.
//! - [`consumer`]: `serve`'s handler loop and `listen` as lease consumers.
//! - `room`: what `room open` asks of the home's client (its invite, guests,
//!   relay moves), run by the engine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::home::Home;
use crate::client::{Client, ClientError};

pub mod api;
pub mod client;
pub mod consumer;
pub(crate) mod db;
mod engine;
mod held_sends;
pub mod http;
pub mod lease;
pub mod lock;
pub mod paths;
mod room;
pub mod types;

pub use client::DaemonClient;
pub use lock::HomeLock;

/// Events kept for a slow SSE subscriber before it is told it lagged.
pub(crate) const EVENT_BUFFER: usize = 1024;
/// Events kept from a daemon's start for `GET /v1/events?replay=true`.
pub(crate) const EARLY_EVENTS: usize = 256;
/// How long a command waits for a starting daemon (or a one-shot command
/// holding the home) before giving up.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the daemon and of its clients.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another process owns the home.
    #[error("another agentroom process ({}) owns {}: stop it or use it (commands in this home talk to a running daemon)", pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}")), home.display())]
    Busy {
        /// The home.
        home: PathBuf,
        /// The holder's pid, if it could be read.
        pid: Option<u32>,
    },
    /// The home, identity or database failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A file or socket operation failed.
    #[error("{path}: {source}")]
    Io {
        /// File or socket.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The socket fallback directory is not ours or not private.
    #[error("{0} is not a private directory owned by this user; refusing to put the socket there")]
    UnsafeSocketDir(PathBuf),
    /// The loopback HTTP listener could not start.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `--http` must be a loopback address.
    #[error("--http {0} is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)")]
    NotLoopback(SocketAddr),
    /// The daemon could not be reached or answered with a failure.
    #[error("daemon: {message}")]
    Api {
        /// HTTP status (0 when unreachable).
        status: u16,
        /// Failure class.
        class: types::ErrorClass,
        /// One sentence.
        message: String,
    },
    /// The daemon's engine or database thread stopped.
    #[error("the daemon is shutting down")]
    Stopped,
}

impl DaemonError {
    /// The CLI exit class.
    pub fn class(&self) -> crate::client::ErrorClass {
        use crate::client::ErrorClass as C;
        match self {
            DaemonError::Client(e) => e.class(),
            DaemonError::Api { class, .. } => match class {
                types::ErrorClass::Failure => C::Failure,
                types::ErrorClass::Usage => C::Usage,
                types::ErrorClass::Network => C::Network,
                types::ErrorClass::NoSession => C::NoSession,
            },
            DaemonError::NotLoopback(_) => C::Usage,
            _ => C::Failure,
        }
    }
}

/// Options of a daemon run.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Also serve the API on this loopback address, behind a bearer token.
    pub http: Option<SocketAddr>,
    /// Delete history (and read messages) older than this (`--retain`).
    pub retain: Option<Duration>,
    /// Dial every peer's relay at this URL instead (`--server`).
    pub server: Option<crate::client::relay_url::RelayUrl>,
}

/// A running daemon: its socket and the task that ends when it stops.
#[derive(Debug)]
pub struct Daemon {
    /// The socket path.
    pub socket: PathBuf,
    /// The loopback HTTP address, with `--http`.
    pub http: Option<SocketAddr>,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

impl Daemon {
    /// Start the daemon for `home`, which `lock` proves we own. It runs until
    /// `cancel` fires.
    pub async fn start(
        home: &Home,
        lock: HomeLock,
        opts: &DaemonOptions,
        cancel: CancellationToken,
    ) -> Result<Self, DaemonError> {
        crate::crypto::init()
            .map_err(|e| ClientError::Identity(crate::client::identity::IdentityError::Key(e)))?;
        let shared = engine::Shared::new();
        let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel(64);
        let db = db::Db::open_volatile(&home.db_path())?;
        let released =
            db.call(|s| lease::release_all(s.conn())).await?.map_err(ClientError::from)?;
        if released > 0 {
            tracing::info!(released, "leases of an earlier daemon's consumers ended");
        }
        // The engine owns a Client (not Sync, holds SQLite across awaits): it
        // gets its own thread and runtime.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (h, sh, c) = (home.clone(), shared.clone(), cancel.clone());
        let (retain, server) = (opts.retain, opts.server.clone());
        let engine_thread = std::thread::Builder::new()
            .name("agentroom-engine".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(DaemonError::Io { path: h.dir().into(), source: e }));
                        return;
                    }
                };
                rt.block_on(async move {
                    let engine = Client::open(&h, c.child_token())
                        .and_then(|mut client| {
                            client.set_retention(retain)?;
                            if let Some(server) = &server {
                                client.redirect_all_relays(server)?;
                            }
                            Ok(client)
                        })
                        .and_then(|client| engine::Engine::new(client, jobs_rx, sh));
                    match engine {
                        Ok(mut engine) => {
                            engine.start_links();
                            let _ = ready_tx.send(Ok(()));
                            engine.run(c).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                        }
                    }
                });
            })
            .map_err(|source| DaemonError::Io { path: home.dir().into(), source })?;
        ready_rx.await.map_err(|_| DaemonError::Stopped)??;
        let socket = paths::socket_path(home)?;
        let me = crate::client::identity::load(home).map_err(ClientError::from)?.public();
        let state = api::AppState::new(
            api::Info {
                home: home.dir().display().to_string(),
                socket: socket.display().to_string(),
                http: opts.http.map(|a| a.to_string()),
                me,
            },
            db,
            jobs_tx,
            shared.clone(),
            cancel.clone(),
        );
        let ui = crate::ui::Ui::new(
            home,
            shared.paused.clone(),
            shared.arrived.clone(),
            shared.events.clone(),
        );
        let (router, _) = api::router(state);
        let router = router.merge(ui.router());
        let unix = api::bind_unix(&socket)?;
        let tcp = match opts.http {
            Some(addr) => Some(
                http::bind(home, addr, router.clone(), ui.sessions().clone(), cancel.clone())
                    .await?,
            ),
            None => None,
        };
        let http_addr = tcp.as_ref().map(|t| t.0);
        tracing::info!(socket = %socket.display(), http = ?http_addr, "daemon listening");
        let sock = socket.clone();
        let task = tokio::spawn(async move {
            let _lock = lock;
            let c = cancel.clone();
            let unix_srv = axum::serve(unix, router).with_graceful_shutdown(c.cancelled_owned());
            let result = match tcp {
                Some((_, srv)) => {
                    let (a, b) = tokio::join!(unix_srv, srv);
                    a.and(b)
                }
                None => unix_srv.await,
            };
            cancel.cancel();
            let _ = std::fs::remove_file(&sock);
            let _ = tokio::task::spawn_blocking(move || engine_thread.join()).await;
            result.map_err(|source| DaemonError::Io { path: sock, source })
        });
        Ok(Self { socket, http: http_addr, task })
    }

    /// Wait until the daemon stopped.
    pub async fn wait(self) -> Result<(), DaemonError> {
        self.task.await.map_err(|_| DaemonError::Stopped)?
    }
}

/// Who serves a home for this command.
#[derive(Debug)]
pub enum Attach {
    /// A daemon runs: use it.
    Daemon(DaemonClient),
    /// Nobody did: we own the home now.
    Owner(HomeLock),
}

/// Connect to the home's daemon, or take the home's lock when none runs.
/// While another process holds the lock without a socket answering (a daemon
/// starting, or a one-shot command running directly), wait up to `timeout`.
pub async fn attach_or_own(home: &Home, timeout: Duration) -> Result<Attach, DaemonError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(dc) = DaemonClient::connect(home).await? {
            return Ok(Attach::Daemon(dc));
        }
        match HomeLock::try_acquire(home) {
            Ok(lock) => return Ok(Attach::Owner(lock)),
            Err(e @ DaemonError::Busy { .. }) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
