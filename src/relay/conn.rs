//! One WebSocket connection: an actor owning the socket, fed by two queues.
//!
//! The bounded `deliver` queue carries live envelopes from other connections (a
//! full queue sends new envelopes to SQLite instead, so a slow reader never
//! stalls a sender); the bounded `ctrl` queue carries small control frames
//! (`sent`, `error`, `presence`; a peer that lets it fill is dropped). The actor
//! reads frames, writes frames (each write under a timeout), pings, spills unacked
//! live envelopes to disk after the ack window, and drains this identity's queue.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::{FutureExt as _, SinkExt as _};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commit::{CommitTx, answer_commits};
use super::hub::{Ctrl, CtrlTx, Envelope, LiveItem, Route, SenderLink, sent_frame};
use super::limits::{ConnSlot, TokenBucket};
use super::login::{CloseReason, LoggedIn, close_frame, error_frame, login};
use super::store::{ClaimOutcome, PublishOutcome, now_ms};
use super::{Shared, now_secs};
use crate::crypto::IdentityPublicKey;
use crate::defaults::{CTRL_QUEUE, RELAY_SHUTDOWN_WRITE_GRACE};
use crate::protocol::fast::{Inbound, decode_inbound, deliver_text};
use crate::protocol::{
    ClientFrame, DeliveryStatus, EnvelopeId, ErrorCode, InviteHash, ServerFrame, b64, encode_frame,
};

/// Rows read from the queue per round trip to the store thread.
const LOAD_BATCH: usize = 256;
/// Frames written before one flush: fewer syscalls under load.
const WRITE_BATCH: usize = 64;

/// Why the actor stopped; decides the close frame.
pub(super) enum Exit {
    /// The socket failed or the client closed it.
    Gone,
    /// A fatal protocol error already sent.
    Fatal(ErrorCode),
    /// A newer connection took over this identity.
    Replaced,
    /// The peer let its control queue fill: it is not reading.
    NotReading,
}

/// Run one socket write under the relay's write timeout; once shutdown has begun,
/// a write gets only [`RELAY_SHUTDOWN_WRITE_GRACE`] more. A write that fails or
/// times out ends the connection.
pub(super) async fn timed_write<T, E>(
    shared: &Shared,
    write: impl Future<Output = Result<T, E>>,
) -> Result<T, Exit> {
    let stop = async {
        shared.shutdown.cancelled().await;
        tokio::time::sleep(RELAY_SHUTDOWN_WRITE_GRACE).await;
    };
    tokio::select! {
        biased;
        r = tokio::time::timeout(shared.config.write_timeout, write) => match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Exit::Gone),
            Err(_) => {
                shared.metrics.write_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::info!("socket write timed out; dropping the connection");
                Err(Exit::Gone)
            }
        },
        () = stop => Err(Exit::Gone),
    }
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
        let f = error_frame(ErrorCode::TooManyConnections, "connection limit reached", None, None);
        let _ = timed_write(&shared, ws.send(Message::Text(f))).await;
        let close = close_frame(CloseReason::Fatal(ErrorCode::TooManyConnections));
        let _ = timed_write(&shared, ws.send(close)).await;
    } else if let Some(me) = login(&mut ws, &shared, acc.origin.as_deref(), acc.ip).await {
        tracing::debug!(peer = %me.identity.fmt_short(), ip = %acc.ip, "logged in");
        m.sessions.fetch_add(1, Ordering::Relaxed);
        Session::run(ws, &shared, me).await;
        m.sessions.fetch_sub(1, Ordering::Relaxed);
    }
    m.connections.fetch_sub(1, Ordering::Relaxed);
    drop(acc.slot);
}

/// A live envelope this connection sent, waiting for the recipient's ack (its
/// body is held by the hub).
struct AwaitingAck {
    deadline: Instant,
    to: IdentityPublicKey,
    id: EnvelopeId,
}

struct Session<'a> {
    ws: WebSocket,
    shared: &'a Arc<Shared>,
    me: IdentityPublicKey,
    conn_id: u64,
    /// Shared with every in-flight envelope of this connection (one refcount, not
    /// three channel handles and a cancellation token cloned per envelope).
    link: Arc<SenderLink>,
    ctrl_rx: mpsc::Receiver<Ctrl>,
    /// Cancelled when the control queue overflowed.
    not_reading: CancellationToken,
    deliver_rx: mpsc::Receiver<LiveItem>,
    /// Reading this identity's queue instead of taking live envelopes.
    draining: bool,
    /// New rows may be in the queue.
    store_dirty: bool,
    /// Highest queue `ord` already written to the socket.
    last_ord: i64,
    /// Delivered here but not acked, with the body's digest (for the ack). Rows of
    /// the queue found here were delivered live already and are skipped.
    unacked: HashMap<(IdentityPublicKey, EnvelopeId), u64>,
    awaiting: VecDeque<AwaitingAck>,
    bucket: Option<TokenBucket>,
    missed_pongs: u32,
    unflushed: usize,
}

