//! Ports, limits and timeouts, each with the reason for its value.

use std::time::Duration;

/// Relay port when neither `--port` nor `PORT` is given (the TypeScript agentroom's too,
/// so existing firewall rules and docs keep working).
pub const RELAY_PORT: u16 = 8787;
/// Bind address: loopback unless the operator opts in, so a fresh relay is never
/// exposed by accident (a tunnel reaches loopback fine).
pub const RELAY_BIND: &str = "127.0.0.1";
/// Largest WebSocket frame the relay accepts: room for a 190 KiB payload (a 144 KiB
/// text, the TypeScript agentroom's largest, plus JSON escaping) after base64.
/// Memory stays bounded: the relay holds at most `CONN_QUEUE` live envelopes per
/// connection, and frames past 4× this close the socket.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;
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
/// How often the relay deletes queued envelopes older than `PENDING_TTL_DAYS`.
pub const PENDING_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Per-identity frame rate (token bucket refill): far above any conversation between
/// two agents, low enough that one identity cannot saturate the relay's core.
pub const RATE_LIMIT_PER_SEC: u32 = 200;
/// Token-bucket burst: a reconnect flushing a backlog of acks passes untouched.
pub const RATE_LIMIT_BURST: u32 = 1000;
/// Login attempts (`login`, or a `resume` that fails) one client address may burst: a whole NAT of
/// agents (`MAX_CONNECTIONS_PER_IP`) reconnecting at once after a relay restart.
pub const LOGIN_BURST: u32 = 64;
/// Sustained login attempts per second per address once the burst is spent. An agent
/// logs in once per connection and reconnects with a backoff of a second or more, so
/// one a second is ample for a NAT's worth of them, while a script trying keys,
/// tokens or just burning signature checks gets 64 tries and then one a second
/// (1,000 rapid logins: about 65 pass). IPv6 addresses count per /64, the block one
/// host is usually given.
pub const LOGIN_RATE_PER_SEC: u32 = 1;
/// Open (unclaimed, unrevoked, unexpired) invites one identity may have on a relay:
/// the TypeScript relay's quota. An agent needs one per pending guest; 20 unclaimed
/// at once means something is minting them in a loop.
pub const MAX_INVITES_PER_PK: u64 = 20;
/// Furthest `expires_at` a relay accepts on `invite_publish`, from now: a month is
/// far beyond any real handover (the default is a day), and keeps a host from
/// parking invite rows forever (`expires_at = 2^53-1` was accepted).
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Relay-wide connection cap: each costs ~20 KiB, so 4096 stay well under 100 MiB.
pub const MAX_CONNECTIONS: usize = 4096;
/// Connections per client address: a whole NAT of agents, but not one runaway script.
pub const MAX_CONNECTIONS_PER_IP: usize = 64;
/// A client must finish its TLS handshake and request headers within this (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per address still in the TLS handshake or request headers: a browser
/// opens six, an honest NAT a few dozen at once; more is a slowloris.
pub const MAX_UNUPGRADED_PER_IP: usize = 32;
/// An online recipient that acks within this window spares the envelope a disk write;
/// later, the envelope is committed first. A loopback or LAN round trip is well under
/// a millisecond, but a loaded relay queues frames for a few ms, and every spill costs
/// an insert plus a delete: 20 ms keeps busy local traffic off the disk (measured with
/// `scripts/bench-relay.sh`) while a sender still hears `sent` within 20 ms plus one
/// commit when the recipient stalls (within two windows if it stalls just after an
/// ack: a recipient that keeps acking others has its envelopes held live a window
/// longer at a time, up to 10 windows, see `relay::hub`). Holding envelopes that
/// long costs only memory (~300 B each; 10 windows at 100k/s: 6 MiB). The guarantee
/// is the same either way.
pub const LIVE_ACK_WINDOW: Duration = Duration::from_millis(20);
/// Live envelopes buffered per connection; beyond this a slow reader's envelopes go to
/// SQLite (never dropped) and it catches up from there.
pub const CONN_QUEUE: usize = 1024;
/// How often long-running commands delete expired plaintext (disappearing
/// messages, `--retain`): a message outlives its expiry by at most this. Idle
/// sweeps only read, so a short period costs little.
pub const HISTORY_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Control frames (`sent`, `error`, `presence`) queued for one connection. A peer
/// that lets this many pile up is not reading its socket: the relay closes it (it
/// reconnects and resends; every answer it missed comes again). Far above what a
/// sender's own window of unanswered `send`s produces.
pub const CTRL_QUEUE: usize = 4096;
/// Longest a relay socket write (or flush) may take. A peer that stops reading
/// fills its TCP window and then the relay's write buffer; after this long the
/// relay drops it instead of holding its connection task (and shutdown) forever.
/// Generous for a slow mobile link draining a 128 KiB buffer.
pub const RELAY_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Once shutdown began, the last frames (`shutting_down`, close) to a socket get
/// this long, and a write already stuck gets this long more.
pub const RELAY_SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(1);
/// `RelayHandle::shutdown` waits this long for connections to end before it
/// commits what is queued and stops the store thread anyway.
pub const RELAY_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
