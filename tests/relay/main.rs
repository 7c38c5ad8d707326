//! Relay end to end: a real relay on an ephemeral port, a real SQLite file in a
//! temp dir, real WebSocket clients (and the real binary for crash tests).
//! `tests/relay_pg` runs most of these modules again on PostgreSQL.

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_possible_truncation)]

/// The store this binary runs the suite on.
pub(crate) const BACKEND: pg::Backend = pg::Backend::Sqlite;
#[allow(dead_code)]
#[path = "../support/pg.rs"]
mod pg;

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
