//! One WebSocket connection: an actor owning the socket, fed by two queues.
//!
//! The bounded `deliver` queue carries live envelopes from other connections (a
//! full queue sends new envelopes to SQLite instead, so a slow reader never
//! stalls a sender); the unbounded `ctrl` queue carries small control frames
//! (`sent`, `error`, `presence`), which are bounded in practice by the sender's
//! own window. The actor reads frames, writes frames, pings, spills unacked live
//! envelopes to disk after the ack window, and drains this identity's queue.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures_util::SinkExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::auth::{AuthError, verify_login};
use super::hub::{Ctrl, CtrlTx, LiveItem, Route, sent_frame};
use super::limits::{ConnSlot, TokenBucket};
use super::store::{ClaimOutcome, InsertOutcome, PublishOutcome, now_ms};
use super::{Shared, now_secs};
use crate::crypto::{CryptoRng as _, IdentityPublicKey, SystemRng};
use crate::protocol::{
    ClientFrame, DeliveryStatus, EnvelopeId, ErrorCode, FrameError, InviteHash, PROTOCOL_LABEL,
    SUPPORTED_VERSIONS, ServerFrame, decode_client_frame, encode_frame,
};

/// Rows read from the queue per round trip to the store thread.
const LOAD_BATCH: usize = 256;
/// Frames written before one flush: fewer syscalls under load.
const WRITE_BATCH: usize = 64;

/// Why the actor stopped; decides the close frame.
enum Exit {
    /// The socket failed or the client closed it.
    Gone,
    /// A fatal protocol error already sent.
    Fatal(ErrorCode),
    /// A newer connection took over this identity.
    Replaced,
}

/// What a new connection brings from the HTTP upgrade.
pub(crate) struct Accepted {
    pub(crate) origin: Option<String>,
    pub(crate) ip: IpAddr,
    pub(crate) slot: Option<ConnSlot>,
}

fn error_frame(
    code: ErrorCode,
    message: &str,
    id: Option<EnvelopeId>,
    rid: Option<String>,
) -> Utf8Bytes {
    encode_frame(&ServerFrame::Error { code, message: message.to_owned(), id, rid }).into()
}

fn close_frame(code: ErrorCode) -> Message {
    let (c, reason) = match code {
        ErrorCode::ShuttingDown => (close_code::AWAY, "relay shutting down"),
        ErrorCode::TooManyConnections => (close_code::AGAIN, "too many connections"),
        ErrorCode::Unknown => (close_code::NORMAL, "replaced by a newer connection"),
        _ => (close_code::POLICY, code.as_str()),
    };
    Message::Close(Some(CloseFrame { code: c, reason: reason.into() }))
}

/// Run one connection to its end.
pub(crate) async fn run(mut ws: WebSocket, shared: Arc<Shared>, acc: Accepted) {
    let m = &shared.metrics;
    m.connections.fetch_add(1, Ordering::Relaxed);
    m.connections_total.fetch_add(1, Ordering::Relaxed);
    if acc.slot.is_none() {
        m.count_error(ErrorCode::TooManyConnections);
        let _ = ws
            .send(Message::Text(error_frame(
                ErrorCode::TooManyConnections,
                "connection limit reached",
                None,
                None,
            )))
            .await;
        let _ = ws.send(close_frame(ErrorCode::TooManyConnections)).await;
    } else if let Some(me) = login(&mut ws, &shared, acc.origin.as_deref()).await {
        tracing::debug!(peer = %me.identity.fmt_short(), ip = %acc.ip, "logged in");
        m.sessions.fetch_add(1, Ordering::Relaxed);
        Session::run(ws, &shared, me).await;
        m.sessions.fetch_sub(1, Ordering::Relaxed);
    }
    m.connections.fetch_sub(1, Ordering::Relaxed);
    drop(acc.slot);
}

struct LoggedIn {
    identity: IdentityPublicKey,
    token: String,
    expires_at: u64,
}

