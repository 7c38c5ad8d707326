//! Relay configuration: defaults, environment, and the HMAC secret's home.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::defaults;
use crate::env;

/// Shortest HMAC key accepted: HMAC-SHA256 keys below the hash size weaken it.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Bad relay configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable holds a value that does not parse.
    #[error("{var}: invalid value")]
    Invalid {
        /// The variable's name.
        var: &'static str,
    },
    /// `HMAC_SECRET` or `HMAC_SECRET_PREVIOUS` is shorter than 32 bytes.
    #[error("{var} must be at least {MIN_HMAC_SECRET_BYTES} bytes")]
    SecretTooShort {
        /// The variable's name.
        var: &'static str,
    },
    /// No database path and no home directory to put one in.
    #[error("no database path: set {} or HOME", env::AGENTROOM_DB)]
    NoDbPath,
}

/// An HMAC key for session tokens. Zeroized on drop, never printed.
#[derive(Clone)]
pub struct HmacSecret(Zeroizing<Vec<u8>>);

impl HmacSecret {
    /// Wrap key bytes (at least [`MIN_HMAC_SECRET_BYTES`]).
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= MIN_HMAC_SECRET_BYTES).then(|| Self(Zeroizing::new(bytes)))
    }

    /// The key bytes.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacSecret(<redacted>)")
    }
}

/// Everything the relay needs to run. [`RelayConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Listening address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// SQLite database file (created if missing).
    pub db_path: PathBuf,
    /// Largest accepted frame in bytes.
    pub max_frame: usize,
    /// Envelopes queued per recipient before `queue_full`.
    pub max_pending: u64,
    /// How long a queued envelope is kept.
    pub pending_ttl: Duration,
    /// How often expired envelopes are swept.
    pub sweep_interval: Duration,
    /// Session-token lifetime.
    pub token_ttl: Duration,
    /// Trust `X-Forwarded-For` / `X-Forwarded-Host` (only behind your own proxy).
    pub trust_proxy: bool,
    /// Per-identity token-bucket rate limit on frames.
    pub rate_limit: bool,
    /// Sustained frames per second per identity when rate limiting.
    pub rate_per_sec: u32,
    /// Burst size of the token bucket.
    pub rate_burst: u32,
    /// Login attempts per second per client address (with `rate_limit`).
    pub login_rate_per_sec: u32,
    /// Login attempts one address may burst (with `rate_limit`).
    pub login_burst: u32,
    /// Open invites one identity may have at once.
    pub max_invites_per_pk: u64,
    /// Furthest an invite's `expires_at` may lie in the future.
    pub max_invite_ttl: Duration,
    /// Relay-wide connection cap.
    pub max_connections: usize,
    /// Connections per client address.
    pub max_connections_per_ip: usize,
    /// Token key; `None` = read or create `<db>.hmac` (0600) beside the database.
    pub hmac_secret: Option<HmacSecret>,
    /// Previous token key, still accepted while secrets rotate.
    pub hmac_secret_previous: Option<HmacSecret>,
    /// A socket must log in within this time.
    pub login_timeout: Duration,
    /// WebSocket ping interval; two missed pongs drop the socket.
    pub ping_interval: Duration,
    /// How long an online recipient has to ack before the envelope is committed to disk.
    pub live_ack_window: Duration,
    /// Live envelopes buffered per connection before overflow goes to SQLite.
    pub conn_queue: usize,
    /// Longest one socket write may take before the peer is dropped.
    pub write_timeout: Duration,
    /// TLS handshake plus request headers must arrive within this.
    pub header_read_timeout: Duration,
    /// Connections per address not yet upgraded to a WebSocket.
    pub max_unupgraded_per_ip: usize,
    /// Serve TLS with this certificate chain and key (PEM files); `None` = plain.
    pub tls: Option<TlsFiles>,
    /// With `tls`: a connection from a loopback address that does not open with a
    /// TLS handshake is served as plain HTTP. `room open` sets it, so its own client,
    /// `room status` and a local proxy or tunnel keep using `ws://127.0.0.1:P`;
    /// `relay --tls-cert` leaves it off (TLS only).
    pub tls_plain_loopback: bool,
    /// This node's name among relays sharing a PostgreSQL store (`AGENTROOM_NODE_ID`;
    /// default random): in `/health`, logs and the nodes' notifications.
    pub node_id: String,
    /// Extra CA certificates (PEM) for a PostgreSQL URL with `sslmode=require`.
    pub db_ca_file: Option<PathBuf>,
}

