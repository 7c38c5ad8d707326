//! `room open/status/stop`: relay, tunnel, invite and handler in one command.
//!
//! [`state`] is the 0600 file a running room publishes; [`control`] answers
//! `room status` and `room stop` from another process.

pub mod control;
pub mod state;
