//! End-to-end tests of the client commands: the real `agentroom` binary, a real
//! relay process on an ephemeral port, separate homes per agent, real handlers.

// Test helpers outside #[test] fns: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stderr)]

mod common;
mod compat;
mod daemon;
mod errors;
mod files;
mod handlers;
mod history;
mod invites;
mod lifecycle;
mod logs;
mod messaging;
mod room_wss;
mod service;
mod tls_fixtures;
mod ui;
mod verify;
mod wss;
