//! One relay connection as an actor: dial, log in, pump frames, reconnect.
//!
//! The task owns the WebSocket. Its owner talks to it through a [`LinkHandle`]
//! (frames out, via a bounded queue) and a shared event channel ([`LinkEvent`]s
//! in). Reconnects use jittered exponential backoff and the session-token fast
//! path (`resume`); a refused token falls back to a signed `login` at once.
//! The link never decides what is delivered: the owner re-sends its outbox on
//! every [`LinkEvent::Up`], and acks only what it has stored, so nothing is lost
//! when a socket dies with frames in flight.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::relay_url::RelayUrl;
use crate::backoff::{Backoff, jitter};
use crate::crypto::IdentityKeyPair;
use crate::protocol::{
    self, ClientFrame, ErrorCode, PROTOCOL_LABEL, SUPPORTED_VERSIONS, ServerFrame,
};

/// WebSocket read buffer (see `connect`).
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Dial + TLS + challenge + welcome must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// First reconnect delay; doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest wait between reconnect attempts: long enough not to hammer a relay
/// that is down, short enough that a restarted relay is found within a minute.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Application ping interval; a socket silent for [`IDLE_CUTOFF`] is dead.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Two missed pongs plus slack.
const IDLE_CUTOFF: Duration = Duration::from_secs(50);
/// Frames queued to the socket task; the owner uses `try_send` and relies on
/// its outbox for anything dropped when this is full.
const OUT_QUEUE: usize = 1024;
/// Relay frames can exceed the client→relay limit a little (deliver wraps a body
/// the sender fitted under `max_frame`), so accept up to twice that.
const MAX_INBOUND_FRAME: usize = 2 * crate::defaults::MAX_FRAME_BYTES;

