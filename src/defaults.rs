//! Ports, limits and timeouts, each with the reason for its value.

use std::time::Duration;

/// Relay port when neither `--port` nor `PORT` is given (the TypeScript agentroom's too,
/// so existing firewall rules and docs keep working).
pub const RELAY_PORT: u16 = 8787;
/// Bind address: loopback unless the operator opts in, so a fresh relay is never
/// exposed by accident (a tunnel reaches loopback fine).
pub const RELAY_BIND: &str = "127.0.0.1";
/// Largest WebSocket frame the relay accepts: room for a 47 KiB message after base64.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// A socket must log in this fast, or it only holds a slot.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Session-token lifetime: long enough for reconnect storms, short enough to age out leaks.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Login timestamps may differ from the relay clock by this much.
pub const LOGIN_MAX_SKEW_SECS: u64 = 300;
/// WebSocket ping interval; two missed pongs drop the socket (a dead peer found in ~40 s,
/// below the 100 s idle cut of common proxies such as Cloudflare's).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Envelopes waiting per recipient before senders get `queue_full`.
pub const MAX_PENDING_MSGS: u64 = 500;
/// Days a queued envelope is kept for an absent recipient.
pub const PENDING_TTL_DAYS: u64 = 7;
/// Default invite lifetime (the crypto contract's default).
pub const INVITE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Handler run time before its whole process group is killed.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(120);
/// Seconds to wait for a tunnel to print its public URL.
pub const TUNNEL_URL_TIMEOUT: Duration = Duration::from_secs(30);