async fn fatal(ws: &mut WebSocket, shared: &Shared, code: ErrorCode, msg: &str) {
    shared.metrics.count_error(code);
    let _ = ws.send(Message::Text(error_frame(code, msg, None, None))).await;
    let _ = ws.send(close_frame(code)).await;
}

/// Challenge, then wait for a valid `login` or `resume` within the login timeout.
async fn login(ws: &mut WebSocket, shared: &Shared, origin: Option<&str>) -> Option<LoggedIn> {
    let mut challenge = [0u8; 32];
    SystemRng.fill(&mut challenge);
    let hello = ServerFrame::Challenge {
        protocol: PROTOCOL_LABEL.to_owned(),
        versions: SUPPORTED_VERSIONS.to_vec(),
        challenge,
        max_frame: shared.config.max_frame,
    };
    ws.send(Message::Text(encode_frame(&hello).into())).await.ok()?;
    let deadline = tokio::time::sleep(shared.config.login_timeout);
    tokio::pin!(deadline);
    loop {
        let msg = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => {
                fatal(ws, shared, ErrorCode::ShuttingDown, "relay shutting down").await;
                return None;
            }
            () = &mut deadline => {
                fatal(ws, shared, ErrorCode::LoginTimeout, "no login within the deadline").await;
                return None;
            }
            msg = ws.recv() => msg?.ok()?,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                shared.metrics.count_error(ErrorCode::BadFrame);
                let f = error_frame(
                    ErrorCode::BadFrame,
                    "binary frames are not part of the protocol",
                    None,
                    None,
                );
                ws.send(Message::Text(f)).await.ok()?;
                continue;
            }
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let frame = match decode_client_frame(&text, shared.config.max_frame) {
            Ok(f) => f,
            Err(e) => {
                shared.metrics.count_error(e.code());
                ws.send(Message::Text(error_frame(e.code(), &e.to_string(), None, None)))
                    .await
                    .ok()?;
                continue;
            }
        };
        let now = now_secs();
        let result = match frame {
            ClientFrame::Login { v, identity, ts, signature } => {
                if !SUPPORTED_VERSIONS.contains(&v) {
                    fatal(ws, shared, ErrorCode::UnsupportedVersion, "no shared protocol version")
                        .await;
                    return None;
                }
                match origin {
                    None => Err(AuthError::NoOrigin),
                    Some(o) => verify_login(&identity, &signature, ts, o, &challenge, now),
                }
                .map(|()| {
                    shared.metrics.logins.fetch_add(1, Ordering::Relaxed);
                    let expires_at = now + shared.config.token_ttl.as_secs();
                    LoggedIn {
                        identity,
                        token: shared.keys.issue(&identity, expires_at),
                        expires_at,
                    }
                })
            }
            ClientFrame::Resume { v, token } => {
                if !SUPPORTED_VERSIONS.contains(&v) {
                    fatal(ws, shared, ErrorCode::UnsupportedVersion, "no shared protocol version")
                        .await;
                    return None;
                }
                shared.keys.verify(&token, now).map(|(identity, expires_at)| {
                    shared.metrics.resumes.fetch_add(1, Ordering::Relaxed);
                    LoggedIn { identity, token, expires_at }
                })
            }
            _ => {
                fatal(ws, shared, ErrorCode::AuthRequired, "log in first").await;
                return None;
            }
        };
        return match result {
            Ok(me) => Some(me),
            Err(e) => {
                tracing::info!(reason = %e, "login refused");
                let code = if e == AuthError::TokenExpired {
                    ErrorCode::TokenExpired
                } else {
                    ErrorCode::AuthFailed
                };
                fatal(ws, shared, code, &e.to_string()).await;
                None
            }
        };
    }
}

/// A live envelope this connection sent, waiting for the recipient's ack.
struct AwaitingAck {
    deadline: Instant,
    to: IdentityPublicKey,
    id: EnvelopeId,
    body: Vec<u8>,
    accepted_ms: u64,
}

