//! The router: who is online, who is paired, and which live envelopes wait for an ack.
//!
//! One `std::sync::Mutex` guards it all; it is held only for map updates and
//! non-blocking channel pushes, never across an `.await` (mini-redis `db.rs`
//! reasoning: short critical sections beat an async lock).
//!
//! ## Ordering between the live path and the queue (PROTOCOL.md §3.4, issue 18)
//! Every accepted envelope gets the relay's own sequence number `ord`, taken under
//! the lock when it is routed; the queue is read back in `ord` order. A recipient's
//! connection is either *live* (new envelopes are pushed straight into its bounded
//! queue) or *draining* (new envelopes go to SQLite and the connection reads them
//! back). A connection starts draining at login and turns live only when it has
//! read past every committed row and no insert for it is in flight; an overflowing
//! queue turns it back to draining.
//!
//! Envelopes pushed live and not acked yet are *held* here with their body. They
//! go to the store (keeping their `ord`) in front of anything queued after them:
//! when the recipient's connection ends or is replaced, and before any later
//! envelope for the same recipient is routed to the store. Every store insert is
//! enqueued under the lock, so the store thread's FIFO holds each pair's envelopes
//! in `ord` order, and a commit (even one cut short by `kill -9`) keeps a prefix.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commit::{CommitTx, Completion, Kind};
use super::recent::Recent;
use super::storage::Store;
use crate::crypto::IdentityPublicKey;
use crate::protocol::{DeliveryStatus, EnvelopeId};

/// Ids remembered after their envelope was delivered, so a late duplicate `send`
/// is answered `sent` instead of being delivered twice.
const RECENT_IDS: usize = 65_536;
/// How many ack windows a live envelope may stay in memory, past its own window,
/// while its recipient keeps acking others (it is behind, not stalled). Spilling
/// such envelopes to SQLite costs an insert and a delete each, on the core that is
/// already behind: under load that tipped whole runs into a slower mode (the p99
/// spread of issue 17, docs/performance.md). Bounded, because the window is also
/// what bounds the bodies held for a recipient that reads but never acks.
const LIVE_HOLD_WINDOWS: u32 = 10;

/// A `deliver` frame for the live path, already encoded.
#[derive(Debug)]
pub(crate) struct LiveItem {
    pub(crate) from: IdentityPublicKey,
    pub(crate) id: EnvelopeId,
    /// [`Hub::digest`] of the body, remembered by the recipient until its ack.
    pub(crate) digest: u64,
    pub(crate) text: Utf8Bytes,
}

/// An envelope a connection accepted, on its way to [`Hub::route`].
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) from: IdentityPublicKey,
    pub(crate) to: IdentityPublicKey,
    pub(crate) id: EnvelopeId,
    pub(crate) body: Vec<u8>,
    pub(crate) accepted_ms: u64,
    /// [`Hub::digest`] of the body.
    pub(crate) digest: u64,
    /// The `deliver` frame, encoded once.
    pub(crate) text: Utf8Bytes,
}

/// Where a sender hears back: control frames, and answers that wait for a commit
/// (queued in the order the inserts were enqueued).
#[derive(Debug, Clone)]
pub(crate) struct SenderLink {
    pub(crate) ctrl: CtrlTx,
    pub(crate) commits: CommitTx,
}

/// Messages to a connection's actor that are not envelopes.
#[derive(Debug)]
pub(crate) enum Ctrl {
    /// A frame to write (sent, error, presence).
    Frame(Utf8Bytes),
    /// New rows for this recipient were committed.
    StoreHasData,
    /// A newer connection logged in as the same identity.
    Replaced,
}

/// A connection's control queue. Bounded: a connection that lets it fill is not
/// reading its socket, so it is closed instead of buffering without limit (its
/// peer reconnects and resends; every answer it missed is answered again).
#[derive(Debug, Clone)]
pub(crate) struct CtrlTx {
    tx: mpsc::Sender<Ctrl>,
    overflow: CancellationToken,
}

impl CtrlTx {
    /// A queue of `cap` messages; `overflow` is cancelled when it is full.
    pub(crate) fn new(cap: usize, overflow: CancellationToken) -> (Self, mpsc::Receiver<Ctrl>) {
        let (tx, rx) = mpsc::channel(cap.max(1));
        (Self { tx, overflow }, rx)
    }

