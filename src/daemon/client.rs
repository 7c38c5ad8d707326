//! The CLI's side of the local API: JSON over the home's Unix socket.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::types::*;
use super::{DaemonError, paths};
use crate::client::home::Home;

/// Socket connect; a daemon that does not accept this fast is treated as
/// absent (a stale socket file of a killed daemon refuses at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Base URL: the host part is ignored on a Unix socket.
const BASE: &str = "http://agentroom.sock";

/// A connection to a running daemon.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    http: reqwest::Client,
    socket: PathBuf,
}

impl DaemonClient {
    /// Connect to the daemon of `home`, or `None` when none answers.
    pub async fn connect(home: &Home) -> Result<Option<Self>, DaemonError> {
        let socket = paths::socket_path(home)?;
        if !socket.exists() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .unix_socket(socket.as_path())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| unreachable(&e))?;
        // A socket that accepts is a daemon: it binds only once its engine is
        // up, and a killed daemon's stale file refuses at once. No HTTP round
        // trip here: every one-shot command (`send`) would pay for it.
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(&socket)).await
        {
            Ok(Ok(_probe)) => Ok(Some(Self { http, socket })),
            Ok(Err(_)) | Err(_) => Ok(None),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    async fn call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, DaemonError> {
        let resp = req.send().await.map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| unreachable(&e))?;
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
        self.call(self.http.get(format!("{BASE}{path}"))).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, DaemonError> {
        let json = serde_json::to_vec(body).expect("request types serialise");
        let req = self
            .http
            .post(format!("{BASE}{path}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json);
        self.call(req).await
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
        let mut url = reqwest::Url::parse(BASE).expect("constant URL");
        url.path_segments_mut().expect("http URL").extend(["v1", "invites", id]);
        self.call(self.http.delete(url)).await
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
        let mut url = reqwest::Url::parse(BASE).expect("constant URL");
        url.path_segments_mut().expect("http URL").extend(["v1", "peers", peer]);
        self.call(self.http.delete(url)).await
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
        let url = format!("{BASE}/v1/events?replay={replay}");
        let resp = self.http.get(url).send().await.map_err(|e| unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(DaemonError::Api {
                status: resp.status().as_u16(),
                class: ErrorClass::Failure,
                message: format!("event stream refused: HTTP {}", resp.status()),
            });
        }
        let (tx, rx) = mpsc::channel(super::EVENT_BUFFER);
        tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf: Vec<u8> = Vec::new();
            loop {
                // Stop reading when the consumer is gone, so the connection
                // closes and the daemon never waits on it.
                let chunk = tokio::select! {
                    () = tx.closed() => return,
                    c = body.next() => c,
                };
                let Some(Ok(chunk)) = chunk else { return };
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

fn unreachable(e: &reqwest::Error) -> DaemonError {
    // The reqwest error chain names the socket path at most: no secrets.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    DaemonError::Api { status: 0, class: ErrorClass::Network, message: msg }
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
}