struct Session<'a> {
    ws: WebSocket,
    shared: &'a Arc<Shared>,
    me: IdentityPublicKey,
    conn_id: u64,
    ctrl_tx: CtrlTx,
    ctrl_rx: mpsc::UnboundedReceiver<Ctrl>,
    deliver_rx: mpsc::Receiver<LiveItem>,
    /// Reading this identity's queue instead of taking live envelopes.
    draining: bool,
    /// New rows may be in the queue.
    store_dirty: bool,
    /// Highest queue `seq` already written to the socket.
    last_seq: i64,
    /// Delivered live here but not acked: skipped if they show up in the queue.
    live_unacked: HashSet<(IdentityPublicKey, EnvelopeId)>,
    awaiting: VecDeque<AwaitingAck>,
    /// Store commits whose answer this connection's sender still waits for, in order.
    completions: mpsc::UnboundedSender<Completion>,
    bucket: Option<TokenBucket>,
    missed_pongs: u32,
    unflushed: usize,
}

impl<'a> Session<'a> {
    async fn run(ws: WebSocket, shared: &'a Arc<Shared>, me: LoggedIn) {
        let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (deliver_tx, deliver_rx) = mpsc::channel(shared.config.conn_queue.max(1));
        let cfg = &shared.config;
        let bucket = cfg
            .rate_limit
            .then(|| TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst, Instant::now()));
        let (completions, completion_rx) = mpsc::unbounded_channel();
        shared.tracker.spawn(answer_commits(Arc::clone(shared), completion_rx));
        let mut s = Session {
            ws,
            shared,
            me: me.identity,
            conn_id,
            ctrl_tx: ctrl_tx.clone(),
            ctrl_rx,
            deliver_rx,
            draining: true,
            store_dirty: true,
            last_seq: 0,
            live_unacked: HashSet::new(),
            awaiting: VecDeque::new(),
            completions,
            bucket,
            missed_pongs: 0,
            unflushed: 0,
        };
        let peers = shared.hub.register(s.me, conn_id, deliver_tx, ctrl_tx);
        let exit = s.start(&me, &peers).await;
        let exit = match exit {
            Ok(()) => s.main_loop().await.err().unwrap_or(Exit::Gone),
            Err(e) => e,
        };
        s.spill_all();
        if let Some(peers) = shared.hub.unregister(&s.me, conn_id) {
            let f: Utf8Bytes =
                encode_frame(&ServerFrame::Presence { peer: s.me, online: false }).into();
            for p in peers {
                let _ = p.send(Ctrl::Frame(f.clone()));
            }
        }
        let close = match exit {
            Exit::Gone => None,
            Exit::Fatal(code) => Some(close_frame(code)),
            Exit::Replaced => Some(close_frame(ErrorCode::Unknown)),
        };
        if let Some(c) = close {
            let _ = s.ws.send(c).await;
        }
        tracing::debug!(peer = %s.me.fmt_short(), "connection closed");
    }

    async fn start(
        &mut self,
        me: &LoggedIn,
        peers: &[(IdentityPublicKey, CtrlTx)],
    ) -> Result<(), Exit> {
        let pending = self.shared.store.pending(self.me).await.unwrap_or(0);
        let welcome = ServerFrame::Welcome {
            identity: self.me,
            token: me.token.clone(),
            token_expires_at: me.expires_at,
            pending,
            server_time: now_secs(),
        };
        self.feed(encode_frame(&welcome).into()).await?;
        let online: Utf8Bytes =
            encode_frame(&ServerFrame::Presence { peer: self.me, online: true }).into();
        for (peer, ctrl) in peers {
            let _ = ctrl.send(Ctrl::Frame(online.clone()));
            self.feed(encode_frame(&ServerFrame::Presence { peer: *peer, online: true }).into())
                .await?;
        }
        self.flush().await
    }

    async fn feed(&mut self, text: Utf8Bytes) -> Result<(), Exit> {
        self.unflushed += 1;
        self.ws.feed(Message::Text(text)).await.map_err(|_| Exit::Gone)
    }

    async fn flush(&mut self) -> Result<(), Exit> {
        if self.unflushed > 0 {
            self.unflushed = 0;
            self.ws.flush().await.map_err(|_| Exit::Gone)?;
        }
        Ok(())
    }

    async fn send_error(
        &mut self,
        code: ErrorCode,
        message: &str,
        id: Option<EnvelopeId>,
        rid: Option<String>,
    ) -> Result<(), Exit> {
        self.shared.metrics.count_error(code);
        self.feed(error_frame(code, message, id, rid)).await?;
        if code.is_fatal() {
            self.flush().await?;
            return Err(Exit::Fatal(code));
        }
        Ok(())
    }

    async fn main_loop(&mut self) -> Result<(), Exit> {
        let shared = Arc::clone(self.shared);
        let mut ping = tokio::time::interval(shared.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let spill_at =
                self.awaiting.front().map(|a| tokio::time::Instant::from_std(a.deadline));
            tokio::select! {
                biased;
                () = shared.shutdown.cancelled() => {
                    let _ = self.send_error(ErrorCode::ShuttingDown, "relay shutting down", None, None).await;
                    return Err(Exit::Fatal(ErrorCode::ShuttingDown));
                }
                Some(c) = self.ctrl_rx.recv() => self.on_ctrl(c).await?,
                Some(item) = self.deliver_rx.recv() => self.on_live(item).await?,
                msg = self.ws.recv() => match msg {
                    Some(Ok(msg)) => self.on_message(msg).await?,
                    _ => return Err(Exit::Gone),
                },
                () = sleep_until_opt(spill_at) => self.spill_due(),
                _ = ping.tick() => {
                    if self.missed_pongs >= 2 {
                        shared.metrics.ping_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(peer = %self.me.fmt_short(), "two pings unanswered, dropping");
                        return Err(Exit::Gone);
                    }
                    self.missed_pongs += 1;
                    self.ws.send(Message::Ping(Default::default())).await.map_err(|_| Exit::Gone)?;
                }
                () = std::future::ready(()), if self.draining && self.store_dirty => self.drain_step().await?,
            }
            // Opportunistically batch more outgoing frames before one flush.
            while self.unflushed < WRITE_BATCH {
                if let Ok(c) = self.ctrl_rx.try_recv() {
                    self.on_ctrl(c).await?;
                } else if let Ok(item) = self.deliver_rx.try_recv() {
                    self.on_live(item).await?;
                } else {
                    break;
                }
            }
            self.flush().await?;
        }
    }

    async fn on_ctrl(&mut self, c: Ctrl) -> Result<(), Exit> {
        match c {
            Ctrl::Frame(f) => self.feed(f).await,
            Ctrl::StoreHasData => {
                // Only sent for inserts routed to the queue, which the hub does
                // only while this connection is draining (e.g. after an overflow).
                self.draining = true;
                self.store_dirty = true;
                Ok(())
            }
            Ctrl::Replaced => Err(Exit::Replaced),
        }
    }

    async fn on_live(&mut self, item: LiveItem) -> Result<(), Exit> {
        self.live_unacked.insert((item.from, item.id));
        self.shared.metrics.envelopes_out.fetch_add(1, Ordering::Relaxed);
        self.feed(item.text).await
    }

    /// Read the next batch of this identity's queue and write it out, in order.
    async fn drain_step(&mut self) -> Result<(), Exit> {
        // Live envelopes accepted before draining began go first.
        while let Ok(item) = self.deliver_rx.try_recv() {
            self.on_live(item).await?;
        }
        self.store_dirty = false;
        let rows = match self.shared.store.load(self.me, self.last_seq, LOAD_BATCH).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the queue");
                return Err(Exit::Gone);
            }
        };
        let full = rows.len() == LOAD_BATCH;
        for row in rows {
            self.last_seq = row.seq;
            if self.live_unacked.contains(&(row.sender, row.id)) {
                continue;
            }
            let f = ServerFrame::Deliver {
                id: row.id,
                from: row.sender,
                body: row.body,
                ts: row.accepted_ms,
            };
            self.shared.metrics.envelopes_out.fetch_add(1, Ordering::Relaxed);
            self.feed(encode_frame(&f).into()).await?;
        }
        if full {
            self.store_dirty = true;
        } else if self.shared.hub.try_go_live(&self.me, self.conn_id, self.last_seq) {
            self.draining = false;
        }
        Ok(())
    }

    async fn on_message(&mut self, msg: Message) -> Result<(), Exit> {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return self
                    .send_error(
                        ErrorCode::BadFrame,
                        "binary frames are not part of the protocol",
                        None,
                        None,
                    )
                    .await;
            }
            Message::Pong(_) => {
                self.missed_pongs = 0;
                return Ok(());
            }
            Message::Ping(_) => return Ok(()),
            Message::Close(_) => return Err(Exit::Gone),
        };
        // Any frame proves the peer alive.
        self.missed_pongs = 0;
        if let Some(b) = &mut self.bucket {
            if !b.take(Instant::now()) {
                return self
                    .send_error(ErrorCode::RateLimited, "too many frames; slow down", None, None)
                    .await;
            }
        }
        let frame = match decode_client_frame(&text, self.shared.config.max_frame) {
            Ok(f) => f,
            Err(e) => {
                let msg = match &e {
                    FrameError::Malformed(_) => e.to_string(),
                    _ => e.to_string(),
                };
                return self.send_error(e.code(), &msg, None, None).await;
            }
        };
        match frame {
            ClientFrame::Send { id, to, body, claim } => self.on_send(id, to, body, claim).await,
            ClientFrame::Ack { id, from } => {
                self.live_unacked.remove(&(from, id));
                if let Some(lat) = self.shared.hub.ack(self.me, from, id, Instant::now()) {
                    let m = &self.shared.metrics;
                    m.envelopes_delivered_live.fetch_add(1, Ordering::Relaxed);
                    m.delivery_latency.observe(lat);
                }
                Ok(())
            }
            ClientFrame::Ping { rid } => {
                self.feed(encode_frame(&ServerFrame::Pong { rid }).into()).await
            }
            ClientFrame::InvitePublish { rid, invite, expires_at } => {
                self.on_publish(rid, invite, expires_at).await
            }
            ClientFrame::InviteRevoke { rid, invite } => {
                match self.shared.store.revoke_invite(self.me, invite).await {
                    Ok(true) => self.feed(encode_frame(&ServerFrame::Ok { rid }).into()).await,
                    Ok(false) => {
                        self.send_error(
                            ErrorCode::InviteUnknown,
                            "no such invite of yours",
                            None,
                            rid,
                        )
                        .await
                    }
                    Err(_) => {
                        self.send_error(ErrorCode::Internal, "storage fault", None, rid).await
                    }
                }
            }
            ClientFrame::PeerRevoke { rid, peer } => {
                match self.shared.store.revoke_peer(self.me, peer).await {
                    Ok(dropped) => {
                        self.shared.hub.remove_pair(&self.me, &peer);
                        tracing::info!(peer = %self.me.fmt_short(), other = %peer.fmt_short(), dropped, "pair revoked");
                        self.feed(encode_frame(&ServerFrame::Ok { rid }).into()).await
                    }
                    Err(_) => {
                        self.send_error(ErrorCode::Internal, "storage fault", None, rid).await
                    }
                }
            }
            ClientFrame::Login { .. } | ClientFrame::Resume { .. } => {
                self.send_error(ErrorCode::BadFrame, "already logged in", None, None).await
            }
        }
    }

    async fn on_publish(
        &mut self,
        rid: Option<String>,
        invite: InviteHash,
        expires_at: u64,
    ) -> Result<(), Exit> {
        if expires_at <= now_secs() {
            return self
                .send_error(ErrorCode::InviteExpired, "expires_at is in the past", None, rid)
                .await;
        }
        match self.shared.store.publish(self.me, invite, expires_at).await {
            Ok(PublishOutcome::Published) => {
                self.feed(encode_frame(&ServerFrame::Ok { rid }).into()).await
            }
            Ok(PublishOutcome::Conflict) => {
                self.send_error(
                    ErrorCode::Conflict,
                    "invite hash already published by another identity",
                    None,
                    rid,
                )
                .await
            }
            Err(_) => self.send_error(ErrorCode::Internal, "storage fault", None, rid).await,
        }
    }

    async fn on_send(
        &mut self,
        id: EnvelopeId,
        to: IdentityPublicKey,
        body: Vec<u8>,
        claim: Option<crate::protocol::frames::InviteIdClaim>,
    ) -> Result<(), Exit> {
        let shared = Arc::clone(self.shared);
        let accepted = Instant::now();
        let accepted_ms = now_ms();
        if to == self.me {
            return self
                .send_error(ErrorCode::NotPaired, "cannot send to yourself", Some(id), None)
                .await;
        }
        if !shared.hub.is_paired(&self.me, &to) {
            let Some(claim) = claim else {
                return self
                    .send_error(
                        ErrorCode::NotPaired,
                        "not paired with this identity",
                        Some(id),
                        None,
                    )
                    .await;
            };
            let hash = InviteHash(Sha256::digest(claim.0).into());
            let (code, msg) = match shared.store.claim(to, self.me, hash, now_secs()).await {
                Ok(ClaimOutcome::Paired) => {
                    shared.hub.add_pair(self.me, to);
                    tracing::info!(host = %to.fmt_short(), guest = %self.me.fmt_short(), "invite claimed");
                    if let Some(host) = shared.hub.ctrl_of(&to) {
                        let _ = host.send(Ctrl::Frame(
                            encode_frame(&ServerFrame::Presence { peer: self.me, online: true })
                                .into(),
                        ));
                        self.feed(
                            encode_frame(&ServerFrame::Presence { peer: to, online: true }).into(),
                        )
                        .await?;
                    }
                    (None, "")
                }
                Ok(ClaimOutcome::Unknown) => {
                    (Some(ErrorCode::InviteUnknown), "no such invite from this host")
                }
                Ok(ClaimOutcome::Expired) => (Some(ErrorCode::InviteExpired), "invite expired"),
                Ok(ClaimOutcome::Claimed) => {
                    (Some(ErrorCode::InviteClaimed), "invite already claimed")
                }
                Ok(ClaimOutcome::Revoked) => (Some(ErrorCode::InviteRevoked), "invite revoked"),
                Err(_) => (Some(ErrorCode::Internal), "storage fault"),
            };
            if let Some(code) = code {
                return self.send_error(code, msg, Some(id), None).await;
            }
        }
        shared.metrics.envelopes_in.fetch_add(1, Ordering::Relaxed);
        let text: Utf8Bytes = encode_frame(&ServerFrame::Deliver {
            id,
            from: self.me,
            body: body.clone(),
            ts: accepted_ms,
        })
        .into();
        let item = LiveItem { from: self.me, id, text };
        match shared.hub.route(self.me, to, item, &self.ctrl_tx, accepted) {
            Route::Live => {
                self.awaiting.push_back(AwaitingAck {
                    deadline: accepted + shared.config.live_ack_window,
                    to,
                    id,
                    body,
                    accepted_ms,
                });
                Ok(())
            }
            Route::DuplicateInFlight => {
                shared.metrics.envelopes_duplicate.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Route::DuplicateDone(true) => {
                shared.metrics.envelopes_duplicate.fetch_add(1, Ordering::Relaxed);
                self.feed(sent_frame(id, DeliveryStatus::Delivered)).await
            }
            Route::DuplicateDone(false) => {
                self.send_error(
                    ErrorCode::Conflict,
                    "envelope id already used for another recipient",
                    Some(id),
                    None,
                )
                .await
            }
            Route::Store => {
                let rx = shared.store.insert(to, self.me, id, body, accepted_ms, true);
                let c = Completion {
                    rx,
                    to,
                    from: self.me,
                    id,
                    accepted,
                    kind: Kind::Queued(self.ctrl_tx.clone()),
                };
                let _ = self.completions.send(c);
                Ok(())
            }
        }
    }

    /// Commit every live envelope whose ack window has passed.
    fn spill_due(&mut self) {
        let now = Instant::now();
        while self.awaiting.front().is_some_and(|a| a.deadline <= now) {
            if let Some(a) = self.awaiting.pop_front() {
                self.spill(a);
            }
        }
    }

    /// On exit: nothing this connection sent live may be lost.
    fn spill_all(&mut self) {
        while let Some(a) = self.awaiting.pop_front() {
            self.spill(a);
        }
    }

    fn spill(&self, a: AwaitingAck) {
        let hub = &self.shared.hub;
        let Some(rx) = hub.spill(a.to, self.me, a.id, a.body, a.accepted_ms) else {
            return;
        };
        let accepted = a.deadline - self.shared.config.live_ack_window;
        let c = Completion { rx, to: a.to, from: self.me, id: a.id, accepted, kind: Kind::Spill };
        let _ = self.completions.send(c);
    }
}