    /// Queue without waiting (callers hold the hub lock or must not block).
    pub(crate) fn send(&self, c: Ctrl) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(c) {
            self.overflow.cancel();
        }
    }
}

struct ConnEntry {
    conn_id: u64,
    deliver: mpsc::Sender<LiveItem>,
    ctrl: CtrlTx,
    draining: bool,
}

#[derive(Default)]
struct RecipState {
    inserts_in_flight: u32,
    /// Highest `ord` committed to the queue for this recipient.
    max_committed: i64,
    /// Envelopes pushed live, not acked and not stored yet, by `ord`.
    live: BTreeMap<i64, (IdentityPublicKey, EnvelopeId)>,
    /// When this recipient last acked a live envelope.
    last_ack: Option<Instant>,
}

enum InflightState {
    /// Pushed live, not acked: the body is kept until it is acked or stored.
    Live { body: Vec<u8> },
    /// Its insert is queued to the store.
    Spilling { acked: bool },
}

struct Inflight {
    to: IdentityPublicKey,
    state: InflightState,
    ord: i64,
    accepted_ms: u64,
    digest: u64,
    /// The recipient connection that got it live.
    recipient_conn: u64,
    sender: Arc<SenderLink>,
    accepted: Instant,
}

/// `(from, id)`: an id names one envelope of its sender, whatever the recipient.
type InflightKey = (IdentityPublicKey, EnvelopeId);

struct Inner {
    conns: HashMap<IdentityPublicKey, ConnEntry>,
    recips: HashMap<IdentityPublicKey, RecipState>,
    pairs: HashMap<IdentityPublicKey, HashSet<IdentityPublicKey>>,
    inflight: HashMap<InflightKey, Inflight>,
    /// Recently acked: the recipient and the body's digest (when the acking
    /// connection saw the body), so a reused id with another body is a conflict.
    recent: Recent,
    /// Delivered live, then committed after the ack window, not acked yet: a resend
    /// must go through the store (which answers it as a duplicate), not live again.
    /// Value: the recipient and the accept time (unix ms), for the TTL sweep.
    held: HashMap<(IdentityPublicKey, EnvelopeId), (IdentityPublicKey, u64)>,
    /// The next relay sequence number (`ord`).
    next_ord: i64,
}

impl Inner {
    fn remember(
        &mut self,
        from: IdentityPublicKey,
        id: EnvelopeId,
        to: IdentityPublicKey,
        digest: Option<u64>,
    ) {
        self.recent.insert(from, id, to, digest);
    }
}

/// Where a `send` went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Pushed to the online recipient; the sender hears `sent` on ack or after a spill.
    Live,
    /// Must be queued in SQLite; call [`Hub::finish_store`] after the commit.
    Store,
    /// Already in flight live; its `sent` will answer this request instead.
    DuplicateInFlight,
    /// Delivered recently (same recipient and body): answer `sent delivered`.
    DuplicateDone,
    /// The id is in flight or was delivered with another recipient or body.
    Conflict,
}

/// The shared router.
pub(crate) struct Hub {
    inner: Mutex<Inner>,
    store: Arc<Store>,
    /// Keys for [`Hub::digest`], random per process.
    digest_keys: std::hash::RandomState,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

pub(crate) fn sent_frame(id: EnvelopeId, status: DeliveryStatus) -> Utf8Bytes {
    crate::protocol::fast::sent_text(&id, status).into()
}

impl Hub {
    /// `next_ord` continues the sequence of envelopes already queued.
    pub(crate) fn new(
        store: Arc<Store>,
        pairs: Vec<(IdentityPublicKey, IdentityPublicKey)>,
        next_ord: i64,
    ) -> Self {
        let mut inner = Inner {
            conns: HashMap::new(),
            recips: HashMap::new(),
            pairs: HashMap::new(),
            inflight: HashMap::new(),
            recent: Recent::new(RECENT_IDS),
            held: HashMap::new(),
            next_ord,
        };
        for (a, b) in pairs {
            inner.pairs.entry(a).or_default().insert(b);
            inner.pairs.entry(b).or_default().insert(a);
        }
        Self { inner: Mutex::new(inner), store, digest_keys: std::hash::RandomState::new() }
    }

