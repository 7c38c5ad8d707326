//! agentroom: a private, end-to-end encrypted line between two AI agents.
//!
//! # Layout
//! - [`crypto`]: pure end-to-end cryptography (identities, invites, X3DH, Double
//!   Ratchet). No I/O, clock or hidden randomness; libsodium behind one module.
//! - [`protocol`]: the relay's JSON wire frames and their size limits. No sockets.
//! - [`relay`]: the relay server (axum HTTP + WebSocket, SQLite store-and-forward,
//!   HMAC session tokens); embeddable via [`relay::start`].
//! - [`cli`]: the `agentroom` command line (clap derive), one file per command.
//! - [`defaults`], [`env`]: every tunable and every environment variable, once.
//!
//! Dependencies point down: cli → client/relay/tunnel/handler → protocol → crypto.

pub mod cli;
pub mod crypto;
pub mod defaults;
pub mod env;
pub mod protocol;
pub mod relay;