/// The relay's own TLS certificate chain and private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl RelayConfig {
    /// Defaults for everything but the address and database.
    pub fn new(bind: SocketAddr, db_path: PathBuf) -> Self {
        Self {
            bind,
            db_path,
            max_frame: defaults::MAX_FRAME_BYTES,
            max_pending: defaults::MAX_PENDING_MSGS,
            pending_ttl: Duration::from_secs(defaults::PENDING_TTL_DAYS * 86_400),
            sweep_interval: defaults::PENDING_SWEEP_INTERVAL,
            token_ttl: defaults::TOKEN_TTL,
            trust_proxy: false,
            rate_limit: true,
            rate_per_sec: defaults::RATE_LIMIT_PER_SEC,
            rate_burst: defaults::RATE_LIMIT_BURST,
            login_rate_per_sec: defaults::LOGIN_RATE_PER_SEC,
            login_burst: defaults::LOGIN_BURST,
            max_invites_per_pk: defaults::MAX_INVITES_PER_PK,
            max_invite_ttl: defaults::MAX_INVITE_TTL,
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            hmac_secret: None,
            hmac_secret_previous: None,
            login_timeout: defaults::LOGIN_TIMEOUT,
            ping_interval: defaults::PING_INTERVAL,
            live_ack_window: defaults::LIVE_ACK_WINDOW,
            conn_queue: defaults::CONN_QUEUE,
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            max_unupgraded_per_ip: defaults::MAX_UNUPGRADED_PER_IP,
            tls: None,
            tls_plain_loopback: false,
            write_timeout: defaults::RELAY_WRITE_TIMEOUT,
            node_id: random_node_id(),
            db_ca_file: None,
        }
    }

    /// Defaults overridden by the process environment (see [`crate::env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Self::from_env`] with an explicit variable lookup (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parse<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            var: &'static str,
        ) -> Result<Option<T>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| ConfigError::Invalid { var }),
            }
        }
        let flag = |var: &'static str| -> Result<bool, ConfigError> {
            match get(var).as_deref().map(str::trim) {
                None | Some("" | "0" | "false" | "no") => Ok(false),
                Some("1" | "true" | "yes") => Ok(true),
                Some(_) => Err(ConfigError::Invalid { var }),
            }
        };
        let ip: IpAddr = parse(&get, env::BIND)?.unwrap_or_else(|| {
            defaults::RELAY_BIND.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))
        });
        let port: u16 = parse(&get, env::PORT)?.unwrap_or(defaults::RELAY_PORT);
        let db_path = match get(env::AGENTROOM_DB).filter(|s| !s.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => default_db_path(&get).ok_or(ConfigError::NoDbPath)?,
        };
        let mut c = Self::new(SocketAddr::new(ip, port), db_path);
        if let Some(v) = parse(&get, env::MAX_PENDING_MSGS)? {
            c.max_pending = v;
        }
        if let Some(days) = parse::<u64>(&get, env::PENDING_TTL_DAYS)? {
            c.pending_ttl = Duration::from_secs(days.saturating_mul(86_400));
        }
        // WS_MAX_PAYLOAD is the TypeScript relay's name; MAX_FRAME_BYTES wins.
        for var in [env::MAX_FRAME_BYTES, env::WS_MAX_PAYLOAD] {
            if let Some(v) = parse::<usize>(&get, var)? {
                if v < 1024 {
                    return Err(ConfigError::Invalid { var });
                }
                c.max_frame = v;
                break;
            }
        }
        if let Some(v) = parse(&get, env::MAX_INVITES_PER_PK)? {
            c.max_invites_per_pk = v;
        }
        if let Some(v) = parse(&get, env::MAX_CONNECTIONS)? {
            c.max_connections = v;
        }
        if let Some(v) = parse(&get, env::MAX_CONNECTIONS_PER_IP)? {
            c.max_connections_per_ip = v;
        }
        if let Some(ms) = parse::<u64>(&get, env::LIVE_ACK_WINDOW_MS)? {
            c.live_ack_window = Duration::from_millis(ms);
        }
        if let Some(ms) = parse::<u64>(&get, env::HEADER_READ_TIMEOUT_MS)? {
            if ms == 0 {
                return Err(ConfigError::Invalid { var: env::HEADER_READ_TIMEOUT_MS });
            }
            c.header_read_timeout = Duration::from_millis(ms);
        }
        if let Some(v) = parse::<usize>(&get, env::MAX_UNUPGRADED_PER_IP)? {
            if v == 0 {
                return Err(ConfigError::Invalid { var: env::MAX_UNUPGRADED_PER_IP });
            }
            c.max_unupgraded_per_ip = v;
        }
        let file = |var| get(var).filter(|s| !s.trim().is_empty()).map(PathBuf::from);
        c.tls = match (file(env::TLS_CERT_FILE), file(env::TLS_KEY_FILE)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::Invalid { var: env::TLS_KEY_FILE }),
            (None, Some(_)) => return Err(ConfigError::Invalid { var: env::TLS_CERT_FILE }),
        };
        if let Some(id) = get(env::AGENTROOM_NODE_ID).filter(|s| !s.trim().is_empty()) {
            // Travels space-separated in notifications: one printable word.
            if !id.chars().all(|ch| ch.is_ascii_graphic()) || id.len() > 64 {
                return Err(ConfigError::Invalid { var: env::AGENTROOM_NODE_ID });
            }
            c.node_id = id;
        }
        c.db_ca_file = file(env::AGENTROOM_DB_CA_FILE);
        c.trust_proxy = flag(env::TRUST_PROXY)?;
        c.rate_limit = !flag(env::RATE_LIMIT_DISABLED)?;
        c.hmac_secret = secret(&get, env::HMAC_SECRET)?;
        c.hmac_secret_previous = secret(&get, env::HMAC_SECRET_PREVIOUS)?;
        Ok(c)
    }
}

