//! Relay end to end: a real relay on an ephemeral port, a real SQLite file in a
//! temp dir, real WebSocket clients (and the real binary for crash tests).

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_possible_truncation)]

mod abuse;
mod client;
mod conformance;
mod delivery;
mod errors;
mod hotpath;
mod login;
mod order;
mod process;
mod schema;
mod slow;
mod stall;
