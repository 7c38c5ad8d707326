//! The room's infrastructure: the relay in-process, the tunnel in front of it, and
//! the URLs a guest can use. No client, no invite: [`super::open`] builds on this.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use tokio::sync::watch;
use url::Url;

use super::RoomError;
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
}

impl RoomStack {
    /// Start the relay (on `relay.bind`, port 0 = any free port), then the tunnel
    /// towards it. A tunnel that cannot start stops the relay again.
    pub async fn start(relay: RelayConfig, mut tunnel: TunnelOptions) -> Result<Self, RoomError> {
        let relay = relay::start(relay).await?;
        tunnel.local_port = relay.local_addr().port();
        let kind = tunnel.kind.clone();
        match Tunnel::start(tunnel).await {
            Ok(tunnel) => Ok(Self { relay, tunnel, kind }),
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
    pub fn public_relay_url(&self) -> String {
        match self.tunnel.public_url() {
            Some(u) => relay_url_from_tunnel(&u),
            None => self.lan_url().unwrap_or_else(|| self.local_url()),
        }
    }

    /// The relay URL on this machine's LAN address, when the relay listens on all
    /// interfaces and the machine has a non-loopback address.
    pub fn lan_url(&self) -> Option<String> {
        let addr = self.relay.local_addr();
        if !addr.ip().is_unspecified() {
            return None;
        }
        lan_ip().map(|ip| local_ws_url(SocketAddr::new(ip, addr.port())))
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
}