/// Why a link could not be (re)established.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TCP/TLS/WebSocket failure, or the handshake timed out.
    #[error("cannot reach relay {url}: {reason}")]
    Unreachable {
        /// Relay URL.
        url: String,
        /// What failed (no secrets).
        reason: String,
    },
    /// The TLS handshake failed (untrusted issuer, wrong host name, expired...).
    #[error("cannot reach relay {url}: {failure}")]
    Tls {
        /// Relay URL.
        url: String,
        /// What was wrong with the certificate, and what to do.
        failure: super::tls::TlsFailure,
    },
    /// The relay refused our login (`auth_failed`, clock skew, wrong origin).
    #[error("relay {url} refused the login: {code} ({message})")]
    Refused {
        /// Relay URL.
        url: String,
        /// Error code.
        code: &'static str,
        /// Relay's message.
        message: String,
    },
    /// The peer is not an agentroom relay of a version we speak.
    #[error("relay {url} speaks an unsupported protocol: {detail}")]
    Protocol {
        /// Relay URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

impl LinkError {
    /// Whether retrying can help.
    fn is_transient(&self) -> bool {
        matches!(self, LinkError::Unreachable { .. } | LinkError::Tls { .. })
    }

    /// Whether the TLS handshake failed.
    pub fn is_tls(&self) -> bool {
        matches!(self, LinkError::Tls { .. })
    }
}

/// A relay session token: a bearer secret for `resume`. Redacted in `Debug`,
/// wiped on drop; only [`SessionToken::expose`] reveals it (to the relay and
/// the 0600 database).
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct SessionToken(String);

impl SessionToken {
    /// Wrap a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// What a link reports to its owner. Every event names its relay.
#[derive(Debug)]
pub enum LinkEvent {
    /// Logged in. `pending` envelopes follow as `deliver` frames.
    Up {
        /// Relay.
        relay: RelayUrl,
        /// Queued envelopes announced in `welcome`.
        pending: u64,
        /// Whether this is a reconnect (not the first login of this link).
        reconnect: bool,
        /// Whether the token fast path was used.
        resumed: bool,
        /// New session token (secret).
        token: SessionToken,
        /// Its expiry, unix seconds.
        token_expires_at: u64,
    },
    /// A frame after login.
    Frame {
        /// Relay.
        relay: RelayUrl,
        /// The frame.
        frame: ServerFrame,
    },
    /// The socket closed; the link retries after `retry_in`.
    Down {
        /// Relay.
        relay: RelayUrl,
        /// Why (no secrets).
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// The stored resume token was refused; the owner should forget it.
    TokenRejected {
        /// Relay.
        relay: RelayUrl,
    },
    /// The link gave up (first connection failed `give_up_after` times, or the
    /// relay refused us for good). The task has ended.
    Fatal {
        /// Relay.
        relay: RelayUrl,
        /// Why.
        error: LinkError,
    },
}

/// How persistent a link is.
#[derive(Debug, Clone, Copy)]
pub struct LinkOptions {
    /// Attempts before giving up, while never connected. After a first
    /// successful login the link retries forever (until cancelled).
    pub give_up_after: u32,
    /// Pause after another connection of this identity replaced ours. The relay
    /// keeps one connection per identity, so a long-running `serve` yields for a
    /// moment to a one-shot `send` from the same home instead of evicting it at
    /// once; one-shot commands use zero and take the line back quickly.
    pub yield_when_replaced: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self { give_up_after: 3, yield_when_replaced: Duration::ZERO }
    }
}

impl LinkOptions {
    /// For long-running loops (`listen`, `serve`, `room open`): a relay that is
    /// down (at start too: a room restarting, a laptop waking up) is retried
    /// with backoff and reported as `Down`, never given up on; only the
    /// caller's own bounds (`--once`, `--timeout`, cancellation) end the wait.
    pub fn long_running() -> Self {
        Self { give_up_after: u32::MAX, yield_when_replaced: REPLACED_YIELD }
    }
}

/// How long a long-running link yields after being replaced (jittered to [d/2, d]).
const REPLACED_YIELD: Duration = Duration::from_secs(3);
/// The Down reason when another connection of ours took over.
const REPLACED: &str = "replaced by another connection of this identity";

/// The owner's side of a link.
#[derive(Debug)]
pub struct LinkHandle {
    relay: RelayUrl,
    dial: RelayUrl,
    out: mpsc::Sender<ClientFrame>,
    _task: AbortOnDropHandle<()>,
}

impl LinkHandle {
    /// Start a link task for `relay`, dialling `dial` (usually the same URL; a
    /// loopback address when the relay runs in this process behind a tunnel).
    /// Events name `relay`; the task stops on `cancel` or drop.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        relay: RelayUrl,
        dial: RelayUrl,
        identity: Arc<IdentityKeyPair>,
        token: Option<SessionToken>,
        options: LinkOptions,
        events: mpsc::UnboundedSender<LinkEvent>,
        cancel: CancellationToken,
    ) -> Self {
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        let actor = Actor {
            relay: relay.clone(),
            dial: dial.clone(),
            identity,
            token,
            options,
            events,
            cancel,
        };
        let task = AbortOnDropHandle::new(tokio::spawn(actor.run(rx)));
        Self { relay, dial, out, _task: task }
    }

    /// The relay this link serves.
    pub fn relay(&self) -> &RelayUrl {
        &self.relay
    }

    /// What this link dials.
    pub fn dial(&self) -> &RelayUrl {
        &self.dial
    }

    /// Close the link after the frames already queued are written (acks of
    /// messages we stored: without them the relay keeps those envelopes queued
    /// and counts them as pending). Waits at most `limit`; a link that is not
    /// logged in right now is dropped when it runs out.
    pub async fn close(self, limit: Duration) {
        let Self { out, _task: task, .. } = self;
        drop(out);
        let _ = tokio::time::timeout(limit, task).await;
    }

    /// Queue a frame for the socket. Returns false when the queue is full or the
    /// task ended; callers rely on the outbox (sends) or redelivery (acks) then.
    pub fn send(&self, frame: ClientFrame) -> bool {
        self.out.try_send(frame).is_ok()
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Actor {
    /// The relay's canonical URL: the key for tokens, peers and the outbox.
    relay: RelayUrl,
    /// What we actually connect to (and whose authority we sign).
    dial: RelayUrl,
    identity: Arc<IdentityKeyPair>,
    token: Option<SessionToken>,
    options: LinkOptions,
    events: mpsc::UnboundedSender<LinkEvent>,
    cancel: CancellationToken,
}

/// Why a pumped socket ended.
enum Down {
    /// The relay closed it with [`protocol::close::REPLACED`]: another connection of
    /// this identity took over.
    Replaced,
    /// Anything else, for the `Down` event.
    Lost(String),
}

enum Login {
    Ok { ws: Box<Ws>, pending: u64, resumed: bool, token: SessionToken, token_expires_at: u64 },
    TokenRejected,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<ClientFrame>) {
        let mut failures: u32 = 0;
        let mut delays = Backoff::jittered(BACKOFF_BASE, BACKOFF_MAX);
        let mut ever_up = false;
        loop {
            let attempt = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connect()) => r,
            };
            let (reason, replaced) = match attempt {
                Ok(Ok(Login::TokenRejected)) => {
                    self.token = None;
                    self.emit(LinkEvent::TokenRejected { relay: self.relay.clone() });
                    continue;
                }
                Ok(Ok(Login::Ok { ws, pending, resumed, token, token_expires_at })) => {
                    failures = 0;
                    delays.reset();
                    self.token = Some(token.clone());
                    self.emit(LinkEvent::Up {
                        relay: self.relay.clone(),
                        pending,
                        reconnect: ever_up,
                        resumed,
                        token,
                        token_expires_at,
                    });
                    ever_up = true;
                    match self.pump(*ws, &mut rx).await {
                        None => return, // cancelled
                        Some(Down::Replaced) => (REPLACED.to_owned(), true),
                        Some(Down::Lost(reason)) => (reason, false),
                    }
                }
                // A certificate refused before any login will not fix itself by retrying:
                // say so at once. After a login it may be a proxy being renewed: retry.
                Ok(Err(e)) if !e.is_transient() || (!ever_up && e.is_tls()) => {
                    self.emit(LinkEvent::Fatal { relay: self.relay.clone(), error: e });
                    return;
                }
                // The reason alone: it is wrapped in `Unreachable` again below.
                Ok(Err(LinkError::Unreachable { reason, .. })) => (reason, false),
                Ok(Err(e)) => (e.to_string(), false),
                Err(_) => (format!("no welcome within {}s", HANDSHAKE_TIMEOUT.as_secs()), false),
            };
            failures = failures.saturating_add(1);
            if !ever_up && failures >= self.options.give_up_after {
                let error = LinkError::Unreachable { url: self.relay.to_string(), reason };
                self.emit(LinkEvent::Fatal { relay: self.relay.clone(), error });
                return;
            }
            let mut retry_in = delays.next_delay();
            if replaced && !self.options.yield_when_replaced.is_zero() {
                retry_in = retry_in.max(jitter(self.options.yield_when_replaced));
            }
            tracing::info!(relay = %self.relay, %reason, retry_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX), "relay link down");
            self.emit(LinkEvent::Down { relay: self.relay.clone(), reason, retry_in });
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(retry_in) => {}
            }
        }
    }

    fn emit(&self, ev: LinkEvent) {
        let _ = self.events.send(ev);
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> LinkError {
        LinkError::Unreachable { url: self.relay.to_string(), reason: reason.to_string() }
    }

    /// Dial, read the challenge, log in (resume first if we hold a token).
    async fn connect(&self) -> Result<Login, LinkError> {
        // Small read buffer: tungstenite zero-fills the whole buffer before every read,
        // and the default 128 KiB made that memset the largest cost per frame (the
        // relay measured the same). No Nagle: frames are small and latency matters.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES);
        let connector = tokio_tungstenite::Connector::Rustls(super::tls::client_config());
        let (mut ws, _resp) = tokio_tungstenite::connect_async_tls_with_config(
            self.dial.as_str(),
            Some(config),
            true,
            Some(connector),
        )
        .await
        .map_err(|e| match super::tls::TlsFailure::from_ws(&e, &self.dial.host()) {
            Some(failure) => LinkError::Tls { url: self.relay.to_string(), failure },
            None => self.unreachable(e),
        })?;
        let (versions, challenge) = match self.read_frame(&mut ws).await? {
            ServerFrame::Challenge { protocol, versions, challenge, .. } => {
                if protocol != PROTOCOL_LABEL {
                    return Err(LinkError::Protocol {
                        url: self.relay.to_string(),
                        detail: format!("unexpected protocol label {protocol:?}"),
                    });
                }
                (versions, challenge)
            }
            other => {
                return Err(LinkError::Protocol {
                    url: self.relay.to_string(),
                    detail: format!("expected a challenge, got {}", frame_name(&other)),
                });
            }
        };
        let v =
            versions.iter().copied().filter(|v| SUPPORTED_VERSIONS.contains(v)).max().ok_or_else(
                || LinkError::Protocol {
                    url: self.relay.to_string(),
                    detail: format!("relay versions {versions:?}"),
                },
            )?;
        let resumed = self.token.is_some();
        let login = match &self.token {
            Some(token) => ClientFrame::Resume { v, token: token.expose().to_owned() },
            None => {
                let ts = super::now_secs();
                let bytes = protocol::login_signed_bytes(&self.dial.origin(), &challenge, ts);
                let signature = *self.identity.sign(&bytes).as_bytes();
                ClientFrame::Login { v, identity: self.identity.public(), ts, signature }
            }
        };
        ws.send(Message::text(protocol::encode_frame(&login)))
            .await
            .map_err(|e| self.unreachable(e))?;
        match self.read_frame(&mut ws).await? {
            ServerFrame::Welcome { token, token_expires_at, pending, .. } => {
                let token = SessionToken::new(token);
                Ok(Login::Ok { ws: Box::new(ws), pending, resumed, token, token_expires_at })
            }
            ServerFrame::Error {
                code: ErrorCode::TokenExpired | ErrorCode::AuthFailed, ..
            } if resumed => Ok(Login::TokenRejected),
            ServerFrame::Error { code, message, .. } => match code {
                ErrorCode::AuthFailed | ErrorCode::UnsupportedVersion => Err(LinkError::Refused {
                    url: self.relay.to_string(),
                    code: code.as_str(),
                    message,
                }),
                _ => Err(self.unreachable(format!("{}: {message}", code.as_str()))),
            },
            other => Err(LinkError::Protocol {
                url: self.relay.to_string(),
                detail: format!("expected welcome, got {}", frame_name(&other)),
            }),
        }
    }

    async fn read_frame(&self, ws: &mut Ws) -> Result<ServerFrame, LinkError> {
        loop {
            let msg = ws.next().await.ok_or_else(|| self.unreachable("connection closed"))?;
            match msg.map_err(|e| self.unreachable(e))? {
                Message::Text(t) => {
                    return protocol::decode_server_frame(t.as_str(), MAX_INBOUND_FRAME).map_err(
                        |e| LinkError::Protocol {
                            url: self.relay.to_string(),
                            detail: e.to_string(),
                        },
                    );
                }
                Message::Close(_) => return Err(self.unreachable("closed by relay")),
                _ => {}
            }
        }
    }

    /// Pump frames both ways until the socket dies (Some(reason)) or we are cancelled (None).
    async fn pump(&self, mut ws: Ws, rx: &mut mpsc::Receiver<ClientFrame>) -> Option<Down> {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut last_rx = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    let _ = ws.close(None).await;
                    return None;
                }
                msg = ws.next() => {
                    last_rx = tokio::time::Instant::now();
                    match msg {
                        None => return Some(Down::Lost("connection closed".into())),
                        Some(Err(e)) => return Some(Down::Lost(e.to_string())),
                        Some(Ok(Message::Text(t))) => {
                            match protocol::decode_server_frame(t.as_str(), MAX_INBOUND_FRAME) {
                                Ok(ServerFrame::Error { code, message, .. }) if code.is_fatal() => {
                                    return Some(Down::Lost(format!("{}: {message}", code.as_str())));
                                }
                                Ok(frame) => self.emit(LinkEvent::Frame { relay: self.relay.clone(), frame }),
                                Err(e) => tracing::warn!(relay = %self.relay, error = %e, "ignoring a bad frame from the relay"),
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.as_ref().map(|f| u16::from(f.code));
                            return Some(if code == Some(protocol::close::REPLACED) {
                                Down::Replaced
                            } else {
                                Down::Lost("closed by relay".into())
                            });
                        }
                        Some(Ok(_)) => {}
                    }
                }
                frame = rx.recv() => {
                    // The owner closed the link (`LinkHandle::close`): every frame
                    // queued before (acks of what we stored) is written by now.
                    let Some(frame) = frame else {
                        let _ = ws.close(None).await;
                        return None;
                    };
                    if let Err(e) = ws.send(Message::text(protocol::encode_frame(&frame))).await {
                        return Some(Down::Lost(e.to_string()));
                    }
                }
                _ = ping.tick() => {
                    if last_rx.elapsed() > IDLE_CUTOFF {
                        return Some(Down::Lost("relay stopped answering".into()));
                    }
                    let frame = ClientFrame::Ping { rid: None };
                    if let Err(e) = ws.send(Message::text(protocol::encode_frame(&frame))).await {
                        return Some(Down::Lost(e.to_string()));
                    }
                }
            }
        }
    }
}

fn frame_name(f: &ServerFrame) -> &'static str {
    match f {
        ServerFrame::Challenge { .. } => "challenge",
        ServerFrame::Welcome { .. } => "welcome",
        ServerFrame::Sent { .. } => "sent",
        ServerFrame::Deliver { .. } => "deliver",
        ServerFrame::Ok { .. } => "ok",
        ServerFrame::Presence { .. } => "presence",
        ServerFrame::Pong { .. } => "pong",
        ServerFrame::Error { .. } => "error",
    }
}

/// Install the rustls crypto provider once per process (wss:// needs it).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_token_is_redacted() {
        let t = SessionToken::new("v1.secret.mac".into());
        assert_eq!(format!("{t:?}"), "SessionToken(<redacted>)");
        assert_eq!(t.expose(), "v1.secret.mac");
    }
}
