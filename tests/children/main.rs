//! Real child processes: the `--on-message` handler runner and the tunnel supervisor.
//! One test binary (link time matters); areas are submodules.

mod handler;
mod procfs;
