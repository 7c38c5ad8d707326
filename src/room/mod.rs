//! `room open/status/stop`: relay, tunnel, invite and handler in one command.
//!
//! - [`stack`]: the relay in-process plus the tunnel in front of it, and their URLs.
//! - [`invite`]: the room's invite (public URL inside, loopback URL for the host).
//! - [`open`]: the whole `room open` run, supervised until cancelled.
//! - [`restart`]: what survives a restart (the port, the last URLs, stale invites).
//! - [`detach`]: `room open --detach` (re-spawn in a new session, wait for ready).
//! - [`state`]: the 0600 file a running room publishes; [`control`] answers
//!   `room status` and `room stop` from another process.

pub mod control;
pub mod detach;
pub mod invite;
pub mod open;
pub mod restart;
pub mod stack;
pub mod state;

/// The room's relay database, inside the home.
pub const RELAY_DB: &str = "relay.db";
/// Where a detached room writes its output and logs, inside the home.
pub const LOG_FILE: &str = "room.log";

/// Why `room open` (or `status`/`stop`) failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// Another `room open` is running in this home.
    #[error(
        "a room is already running in this home (pid {pid}); stop it with `agentroom room stop`"
    )]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
    },
    /// The relay could not start.
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    /// The tunnel could not start.
    #[error("tunnel: {0}")]
    Tunnel(crate::tunnel::TunnelError),
    /// The state file could not be read or written.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Identity, store, invite or serve failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// The room serves TLS itself (`--tls-cert`) with the cloudflared tunnel, which
    /// terminates TLS itself and reaches the relay over plain HTTP.
    #[error(
        "--tls-cert cannot be combined with --tunnel cloudflared: cloudflared terminates TLS \
         itself (use --tunnel none, directly or behind your own TLS terminator, or --tunnel \
         bore, which passes TLS through)"
    )]
    TlsWithCloudflared,
    /// The room serves TLS itself without a tunnel, and its certificate does not
    /// name the host the invite would carry ([`stack::tls_host`]).
    #[error(
        "the TLS certificate is not valid for {host}, the host this room's invite would name; \
         pass --public-url wss://NAME:PORT/ws with a name the certificate covers (and --port \
         PORT to keep the port)"
    )]
    CertificateName {
        /// The host.
        host: String,
    },
    /// The home's daemon (this room's, or the one already running) failed.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// `--detach`: the background room could not be started or died while starting.
    #[error(transparent)]
    Detach(#[from] detach::DetachError),
}

// The cause is printed in these variants' messages, so they are not `#[source]`
// (an error chain would print it twice); hence hand-written `From`s.
impl From<crate::tunnel::TunnelError> for RoomError {
    fn from(e: crate::tunnel::TunnelError) -> Self {
        Self::Tunnel(e)
    }
}
