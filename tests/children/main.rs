//! Real child processes: the `--on-message` handler runner and the tunnel supervisor.
//! One test binary (link time matters); areas are submodules.

// Helpers outside `#[test]` fns (fixtures, /proc polling) fail loudly like the tests.
#![allow(clippy::unwrap_used, clippy::panic)]

mod bore;
mod fixtures;
mod handler;
mod install;
mod procfs;
mod tunnel;
