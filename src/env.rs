//! Every environment variable agentroom reads, named once. `.env.example` lists each
//! of them (a test keeps the two in step).

/// Relay: HMAC key for session tokens (≥32 bytes). Unset: generated once, kept 0600 beside the DB.
pub const HMAC_SECRET: &str = "HMAC_SECRET";
/// Relay: the previous HMAC key, still accepted during rotation.
pub const HMAC_SECRET_PREVIOUS: &str = "HMAC_SECRET_PREVIOUS";
/// Relay: listening port.
pub const PORT: &str = "PORT";
/// Relay: bind address.
pub const BIND: &str = "BIND";
/// Relay: SQLite database path, or a `postgres://` URL (several relay nodes share it).
pub const AGENTROOM_DB: &str = "AGENTROOM_DB";
/// Relay: extra CA certificates (PEM) trusted for a `postgres://…?sslmode=require` database.
pub const AGENTROOM_DB_CA_FILE: &str = "AGENTROOM_DB_CA_FILE";
/// Relay: this node's name in a PostgreSQL cluster (`/health`, notifications); default random.
pub const AGENTROOM_NODE_ID: &str = "AGENTROOM_NODE_ID";
/// Relay: envelopes queued per recipient before `queue_full`.
pub const MAX_PENDING_MSGS: &str = "MAX_PENDING_MSGS";
/// Relay: days a queued envelope is kept.
pub const PENDING_TTL_DAYS: &str = "PENDING_TTL_DAYS";
/// Relay: trust `X-Forwarded-For` / `X-Forwarded-Host` (only behind your own proxy).
pub const TRUST_PROXY: &str = "TRUST_PROXY";
/// Relay: open invites one identity may have at once (default 20; beyond: `invite_quota`).
pub const MAX_INVITES_PER_PK: &str = "MAX_INVITES_PER_PK";
/// Relay: `1` disables the per-identity frame and per-address login rate limits (benchmarks only).
pub const RATE_LIMIT_DISABLED: &str = "RATE_LIMIT_DISABLED";
/// Log level filter (`error`, `warn`, `info`, `debug`, `trace`, or an env-filter string).
pub const LOG_LEVEL: &str = "LOG_LEVEL";
/// Client: a PEM file of extra CA certificates to trust for `wss://` relays (`--ca-file`).
pub const AGENTROOM_CA_FILE: &str = "AGENTROOM_CA_FILE";
/// Client: state directory (default `~/.config/agentroom`).
pub const AGENTROOM_HOME: &str = "AGENTROOM_HOME";
/// Tunnel: path to the cloudflared binary.
pub const CLOUDFLARED_BIN: &str = "CLOUDFLARED_BIN";
/// Handler env: the sender's identity key (b64u), as in the TypeScript agentroom.
pub const AGENTROOM_FROM: &str = "AGENTROOM_FROM";
/// Handler env: our own identity key (b64u), as in the TypeScript agentroom.
pub const AGENTROOM_PK: &str = "AGENTROOM_PK";
/// Handler env: the sender's identity key (b64u; what `send` accepts).
pub const AGENTROOM_PEER_PK: &str = "AGENTROOM_PEER_PK";
/// Handler env: the sender's local label (or its short key when it has none).
pub const AGENTROOM_PEER_LABEL: &str = "AGENTROOM_PEER_LABEL";
/// Handler env: our own identity key (b64u).
pub const AGENTROOM_SELF_PK: &str = "AGENTROOM_SELF_PK";
/// Handler env: the message's envelope id (b64u).
pub const AGENTROOM_MSG_ID: &str = "AGENTROOM_MSG_ID";
/// Handler env: the sender's fingerprint.
pub const AGENTROOM_FINGERPRINT: &str = "AGENTROOM_FINGERPRINT";
/// Handler env: the envelope id the message answers, when it is a reply.
pub const AGENTROOM_REPLY_TO: &str = "AGENTROOM_REPLY_TO";
/// Relay: largest accepted frame in bytes (default in `defaults::MAX_FRAME_BYTES`).
pub const MAX_FRAME_BYTES: &str = "MAX_FRAME_BYTES";
/// Relay: the TypeScript relay's name for [`MAX_FRAME_BYTES`] (used when that is unset).
pub const WS_MAX_PAYLOAD: &str = "WS_MAX_PAYLOAD";
/// Tunnel: the TypeScript agentroom's name for [`CLOUDFLARED_BIN`] (used when that is unset).
pub const AGENTROOM_CLOUDFLARED: &str = "AGENTROOM_CLOUDFLARED";
/// Relay: relay-wide connection cap.
pub const MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
/// Relay: milliseconds a client has for its TLS handshake and request headers (default 10000).
pub const HEADER_READ_TIMEOUT_MS: &str = "HEADER_READ_TIMEOUT_MS";
/// Relay: connections per address not yet upgraded to a WebSocket (default 32).
pub const MAX_UNUPGRADED_PER_IP: &str = "MAX_UNUPGRADED_PER_IP";
/// Relay: PEM certificate chain to serve TLS with (`--tls-cert`; needs `TLS_KEY_FILE`).
pub const TLS_CERT_FILE: &str = "TLS_CERT_FILE";
/// Relay: PEM private key for `TLS_CERT_FILE` (`--tls-key`).
pub const TLS_KEY_FILE: &str = "TLS_KEY_FILE";
/// Relay: connections per client address.
pub const MAX_CONNECTIONS_PER_IP: &str = "MAX_CONNECTIONS_PER_IP";
/// Tunnel: the bore server's shared secret for `--tunnel bore` (keeps it out of `ps`).
pub const BORE_SECRET: &str = "BORE_SECRET";
/// Relay: milliseconds an online recipient has to ack before the envelope is committed.
pub const LIVE_ACK_WINDOW_MS: &str = "LIVE_ACK_WINDOW_MS";
/// Daemon: where the socket goes when `<home>/agentroom.sock` is too long for a socket address.
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";
/// Development: `1` makes `cargo test --lib openapi` rewrite protocol/openapi.json.
pub const AGENTROOM_BLESS: &str = "AGENTROOM_BLESS";
