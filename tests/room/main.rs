//! `room open/status/stop`, `host`, `relay --tunnel`, through the real binary: fake
//! cloudflared in its modes, `--tunnel none`, `--detach`, and bore through a local
//! in-process bore server. Processes are checked through /proc.
//! One test binary (link time matters); areas are submodules.

// Helpers outside `#[test]` fns (fixtures, /proc polling) fail loudly like the tests.
#![allow(clippy::unwrap_used, clippy::panic)]

mod bore;
mod cloudflared;
mod daemon;
mod figures;
mod fixtures;
mod invite;
mod lifecycle;
mod restart;