    /// A keyed 64-bit digest of an envelope body, to tell a resend of the same
    /// envelope from a reused id (SipHash with per-process random keys: a sender
    /// cannot aim for a collision, and one would only fool its own resend).
    pub(crate) fn digest(&self, body: &[u8]) -> u64 {
        use std::hash::BuildHasher as _;
        self.digest_keys.hash_one(body)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug; the maps stay consistent
        // enough to keep routing, so recover the guard instead of cascading.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn is_paired(&self, a: &IdentityPublicKey, b: &IdentityPublicKey) -> bool {
        self.lock().pairs.get(a).is_some_and(|s| s.contains(b))
    }

    pub(crate) fn add_pair(&self, a: IdentityPublicKey, b: IdentityPublicKey) {
        let mut g = self.lock();
        g.pairs.entry(a).or_default().insert(b);
        g.pairs.entry(b).or_default().insert(a);
    }

    /// Unpair `a` and `b`; their stored envelopes are dropped by the store, so the
    /// ids held back from the live path between them are forgotten too.
    pub(crate) fn remove_pair(&self, a: &IdentityPublicKey, b: &IdentityPublicKey) {
        let mut g = self.lock();
        if let Some(s) = g.pairs.get_mut(a) {
            s.remove(b);
        }
        if let Some(s) = g.pairs.get_mut(b) {
            s.remove(a);
        }
        g.held.retain(|(from, _), (to, _)| !((from == a && to == b) || (from == b && to == a)));
    }

    /// Forget held-back ids whose stored envelope the TTL sweep deleted (accepted
    /// before `cutoff_ms`): they can never be acked.
    pub(crate) fn sweep_held(&self, cutoff_ms: u64) -> usize {
        let mut g = self.lock();
        let before = g.held.len();
        g.held.retain(|_, (_, accepted_ms)| *accepted_ms >= cutoff_ms);
        before - g.held.len()
    }

    /// Held-back ids (stored after their ack window, not acked yet).
    #[cfg(test)]
    pub(crate) fn held_len(&self) -> usize {
        self.lock().held.len()
    }

    /// The control channel of `who` if online.
    pub(crate) fn ctrl_of(&self, who: &IdentityPublicKey) -> Option<CtrlTx> {
        self.lock().conns.get(who).map(|c| c.ctrl.clone())
    }

    /// Make this connection the one for `me` (a previous one is told to close, and
    /// what it held goes to the store first). Returns the paired peers that are
    /// online. The connection starts draining.
    pub(crate) fn register(
        &self,
        me: IdentityPublicKey,
        conn_id: u64,
        deliver: mpsc::Sender<LiveItem>,
        ctrl: CtrlTx,
    ) -> Vec<(IdentityPublicKey, CtrlTx)> {
        let mut g = self.lock();
        let old = g.conns.insert(me, ConnEntry { conn_id, deliver, ctrl, draining: true });
        if let Some(old) = old {
            old.ctrl.send(Ctrl::Replaced);
            // Before this connection's first read of the queue is enqueued.
            self.spill_held(&mut g, &me);
        }
        let peers: Vec<IdentityPublicKey> =
            g.pairs.get(&me).map(|s| s.iter().copied().collect()).unwrap_or_default();
        peers.into_iter().filter_map(|p| g.conns.get(&p).map(|c| (p, c.ctrl.clone()))).collect()
    }

    /// Forget this connection if it is still the current one for `me` (what it
    /// held goes to the store); returns the online peers to tell, or `None` if a
    /// newer connection had replaced it.
    pub(crate) fn unregister(&self, me: &IdentityPublicKey, conn_id: u64) -> Option<Vec<CtrlTx>> {
        let mut g = self.lock();
        if g.conns.get(me).is_none_or(|c| c.conn_id != conn_id) {
            return None;
        }
        g.conns.remove(me);
        self.spill_held(&mut g, me);
        let peers = g.pairs.get(me).cloned().unwrap_or_default();
        Some(peers.iter().filter_map(|p| g.conns.get(p).map(|c| c.ctrl.clone())).collect())
    }

