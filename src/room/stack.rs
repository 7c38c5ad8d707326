//! The room's infrastructure: the relay in-process, the tunnel in front of it, and
//! the URLs a guest can use. No client, no invite: [`super::open`] builds on this.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use tokio::sync::watch;
use url::Url;

use super::RoomError;
use crate::client::relay_url::RelayUrl;
use crate::relay::tls::TlsCerts;
use crate::relay::{self, RelayConfig, RelayHandle};
use crate::tunnel::{Tunnel, TunnelError, TunnelKind, TunnelOptions, TunnelState, probe_health};

/// How long to wait for `/health` to answer through a fresh tunnel before warning
/// and going on anyway: a quick tunnel's DNS name can take a while to resolve
/// everywhere, and the guest may only connect minutes later.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running relay with its tunnel.
#[derive(Debug)]
pub struct RoomStack {
    relay: RelayHandle,
    tunnel: Tunnel,
    kind: TunnelKind,
    /// With the relay's own TLS: the host its direct (tunnel-less) URL names.
    tls_host: Option<String>,
}

impl RoomStack {
    /// Start the relay (on `relay.bind`, port 0 = any free port), then the tunnel
    /// towards it. A tunnel that cannot start stops the relay again.
    pub async fn start(relay: RelayConfig, mut tunnel: TunnelOptions) -> Result<Self, RoomError> {
        let relay = relay::start(relay).await?;
        tunnel.local_port = relay.local_addr().port();
        let kind = tunnel.kind.clone();
        let tls_host = relay.tls_certs().map(|c| tls_host(c, relay.local_addr().ip()));
        match Tunnel::start(tunnel).await {
            Ok(tunnel) => Ok(Self { relay, tunnel, kind, tls_host }),
            Err(e) => {
                relay.shutdown().await;
                Err(e.into())
            }
        }
    }

    /// The relay's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.relay.local_addr()
    }

    /// `ws://127.0.0.1:P/ws`: how processes on this machine (the host's own client)
    /// reach the relay, whatever happens to the tunnel.
    pub fn local_url(&self) -> String {
        local_ws_url(self.relay.local_addr())
    }

    /// `http://127.0.0.1:P/health`.
    pub fn health_url(&self) -> String {
        let addr = loopback_for(self.relay.local_addr());
        format!("http://{addr}/health")
    }

    /// The tunnel's current public base URL (`https://x.trycloudflare.com/`,
    /// `http://bore.pub:P/`); `None` without a tunnel or while it restarts.
    pub fn tunnel_url(&self) -> Option<Url> {
        self.tunnel.public_url()
    }

    /// The relay URL a guest dials: the tunnel's as `wss://…/ws` (`ws://` for a
    /// plain-http tunnel such as bore); without a tunnel the LAN one when the relay
    /// listens on all interfaces, else the loopback one (a guest on this machine).
    /// A relay serving TLS itself: `wss://` through bore (which passes TLS through),
    /// and without a tunnel `wss://HOST:PORT/ws` with the host of [`tls_host`].
    pub fn public_relay_url(&self) -> String {
        match (self.tunnel.public_url(), &self.tls_host) {
            (Some(u), _) => self.tunnel_relay_url(&u),
            (None, Some(host)) => format!("wss://{host}:{}/ws", self.relay.local_addr().port()),
            (None, None) => self.lan_url().unwrap_or_else(|| self.local_url()),
        }
    }

    /// A tunnel URL as the relay URL guests dial through it.
    pub fn tunnel_relay_url(&self, u: &Url) -> String {
        let url = relay_url_from_tunnel(u);
        match url.strip_prefix("ws://") {
            Some(rest) if self.relay.serves_tls() => format!("wss://{rest}"),
            _ => url,
        }
    }

    /// The relay URL on this machine's LAN address, when the relay listens on all
    /// interfaces and the machine has a non-loopback address.
    pub fn lan_url(&self) -> Option<String> {
        let addr = self.relay.local_addr();
        if !addr.ip().is_unspecified() {
            return None;
        }
        let scheme = if self.relay.serves_tls() { "wss" } else { "ws" };
        lan_ip().map(|ip| format!("{scheme}://{}/ws", SocketAddr::new(ip, addr.port())))
    }

    /// Whether a tunnel runs at all.
    pub fn has_tunnel(&self) -> bool {
        self.kind != TunnelKind::None
    }

    /// Every tunnel state change (a restart with a new URL, in particular).
    pub fn tunnel_changes(&self) -> watch::Receiver<TunnelState> {
        self.tunnel.subscribe()
    }

    /// The tunnel child's process group (cloudflared), for `room stop`'s last resort.
    pub fn tunnel_pgid(&self) -> Option<i32> {
        self.tunnel.process_group_id()
    }

    /// Envelopes queued in the relay.
    pub fn pending(&self) -> u64 {
        self.relay.stats().pending
    }

    /// Prove the relay answers through the tunnel. `Err` is a warning for the
    /// caller to show: the room keeps running.
    pub async fn probe(&self, timeout: Duration) -> Result<(), TunnelError> {
        match self.tunnel.public_url() {
            Some(u) => probe_health(&u, timeout).await,
            None => Ok(()),
        }
    }

    /// Tunnel first (no new guest traffic), then the relay (commits what is queued).
    pub async fn shutdown(self) {
        self.tunnel.shutdown().await;
        self.relay.shutdown().await;
    }
}

/// `https://h/` → `wss://h/ws`, `http://h:p/` → `ws://h:p/ws`.
pub fn relay_url_from_tunnel(u: &Url) -> String {
    let scheme = if u.scheme() == "https" { "wss" } else { "ws" };
    let host = match u.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match u.port() {
        Some(p) => format!("{scheme}://{host}:{p}/ws"),
        None => format!("{scheme}://{host}/ws"),
    }
}

