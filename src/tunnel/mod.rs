//! Tunnel supervisor: makes the local relay reachable from the internet.
//!
//! - [`TunnelKind::Cloudflared`]: a cloudflared quick tunnel (`https://*.trycloudflare.com`),
//!   run as a child process in its own process group; the binary is found or
//!   installed by [`install`] (pinned release, sha256-checked).
//! - [`TunnelKind::Bore`]: a bore TCP tunnel through a bore server, run in-process.
//! - [`TunnelKind::None`]: nothing to run; the caller advertises its loopback/LAN URL.
//!
//! [`Tunnel::start`] returns once the first public URL is known (or fails: no URL
//! within `url_timeout`, the child exited, the bore server refused). After that a
//! supervisor task restarts the tunnel with exponential backoff whenever it dies;
//! each new URL is published on [`Tunnel::subscribe`] and logged at info. A quick
//! tunnel's URL changes on every restart, so callers that hand it out (invites)
//! must follow the channel.
//!
//! Dropping a [`Tunnel`] kills the child's whole group at once (SIGKILL);
//! [`Tunnel::shutdown`] is the polite way (SIGTERM, grace, SIGKILL, reap).
//!
//! ```no_run
//! # async fn demo(home: std::path::PathBuf) -> Result<(), agentroom::tunnel::TunnelError> {
//! use agentroom::tunnel::{Tunnel, TunnelKind, TunnelOptions, probe_health};
//! let tunnel = Tunnel::start(TunnelOptions::new(TunnelKind::Cloudflared, 8787, home)).await?;
//! let url = tunnel.public_url().expect("start returns once the URL is known");
//! probe_health(&url, std::time::Duration::from_secs(30)).await?;
//! let mut changes = tunnel.subscribe();
//! // ... changes.changed().await, then changes.borrow().url() ...
//! tunnel.shutdown().await;
//! # Ok(()) }
//! ```

mod banner;
mod bore;
mod cloudflared;
pub mod install;
mod lines;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use url::Url;

pub use install::{BinarySearch, InstallError, ReleaseSource};

/// Between SIGTERM and SIGKILL when stopping cloudflared: it closes its edge
/// connections gracefully within a couple of seconds.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Interval between `/health` attempts in [`probe_health`]: a fresh quick tunnel
/// takes a few seconds before DNS and the edge route answer.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest single `/health` request in [`probe_health`].
const PROBE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Which tunnel to run.
#[derive(Clone, PartialEq, Eq)]
pub enum TunnelKind {
    /// cloudflared quick tunnel.
    Cloudflared,
    /// bore, through `server` (host name or IP; control port 7835).
    Bore {
        /// The bore server, e.g. `bore.pub`.
        server: String,
        /// The server's shared secret, if it requires one.
        secret: Option<String>,
    },
    /// No tunnel.
    None,
}

impl std::fmt::Debug for TunnelKind {
    // The bore secret never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cloudflared => f.write_str("Cloudflared"),
            Self::Bore { server, secret } => f
                .debug_struct("Bore")
                .field("server", server)
                .field("secret", &secret.as_ref().map(|_| "<redacted>"))
                .finish(),
            Self::None => f.write_str("None"),
        }
    }
}

/// Restart delays: the crate's one backoff ([`crate::backoff::Backoff`]), from
/// `initial` doubling to `max`, back to `initial` once a run has stayed up for
/// `stable_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// A run this long resets the delay.
    pub stable_after: Duration,
    steps: crate::backoff::Backoff,
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration, stable_after: Duration) -> Self {
        Self { stable_after, steps: crate::backoff::Backoff::new(initial, max) }
    }

    /// The delay to wait now; doubles the next one.
    fn next_delay(&mut self) -> Duration {
        self.steps.next_delay()
    }

    fn reset(&mut self) {
        self.steps.reset();
    }
}

/// Between two runs of a tunnel: count the restart, publish `Down`, and sleep the
/// backoff delay. Returns false (with the state set to `Stopped`) if cancelled meanwhile.
/// Shared by the cloudflared and bore supervisors.
pub(crate) async fn wait_before_restart(
    backoff: &mut Backoff,
    restarts: &mut u32,
    state: &watch::Sender<TunnelState>,
    cancel: &CancellationToken,
) -> bool {
    *restarts += 1;
    let retry_in = backoff.next_delay();
    state.send_replace(TunnelState::Down { restarts: *restarts, retry_in });
    tokio::select! {
        () = cancel.cancelled() => {
            state.send_replace(TunnelState::Stopped);
            false
        }
        () = tokio::time::sleep(retry_in) => true,
    }
}

impl Default for Backoff {
    /// 1 s doubling to 60 s (quick-tunnel creation is rate limited: hammering it
    /// only earns 429s), reset after 5 minutes up.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60), Duration::from_secs(300))
    }
}