    /// Decide how a `send` travels and take its place in the relay's order. On
    /// [`Route::Live`] the envelope is queued to the recipient and held here; on
    /// [`Route::Store`] its insert is enqueued and the sender will be answered
    /// through `sender.commits`.
    pub(crate) fn route(&self, env: Envelope, sender: &Arc<SenderLink>, now: Instant) -> Route {
        let Envelope { from, to, id, body, accepted_ms, digest, text } = env;
        let mut g = self.lock();
        if let Some((prev_to, prev_digest)) = g.recent.get(&from, &id) {
            let same = prev_to == to && prev_digest.is_none_or(|d| d == digest);
            return if same { Route::DuplicateDone } else { Route::Conflict };
        }
        if let Some(f) = g.inflight.get_mut(&(from, id)) {
            if f.to != to || f.digest != digest {
                return Route::Conflict;
            }
            // The latest asker gets the answer: a sender that reconnected and resent
            // must not wait on a `sent` addressed to its dead connection.
            f.sender = Arc::clone(sender);
            return Route::DuplicateInFlight;
        }
        let ord = g.next_ord;
        g.next_ord += 1;
        let held = g.held.contains_key(&(from, id));
        if let Some(c) = g.conns.get_mut(&to).filter(|_| !held) {
            if !c.draining {
                let recipient_conn = c.conn_id;
                match c.deliver.try_send(LiveItem { from, id, digest, text }) {
                    Ok(()) => {
                        g.inflight.insert(
                            (from, id),
                            Inflight {
                                to,
                                state: InflightState::Live { body },
                                ord,
                                accepted_ms,
                                digest,
                                recipient_conn,
                                sender: Arc::clone(sender),
                                accepted: now,
                            },
                        );
                        g.recips.entry(to).or_default().live.insert(ord, (from, id));
                        return Route::Live;
                    }
                    Err(_) => {
                        // Slow reader: from now on it catches up from SQLite.
                        c.draining = true;
                    }
                }
            }
        }
        // Whatever this recipient still holds was accepted earlier: store it first.
        self.spill_held(&mut g, &to);
        g.recips.entry(to).or_default().inserts_in_flight += 1;
        let rx = self.store.insert(to, from, id, body, accepted_ms, ord, true);
        sender.commits.push(Completion {
            rx,
            to,
            from,
            id,
            accepted: now,
            kind: Kind::Queued(sender.ctrl.clone()),
        });
        Route::Store
    }

    /// Send everything `to` holds to the store, oldest first.
    fn spill_held(&self, g: &mut Inner, to: &IdentityPublicKey) {
        let Some(live) = g.recips.get_mut(to).map(|r| std::mem::take(&mut r.live)) else {
            return;
        };
        for (from, id) in live.into_values() {
            self.spill_one(g, *to, from, id);
        }
    }

    /// Queue one held envelope's insert (under its original `ord`), counted like a
    /// queued insert: a connection that replaced the one that got it live must not
    /// turn live before the row is readable.
    fn spill_one(
        &self,
        g: &mut Inner,
        to: IdentityPublicKey,
        from: IdentityPublicKey,
        id: EnvelopeId,
    ) -> bool {
        let Some(f) = g.inflight.get_mut(&(from, id)).filter(|f| f.to == to) else {
            return false;
        };
        let InflightState::Live { body } =
            std::mem::replace(&mut f.state, InflightState::Spilling { acked: false })
        else {
            return false;
        };
        let ord = f.ord;
        let rx = self.store.insert(to, from, id, body, f.accepted_ms, ord, true);
        f.sender.commits.push(Completion {
            rx,
            to,
            from,
            id,
            accepted: f.accepted,
            kind: Kind::Spill,
        });
        let r = g.recips.entry(to).or_default();
        r.live.remove(&ord);
        r.inserts_in_flight += 1;
        true
    }

    /// A queued insert for `to` finished (`ord` if a row is there now).
    pub(crate) fn finish_store(&self, to: &IdentityPublicKey, ord: Option<i64>) {
        let mut g = self.lock();
        let r = g.recips.entry(*to).or_default();
        r.inserts_in_flight = r.inserts_in_flight.saturating_sub(1);
        if let Some(s) = ord {
            r.max_committed = r.max_committed.max(s);
        }
        if let Some(c) = g.conns.get(to) {
            c.ctrl.send(Ctrl::StoreHasData);
        }
    }

