//! The CLI's side of the local API: JSON over the home's Unix socket.
//!
//! Plain HTTP/1.1 connections from hyper, kept for the next call: a one-shot
//! command (`send`, `status`) makes exactly one connection, the one
//! [`DaemonClient::connect`] opened to see that a daemon answers. (An HTTP
//! client library would also build a TLS configuration and a connection pool
//! on every start, which this local socket never uses.)

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::types::*;
use super::{DaemonError, paths};
use crate::client::home::Home;

/// Socket connect; a daemon that does not accept this fast is treated as
/// absent (a stale socket file of a killed daemon refuses at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The `Host` of every request: a loopback name, which the daemon's
/// loopback-TCP listener also requires.
const HOST: &str = "localhost";
/// Idle connections kept for reuse; more are closed after their call.
const MAX_IDLE: usize = 4;

type Body = BoxBody<Bytes, std::convert::Infallible>;
type Sender = http1::SendRequest<Body>;

/// A connection to a running daemon.
#[derive(Clone)]
pub struct DaemonClient {
    socket: PathBuf,
    /// Connections with no call in flight, reused by the next call.
    idle: Arc<Mutex<Vec<Sender>>>,
}

impl std::fmt::Debug for DaemonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonClient").field("socket", &self.socket).finish_non_exhaustive()
    }
}

