//! The router: who is online, who is paired, and which live envelopes wait for an ack.
//!
//! One `std::sync::Mutex` guards it all; it is held only for map updates and
//! non-blocking channel pushes, never across an `.await` (mini-redis `db.rs`
//! reasoning: short critical sections beat an async lock).
//!
//! ## Ordering between the live path and the queue
//! A recipient's connection is either *live* (new envelopes are pushed straight
//! into its bounded queue) or *draining* (new envelopes go to SQLite and the
//! connection reads them back in `seq` order). A connection starts draining at
//! login and turns live only when it has read past every committed row and no
//! insert for it is in flight; an overflowing queue turns it back to draining.
//! So envelopes from one sender reach the recipient in the order they were accepted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};

use super::store::{InsertOutcome, Store, StoreError};
use crate::crypto::IdentityPublicKey;
use crate::protocol::{DeliveryStatus, EnvelopeId, ServerFrame, encode_frame};

/// Ids remembered after their envelope was delivered, so a late duplicate `send`
/// is answered `sent` instead of being delivered twice.
const RECENT_IDS: usize = 65_536;

/// A `deliver` frame for the live path, already encoded.
#[derive(Debug)]
pub(crate) struct LiveItem {
    pub(crate) from: IdentityPublicKey,
    pub(crate) id: EnvelopeId,
    pub(crate) text: Utf8Bytes,
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

pub(crate) type CtrlTx = mpsc::UnboundedSender<Ctrl>;

struct ConnEntry {
    conn_id: u64,
    deliver: mpsc::Sender<LiveItem>,
    ctrl: CtrlTx,
    draining: bool,
}

#[derive(Default)]
struct RecipState {
    inserts_in_flight: u32,
    max_committed_seq: i64,
}

enum InflightState {
    Live,
    Spilling { acked: bool },
}

struct Inflight {
    state: InflightState,
    /// The recipient connection that got it live.
    recipient_conn: u64,
    sender_ctrl: CtrlTx,
    accepted: Instant,
}

type InflightKey = (IdentityPublicKey, IdentityPublicKey, EnvelopeId); // (to, from, id)

#[derive(Default)]
struct Inner {
    conns: HashMap<IdentityPublicKey, ConnEntry>,
    recips: HashMap<IdentityPublicKey, RecipState>,
    pairs: HashMap<IdentityPublicKey, HashSet<IdentityPublicKey>>,
    inflight: HashMap<InflightKey, Inflight>,
    recent: HashMap<(IdentityPublicKey, EnvelopeId), IdentityPublicKey>,
    /// Delivered live, then committed after the ack window, not acked yet: a resend
    /// must go through the store (which answers it as a duplicate), not live again.
    held: HashMap<(IdentityPublicKey, EnvelopeId), IdentityPublicKey>,
    recent_order: VecDeque<(IdentityPublicKey, EnvelopeId)>,
}

impl Inner {
    fn remember(&mut self, from: IdentityPublicKey, id: EnvelopeId, to: IdentityPublicKey) {
        if self.recent.insert((from, id), to).is_none() {
            self.recent_order.push_back((from, id));
            if self.recent_order.len() > RECENT_IDS {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
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
    /// Delivered recently to this recipient (`true`) or to another one (`false`: conflict).
    DuplicateDone(bool),
}

/// The shared router.
pub(crate) struct Hub {
    inner: Mutex<Inner>,
    store: Arc<Store>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

pub(crate) fn sent_frame(id: EnvelopeId, status: DeliveryStatus) -> Utf8Bytes {
    encode_frame(&ServerFrame::Sent { id, status }).into()
}

impl Hub {
    pub(crate) fn new(
        store: Arc<Store>,
        pairs: Vec<(IdentityPublicKey, IdentityPublicKey)>,
    ) -> Self {
        let mut inner = Inner {
            // Sized once for the steady state. Grown on demand, the map (80-byte
            // buckets) doubled to 262,144 buckets long after it filled, when
            // insert/remove tombstones ran out its room: a one-off 21 MiB allocation
            // next to the old 10 MiB table (peak RSS +20 MiB) and a rehash of 65,536
            // entries under the lock. With half the table free it rehashes in place.
            recent: HashMap::with_capacity(RECENT_IDS * 2),
            recent_order: VecDeque::with_capacity(RECENT_IDS + 1),
            ..Inner::default()
        };
        for (a, b) in pairs {
            inner.pairs.entry(a).or_default().insert(b);
            inner.pairs.entry(b).or_default().insert(a);
        }
        Self { inner: Mutex::new(inner), store }
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

    pub(crate) fn remove_pair(&self, a: &IdentityPublicKey, b: &IdentityPublicKey) {
        let mut g = self.lock();
        if let Some(s) = g.pairs.get_mut(a) {
            s.remove(b);
        }
        if let Some(s) = g.pairs.get_mut(b) {
            s.remove(a);
        }
    }

    /// The control channel of `who` if online.
    pub(crate) fn ctrl_of(&self, who: &IdentityPublicKey) -> Option<CtrlTx> {
        self.lock().conns.get(who).map(|c| c.ctrl.clone())
    }

    /// Make this connection the one for `me` (a previous one is told to close).
    /// Returns the paired peers that are online. The connection starts draining.
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
            let _ = old.ctrl.send(Ctrl::Replaced);
        }
        let peers: Vec<IdentityPublicKey> =
            g.pairs.get(&me).map(|s| s.iter().copied().collect()).unwrap_or_default();
        peers.into_iter().filter_map(|p| g.conns.get(&p).map(|c| (p, c.ctrl.clone()))).collect()
    }

    /// Forget this connection if it is still the current one for `me`; returns the
    /// online peers to tell, or `None` if a newer connection had replaced it.
    pub(crate) fn unregister(&self, me: &IdentityPublicKey, conn_id: u64) -> Option<Vec<CtrlTx>> {
        let mut g = self.lock();
        if g.conns.get(me).is_none_or(|c| c.conn_id != conn_id) {
            return None;
        }
        g.conns.remove(me);
        let peers = g.pairs.get(me).cloned().unwrap_or_default();
        Some(peers.iter().filter_map(|p| g.conns.get(p).map(|c| c.ctrl.clone())).collect())
    }

    /// Decide how a `send` travels. On [`Route::Live`] the envelope is already queued
    /// to the recipient and registered as in flight.
    pub(crate) fn route(
        &self,
        from: IdentityPublicKey,
        to: IdentityPublicKey,
        item: LiveItem,
        sender_ctrl: &CtrlTx,
        now: Instant,
    ) -> Route {
        let id = item.id;
        let mut g = self.lock();
        if let Some(prev_to) = g.recent.get(&(from, id)) {
            return Route::DuplicateDone(*prev_to == to);
        }
        if let Some(f) = g.inflight.get_mut(&(to, from, id)) {
            // The latest asker gets the answer: a sender that reconnected and resent
            // must not wait on a `sent` addressed to its dead connection.
            f.sender_ctrl = sender_ctrl.clone();
            return Route::DuplicateInFlight;
        }
        let held = g.held.contains_key(&(from, id));
        if let Some(c) = g.conns.get_mut(&to).filter(|_| !held) {
            if !c.draining {
                let recipient_conn = c.conn_id;
                match c.deliver.try_send(item) {
                    Ok(()) => {
                        g.inflight.insert(
                            (to, from, id),
                            Inflight {
                                state: InflightState::Live,
                                recipient_conn,
                                sender_ctrl: sender_ctrl.clone(),
                                accepted: now,
                            },
                        );
                        return Route::Live;
                    }
                    Err(_) => {
                        // Slow reader: from now on it catches up from SQLite.
                        c.draining = true;
                    }
                }
            }
        }
        g.recips.entry(to).or_default().inserts_in_flight += 1;
        Route::Store
    }

    /// A queued insert for `to` finished (`seq` if a row is there now).
    pub(crate) fn finish_store(&self, to: &IdentityPublicKey, seq: Option<i64>) {
        let mut g = self.lock();
        let r = g.recips.entry(*to).or_default();
        r.inserts_in_flight = r.inserts_in_flight.saturating_sub(1);
        if let Some(s) = seq {
            r.max_committed_seq = r.max_committed_seq.max(s);
        }
        if let Some(c) = g.conns.get(to) {
            let _ = c.ctrl.send(Ctrl::StoreHasData);
        }
    }

    /// A draining connection has read through `last_seq` and found nothing newer:
    /// switch it to live if no insert for it is still on its way to disk.
    pub(crate) fn try_go_live(&self, me: &IdentityPublicKey, conn_id: u64, last_seq: i64) -> bool {
        let mut g = self.lock();
        let quiet = g
            .recips
            .get(me)
            .is_none_or(|r| r.inserts_in_flight == 0 && r.max_committed_seq <= last_seq);
        match g.conns.get_mut(me) {
            Some(c) if c.conn_id == conn_id && quiet => {
                c.draining = false;
                true
            }
            _ => false,
        }
    }

    /// The recipient `me` acked `(from, id)`. Answers the sender if it still waits,
    /// deletes the stored copy otherwise. Returns the live delivery latency.
    pub(crate) fn ack(
        &self,
        me: IdentityPublicKey,
        from: IdentityPublicKey,
        id: EnvelopeId,
        now: Instant,
    ) -> Option<Duration> {
        let mut g = self.lock();
        let key = (me, from, id);
        let latency = match g.inflight.get_mut(&key) {
            Some(f) => {
                let latency = now.saturating_duration_since(f.accepted);
                let _ = f.sender_ctrl.send(Ctrl::Frame(sent_frame(id, DeliveryStatus::Delivered)));
                match &mut f.state {
                    InflightState::Live => {
                        g.inflight.remove(&key);
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
        g.remember(from, id, me);
        latency
    }

    /// The ack window passed: commit a live envelope to disk. Returns the pending
    /// commit, or `None` if it was acked meanwhile.
    pub(crate) fn spill(
        &self,
        to: IdentityPublicKey,
        from: IdentityPublicKey,
        id: EnvelopeId,
        body: Vec<u8>,
        accepted_ms: u64,
    ) -> Option<oneshot::Receiver<Result<InsertOutcome, StoreError>>> {
        let mut g = self.lock();
        let f = g.inflight.get_mut(&(to, from, id))?;
        if !matches!(f.state, InflightState::Live) {
            return None;
        }
        f.state = InflightState::Spilling { acked: false };
        // Counted like a queued insert: a connection that replaced the one that got
        // this envelope live must not turn live before the row is readable.
        g.recips.entry(to).or_default().inserts_in_flight += 1;
        // Enqueued under the lock: an ack that follows queues its delete after this.
        Some(self.store.insert(to, from, id, body, accepted_ms, true))
    }

    /// A spill committed (`seq` if the row is there) or failed: answer the sender
    /// unless the recipient acked first. If the envelope went live to a connection
    /// that is gone, the recipient's current connection reads it from the queue.
    pub(crate) fn finish_spill(
        &self,
        to: IdentityPublicKey,
        from: IdentityPublicKey,
        id: EnvelopeId,
        seq: Option<i64>,
        frame: Utf8Bytes,
    ) -> bool {
        let mut g = self.lock();
        let r = g.recips.entry(to).or_default();
        r.inserts_in_flight = r.inserts_in_flight.saturating_sub(1);
        if let Some(s) = seq {
            r.max_committed_seq = r.max_committed_seq.max(s);
        }
        let Some(f) = g.inflight.remove(&(to, from, id)) else {
            return false;
        };
        if let Some(c) = g.conns.get_mut(&to) {
            if c.conn_id != f.recipient_conn && seq.is_some() {
                c.draining = true;
                let _ = c.ctrl.send(Ctrl::StoreHasData);
            }
        }
        if matches!(f.state, InflightState::Spilling { acked: false }) {
            if seq.is_some() {
                g.held.insert((from, id), to);
            }
            let _ = f.sender_ctrl.send(Ctrl::Frame(frame));
            return true;
        }
        false
    }

    /// Connections and identities online.
    pub(crate) fn online(&self) -> usize {
        self.lock().conns.len()
    }
}
