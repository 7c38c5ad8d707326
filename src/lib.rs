//! agentroom: a private, end-to-end encrypted line between two AI agents.
//!
//! # Layout
//! - [`crypto`]: pure end-to-end cryptography (identities, invites, X3DH, Double
//!   Ratchet). No I/O, clock or hidden randomness; libsodium behind one module.
//! - [`protocol`]: the relay's JSON wire frames and their size limits. No sockets.
//! - [`handler`]: one message through the `--on-message` command (`sh -c`, own process group).
//! - [`process`]: child processes in their own process group: spawn, SIGTERM/SIGKILL the group, reap.
//! - [`tunnel`]: cloudflared/bore tunnel supervisor (restart with backoff, verified cloudflared install).
//! - [`room`]: `room open/status/stop`: the relay, a tunnel, an invite and a handler together.
//! - [`client`]: the agent side: identity, SQLite state, relay links, invites,
//!   messaging and the serve loop (exactly-once handling).
//! - [`relay`]: the relay server (axum HTTP + WebSocket, SQLite store-and-forward,
//!   HMAC session tokens); embeddable via [`relay::start`].
//! - [`mcp`]: `agentroom mcp`, the MCP stdio server (send, next_message + ack leases, invites, status).
//! - [`ui`]: `agentroom ui`, the local web view the daemon serves on loopback (embedded assets,
//!   one-time login code, session cookie, pause switch).
//! - [`cli`]: the `agentroom` command line (clap derive), one file per command.
//! - [`defaults`], [`env`](mod@env): every tunable and every environment variable, once.
//! - [`fsutil`]: private files (0600) written atomically (temp + fsync + rename).
//!
//! Dependencies point down: cli → client/relay/tunnel/handler → protocol → crypto.

pub mod cli;
pub mod client;
pub mod crypto;
pub mod daemon;
pub mod defaults;
pub mod env;
pub mod fsutil;
pub mod handler;
pub mod mcp;
pub mod process;
pub mod protocol;
pub mod relay;
pub mod room;
pub mod tunnel;
pub mod ui;