impl<'a> Session<'a> {
    async fn run(ws: WebSocket, shared: &'a Arc<Shared>, me: LoggedIn) {
        let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let not_reading = CancellationToken::new();
        let (ctrl_tx, ctrl_rx) = CtrlTx::new(CTRL_QUEUE, not_reading.clone());
        let (deliver_tx, deliver_rx) = mpsc::channel(shared.config.conn_queue.max(1));
        let cfg = &shared.config;
        let bucket = cfg
            .rate_limit
            .then(|| TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst, Instant::now()));
        let (commits, commit_rx) = CommitTx::new();
        shared.tracker.spawn(answer_commits(Arc::clone(shared), commit_rx));
        let mut s = Session {
            ws,
            shared,
            me: me.identity,
            conn_id,
            link: Arc::new(SenderLink { ctrl: ctrl_tx.clone(), commits }),
            ctrl_rx,
            not_reading,
            deliver_rx,
            draining: true,
            store_dirty: true,
            last_ord: 0,
            unacked: HashMap::new(),
            awaiting: VecDeque::new(),
            bucket,
            missed_pongs: 0,
            unflushed: 0,
        };
        let peers = shared.hub.register(s.me, conn_id, deliver_tx, ctrl_tx);
        if let Some(c) = &shared.cluster {
            c.logged_in(s.me, conn_id).await;
        }
        let exit = s.start(&me, &peers).await;
        let exit = match exit {
            Ok(()) => s.main_loop().await.err().unwrap_or(Exit::Gone),
            Err(e) => e,
        };
        s.spill_all();
        if let Some(c) = &shared.cluster {
            c.logged_out(&s.me, conn_id);
        }
        if let Some(peers) = shared.hub.unregister(&s.me, conn_id) {
            let f: Utf8Bytes =
                encode_frame(&ServerFrame::Presence { peer: s.me, online: false }).into();
            for p in peers {
                p.send(Ctrl::Frame(f.clone()));
            }
        }
        let close = match exit {
            Exit::Gone => None,
            Exit::Fatal(code) => Some(CloseReason::Fatal(code)),
            Exit::Replaced => Some(CloseReason::Replaced),
            Exit::NotReading => Some(CloseReason::NotReading),
        };
        if let Some(c) = close {
            let _ = timed_write(shared, s.ws.send(close_frame(c))).await;
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
            ctrl.send(Ctrl::Frame(online.clone()));
            self.feed(encode_frame(&ServerFrame::Presence { peer: *peer, online: true }).into())
                .await?;
        }
        self.flush().await
    }

    async fn feed(&mut self, text: Utf8Bytes) -> Result<(), Exit> {
        self.unflushed += 1;
        timed_write(self.shared, self.ws.feed(Message::Text(text))).await
    }

    async fn flush(&mut self) -> Result<(), Exit> {
        if self.unflushed > 0 {
            self.unflushed = 0;
            timed_write(self.shared, self.ws.flush()).await?;
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
        // Made once, not per turn of the loop: each `cancelled()` future registers
        // in its token's waiter list (a mutex) when polled and leaves it when
        // dropped, which at a fixed rate was two lock round trips per frame.
        let shutdown = shared.shutdown.clone().cancelled_owned();
        let not_reading = self.not_reading.clone().cancelled_owned();
        tokio::pin!(shutdown, not_reading);
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
                () = &mut shutdown => {
                    let _ = self.send_error(ErrorCode::ShuttingDown, "relay shutting down", None, None).await;
                    return Err(Exit::Fatal(ErrorCode::ShuttingDown));
                }
                () = &mut not_reading => {
                    tracing::info!(peer = %self.me.fmt_short(), "control queue full, dropping");
                    return Err(Exit::NotReading);
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
                    timed_write(&shared, self.ws.send(Message::Ping(Default::default()))).await?;
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
        self.unacked.insert((item.from, item.id), item.digest);
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
        let rows = match self.shared.store.load(self.me, self.last_ord, LOAD_BATCH).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the queue");
                return Err(Exit::Gone);
            }
        };
        let full = rows.len() == LOAD_BATCH;
        for row in rows {
            self.last_ord = row.ord;
            if self.unacked.contains_key(&(row.sender, row.id)) {
                continue;
            }
            self.unacked.insert((row.sender, row.id), self.shared.hub.digest(&row.body));
            let text = deliver_text(&row.id, &row.sender, &b64::encode(&row.body), row.accepted_ms);
            self.shared.metrics.envelopes_out.fetch_add(1, Ordering::Relaxed);
            self.feed(text.into()).await?;
        }
        if full {
            self.store_dirty = true;
        } else if self.shared.hub.try_go_live(&self.me, self.conn_id, self.last_ord) {
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
        let frame = match decode_inbound(&text, self.shared.config.max_frame) {
            Ok(Inbound::Send { id, to, body, body_b64, claim }) => {
                return self.on_send(id, to, body, body_b64, claim).await;
            }
            Ok(Inbound::Other(f)) => f,
            Err(e) => return self.send_error(e.code(), &e.to_string(), None, None).await,
        };
        match frame {
            ClientFrame::Send { id, to, body, claim } => {
                // Taken by the general decoder (e.g. escapes in the JSON).
                let body_b64 = b64::encode(&body);
                self.on_send(id, to, body, &body_b64, claim).await
            }
            ClientFrame::Ack { id, from } => {
                let digest = self.unacked.remove(&(from, id));
                if let Some(lat) = self.shared.hub.ack(self.me, from, id, digest, Instant::now()) {
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
        body_b64: &str,
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
        if !shared.hub.is_paired(&self.me, &to) && !paired_elsewhere(&shared, self.me, to).await {
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
                        host.send(Ctrl::Frame(
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
        // Written around the sender's base64: the body is not encoded again.
        let text: Utf8Bytes = deliver_text(&id, &self.me, body_b64, accepted_ms).into();
        let digest = shared.hub.digest(&body);
        let env = Envelope { from: self.me, to, id, body, accepted_ms, digest, text };
        match shared.hub.route(env, &self.link, accepted) {
            Route::Live => {
                let deadline = accepted + shared.config.live_ack_window;
                self.awaiting.push_back(AwaitingAck { deadline, to, id });
                Ok(())
            }
            // Answered through the commit queue.
            Route::Store => Ok(()),
            Route::DuplicateInFlight => {
                shared.metrics.envelopes_duplicate.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Route::DuplicateDone => {
                shared.metrics.envelopes_duplicate.fetch_add(1, Ordering::Relaxed);
                self.feed(sent_frame(id, DeliveryStatus::Delivered)).await
            }
            Route::Conflict => {
                self.send_error(
                    ErrorCode::Conflict,
                    "envelope id already used with another recipient or body",
                    Some(id),
                    None,
                )
                .await
            }
        }
    }

    /// Commit every live envelope whose ack window has passed (nearly all were
    /// acked meanwhile: one hub lock for the lot, not one each), except those the
    /// hub keeps live because their recipient is acking: checked again one window on.
    fn spill_due(&mut self) {
        let now = Instant::now();
        let window = self.shared.config.live_ack_window;
        let due = self.awaiting.iter().take_while(|a| a.deadline <= now).count();
        let due = self.awaiting.drain(..due).map(|a| (a.to, a.id));
        let later = self.shared.hub.spill_many(self.me, due, now, window);
        // Every deadline queued is at most `now + window` (accept time plus the
        // window), so these join the back in order.
        let deadline = now + window;
        self.awaiting.extend(later.into_iter().map(|(to, id)| AwaitingAck { deadline, to, id }));
    }

    /// On exit: nothing this connection sent live may be lost.
    fn spill_all(&mut self) {
        while let Some(a) = self.awaiting.pop_front() {
            self.spill(a);
        }
    }

    fn spill(&self, a: AwaitingAck) {
        self.shared.hub.spill(a.to, self.me, a.id);
    }
}

/// A pair claimed through another node of a shared store: learn it (the hub keeps
/// it from now on). A store fault counts as not paired.
async fn paired_elsewhere(shared: &Shared, me: IdentityPublicKey, to: IdentityPublicKey) -> bool {
    if !shared.store.is_shared() {
        return false;
    }
    let yes = shared.store.is_paired(me, to).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot check a pair in the store");
        false
    });
    if yes {
        shared.hub.add_pair(me, to);
    }
    yes
}
