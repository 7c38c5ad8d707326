//! Slow clients (issue 12 item 4): slowloris connections are closed after the
//! header-read timeout, one address cannot hold more than its share of
//! connections that have not upgraded, and a relay out of file descriptors
//! recovers and keeps answering /health. The real binary, real sockets.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const DEADLINE: Duration = Duration::from_secs(60);
/// The start of a request whose headers never end.
const PARTIAL: &[u8] = b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: 1\r\n";

struct RelayProc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay under `ulimit -n nofile` (soft and hard, so it cannot raise it).
fn spawn(dir: &std::path::Path, nofile: u32, env: &[(&str, &str)]) -> RelayProc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" relay --json --port 0 --db \"$1\""))
        .arg(env!("CARGO_BIN_EXE_agentroom"))
        .arg(dir.join("relay.db"))
        .env("HMAC_SECRET", "k".repeat(32))
        .env("LOG_LEVEL", "error")
        .env_remove("PORT")
        .env_remove("BIND")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let port = v["port"].as_u64().unwrap() as u16;
    RelayProc { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
}

/// A connection from `from` (another loopback address stands for another client).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    s.connect(to).await
}

/// One /health request from `from`; true on a 200.
async fn health(from: [u8; 4], to: SocketAddr) -> bool {
    let attempt = async {
        let mut s = connect_from(from, to).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 16];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.ok().flatten().unwrap_or(false)
}

/// Open `n` slowloris connections from 127.0.0.1.
async fn slowloris(to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(to).await.unwrap();
        // A write can fail on a socket the relay already closed: that is the point.
        let _ = s.write_all(PARTIAL).await;
        v.push(s);
    }
    v
}

/// Wait until the relay closes `s` (EOF or reset); false at `deadline`.
async fn closed_by_relay(s: &mut TcpStream, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // a 408 or 400 answer may precede the close
        }
    }
}

#[tokio::test]
async fn slowloris_is_closed_and_health_answers_after_descriptors_run_out() {
    let dir = tempfile::tempdir().unwrap();
    // 400 slow sockets against 256 descriptors, every one allowed before its upgrade:
    // accept fails with EMFILE until the header-read timeout frees descriptors.
    let relay = spawn(
        dir.path(),
        256,
        &[("HEADER_READ_TIMEOUT_MS", "1500"), ("MAX_UNUPGRADED_PER_IP", "100000")],
    );
    let mut slow = slowloris(relay.addr, 400).await;
    let deadline = Instant::now() + DEADLINE;
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        answered = health([127, 0, 0, 2], relay.addr).await;
    }
    assert!(answered, "/health never answered while slow clients held the relay");
    let mut closed = 0;
    for s in &mut slow {
        closed += usize::from(closed_by_relay(s, deadline).await);
    }
    assert_eq!(closed, 400, "slowloris connections left open");
    assert!(health([127, 0, 0, 2], relay.addr).await);
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_unupgraded_connections() {
    let dir = tempfile::tempdir().unwrap();
    // A long header timeout, so only the cap can close anything during the test.
    let relay = spawn(
        dir.path(),
        4096,
        &[("HEADER_READ_TIMEOUT_MS", "120000"), ("MAX_UNUPGRADED_PER_IP", "8")],
    );
    let mut slow = slowloris(relay.addr, 20).await;
    // The first 8 are held; the relay closes the other 12 at once.
    let deadline = Instant::now() + DEADLINE;
    for s in &mut slow[8..] {
        assert!(closed_by_relay(s, deadline).await, "a connection over the cap stayed open");
    }
    for s in &slow[..8] {
        let mut buf = [0u8; 1];
        let r = s.try_read(&mut buf);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a connection under the cap was closed: {r:?}"
        );
    }
    // Another address is not affected: /health answers, a WebSocket logs in.
    assert!(health([127, 0, 0, 2], relay.addr).await);
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{}/ws", relay.addr),
        connect_from([127, 0, 0, 2], relay.addr).await.unwrap(),
    )
    .await
    .unwrap();
    use futures_util::StreamExt as _;
    let first = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap().unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"challenge\""), "{first:?}");
}