    /// A draining connection has read through `last_ord` and found nothing newer:
    /// switch it to live if no insert for it is still on its way to disk.
    pub(crate) fn try_go_live(&self, me: &IdentityPublicKey, conn_id: u64, last_ord: i64) -> bool {
        let mut g = self.lock();
        let quiet = g
            .recips
            .get(me)
            .is_none_or(|r| r.inserts_in_flight == 0 && r.max_committed <= last_ord);
        match g.conns.get_mut(me) {
            Some(c) if c.conn_id == conn_id && quiet => {
                c.draining = false;
                true
            }
            _ => false,
        }
    }

    /// The recipient `me` acked `(from, id)` (whose body digest it knows if this
    /// connection delivered it). Answers the sender if it still waits, deletes the
    /// stored copy otherwise. Returns the live delivery latency.
    pub(crate) fn ack(
        &self,
        me: IdentityPublicKey,
        from: IdentityPublicKey,
        id: EnvelopeId,
        mut digest: Option<u64>,
        now: Instant,
    ) -> Option<Duration> {
        let mut g = self.lock();
        let key = (from, id);
        let latency = match g.inflight.get_mut(&key).filter(|f| f.to == me) {
            Some(f) => {
                let latency = now.saturating_duration_since(f.accepted);
                digest = Some(f.digest);
                f.sender.ctrl.send(Ctrl::Frame(sent_frame(id, DeliveryStatus::Delivered)));
                match &mut f.state {
                    InflightState::Live { .. } => {
                        let ord = f.ord;
                        g.inflight.remove(&key);
                        if let Some(r) = g.recips.get_mut(&me) {
                            r.live.remove(&ord);
                            r.last_ack = Some(now);
                        }
                    }
                    InflightState::Spilling { acked } => {
                        // The insert is queued ahead of this delete (same FIFO), so
                        // the row is gone once both commit.
                        *acked = true;
                        self.store.delete(me, from, id);
                    }
                }
                Some(latency)
            }
            None => {
                g.held.remove(&(from, id));
                self.store.delete(me, from, id);
                None
            }
        };
        g.remember(from, id, me, digest);
        latency
    }

    /// The ack window passed: commit a live envelope to disk (answered through its
    /// sender's commit queue). `false` if it was acked or stored meanwhile.
    pub(crate) fn spill(
        &self,
        to: IdentityPublicKey,
        from: IdentityPublicKey,
        id: EnvelopeId,
    ) -> bool {
        let mut g = self.lock();
        self.spill_one(&mut g, to, from, id)
    }

    /// [`Hub::spill`] for several envelopes `from` sent whose ack `window` has
    /// passed, under one lock; except that an envelope whose recipient acked
    /// another within the last `window` stays live, up to [`LIVE_HOLD_WINDOWS`]
    /// windows after it was accepted. Returns those kept live, to check again one
    /// `window` from `now`.
    pub(crate) fn spill_many(
        &self,
        from: IdentityPublicKey,
        due: impl Iterator<Item = (IdentityPublicKey, EnvelopeId)>,
        now: Instant,
        window: Duration,
    ) -> Vec<(IdentityPublicKey, EnvelopeId)> {
        let mut g = self.lock();
        let mut later = Vec::new();
        for (to, id) in due {
            if Self::keep_live(&g, to, from, id, now, window) {
                later.push((to, id));
            } else {
                self.spill_one(&mut g, to, from, id);
            }
        }
        later
    }

    /// Whether a live envelope past its ack window may stay live: its recipient
    /// is acking (behind, not stalled) and the hold is within bounds.
    fn keep_live(
        g: &Inner,
        to: IdentityPublicKey,
        from: IdentityPublicKey,
        id: EnvelopeId,
        now: Instant,
        window: Duration,
    ) -> bool {
        let Some(f) = g.inflight.get(&(from, id)) else { return false };
        if f.to != to || !matches!(f.state, InflightState::Live { .. }) {
            return false;
        }
        let acking = g
            .recips
            .get(&to)
            .and_then(|r| r.last_ack)
            .is_some_and(|t| now.saturating_duration_since(t) < window);
        acking && now.saturating_duration_since(f.accepted) < window * LIVE_HOLD_WINDOWS
    }

