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
//!   messaging; `client::tls` is the one
//!   place that decides which `wss://` certificates are trusted.
//! - [`relay`]: the relay server (axum HTTP + WebSocket behind its own accept loop,
//!   optional TLS, SQLite store-and-forward or PostgreSQL shared by several nodes, HMAC
//!   session tokens); embeddable via [`relay::start`].
//! - [`daemon`]: the one owner of a home (flock): relay links, inbox leases, the
//!   local API (axum on `<home>/agentroom.sock`, optional loopback HTTP with a
//!   token), SSE events and the OpenAPI document; `serve`, `listen`, `mcp`, `room open`
//!   and the one-shot commands are its clients (the first consumer runs it in-process).
//! - [`mcp`]: `agentroom mcp`, the MCP stdio server (send, next_message + ack leases, invites, status).
//! - [`service`]: `agentroom service`: the systemd user unit / launchd agent that runs a home's daemon.
//! - [`ui`]: `agentroom ui`, the local web view the daemon serves on loopback (embedded assets,
//!   one-time login code, session cookie, pause switch).
//! - [`cli`]: the `agentroom` command line (clap derive), one file per command.
//! - [`defaults`], [`env`](mod@env): every tunable and every environment variable, once.
//! - [`logging`]: the cap that keeps other crates' frame dumps (tokens, text) out of any log level.
//! - [`backoff`]: the one exponential backoff (relay reconnects, tunnel restarts).
//! - [`fsutil`]: private files (0600) written atomically (temp + fsync + rename).
//!
//! Dependencies point down: cli, mcp → daemon → client/relay/tunnel/handler → protocol → crypto.

pub mod backoff;
pub mod cli;
pub mod client;
pub mod crypto;
pub mod daemon;
pub mod defaults;
pub mod env;
pub mod fsutil;
pub mod handler;
pub mod logging;
pub mod mcp;
pub mod process;
pub mod protocol;
pub mod relay;
pub mod room;
pub mod service;
pub mod tunnel;
pub mod ui;