/// How a committed insert is answered.
enum Kind {
    /// Routed to the queue: answer on this control channel, tell the hub.
    Queued(CtrlTx),
    /// A live envelope spilled after its ack window: answer unless acked meanwhile.
    Spill,
}

/// An insert on its way to disk whose sender waits for `sent`.
struct Completion {
    rx: tokio::sync::oneshot::Receiver<Result<InsertOutcome, super::store::StoreError>>,
    to: IdentityPublicKey,
    from: IdentityPublicKey,
    id: EnvelopeId,
    accepted: Instant,
    kind: Kind,
}

/// One task per connection answers its store commits in the order they were
/// queued, so `sent` frames for stored envelopes keep the sender's order.
async fn answer_commits(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Completion>) {
    while let Some(c) = rx.recv().await {
        let r = c.rx.await.unwrap_or(Err(super::store::StoreError::Closed));
        let seq = match r {
            Ok(InsertOutcome::Stored(s) | InsertOutcome::Duplicate(s)) => Some(s),
            _ => None,
        };
        match c.kind {
            Kind::Queued(ctrl) => {
                let frame = store_answer(&shared, c.id, &r, c.accepted);
                shared.hub.finish_store(&c.to, seq);
                let _ = ctrl.send(Ctrl::Frame(frame));
            }
            Kind::Spill => {
                let frame = spill_answer(&shared, c.id, &r);
                shared.hub.finish_spill(c.to, c.from, c.id, seq, frame);
            }
        }
    }
}

