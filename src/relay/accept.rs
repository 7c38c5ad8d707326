//! The relay's accept loop (in place of `axum::serve`), which owns what happens
//! before a socket becomes a WebSocket:
//! - TLS, when the relay serves it itself ([`super::tls`]);
//! - a header-read timeout: a client must finish its TLS handshake and request
//!   headers within `header_read_timeout` (an idle keep-alive connection too), so
//!   slowloris connections are closed instead of held forever;
//! - a per-address cap on connections not yet upgraded: beyond it a new socket
//!   from that address is closed at once, so one address cannot take every file
//!   descriptor while its requests trickle in;
//! - accept errors: when the process is out of descriptors (EMFILE/ENFILE) or
//!   memory the loop backs off (doubling, up to [`ACCEPT_BACKOFF_MAX`]) instead
//!   of spinning, and resumes as soon as a descriptor is free.
//!
//! Upgraded WebSockets leave this module through axum's `on_upgrade` (tracked by
//! the relay's `TaskTracker`), and stop counting against the cap.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// First pause after an accept error that a retry cannot fix at once.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause: a freed descriptor is picked up within a second.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long shutdown waits for HTTP requests in flight (not WebSockets, which
/// the relay closes itself) before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the loop enforces before the upgrade.
#[derive(Clone)]
pub(crate) struct AcceptOptions {
    /// TLS handshake plus request headers must arrive within this.
    pub(crate) header_read_timeout: Duration,
    /// Connections per address that have not upgraded (or finished) yet.
    pub(crate) max_unupgraded_per_ip: usize,
    /// Serve TLS with this configuration; `None` = plain HTTP.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// With `tls`: serve plain HTTP to a loopback peer whose first byte is not a
    /// TLS handshake ([`super::RelayConfig::tls_plain_loopback`]).
    pub(crate) plain_loopback: bool,
}

/// Raise the soft open-file limit to the hard one, so the relay's connection caps
/// bind before the descriptor limit does (many systems start at a soft 1024).
pub(crate) fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::debug!(error = %e, soft, hard, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the open-file limit"),
    }
}

/// Accept until `shutdown`, then let requests in flight finish (briefly).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    opts: AcceptOptions,
    shutdown: CancellationToken,
) {
    let pending = Arc::new(Pending::new(opts.max_unupgraded_per_ip));
    let conns = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => {
                backoff = ACCEPT_BACKOFF_MIN;
                a
            }
            Err(e) if is_resource_exhaustion(&e) => {
                if backoff == ACCEPT_BACKOFF_MIN {
                    tracing::warn!(error = %e, "cannot accept connections (out of descriptors or memory); backing off");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
            // ECONNABORTED and friends concern one connection only.
            Err(e) => {
                tracing::debug!(error = %e, "accept failed for one connection");
                continue;
            }
        };
        let Some(slot) = pending.acquire(peer.ip()) else {
            tracing::debug!(ip = %peer.ip(), "too many connections not yet upgraded from one address; closing");
            drop(tcp);
            continue;
        };
        // Frames are small and already batched before each flush: Nagle would hold a
        // batch back until the peer's delayed ACK (up to 40 ms on Linux), which showed
        // up as 40-120 ms stalls at a steady 20k envelopes/s.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        let router = router.clone();
        let opts = opts.clone();
        let stop = shutdown.clone();
        conns.spawn(async move {
            connection(tcp, peer, router, &opts, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    conns.close();
    // Each connection ends within SHUTDOWN_GRACE of the cancellation by itself.
    conns.wait().await;
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    let Some(code) = e.raw_os_error() else { return false };
    [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM].iter().any(|n| *n as i32 == code)
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    opts: &AcceptOptions,
    stop: CancellationToken,
) {
    match &opts.tls {
        None => http(tcp, peer, router, opts, stop).await,
        Some(_) if opts.plain_loopback && speaks_plain(&tcp, peer, opts, &stop).await => {
            http(tcp, peer, router, opts, stop).await;
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(config));
            let handshake = tokio::time::timeout(opts.header_read_timeout, acceptor.accept(tcp));
            let handshake = tokio::select! {
                () = stop.cancelled() => return,
                r = handshake => r,
            };
            match handshake {
                Ok(Ok(tls)) => http(tls, peer, router, opts, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// First byte of a TLS record carrying a handshake (a ClientHello, here).
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether a loopback peer opened with something other than a TLS handshake (an
/// HTTP request). Peeks, so the byte is still there for whichever side reads it;
/// a peer that says nothing within the header timeout goes the TLS way (and times
/// out there).
async fn speaks_plain(
    tcp: &TcpStream,
    peer: SocketAddr,
    opts: &AcceptOptions,
    stop: &CancellationToken,
) -> bool {
    if !peer.ip().to_canonical().is_loopback() {
        return false;
    }
    let mut first = [0u8; 1];
    let peek = tokio::time::timeout(opts.header_read_timeout, tcp.peek(&mut first));
    tokio::select! {
        () = stop.cancelled() => false,
        r = peek => matches!(r, Ok(Ok(1))) && first[0] != TLS_HANDSHAKE,
    }
}

/// One HTTP/1.1 connection; returns once it closed or was handed to a WebSocket.
async fn http<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    opts: &AcceptOptions,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            let r: Result<axum::response::Response, Infallible> =
                tower_service::Service::call(&mut router, req).await;
            r
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(%peer, "HTTP request still in flight at shutdown dropped");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Connections not yet upgraded, per address.
struct Pending {
    cap: usize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place under the cap; released on drop.
struct PendingSlot {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Pending {
    fn new(cap: usize) -> Self {
        Self { cap, by_ip: Mutex::new(HashMap::new()) }
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PendingSlot> {
        let mut m = self.by_ip.lock().expect("no thread panics while holding the pending map");
        let n = m.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PendingSlot { pending: Arc::clone(self), ip })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut m =
            self.pending.by_ip.lock().expect("no thread panics while holding the pending map");
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_per_address_and_released_on_drop() {
        let p = Arc::new(Pending::new(2));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let s1 = p.acquire(a).unwrap();
        let _s2 = p.acquire(a).unwrap();
        assert!(p.acquire(a).is_none());
        assert!(p.acquire(b).is_some());
        drop(s1);
        assert!(p.acquire(a).is_some());
    }

    #[test]
    fn only_resource_errors_back_off() {
        let e = |n: nix::errno::Errno| std::io::Error::from_raw_os_error(n as i32);
        assert!(is_resource_exhaustion(&e(nix::errno::Errno::EMFILE)));
        assert!(!is_resource_exhaustion(&e(nix::errno::Errno::ECONNABORTED)));
    }
}
