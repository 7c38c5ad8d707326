//! `agentroom relay`: the standalone relay.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::ExitStatus;
use crate::relay::{self, RelayConfig};

// Options of `agentroom relay`. Each flag overrides its environment variable.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentroom relay                       # ws://127.0.0.1:8787/ws
  agentroom relay --bind 0.0.0.0 --port 9000
  agentroom relay --tunnel              # a public URL through cloudflared")]
pub struct RelayArgs {
    /// Port for HTTP and WebSocket (0 = any free port).
    #[arg(long, env = crate::env::PORT, default_value_t = crate::defaults::RELAY_PORT)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = crate::env::BIND, default_value = crate::defaults::RELAY_BIND)]
    pub bind: IpAddr,
    /// SQLite database file [default: $AGENTROOM_HOME/relay.db], or a postgres:// URL
    /// shared by several relay nodes (docs/scaling.md).
    // The value may hold a database password: `--help` must not print it.
    #[arg(long, env = crate::env::AGENTROOM_DB, value_name = "FILE|URL", hide_env_values = true)]
    pub db: Option<PathBuf>,
    /// Largest accepted frame, in bytes.
    #[arg(long, env = crate::env::MAX_FRAME_BYTES, value_name = "BYTES")]
    pub max_frame: Option<usize>,
    /// Envelopes queued per recipient before senders get `queue_full`.
    #[arg(long, env = crate::env::MAX_PENDING_MSGS, value_name = "N")]
    pub max_pending: Option<u64>,
    /// Relay-wide connection cap.
    #[arg(long, env = crate::env::MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections per client address.
    #[arg(long, env = crate::env::MAX_CONNECTIONS_PER_IP, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Serve TLS (wss://, https://) with this PEM certificate chain; needs --tls-key.
    /// Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = crate::env::TLS_CERT_FILE, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = crate::env::TLS_KEY_FILE, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// HMAC key for session tokens (≥ 32 bytes), as the TypeScript relay's flag.
    /// A command line shows in `ps`: prefer the HMAC_SECRET environment variable.
    #[arg(long, value_name = "SECRET")]
    pub hmac: Option<String>,
    /// `--tunnel [cloudflared|bore|none]`: a public URL for this relay (room engineer).
    #[command(flatten)]
    pub tunnel: super::tunnel_args::TunnelArgs,
}

impl RelayArgs {
    /// The relay configuration: environment, then these flags.
    pub fn config(
        &self,
        home: Option<&std::path::Path>,
        printer: super::Printer,
    ) -> anyhow::Result<RelayConfig> {
        let home = home.map(|h| h.display().to_string());
        let mut c = RelayConfig::from_lookup(|k| {
            if k == crate::env::AGENTROOM_HOME {
                if let Some(h) = &home {
                    return Some(h.clone());
                }
            }
            std::env::var(k).ok()
        })
        .context("relay configuration")?;
        c.bind = SocketAddr::new(self.bind, self.port);
        if let Some(db) = &self.db {
            c.db_path = db.clone();
        }
        if let Some(v) = self.max_frame {
            anyhow::ensure!(v >= 1024, "--max-frame must be at least 1024 bytes");
            c.max_frame = v;
        }
        if let Some(v) = self.max_pending {
            c.max_pending = v;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.max_connections_per_ip {
            c.max_connections_per_ip = v;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            c.tls = Some(relay::TlsFiles { cert: cert.clone(), key: key.clone() });
        }
        if let Some(secret) = self.hmac.as_deref() {
            c.hmac_secret = Some(hmac_flag(secret, printer)?);
        }
        Ok(c)
    }
}

/// Run the relay until SIGINT/SIGTERM, then shut down gracefully.
pub async fn run(args: RelayArgs, json: bool, home: Option<PathBuf>) -> anyhow::Result<ExitStatus> {
    let config = args.config(home.as_deref(), super::Printer::new(json))?;
    if config.tls.is_some()
        && args.tunnel.choice(super::tunnel_args::TunnelChoice::None)
            == super::tunnel_args::TunnelChoice::Cloudflared
    {
        anyhow::bail!(
            "--tls-cert cannot be combined with --tunnel cloudflared: cloudflared terminates TLS \
             itself and reaches the relay over plain HTTP (drop --tls-cert; --tunnel bore passes \
             the relay's TLS through)"
        );
    }
    // Handlers first: a SIGTERM that arrives right after the startup line must
    // still mean a graceful shutdown, not the default instant death.
    let signals = Signals::install()?;
    let handle = relay::start(config).await?;
    let addr = handle.local_addr();
    let url = handle.ws_url();
    let http = if handle.serves_tls() { "https" } else { "http" };
    let health = format!("{http}://{addr}/health");
    if json {
        let line = serde_json::json!({
            "event": "listening", "url": url, "health": health, "port": addr.port(),
        });
        super::print_line(&line.to_string());
    } else {
        super::print_line(&format!("agentroom relay listening on {url} (health: {health})"));
    }
    {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    let tunnel = super::tunnel_args::start_for_relay(&args.tunnel, &handle, home, json).await?;
    let signal = signals.wait(&handle).await;
    tracing::info!(signal, "shutting down");
    if let Some(t) = tunnel {
        t.shutdown().await;
    }
    handle.shutdown().await;
    Ok(ExitStatus::Success)
}

/// `--hmac SECRET` (relay and room open): accepted for the TypeScript agentroom's
/// scripts, with a warning, since every user of the machine can read it in `ps`.
pub(crate) fn hmac_flag(
    secret: &str,
    printer: super::Printer,
) -> anyhow::Result<relay::HmacSecret> {
    printer.note(
        "agentroom: warning: --hmac puts the secret on the command line, where `ps` shows it \
         to every user of this machine; set HMAC_SECRET in the environment instead",
    );
    relay::HmacSecret::new(secret.as_bytes().to_vec()).ok_or_else(|| {
        anyhow::anyhow!("--hmac must be at least {} bytes", relay::config::MIN_HMAC_SECRET_BYTES)
    })
}

/// SIGTERM and SIGINT (stop) and SIGHUP (reload TLS), caught from the moment
/// they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        })
    }

    /// Wait for a stop signal; reload the TLS certificate on each SIGHUP meanwhile.
    async fn wait(mut self, relay: &relay::RelayHandle) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    if let Err(e) = relay.reload_tls() {
                        tracing::warn!(error = %e, "SIGHUP: cannot reload TLS; keeping the previous certificate");
                    }
                }
            }
        }
    }
}