/// Like [`store_answer`] for a spilled live envelope (its latency is counted on
/// ack, or here only when it is answered `stored`).
fn spill_answer(
    shared: &Shared,
    id: EnvelopeId,
    r: &Result<InsertOutcome, super::store::StoreError>,
) -> Utf8Bytes {
    match r {
        Ok(InsertOutcome::Stored(_) | InsertOutcome::Duplicate(_)) => {
            shared.metrics.envelopes_stored.fetch_add(1, Ordering::Relaxed);
            sent_frame(id, DeliveryStatus::Stored)
        }
        _ => store_answer(shared, id, r, Instant::now()),
    }
}

/// The frame answering a `send` whose envelope went to the store.
fn store_answer(
    shared: &Shared,
    id: EnvelopeId,
    r: &Result<InsertOutcome, super::store::StoreError>,
    accepted: Instant,
) -> Utf8Bytes {
    let m = &shared.metrics;
    match r {
        Ok(InsertOutcome::Stored(_)) => {
            m.envelopes_stored.fetch_add(1, Ordering::Relaxed);
            m.delivery_latency.observe(accepted.elapsed());
            sent_frame(id, DeliveryStatus::Stored)
        }
        Ok(InsertOutcome::Duplicate(_)) => {
            m.envelopes_duplicate.fetch_add(1, Ordering::Relaxed);
            sent_frame(id, DeliveryStatus::Stored)
        }
        Ok(InsertOutcome::QueueFull) => {
            m.count_error(ErrorCode::QueueFull);
            error_frame(
                ErrorCode::QueueFull,
                "recipient's queue is full; retry later",
                Some(id),
                None,
            )
        }
        Ok(InsertOutcome::Conflict) => error_frame(
            ErrorCode::Conflict,
            "envelope id reused with a different body or recipient",
            Some(id),
            None,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "store insert failed");
            error_frame(ErrorCode::Internal, "storage fault; retry", Some(id), None)
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