/// How to start a tunnel. [`TunnelOptions::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// Which tunnel.
    pub kind: TunnelKind,
    /// The local relay port the tunnel forwards to (on 127.0.0.1).
    pub local_port: u16,
    /// cloudflared binary (`--cloudflared-bin`); else `CLOUDFLARED_BIN`, PATH, managed copy.
    pub cloudflared_bin: Option<PathBuf>,
    /// agentroom home (the managed cloudflared lives in `<home>/bin/`).
    pub home: PathBuf,
    /// Whether a missing cloudflared may be downloaded (`--no-download` clears it).
    pub allow_download: bool,
    /// How long to wait for the public URL ([`crate::defaults::TUNNEL_URL_TIMEOUT`]).
    pub url_timeout: Duration,
    /// Between SIGTERM and SIGKILL when stopping the child.
    pub stop_grace: Duration,
    /// Restart delays.
    pub backoff: Backoff,
    /// Where a missing cloudflared is downloaded from.
    pub release: ReleaseSource,
}

impl TunnelOptions {
    /// Defaults: download allowed, 30 s URL timeout, 5 s stop grace, default backoff,
    /// the official pinned release.
    pub fn new(kind: TunnelKind, local_port: u16, home: PathBuf) -> Self {
        Self {
            kind,
            local_port,
            cloudflared_bin: None,
            home,
            allow_download: true,
            url_timeout: crate::defaults::TUNNEL_URL_TIMEOUT,
            stop_grace: STOP_GRACE,
            backoff: Backoff::default(),
            release: ReleaseSource::official(),
        }
    }
}

/// What the tunnel is doing; watch it with [`Tunnel::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Serving at `url`. `restarts` counts the restarts so far (0 for the first run).
    Up {
        /// The public URL.
        url: Url,
        /// Restarts so far.
        restarts: u32,
    },
    /// The tunnel died; the next attempt starts after `retry_in`.
    Down {
        /// Restarts so far, this one included.
        restarts: u32,
        /// Delay before the attempt.
        retry_in: Duration,
    },
    /// Shut down (or never started: [`TunnelKind::None`]).
    Stopped,
}

impl TunnelState {
    /// The public URL, when up.
    pub fn url(&self) -> Option<&Url> {
        match self {
            Self::Up { url, .. } => Some(url),
            _ => None,
        }
    }
}

/// Errors from starting or probing a tunnel.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// cloudflared could not be found or installed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The child could not be started.
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    /// No public URL within the timeout; the child was stopped.
    #[error("the tunnel printed no public URL within {timeout:?}; last output:\n{last_output}")]
    NoUrl {
        /// The timeout.
        timeout: Duration,
        /// The child's last output lines.
        last_output: String,
    },
    /// The child exited before printing a URL.
    #[error(
        "the tunnel exited (code {exit_code:?}) before printing a URL; last output:\n{last_output}"
    )]
    ExitedBeforeUrl {
        /// Its exit code (128+n for signal n).
        exit_code: Option<i32>,
        /// Its last output lines.
        last_output: String,
    },
    /// The bore server refused or could not be reached.
    #[error("bore server {server}")]
    Bore {
        /// The server.
        server: String,
        /// bore's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The bore server did not assign a port within the URL timeout.
    #[error("bore server {server} did not answer within {timeout:?}")]
    BoreTimeout {
        /// The server.
        server: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The bore server name does not make a URL.
    #[error("invalid bore server name {0:?}")]
    BadBoreServer(String),
    /// `/health` did not answer 200 through the public URL in time.
    #[error("{url} did not answer /health within {timeout:?} (last: {last})")]
    Unreachable {
        /// The probed URL.
        url: Url,
        /// How long we tried.
        timeout: Duration,
        /// The last failure.
        last: ProbeFailure,
    },
    /// Shut down while starting.
    #[error("the tunnel was shut down while starting")]
    Cancelled,
}

/// Why the last `/health` probe failed.
#[derive(Debug)]
pub enum ProbeFailure {
    /// No attempt completed.
    None,
    /// An HTTP status other than 200.
    Status(u16),
    /// A transport error (DNS, connect, TLS, timeout).
    Transport(reqwest::Error),
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("no attempt completed"),
            Self::Status(s) => write!(f, "HTTP {s}"),
            Self::Transport(e) => write!(f, "{e}"),
        }
    }
}

/// A running tunnel. Dropping it kills the child's process group.
#[derive(Debug)]
pub struct Tunnel {
    state: watch::Receiver<TunnelState>,
    cancel: CancellationToken,
    pgid: Arc<AtomicI32>,
    task: Option<AbortOnDropHandle<()>>,
}

