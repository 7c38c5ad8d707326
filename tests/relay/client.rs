//! A small real WebSocket client for relay tests (tokio-tungstenite), recording
//! every frame it sends and receives so the schema test can check them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentroom::crypto::{IdentityKeyPair, IdentityPublicKey};
use agentroom::protocol::{
    ClientFrame, EnvelopeId, ErrorCode, ServerFrame, decode_server_frame, encode_frame,
    login_signed_bytes,
};
use agentroom::relay::{RelayConfig, RelayHandle};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous deadline for an expected event (not a speed assertion).
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Every raw frame seen in this test binary: (direction, json).
pub(crate) static CAPTURED: Mutex<Vec<(bool, String)>> = Mutex::new(Vec::new());

pub(crate) fn capture(from_client: bool, s: &str) {
    CAPTURED.lock().unwrap().push((from_client, s.to_owned()));
}

pub(crate) fn identity(n: u8) -> IdentityKeyPair {
    agentroom::crypto::init().unwrap();
    IdentityKeyPair::from_seed(&[n; 32]).unwrap()
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The store under test: the binary's `BACKEND`, except that the PostgreSQL binary
/// runs on SQLite when `AGENTROOM_PG_TESTS=skip` is set (and says so).
pub(crate) fn backend() -> crate::pg::Backend {
    match crate::BACKEND {
        crate::pg::Backend::Postgres if crate::pg::skipped() => crate::pg::Backend::Sqlite,
        b => b,
    }
}

/// The relay's database for a test whose files live in `dir`: `dir/relay.db`, or
/// in the PostgreSQL test binary a database of the test server (the same one for
/// the same `dir`, so a restarted relay finds its state).
pub(crate) fn db_of(dir: &std::path::Path) -> std::path::PathBuf {
    match backend() {
        crate::pg::Backend::Sqlite => dir.join("relay.db"),
        crate::pg::Backend::Postgres => crate::pg::url_for(dir).into(),
    }
}

/// Write an invite row straight into the relay's database.
pub(crate) fn insert_invite(dir: &std::path::Path, hash: &[u8; 32], host: &[u8; 32], exp: u64) {
    match backend() {
        crate::pg::Backend::Sqlite => {
            let db = rusqlite::Connection::open(dir.join("relay.db")).unwrap();
            db.execute(
                "INSERT INTO invites (hash, host, expires_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![hash, host, exp as i64],
            )
            .unwrap();
        }
        crate::pg::Backend::Postgres => {
            let url = crate::pg::url_for(dir);
            let sql = format!(
                "INSERT INTO invites (hash, host, expires_at) VALUES ('\\x{}', '\\x{}', {exp})",
                hex::encode(hash),
                hex::encode(host)
            );
            crate::pg::psql(&sql, crate::pg::db_name(&url));
        }
    }
}

pub(crate) fn config(dir: &std::path::Path) -> RelayConfig {
    let mut c = RelayConfig::new("127.0.0.1:0".parse().unwrap(), db_of(dir));
    c.rate_limit = false;
    c.hmac_secret = agentroom::relay::HmacSecret::new(vec![42; 32]);
    c
}

pub(crate) async fn relay(dir: &std::path::Path) -> RelayHandle {
    agentroom::relay::start(config(dir)).await.unwrap()
}

pub(crate) struct Client {
    pub(crate) ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub(crate) kp: Arc<IdentityKeyPair>,
    pub(crate) token: Option<String>,
    pub(crate) challenge: [u8; 32],
    pub(crate) addr: SocketAddr,
}

impl Client {
    pub(crate) fn pk(&self) -> IdentityPublicKey {
        self.kp.public()
    }

    /// Connect and read the challenge.
    pub(crate) async fn connect(addr: SocketAddr, kp: &IdentityKeyPair) -> Client {
        let url = format!("ws://{addr}/ws");
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await.unwrap();
        Client::handshake(ws, addr, kp).await
    }

    /// Connect through a socket whose kernel receive buffer is `rcvbuf` bytes, so a
    /// client that stops reading makes the relay's writes block soon.
    pub(crate) async fn login_small_rcvbuf(
        addr: SocketAddr,
        kp: &IdentityKeyPair,
        rcvbuf: u32,
    ) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(rcvbuf).unwrap();
        let stream = sock.connect(addr).await.unwrap();
        let url = format!("ws://{addr}/ws");
        let (ws, _) =
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.unwrap();
        let mut c = Client::handshake(ws, addr, kp).await;
        let f = c.login_frame(now());
        c.send(&f).await;
        match c.recv().await {
            ServerFrame::Welcome { .. } => c,
            f => panic!("expected welcome, got {f:?}"),
        }
    }

    async fn handshake(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        addr: SocketAddr,
        kp: &IdentityKeyPair,
    ) -> Client {
        let kp = Arc::new(IdentityKeyPair::from_seed(kp.seed()).unwrap());
        let mut c = Client { ws, kp, token: None, challenge: [0; 32], addr };
        match c.recv().await {
            ServerFrame::Challenge { challenge, versions, .. } => {
                assert_eq!(versions, vec![1]);
                c.challenge = challenge;
            }
            f => panic!("expected challenge, got {f:?}"),
        }
        c
    }

    pub(crate) fn login_frame(&self, ts: u64) -> ClientFrame {
        let origin = format!("127.0.0.1:{}", self.addr.port());
        let sig = self.kp.sign(&login_signed_bytes(&origin, &self.challenge, ts));
        ClientFrame::Login { v: 1, identity: self.pk(), ts, signature: *sig.as_bytes() }
    }

    /// Connect, log in, and return after `welcome` (with its `pending`).
    pub(crate) async fn login(addr: SocketAddr, kp: &IdentityKeyPair) -> (Client, u64) {
        let mut c = Client::connect(addr, kp).await;
        let f = c.login_frame(now());
        c.send(&f).await;
        match c.recv().await {
            ServerFrame::Welcome { identity, token, pending, .. } => {
                assert_eq!(identity, c.pk());
                c.token = Some(token);
                (c, pending)
            }
            f => panic!("expected welcome, got {f:?}"),
        }
    }

    /// Send a well-formed frame (recorded for the schema test).
    pub(crate) async fn send(&mut self, f: &ClientFrame) {
        let s = encode_frame(f);
        capture(true, &s);
        self.send_raw(&s).await;
    }

    /// Send any text, valid or not (not recorded).
    pub(crate) async fn send_raw(&mut self, s: &str) {
        self.ws.send(Message::Text(s.to_owned().into())).await.unwrap();
    }

    /// Next frame, skipping nothing. Panics after [`WAIT`].
    pub(crate) async fn recv(&mut self) -> ServerFrame {
        self.try_recv().await.expect("connection closed while waiting for a frame")
    }

    /// Next frame, or `None` once the relay closed the socket.
    pub(crate) async fn try_recv(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    capture(false, &t);
                    return Some(decode_server_frame(&t, 1 << 20).unwrap());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Next frame that is not `presence`.
    pub(crate) async fn recv_np(&mut self) -> ServerFrame {
        loop {
            match self.recv().await {
                ServerFrame::Presence { .. } => {}
                f => return f,
            }
        }
    }

    /// Expect an error with `code`.
    pub(crate) async fn expect_error(&mut self, code: ErrorCode) {
        match self.recv_np().await {
            ServerFrame::Error { code: c, .. } if c == code => {}
            f => panic!("expected error {code:?}, got {f:?}"),
        }
    }

    /// Read until the relay closes; its close code (`None` without a close frame).
    pub(crate) async fn close_code(&mut self) -> Option<u16> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out");
            match msg {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Expect the socket to be closed by the relay (after any frames).
    pub(crate) async fn expect_closed(&mut self) {
        while let Some(f) = self.try_recv().await {
            assert!(matches!(f, ServerFrame::Presence { .. }), "unexpected {f:?} before close");
        }
    }

    /// Round-trip a ping: everything the relay sent before is now received.
    /// Returns the frames that came before the pong.
    pub(crate) async fn barrier(&mut self) -> Vec<ServerFrame> {
        let rid = format!("b{}", rand_u64());
        self.send(&ClientFrame::Ping { rid: Some(rid.clone()) }).await;
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                ServerFrame::Pong { rid: Some(r) } if r == rid => return before,
                f => before.push(f),
            }
        }
    }

    pub(crate) async fn send_env(&mut self, id: EnvelopeId, to: IdentityPublicKey, body: &[u8]) {
        self.send(&ClientFrame::Send { id, to, body: body.to_vec(), claim: None }).await;
    }

    /// Next `deliver` (skipping presence), acked unless `ack` is false.
    pub(crate) async fn deliver(&mut self, ack: bool) -> (EnvelopeId, IdentityPublicKey, Vec<u8>) {
        match self.recv_np().await {
            ServerFrame::Deliver { id, from, body, .. } => {
                if ack {
                    self.send(&ClientFrame::Ack { id, from }).await;
                }
                (id, from, body)
            }
            f => panic!("expected deliver, got {f:?}"),
        }
    }

    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the relay's close arrives so the relay has seen it.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }
}

