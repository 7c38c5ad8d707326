//! End-to-end tests of the client commands: the real `agentroom` binary, a real
//! relay process on an ephemeral port, separate homes per agent, real handlers.

// Test helpers outside #[test] fns: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stderr)]

mod common;
mod errors;
mod handlers;
mod invites;
mod messaging;
mod ui;