    /// A spill committed (`ord` if the row is there) or failed: answer the sender
    /// unless the recipient acked first. If the envelope went live to a connection
    /// that is gone, the recipient's current connection reads it from the queue.
    pub(crate) fn finish_spill(
        &self,
        to: IdentityPublicKey,
        from: IdentityPublicKey,
        id: EnvelopeId,
        ord: Option<i64>,
        frame: Utf8Bytes,
    ) -> bool {
        let mut g = self.lock();
        let r = g.recips.entry(to).or_default();
        r.inserts_in_flight = r.inserts_in_flight.saturating_sub(1);
        if let Some(s) = ord {
            r.max_committed = r.max_committed.max(s);
        }
        if g.inflight.get(&(from, id)).is_none_or(|f| f.to != to) {
            return false;
        }
        let Some(f) = g.inflight.remove(&(from, id)) else {
            return false;
        };
        if let Some(c) = g.conns.get_mut(&to) {
            if c.conn_id != f.recipient_conn && ord.is_some() {
                c.draining = true;
                c.ctrl.send(Ctrl::StoreHasData);
            }
        }
        if matches!(f.state, InflightState::Spilling { acked: false }) {
            if ord.is_some() {
                g.held.insert((from, id), (to, f.accepted_ms));
            }
            f.sender.ctrl.send(Ctrl::Frame(frame));
            return true;
        }
        false
    }

    /// Connections and identities online.
    pub(crate) fn online(&self) -> usize {
        self.lock().conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::commit::CommitTx;
    use crate::relay::metrics::Metrics;
    use crate::relay::store::StoreOptions;

    fn pk(n: u8) -> IdentityPublicKey {
        IdentityPublicKey::from_bytes(&[n; 32]).expect("test key")
    }

    /// Route one envelope live to `to`, let its ack window pass (spill) and its
    /// commit finish: it is then held back from the live path until acked.
    async fn held_one(
        hub: &Hub,
        link: &Arc<SenderLink>,
        rx: &mut mpsc::UnboundedReceiver<Completion>,
        from: IdentityPublicKey,
        to: IdentityPublicKey,
        n: u8,
    ) {
        let id = EnvelopeId([n; 16]);
        let body = vec![n; 8];
        let env = Envelope {
            from,
            to,
            id,
            digest: hub.digest(&body),
            body,
            accepted_ms: super::super::store::now_ms(),
            text: Utf8Bytes::from_static("{}"),
        };
        assert_eq!(hub.route(env, link, Instant::now()), Route::Live);
        assert!(hub.spill(to, from, id));
        let c = rx.recv().await.expect("spill answer queued");
        let ord = match c.rx.await.expect("store answered") {
            Ok(super::super::store::InsertOutcome::Stored(ord)) => ord,
            r => panic!("{r:?}"),
        };
        assert!(hub.finish_spill(to, from, id, Some(ord), Utf8Bytes::from_static("{}")));
    }

    #[tokio::test]
    async fn held_ids_are_pruned_on_peer_revoke_and_ttl_sweep() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = StoreOptions {
            max_pending: 100,
            ttl: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(3600),
        };
        let store = Arc::new(Store::Sqlite(
            crate::relay::store::Store::open(
                &dir.path().join("relay.db"),
                opts,
                Arc::new(Metrics::default()),
            )
            .expect("store"),
        ));
        let (a, b) = (pk(1), pk(2));
        let hub = Hub::new(Arc::clone(&store), vec![(a, b)], store.next_ord());
        // `b` online and live.
        let (deliver, _deliver_rx) = mpsc::channel(16);
        let (ctrl, _ctrl_rx) = CtrlTx::new(16, CancellationToken::new());
        hub.register(b, 1, deliver, ctrl.clone());
        assert!(hub.try_go_live(&b, 1, 0));
        let (commits, mut rx) = CommitTx::new();
        let link = Arc::new(SenderLink { ctrl, commits });

        held_one(&hub, &link, &mut rx, a, b, 1).await;
        assert_eq!(hub.held_len(), 1);
        hub.remove_pair(&a, &b);
        assert_eq!(hub.held_len(), 0);

        hub.add_pair(a, b);
        held_one(&hub, &link, &mut rx, a, b, 2).await;
        assert_eq!(hub.sweep_held(0), 0, "nothing older than the cutoff");
        assert_eq!(hub.held_len(), 1);
        assert_eq!(hub.sweep_held(super::super::store::now_ms() + 1), 1);
        assert_eq!(hub.held_len(), 0);
        store.close().await;
    }
}