pub(crate) fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn eid(n: u64) -> EnvelopeId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[8..].copy_from_slice(&rand_u64().to_be_bytes());
    EnvelopeId(b)
}

/// Host publishes an invite, guest claims it with a first envelope that the host
/// receives. Returns (host, guest) logged in and paired.
pub(crate) async fn pair(addr: SocketAddr, host_n: u8, guest_n: u8) -> (Client, Client) {
    use sha2::Digest;
    let (mut host, _) = Client::login(addr, &identity(host_n)).await;
    let (mut guest, _) = Client::login(addr, &identity(guest_n)).await;
    let invite = [host_n ^ guest_n ^ 0x5a; 16];
    let hash = agentroom::protocol::InviteHash(sha2::Sha256::digest(invite).into());
    host.send(&ClientFrame::InvitePublish {
        rid: Some("pub".into()),
        invite: hash,
        expires_at: now() + 600,
    })
    .await;
    assert_eq!(host.recv_np().await, ServerFrame::Ok { rid: Some("pub".into()) });
    let id = eid(0);
    guest
        .send(&ClientFrame::Send {
            id,
            to: host.pk(),
            body: b"hello".to_vec(),
            claim: Some(agentroom::protocol::frames::InviteIdClaim(invite)),
        })
        .await;
    let (got, from, body) = host.deliver(true).await;
    assert_eq!((got, from, body.as_slice()), (id, guest.pk(), &b"hello"[..]));
    match guest.recv_np().await {
        ServerFrame::Sent { id: i, .. } => assert_eq!(i, id),
        f => panic!("expected sent, got {f:?}"),
    }
    (host, guest)
}

/// GET a relay path; (status, body).
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A metric's value from /metrics text.
pub(crate) async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, text) = http_get(addr, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("metric {name} missing"))
        .trim()
        .parse()
        .unwrap()
}
