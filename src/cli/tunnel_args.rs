//! The `--tunnel` flags shared by `room open` (default: cloudflared) and `relay`
//! (default: none), flattened into both so the two spell them the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::tunnel::{TunnelKind, TunnelOptions};

/// Which tunnel to run, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TunnelChoice {
    /// A cloudflared quick tunnel (`https://….trycloudflare.com`).
    Cloudflared,
    /// A bore TCP tunnel through `--bore-server`.
    Bore,
    /// No tunnel: loopback (or LAN) only.
    None,
}

impl TunnelChoice {
    /// The name used in the state file and in events.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cloudflared => "cloudflared",
            Self::Bore => "bore",
            Self::None => "none",
        }
    }
}

// Tunnel options. `--tunnel` alone means cloudflared (the TypeScript agentroom's
// `relay --tunnel`); `--no-tunnel` is `--tunnel none`.
#[derive(Debug, Clone, Args)]
pub struct TunnelArgs {
    /// Tunnel giving the relay a public URL (`--tunnel` alone: cloudflared).
    /// Default: cloudflared for `room open`, none for `relay`.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "cloudflared", value_name = "KIND")]
    pub tunnel: Option<TunnelChoice>,
    /// No tunnel: same as `--tunnel none`.
    #[arg(long, conflicts_with = "tunnel")]
    pub no_tunnel: bool,
    /// cloudflared binary [default: $CLOUDFLARED_BIN, PATH, then a verified download into the home].
    #[arg(long, value_name = "PATH")]
    pub cloudflared_bin: Option<PathBuf>,
    /// Never download cloudflared; print how to install it instead.
    #[arg(long)]
    pub no_download: bool,
    /// How long to wait for the tunnel's public URL before giving up.
    #[arg(long, value_parser = super::duration::parse_duration, default_value = "30s", value_name = "DURATION")]
    pub tunnel_timeout: Duration,
    /// bore server for `--tunnel bore`.
    #[arg(long, default_value = "bore.pub", value_name = "HOST")]
    pub bore_server: String,
    /// Shared secret of the bore server, if it requires one (prefer the variable:
    /// a command line is visible in `ps`).
    #[arg(long, env = crate::env::BORE_SECRET, hide_env_values = true, value_name = "SECRET")]
    pub bore_secret: Option<String>,
}

impl TunnelArgs {
    /// The tunnel asked for; `default` when neither `--tunnel` nor `--no-tunnel` was given.
    pub fn choice(&self, default: TunnelChoice) -> TunnelChoice {
        if self.no_tunnel { TunnelChoice::None } else { self.tunnel.unwrap_or(default) }
    }

    /// Supervisor options for a relay on `127.0.0.1:local_port`.
    pub fn options(&self, choice: TunnelChoice, local_port: u16, home: &Path) -> TunnelOptions {
        let kind = match choice {
            TunnelChoice::Cloudflared => TunnelKind::Cloudflared,
            TunnelChoice::Bore => TunnelKind::Bore {
                server: self.bore_server.clone(),
                secret: self.bore_secret.clone(),
            },
            TunnelChoice::None => TunnelKind::None,
        };
        let mut opts = TunnelOptions::new(kind, local_port, home.to_path_buf());
        opts.cloudflared_bin = self.cloudflared_bin.clone();
        opts.allow_download = !self.no_download;
        opts.url_timeout = self.tunnel_timeout;
        opts
    }
}

/// `agentroom relay --tunnel`: start the tunnel in front of a running relay, print
/// its URL, probe it, and keep announcing new URLs after restarts. `None` without
/// a tunnel.
pub async fn start_for_relay(
    args: &TunnelArgs,
    relay: &crate::relay::RelayHandle,
    home: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<Option<crate::tunnel::Tunnel>> {
    let choice = args.choice(TunnelChoice::None);
    if choice == TunnelChoice::None {
        return Ok(None);
    }
    let home = super::home_of(home)?;
    let printer = super::Printer::new(json);
    let tunnel =
        crate::tunnel::Tunnel::start(args.options(choice, relay.local_addr().port(), home.dir()))
            .await?;
    let mut changes = tunnel.subscribe();
    changes.borrow_and_update();
    // bore forwards raw TCP: a relay serving TLS itself is reached over https/wss.
    let tls = relay.serves_tls();
    let scheme = move |mut url: url::Url| {
        if tls {
            let _ = url.set_scheme("https");
        }
        url
    };
    if let Some(url) = tunnel.public_url().map(scheme) {
        announce(printer, choice, &url, "tunnel_ready");
        if let Err(e) = crate::tunnel::probe_health(&url, crate::room::stack::PROBE_TIMEOUT).await {
            printer
                .note(&format!("warning: the relay did not answer through the tunnel yet ({e})"));
        }
    }
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            let url = changes.borrow_and_update().url().cloned().map(scheme);
            if let Some(url) = url {
                tracing::info!(%url, "tunnel restarted with a new public URL");
                announce(printer, choice, &url, "tunnel_url_changed");
            }
        }
    });
    Ok(Some(tunnel))
}

fn announce(printer: super::Printer, choice: TunnelChoice, url: &url::Url, event: &str) {
    let relay_url = crate::room::stack::relay_url_from_tunnel(url);
    printer.event(
        event,
        serde_json::json!({"tunnel": choice.name(), "public_url": url.as_str(), "relay": relay_url, "relay_url": relay_url}),
        || Some(format!("public URL ({}): {url}  relay: {relay_url}", choice.name())),
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        tunnel: TunnelArgs,
    }

    fn parse(args: &[&str]) -> Result<TunnelChoice, clap::Error> {
        let mut argv = vec!["probe"];
        argv.extend_from_slice(args);
        Probe::try_parse_from(argv).map(|p| p.tunnel.choice(TunnelChoice::None))
    }

    #[test]
    fn spellings() {
        assert_eq!(parse(&[]).unwrap(), TunnelChoice::None);
        assert_eq!(parse(&["--tunnel"]).unwrap(), TunnelChoice::Cloudflared);
        assert_eq!(parse(&["--tunnel", "bore"]).unwrap(), TunnelChoice::Bore);
        assert_eq!(parse(&["--tunnel=none"]).unwrap(), TunnelChoice::None);
        assert_eq!(parse(&["--no-tunnel"]).unwrap(), TunnelChoice::None);
        assert!(parse(&["--tunnel", "ngrok"]).is_err());
        assert!(parse(&["--tunnel", "bore", "--no-tunnel"]).is_err());
    }

    #[test]
    fn options_carry_the_flags() {
        let p = Probe::try_parse_from([
            "probe",
            "--tunnel",
            "bore",
            "--bore-server",
            "127.0.0.1",
            "--bore-secret",
            "s3",
            "--no-download",
        ])
        .unwrap();
        let choice = p.tunnel.choice(TunnelChoice::Cloudflared);
        let opts = p.tunnel.options(choice, 4242, Path::new("/tmp/h"));
        assert_eq!(opts.local_port, 4242);
        assert!(!opts.allow_download);
        assert_eq!(
            opts.kind,
            TunnelKind::Bore { server: "127.0.0.1".into(), secret: Some("s3".into()) }
        );
    }
}