fn secret(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<HmacSecret>, ConfigError> {
    match get(var).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => {
            HmacSecret::new(s.into_bytes()).map(Some).ok_or(ConfigError::SecretTooShort { var })
        }
    }
}

/// `node-` and 8 random hex digits (per-process random keys of std's hasher:
/// names only need to differ between the nodes of one cluster).
fn random_node_id() -> String {
    use std::hash::BuildHasher as _;
    let n = std::hash::RandomState::new().hash_one(std::process::id());
    format!("node-{:08x}", n & 0xffff_ffff)
}

/// `$AGENTROOM_HOME/relay.db`, else `$HOME/.config/agentroom/relay.db`.
fn default_db_path(get: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(home) = get(env::AGENTROOM_HOME).filter(|s| !s.is_empty()) {
        return Some(Path::new(&home).join("relay.db"));
    }
    let home = get("HOME").filter(|s| !s.is_empty())?;
    Some(Path::new(&home).join(".config").join("agentroom").join("relay.db"))
}

/// Where the generated HMAC key lives when `HMAC_SECRET` is unset: beside the database.
pub fn secret_file_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".hmac");
    db_path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn ws_max_payload_is_an_alias_of_max_frame_bytes() {
        let db = ("AGENTROOM_DB", "/tmp/x.db");
        let c = RelayConfig::from_lookup(lookup(&[db, ("WS_MAX_PAYLOAD", "4096")])).unwrap();
        assert_eq!(c.max_frame, 4096);
        let both = [db, ("WS_MAX_PAYLOAD", "4096"), ("MAX_FRAME_BYTES", "8192")];
        assert_eq!(RelayConfig::from_lookup(lookup(&both)).unwrap().max_frame, 8192);
        assert!(RelayConfig::from_lookup(lookup(&[db, ("WS_MAX_PAYLOAD", "10")])).is_err());
    }

    #[test]
    fn env_overrides_defaults() {
        let c = RelayConfig::from_lookup(lookup(&[
            ("PORT", "0"),
            ("AGENTROOM_DB", "/tmp/x.db"),
            ("MAX_PENDING_MSGS", "7"),
            ("MAX_INVITES_PER_PK", "3"),
            ("RATE_LIMIT_DISABLED", "1"),
            ("TRUST_PROXY", "true"),
            ("HMAC_SECRET", "0123456789abcdef0123456789abcdef"),
        ]))
        .unwrap();
        assert_eq!(c.bind.port(), 0);
        assert_eq!(c.max_pending, 7);
        assert_eq!(c.max_invites_per_pk, 3);
        assert!(!c.rate_limit && c.trust_proxy);
        assert!(c.hmac_secret.is_some());
        assert_eq!(format!("{:?}", c.hmac_secret), "Some(HmacSecret(<redacted>))");
    }

    #[test]
    fn bad_values_are_errors() {
        let e = RelayConfig::from_lookup(lookup(&[("PORT", "http"), ("HOME", "/h")])).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { var: "PORT" }));
        let e = RelayConfig::from_lookup(lookup(&[("HMAC_SECRET", "short"), ("HOME", "/h")]))
            .unwrap_err();
        assert!(matches!(e, ConfigError::SecretTooShort { .. }));
    }

    #[test]
    fn secret_file_sits_beside_db() {
        assert_eq!(secret_file_path(Path::new("/a/b/relay.db")), Path::new("/a/b/relay.db.hmac"));
    }
}