impl DaemonClient {
    /// Connect to the daemon of `home`, or `None` when none answers.
    pub async fn connect(home: &Home) -> Result<Option<Self>, DaemonError> {
        let socket = paths::socket_path(home)?;
        if !socket.exists() {
            return Ok(None);
        }
        // A socket that accepts is a daemon: it binds only once its engine is
        // up, and a killed daemon's stale file refuses at once. The connection
        // is kept for the first call, so this costs no extra round trip.
        match tokio::time::timeout(CONNECT_TIMEOUT, open(&socket)).await {
            Ok(Ok(sender)) => Ok(Some(Self { socket, idle: Arc::new(Mutex::new(vec![sender])) })),
            Ok(Err(_)) | Err(_) => Ok(None),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// An idle connection that can take a request, or a new one.
    async fn checkout(&self) -> Result<Sender, DaemonError> {
        loop {
            let idle = self
                .idle
                .lock()
                .expect("the idle list is never poisoned: no panics under it")
                .pop();
            let Some(mut sender) = idle else { break };
            // A connection the daemon closed (it restarted) is dropped here.
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        tokio::time::timeout(CONNECT_TIMEOUT, open(&self.socket))
            .await
            .map_err(|_| network(format!("{}: connect timed out", self.socket.display())))?
    }

    fn checkin(&self, sender: Sender) {
        let mut idle =
            self.idle.lock().expect("the idle list is never poisoned: no panics under it");
        if !sender.is_closed() && idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    /// Send one request; a request the connection closed under before any of
    /// it was written goes again on a fresh connection (never one that may
    /// have reached the daemon: `POST /v1/send` must not run twice).
    async fn request(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<(StatusCode, hyper::body::Incoming, Sender), DaemonError> {
        let mut builder = Request::builder().method(method).uri(path).header(header::HOST, HOST);
        let body: Body = match json {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(json)).boxed()
            }
            None => Empty::new().boxed(),
        };
        let mut req = builder.body(body).map_err(|e| network(format!("request {path}: {e}")))?;
        for _ in 0..3 {
            let mut sender = self.checkout().await?;
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    return Ok((status, resp.into_body(), sender));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(network(crate::client::error_text(&e.into_error()))),
                },
            }
        }
        Err(network(format!("{}: the daemon keeps closing the connection", self.socket.display())))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<T, DaemonError> {
        let (status, body, sender) = self.request(method, path, json).await?;
        let bytes =
            body.collect().await.map_err(|e| network(crate::client::error_text(&e)))?.to_bytes();
        self.checkin(sender);
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| DaemonError::Api {
                status: status.as_u16(),
                class: ErrorClass::Failure,
                message: format!("unexpected answer: {e}"),
            });
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        Err(DaemonError::Api {
            status: status.as_u16(),
            class: body.as_ref().map_or(ErrorClass::Failure, |b| b.class),
            message: body.map_or_else(|| format!("HTTP {status}"), |b| b.error),
        })
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, DaemonError> {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, DaemonError> {
        let json = serde_json::to_vec(body).expect("request types serialise");
        self.call(Method::POST, path, Some(json)).await
    }

    async fn delete<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, DaemonError> {
        self.call(Method::DELETE, &path_of(segments), None).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusResponse, DaemonError> {
        self.get("/v1/status").await
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<PeersResponse, DaemonError> {
        self.get("/v1/peers").await
    }

    /// `POST /v1/peers/verify`.
    pub async fn peer_verify(&self, req: &VerifyRequest) -> Result<PeerInfo, DaemonError> {
        self.post("/v1/peers/verify", req).await
    }

    /// `POST /v1/send`.
    pub async fn send(&self, req: &SendRequest) -> Result<SendResponse, DaemonError> {
        self.post("/v1/send", req).await
    }

    /// `POST /v1/messages/next`.
    pub async fn next(&self, req: &NextRequest) -> Result<NextResponse, DaemonError> {
        self.post("/v1/messages/next", req).await
    }

    /// `POST /v1/messages/ack`.
    pub async fn ack(&self, req: &AckRequest) -> Result<AckResponse, DaemonError> {
        self.post("/v1/messages/ack", req).await
    }

    /// `GET /v1/invites`.
    pub async fn invites(&self) -> Result<InvitesResponse, DaemonError> {
        self.get("/v1/invites").await
    }

    /// `POST /v1/invites`.
    pub async fn invite_create(
        &self,
        req: &InviteCreateRequest,
    ) -> Result<InviteCreated, DaemonError> {
        self.post("/v1/invites", req).await
    }

    /// `POST /v1/invites/accept`.
    pub async fn invite_accept(
        &self,
        req: &InviteAcceptRequest,
    ) -> Result<InviteAccepted, DaemonError> {
        self.post("/v1/invites/accept", req).await
    }

    /// `DELETE /v1/invites/{id}`.
    pub async fn invite_revoke(&self, id: &str) -> Result<InviteRevoked, DaemonError> {
        self.delete(&["v1", "invites", id]).await
    }

    /// `POST /v1/messages/started`.
    pub async fn handler_started(
        &self,
        req: &HandlerStartedRequest,
    ) -> Result<HandlerStarted, DaemonError> {
        self.post("/v1/messages/started", req).await
    }

    /// `DELETE /v1/peers/{peer}`.
    pub async fn peer_remove(&self, peer: &str) -> Result<PeerRemoved, DaemonError> {
        self.delete(&["v1", "peers", peer]).await
    }

    /// `POST /v1/room/open`.
    pub async fn room_open(&self, req: &RoomOpenRequest) -> Result<RoomOpened, DaemonError> {
        self.post("/v1/room/open", req).await
    }

    /// `POST /v1/room/moved`.
    pub async fn room_moved(&self, req: &RoomMovedRequest) -> Result<RoomMoved, DaemonError> {
        self.post("/v1/room/moved", req).await
    }

    /// Subscribe to `GET /v1/events`; events arrive on the returned channel
    /// (closed when the daemon goes away). Subscribed when this returns.
    pub async fn events(&self) -> Result<mpsc::Receiver<DaemonEvent>, DaemonError> {
        self.events_from(false).await
    }

    /// [`Self::events`], first replaying the daemon's events since it started
    /// when `replay` (for the consumer that started it).
    pub async fn events_from(
        &self,
        replay: bool,
    ) -> Result<mpsc::Receiver<DaemonEvent>, DaemonError> {
        let path = format!("/v1/events?replay={replay}");
        // The stream holds its connection for good: it never goes back idle.
        let (status, mut body, _sender) = self.request(Method::GET, &path, None).await?;
        if !status.is_success() {
            return Err(DaemonError::Api {
                status: status.as_u16(),
                class: ErrorClass::Failure,
                message: format!("event stream refused: HTTP {status}"),
            });
        }
        let (tx, rx) = mpsc::channel(super::EVENT_BUFFER);
        tokio::spawn(async move {
            let _connection = _sender;
            let mut buf: Vec<u8> = Vec::new();
            loop {
                // Stop reading when the consumer is gone, so the connection
                // closes and the daemon never waits on it.
                let frame = tokio::select! {
                    () = tx.closed() => return,
                    f = body.frame() => f,
                };
                let Some(Ok(frame)) = frame else { return };
                let Ok(chunk) = frame.into_data() else { continue };
                buf.extend_from_slice(&chunk);
                while let Some(end) = find_blank_line(&buf) {
                    let block: Vec<u8> = buf.drain(..end + 2).collect();
                    if let Some(ev) = parse_sse_block(&block) {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// Open a connection to the daemon's socket; its driver runs as a task.
async fn open(socket: &std::path::Path) -> Result<Sender, DaemonError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| network(format!("{}: {e}", socket.display())))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| network(crate::client::error_text(&e)))?;
    tokio::spawn(async move {
        // Ends when the daemon closes the socket or the client drops it;
        // a call in flight sees the failure as its own error.
        let _ = connection.await;
    });
    Ok(sender)
}

/// `segments` as a percent-encoded absolute path.
fn path_of(segments: &[&str]) -> String {
    let mut path = String::new();
    for s in segments {
        path.push('/');
        path.extend(percent_encoding::utf8_percent_encode(s, SEGMENT));
    }
    path
}

/// What must be escaped in one path segment (RFC 3986: all but unreserved
/// and sub-delims, `:` and `@`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

fn network(message: String) -> DaemonError {
    DaemonError::Api { status: 0, class: ErrorClass::Network, message }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// The `data:` lines of one SSE block as a [`DaemonEvent`].
fn parse_sse_block(block: &[u8]) -> Option<DaemonEvent> {
    let text = std::str::from_utf8(block).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d)))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_parse_and_comments_are_skipped() {
        let ev = parse_sse_block(b"event: connected\ndata: {\"event\":\"connected\",\"relay\":\"ws://r/ws\",\"pending\":2}\n\n");
        assert_eq!(ev, Some(DaemonEvent::Connected { relay: "ws://r/ws".into(), pending: 2 }));
        assert_eq!(parse_sse_block(b":\n\n"), None);
        assert_eq!(find_blank_line(b"a\n\nb"), Some(1));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(
            path_of(&["v1", "peers", "bob smith/x?y#z%"]),
            "/v1/peers/bob%20smith%2Fx%3Fy%23z%25"
        );
        assert_eq!(path_of(&["v1", "invites", "AbC-_9"]), "/v1/invites/AbC-_9");
    }
}
