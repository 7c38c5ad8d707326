//! `--tunnel bore`: a real bore server (the bore-cli library, in-process, bound to
//! 127.0.0.1) and our supervisor's bore client; HTTP and WebSocket traffic to a
//! relay-like server must cross the hop.
//!
//! bore's control port is fixed (7835), so everything that needs a bore server
//! runs in this one test, under a global lock in case more are added.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use agentroom::tunnel::{
    Tunnel, TunnelError, TunnelKind, TunnelOptions, TunnelState, probe_health,
};
use tokio_util::task::AbortOnDropHandle;

use crate::fixtures::{relay_like_server, ws_echo_through};

static BORE_PORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const CONTROL_PORT: u16 = 7835;
const SECRET: &str = "test-bore-secret";

async fn bore_server() -> AbortOnDropHandle<()> {
    let mut server = bore_cli::server::Server::new(20000..=60000, Some(SECRET));
    server.set_bind_addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
    server.set_bind_tunnels(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let task = AbortOnDropHandle::new(tokio::spawn(async move {
        if let Err(e) = server.listen().await {
            panic!("bore server failed (is port {CONTROL_PORT} taken?): {e}");
        }
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", CONTROL_PORT)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "bore server never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task
}

fn options(port: u16, secret: &str) -> TunnelOptions {
    let kind = TunnelKind::Bore { server: "127.0.0.1".into(), secret: Some(secret.into()) };
    let mut opts = TunnelOptions::new(kind, port, std::env::temp_dir());
    opts.url_timeout = Duration::from_secs(10);
    opts
}

#[tokio::test]
async fn http_and_websocket_cross_a_real_bore_hop() {
    let _serial = BORE_PORT.lock().await;
    // Other test binaries (tests/room) use port 7835 too: serialise across processes.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/agentroom-bore-7835.lock")
        .unwrap();
    lock.lock().unwrap();
    let server = bore_server().await;
    let relay = relay_like_server().await;

    let tunnel = Tunnel::start(options(relay.addr.port(), SECRET)).await.unwrap();
    let url = tunnel.public_url().unwrap();
    assert_eq!(url.scheme(), "http");
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert_ne!(url.port(), Some(relay.addr.port()));
    assert_eq!(tunnel.process_group_id(), None, "bore runs in-process");

    probe_health(&url, Duration::from_secs(20)).await.unwrap();
    ws_echo_through(&url).await;

    // A wrong secret is refused with a clear error.
    let err = Tunnel::start(options(relay.addr.port(), "wrong")).await.unwrap_err();
    assert!(matches!(err, TunnelError::Bore { .. }), "{err}");

    let states = tunnel.subscribe();
    tunnel.shutdown().await;
    assert_eq!(*states.borrow(), TunnelState::Stopped);

    // No server at all: a clear error naming it, not a hang.
    drop(server);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", CONTROL_PORT)).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "bore server never closed its port");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = Tunnel::start(options(relay.addr.port(), SECRET)).await.unwrap_err();
    assert!(matches!(err, TunnelError::Bore { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}
