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
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::{FutureExt as _, SinkExt as _};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::commit::{Completion, Kind, answer_commits};
use super::hub::{Ctrl, CtrlTx, LiveItem, Route, sent_frame};
use super::limits::{ConnSlot, TokenBucket};
use super::login::{LoggedIn, close_frame, error_frame, login};
use super::store::{ClaimOutcome, PublishOutcome, now_ms};
use super::{Shared, now_secs};
use crate::crypto::IdentityPublicKey;
use crate::protocol::{
    ClientFrame, DeliveryStatus, EnvelopeId, ErrorCode, FrameError, InviteHash, ServerFrame,
    decode_client_frame, encode_frame,
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
    } else if let Some(me) = login(&mut ws, &shared, acc.origin.as_deref(), acc.ip).await {
        tracing::debug!(peer = %me.identity.fmt_short(), ip = %acc.ip, "logged in");
        m.sessions.fetch_add(1, Ordering::Relaxed);
        Session::run(ws, &shared, me).await;
        m.sessions.fetch_sub(1, Ordering::Relaxed);
    }
    m.connections.fetch_sub(1, Ordering::Relaxed);
    drop(acc.slot);
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
        // One timer for the oldest live envelope awaiting its ack, re-armed only when
        // that deadline changes (not a fresh timer per loop).
        let spill_timer = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(spill_timer);
        let mut armed: Option<Instant> = None;
        loop {
            let want = self.awaiting.front().map(|a| a.deadline);
            if want != armed {
                if let Some(t) = want {
                    spill_timer.as_mut().reset(tokio::time::Instant::from_std(t));
                }
                armed = want;
            }
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
                () = &mut spill_timer, if armed.is_some() => {
                    armed = None;
                    self.spill_due();
                }
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
            // Under load, handle everything already waiting (queued frames and frames
            // already read off the socket) before one flush: one write syscall for many frames.
            let mut handled = 0;
            while handled < WRITE_BATCH {
                handled += 1;
                if let Ok(c) = self.ctrl_rx.try_recv() {
                    self.on_ctrl(c).await?;
                } else if let Ok(item) = self.deliver_rx.try_recv() {
                    self.on_live(item).await?;
                } else if let Some(msg) = self.ws.recv().now_or_never() {
                    match msg {
                        Some(Ok(msg)) => self.on_message(msg).await?,
                        _ => return Err(Exit::Gone),
                    }
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
        let now = now_secs();
        if expires_at <= now {
            return self
                .send_error(ErrorCode::InviteExpired, "expires_at is in the past", None, rid)
                .await;
        }
        if expires_at > now.saturating_add(self.shared.config.max_invite_ttl.as_secs()) {
            let msg = "expires_at is further ahead than this relay keeps invites";
            return self.send_error(ErrorCode::InviteTtlTooLong, msg, None, rid).await;
        }
        let max_open = self.shared.config.max_invites_per_pk;
        match self.shared.store.publish(self.me, invite, expires_at, max_open).await {
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
            Ok(PublishOutcome::Quota) => {
                let msg = "too many open invites for this identity; revoke or let some expire";
                self.send_error(ErrorCode::InviteQuota, msg, None, rid).await
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