impl Tunnel {
    /// Starts the tunnel and returns once its first public URL is known.
    pub async fn start(opts: TunnelOptions) -> Result<Tunnel, TunnelError> {
        let cancel = CancellationToken::new();
        let pgid = Arc::new(AtomicI32::new(0));
        match opts.kind.clone() {
            TunnelKind::None => {
                let (_tx, state) = watch::channel(TunnelState::Stopped);
                Ok(Tunnel { state, cancel, pgid, task: None })
            }
            TunnelKind::Cloudflared => {
                let mut search = BinarySearch::from_env(
                    opts.cloudflared_bin.clone(),
                    opts.home.clone(),
                    opts.allow_download,
                );
                search.source = opts.release.clone();
                let bin = search.resolve().await?;
                let launch = cloudflared::Launch {
                    bin,
                    local_port: opts.local_port,
                    url_timeout: opts.url_timeout,
                    stop_grace: opts.stop_grace,
                };
                let running = cloudflared::launch(&launch)?;
                pgid.store(running.pgid(), Ordering::Relaxed);
                let (running, url) = cloudflared::wait_url(running, &launch, &cancel).await?;
                tracing::info!(%url, "cloudflared tunnel up");
                let (tx, state) = watch::channel(TunnelState::Up { url, restarts: 0 });
                let task = tokio::spawn(cloudflared::supervise(
                    running,
                    launch,
                    opts.backoff,
                    tx,
                    Arc::clone(&pgid),
                    cancel.clone(),
                ));
                Ok(Tunnel { state, cancel, pgid, task: Some(AbortOnDropHandle::new(task)) })
            }
            TunnelKind::Bore { server, secret } => {
                let launch = bore::Launch {
                    server,
                    secret: secret.map(Arc::from),
                    local_port: opts.local_port,
                    url_timeout: opts.url_timeout,
                };
                let (client, url) = bore::connect(&launch, 0).await?;
                tracing::info!(%url, "bore tunnel up");
                let (tx, state) = watch::channel(TunnelState::Up { url, restarts: 0 });
                let task =
                    tokio::spawn(bore::supervise(client, launch, opts.backoff, tx, cancel.clone()));
                Ok(Tunnel { state, cancel, pgid, task: Some(AbortOnDropHandle::new(task)) })
            }
        }
    }

    /// The current public URL: `https://….trycloudflare.com` or `http://host:port`
    /// (bore). `None` while restarting, after shutdown, and for [`TunnelKind::None`].
    pub fn public_url(&self) -> Option<Url> {
        self.state.borrow().url().cloned()
    }

    /// The current state.
    pub fn state(&self) -> TunnelState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change (new URL, restart, stop).
    pub fn subscribe(&self) -> watch::Receiver<TunnelState> {
        self.state.clone()
    }

    /// The process group of the running cloudflared child, if any (for status
    /// reports and tests).
    pub fn process_group_id(&self) -> Option<i32> {
        Some(self.pgid.load(Ordering::Relaxed)).filter(|&id| id > 0)
    }

    /// Stops the tunnel: SIGTERM to the child's group, grace, SIGKILL, reap.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "tunnel supervisor ended abnormally");
            }
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // Aborting the supervisor drops the child's `GroupKillGuard`: SIGKILL to
        // the whole group, right now.
        self.cancel.cancel();
    }
}

/// Polls `GET <public_url>/health` until it answers 200 or `timeout` passes:
/// proves the relay is reachable through the tunnel.
pub async fn probe_health(public_url: &Url, timeout: Duration) -> Result<(), TunnelError> {
    let url = public_url.join("/health").map_err(|_| TunnelError::Unreachable {
        url: public_url.clone(),
        timeout,
        last: ProbeFailure::None,
    })?;
    let deadline = Instant::now() + timeout;
    // The same trust as every relay link (bundled roots, OS store, --ca-file): a relay
    // serving TLS itself through bore may have a private CA.
    let tls = (*crate::client::tls::client_config()).clone();
    let client = reqwest::Client::builder().use_preconfigured_tls(tls).build().map_err(|e| {
        TunnelError::Unreachable { url: url.clone(), timeout, last: ProbeFailure::Transport(e) }
    })?;
    let mut last = ProbeFailure::None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TunnelError::Unreachable { url, timeout, last });
        }
        match client.get(url.clone()).timeout(left.min(PROBE_REQUEST_TIMEOUT)).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(r) => last = ProbeFailure::Status(r.status().as_u16()),
            Err(e) => last = ProbeFailure::Transport(e),
        }
        tracing::debug!(%url, %last, "tunnel not reachable yet");
        tokio::time::sleep(PROBE_INTERVAL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b =
            Backoff::new(Duration::from_secs(1), Duration::from_secs(5), Duration::from_secs(60));
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn bore_secret_is_not_in_debug() {
        let kind = TunnelKind::Bore { server: "bore.pub".into(), secret: Some("hunter2".into()) };
        let shown = format!("{kind:?}");
        assert!(shown.contains("bore.pub") && !shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn none_kind_runs_nothing() {
        let opts = TunnelOptions::new(TunnelKind::None, 1, std::env::temp_dir());
        let tunnel = Tunnel::start(opts).await.unwrap();
        assert_eq!(tunnel.public_url(), None);
        assert_eq!(tunnel.state(), TunnelState::Stopped);
        assert_eq!(tunnel.process_group_id(), None);
        tunnel.shutdown().await;
    }
}
