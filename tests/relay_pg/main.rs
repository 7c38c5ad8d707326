//! The relay suite of `tests/relay` on PostgreSQL (the same modules, compiled again
//! with `BACKEND = Postgres`: each relay gets a fresh database on a throwaway
//! server), plus what only a shared store has: several relay nodes (`cluster`).
//!
//! Not rerun here: `slow` (descriptor limits of one process; the store is not
//! involved) and `stall` (the socket-level backpressure above the store).

#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_possible_truncation)]

/// The store this binary runs the suite on.
pub(crate) const BACKEND: pg::Backend = pg::Backend::Postgres;
#[allow(dead_code)]
#[path = "../support/pg.rs"]
mod pg;

#[path = "../relay/abuse.rs"]
mod abuse;
#[allow(dead_code)]
#[path = "../relay/client.rs"]
mod client;
mod cluster;
#[path = "../relay/conformance.rs"]
mod conformance;
#[path = "../relay/delivery.rs"]
mod delivery;
#[path = "../relay/errors.rs"]
mod errors;
#[path = "../relay/login.rs"]
mod login;
#[path = "../relay/order.rs"]
mod order;
#[path = "../relay/process.rs"]
mod process;
#[path = "../relay/schema.rs"]
mod schema;
