//! Bad input never crashes the relay: each class gets its error and is counted.

use agentroom::protocol::{ClientFrame, ErrorCode};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::client::*;

#[tokio::test]
async fn bad_frames_get_errors_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_frame = 4096;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let addr = relay.local_addr();
    let (mut c, _) = Client::login(addr, &identity(1)).await;

    c.send_raw(&format!("{{\"type\":\"ping\",\"rid\":\"{}\"}}", "x".repeat(5000))).await;
    c.expect_error(ErrorCode::TooLarge).await;
    c.send_raw("{not json").await;
    c.expect_error(ErrorCode::BadFrame).await;
    c.send_raw(r#"{"type":"teleport"}"#).await;
    c.expect_error(ErrorCode::UnknownType).await;
    c.send_raw(r#"{"type":"send","id":"!!","to":"x","body":"y"}"#).await;
    c.expect_error(ErrorCode::BadFrame).await;
    c.send_raw("[1,2,3]").await;
    c.expect_error(ErrorCode::BadFrame).await;
    c.ws.send(Message::Binary(vec![0xff, 0x00, 0x13, 0x37].into())).await.unwrap();
    c.expect_error(ErrorCode::BadFrame).await;
    // Still alive and serving.
    assert!(c.barrier().await.is_empty());
    // Far above the limit: the socket is closed, the relay keeps running.
    let _ = c.ws.send(Message::Text("y".repeat(64 * 1024).into())).await;
    c.expect_closed().await;
    let (mut d, _) = Client::login(addr, &identity(2)).await;
    assert!(d.barrier().await.is_empty());

    assert_eq!(metric(addr, "agentroom_relay_frames_too_large_total").await, 1);
    assert_eq!(metric(addr, "agentroom_relay_frames_malformed_total").await, 4);
    assert_eq!(metric(addr, "agentroom_relay_frames_unknown_type_total").await, 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn garbage_before_login_does_not_crash() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let mut c = Client::connect(addr, &identity(1)).await;
    c.ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    c.expect_error(ErrorCode::BadFrame).await;
    c.send_raw("\u{0}\u{1}garbage").await;
    c.expect_error(ErrorCode::BadFrame).await;
    // It can still log in afterwards.
    let f = c.login_frame(now());
    c.send(&f).await;
    assert!(matches!(c.recv().await, agentroom::protocol::ServerFrame::Welcome { .. }));
    // Plain HTTP garbage on the port does not hurt either.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"\x16\x03\x01garbage\r\n\r\n").await;
    }
    let (status, _) = http_get(addr, "/health").await;
    assert_eq!(status, 200);
    c.send(&ClientFrame::Ping { rid: None }).await;
    assert!(matches!(c.recv().await, agentroom::protocol::ServerFrame::Pong { .. }));
    relay.shutdown().await;
}

#[tokio::test]
async fn rate_limit_drops_excess_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rate_limit = true;
    cfg.rate_per_sec = 1;
    cfg.rate_burst = 5;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let (mut c, _) = Client::login(relay.local_addr(), &identity(1)).await;
    for _ in 0..20 {
        c.send(&ClientFrame::Ping { rid: None }).await;
    }
    let mut limited = 0;
    for _ in 0..20 {
        if let agentroom::protocol::ServerFrame::Error { code: ErrorCode::RateLimited, .. } =
            c.recv().await
        {
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} limited");
    relay.shutdown().await;
}