/// Before anything is created: a room relay that serves TLS itself needs a
/// certificate and key that load and fit, a tunnel other than cloudflared, and,
/// without a tunnel or `--public-url`, a certificate valid for [`tls_host`].
pub fn check_tls(
    relay: &RelayConfig,
    tunnel: &TunnelKind,
    public_url: Option<&RelayUrl>,
) -> Result<(), RoomError> {
    let Some(files) = &relay.tls else { return Ok(()) };
    let certs = TlsCerts::load(&files.cert, &files.key).map_err(relay::RelayError::from)?;
    match tunnel {
        TunnelKind::Cloudflared => Err(RoomError::TlsWithCloudflared),
        TunnelKind::None => match public_url {
            None => {
                let host = tls_host(&certs, relay.bind.ip());
                if certs.covers(&host) { Ok(()) } else { Err(RoomError::CertificateName { host }) }
            }
            // Right when a proxy in front terminates TLS again with its own certificate.
            Some(url) if !certs.covers(&url.host()) => {
                tracing::warn!(relay = %url, "the room's TLS certificate does not name the --public-url host: guests dialling it directly will refuse it");
                Ok(())
            }
            Some(_) => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The host a guest dials to reach a room relay that serves TLS itself without a
/// tunnel: the certificate's first DNS name (wildcards left out); for a certificate
/// of IP addresses only, the address the relay is reached at (the LAN address when
/// it listens on all interfaces, else the bind address). `room open` refuses a
/// host the certificate does not cover unless `--public-url` names another.
pub fn tls_host(certs: &TlsCerts, bind: IpAddr) -> String {
    if let Some(name) = certs.dns_names().into_iter().next() {
        return name;
    }
    let ip = match bind {
        ip if ip.is_unspecified() => lan_ip().unwrap_or(loopback_for(SocketAddr::new(ip, 0)).ip()),
        ip => ip,
    };
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `ws://addr/ws`, with an unspecified bind address shown as loopback.
fn local_ws_url(addr: SocketAddr) -> String {
    format!("ws://{}/ws", loopback_for(addr))
}

fn loopback_for(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The address this machine would use towards the outside: "connecting" a UDP
/// socket sends nothing, it only asks the kernel for the route.
pub fn lan_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_urls_become_relay_urls() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            relay_url_from_tunnel(&u("https://a-b.trycloudflare.com")),
            "wss://a-b.trycloudflare.com/ws"
        );
        assert_eq!(relay_url_from_tunnel(&u("http://bore.pub:41234/")), "ws://bore.pub:41234/ws");
        assert_eq!(relay_url_from_tunnel(&u("http://127.0.0.1:5000")), "ws://127.0.0.1:5000/ws");
        assert_eq!(relay_url_from_tunnel(&u("http://[::1]:7/")), "ws://[::1]:7/ws");
    }

    #[test]
    fn unspecified_bind_is_shown_as_loopback() {
        let a: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        assert_eq!(local_ws_url(a), "ws://127.0.0.1:8787/ws");
        let b: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(local_ws_url(b), "ws://127.0.0.1:9/ws");
    }

    #[tokio::test]
    async fn relay_without_tunnel_advertises_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RelayConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("relay.db"));
        let opts = TunnelOptions::new(TunnelKind::None, 0, dir.path().to_path_buf());
        let stack = RoomStack::start(cfg, opts).await.unwrap();
        let port = stack.local_addr().port();
        assert_eq!(stack.public_relay_url(), format!("ws://127.0.0.1:{port}/ws"));
        assert!(!stack.has_tunnel());
        assert_eq!(stack.lan_url(), None, "loopback bind has no LAN URL");
        stack.probe(Duration::from_secs(1)).await.unwrap();
        let body = reqwest::get(stack.health_url()).await.unwrap();
        assert!(body.status().is_success());
        stack.shutdown().await;
    }

    fn localhost_pair(dir: &std::path::Path) -> relay::TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = relay::TlsFiles { cert: dir.join("c.pem"), key: dir.join("k.pem") };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[tokio::test]
    async fn a_tls_room_relay_invites_by_the_certificate_name_and_answers_plain_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RelayConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("r.db"));
        cfg.tls = Some(localhost_pair(dir.path()));
        let opts = TunnelOptions::new(TunnelKind::None, 0, dir.path().to_path_buf());
        check_tls(&cfg, &opts.kind, None).unwrap();
        assert!(matches!(
            check_tls(&cfg, &TunnelKind::Cloudflared, None),
            Err(RoomError::TlsWithCloudflared)
        ));
        // Plain HTTP from loopback only when the room asks for it.
        let strict = RoomStack::start(cfg.clone(), opts.clone()).await.unwrap();
        assert!(reqwest::get(strict.health_url()).await.is_err(), "TLS only by default");
        strict.shutdown().await;
        cfg.tls_plain_loopback = true;
        let stack = RoomStack::start(cfg, opts).await.unwrap();
        let port = stack.local_addr().port();
        assert_eq!(stack.public_relay_url(), format!("wss://localhost:{port}/ws"));
        assert_eq!(stack.local_url(), format!("ws://127.0.0.1:{port}/ws"));
        let health = reqwest::get(stack.health_url()).await.unwrap();
        assert!(health.status().is_success());
        let bore = Url::parse("http://bore.test:4000/").unwrap();
        assert_eq!(stack.tunnel_relay_url(&bore), "wss://bore.test:4000/ws");
        stack.shutdown().await;
    }
}
