//! Login, tokens, secret rotation, login timeout, connection caps.

use std::time::Duration;

use agentroom::protocol::{ClientFrame, ErrorCode, ServerFrame};
use agentroom::relay::HmacSecret;

use crate::client::*;

#[tokio::test]
async fn login_then_resume_with_token() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let (c, pending) = Client::login(relay.local_addr(), &identity(1)).await;
    assert_eq!(pending, 0);
    let token = c.token.clone().unwrap();
    c.close().await;
    let mut c = Client::connect(relay.local_addr(), &identity(1)).await;
    c.send(&ClientFrame::Resume { v: 1, token: token.clone() }).await;
    match c.recv().await {
        ServerFrame::Welcome { identity: id, .. } => assert_eq!(id, identity(1).public()),
        f => panic!("{f:?}"),
    }
    let pong = c.barrier().await;
    assert!(pong.is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn bad_signature_wrong_origin_and_stale_ts_fail() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    // Signature by another key.
    let mut c = Client::connect(addr, &identity(1)).await;
    let mut f = c.login_frame(now());
    if let ClientFrame::Login { identity: id, .. } = &mut f {
        *id = identity(2).public();
    }
    c.send(&f).await;
    c.expect_error(ErrorCode::AuthFailed).await;
    c.expect_closed().await;
    // Signed for another origin.
    let mut c = Client::connect(addr, &identity(1)).await;
    c.addr.set_port(c.addr.port().wrapping_add(1));
    let f = c.login_frame(now());
    c.send(&f).await;
    c.expect_error(ErrorCode::AuthFailed).await;
    // Timestamp outside the skew.
    let mut c = Client::connect(addr, &identity(1)).await;
    let f = c.login_frame(now() - 3600);
    c.send(&f).await;
    c.expect_error(ErrorCode::AuthFailed).await;
    // Unsupported version.
    let mut c = Client::connect(addr, &identity(1)).await;
    let mut f = c.login_frame(now());
    if let ClientFrame::Login { v, .. } = &mut f {
        *v = 9;
    }
    c.send(&f).await;
    c.expect_error(ErrorCode::UnsupportedVersion).await;
    // Anything else before login.
    let mut c = Client::connect(addr, &identity(1)).await;
    c.send(&ClientFrame::Ping { rid: None }).await;
    c.expect_error(ErrorCode::AuthRequired).await;
    c.expect_closed().await;
    assert!(metric(addr, "agentroom_relay_auth_failures_total").await >= 4);
    relay.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.token_ttl = Duration::ZERO;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let (c, _) = Client::login(relay.local_addr(), &identity(1)).await;
    let token = c.token.clone().unwrap();
    let mut c2 = Client::connect(relay.local_addr(), &identity(1)).await;
    c2.send(&ClientFrame::Resume { v: 1, token }).await;
    c2.expect_error(ErrorCode::TokenExpired).await;
    c2.expect_closed().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn rotated_secret_still_accepted_then_rotated_out() {
    let dir = tempfile::tempdir().unwrap();
    let key = |b| HmacSecret::new(vec![b; 32]);
    let mut cfg = config(dir.path());
    cfg.hmac_secret = key(1);
    let relay = agentroom::relay::start(cfg.clone()).await.unwrap();
    let (c, _) = Client::login(relay.local_addr(), &identity(1)).await;
    let token = c.token.clone().unwrap();
    c.close().await;
    relay.shutdown().await;

    // Rotation: new key, old one as previous.
    cfg.hmac_secret = key(2);
    cfg.hmac_secret_previous = key(1);
    let relay = agentroom::relay::start(cfg.clone()).await.unwrap();
    let mut c = Client::connect(relay.local_addr(), &identity(1)).await;
    c.send(&ClientFrame::Resume { v: 1, token: token.clone() }).await;
    assert!(matches!(c.recv().await, ServerFrame::Welcome { .. }));
    c.close().await;
    relay.shutdown().await;

    // Rotated out.
    cfg.hmac_secret = key(3);
    cfg.hmac_secret_previous = key(2);
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let mut c = Client::connect(relay.local_addr(), &identity(1)).await;
    c.send(&ClientFrame::Resume { v: 1, token }).await;
    c.expect_error(ErrorCode::AuthFailed).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn generated_secret_persists_beside_db() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.hmac_secret = None;
    if backend() == crate::pg::Backend::Postgres {
        // Nodes sharing a database must share the key: no file of one node's own.
        let e = agentroom::relay::start(cfg).await.unwrap_err();
        assert!(matches!(e, agentroom::relay::RelayError::SharedSecretRequired), "{e:?}");
        return;
    }
    let relay = agentroom::relay::start(cfg.clone()).await.unwrap();
    let (c, _) = Client::login(relay.local_addr(), &identity(1)).await;
    let token = c.token.clone().unwrap();
    relay.shutdown().await;
    let file = dir.path().join("relay.db.hmac");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // A restart reuses it: old tokens still resume.
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let mut c = Client::connect(relay.local_addr(), &identity(1)).await;
    c.send(&ClientFrame::Resume { v: 1, token }).await;
    assert!(matches!(c.recv().await, ServerFrame::Welcome { .. }));
    relay.shutdown().await;
}

#[tokio::test]
async fn silent_socket_gets_login_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.login_timeout = Duration::from_millis(200);
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let mut c = Client::connect(relay.local_addr(), &identity(1)).await;
    c.expect_error(ErrorCode::LoginTimeout).await;
    c.expect_closed().await;
    assert_eq!(metric(relay.local_addr(), "agentroom_relay_login_timeouts_total").await, 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn per_address_cap_refuses_extra_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_connections_per_ip = 1;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let _first = Client::login(relay.local_addr(), &identity(1)).await;
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", relay.local_addr())).await.unwrap();
    let mut second = Client {
        ws,
        kp: std::sync::Arc::new(identity(2)),
        token: None,
        challenge: [0; 32],
        addr: relay.local_addr(),
    };
    second.expect_error(ErrorCode::TooManyConnections).await;
    second.expect_closed().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn newer_connection_replaces_older() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let (mut old, _) = Client::login(relay.local_addr(), &identity(1)).await;
    let (mut new, _) = Client::login(relay.local_addr(), &identity(1)).await;
    // A dedicated close code, so clients need not read the reason text.
    assert_eq!(old.close_code().await, Some(agentroom::protocol::close::REPLACED));
    assert!(new.barrier().await.is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn health_reports_ok() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let (status, body) = http_get(relay.local_addr(), "/health").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["db"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_secs"].is_u64());
    relay.shutdown().await;
}

#[tokio::test]
async fn socket_ignoring_pings_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ping_interval = Duration::from_millis(50);
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let addr = relay.local_addr();
    // A client that stops reading never answers pings (pongs are sent on read).
    let (mut c, _) = Client::login(addr, &identity(1)).await;
    let deadline = std::time::Instant::now() + WAIT;
    while metric(addr, "agentroom_relay_ping_timeouts_total").await == 0 {
        assert!(std::time::Instant::now() < deadline, "never dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.expect_closed().await;
    // A client that keeps reading stays connected across many ping intervals.
    let (mut d, _) = Client::login(addr, &identity(2)).await;
    for _ in 0..10 {
        assert!(d.barrier().await.is_empty());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(metric(addr, "agentroom_relay_ping_timeouts_total").await, 1);
    relay.shutdown().await;
}
