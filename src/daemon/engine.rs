//! The daemon's engine: the one [`Client`] of the home, on its own OS thread
//! with a single-threaded runtime. It keeps a link to every relay of the home
//! up, stores and acks incoming envelopes (store-then-ack: the inbox is
//! durable, consumers take messages from it through leases), publishes events,
//! and runs the API calls that need the engine (send, reply, invites) one at a
//! time. Its SQLite work blocks only this thread, never the API's runtime.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::held_sends::{self, HeldSends, sleep_until_some};
use super::lease;
use super::types::{ApiMessage, DaemonEvent, HandlerReport, PeerRef, RelayStatus, SendStatus};
use crate::client::connection::LinkOptions;
use crate::client::engine::seal_in;
use crate::client::invites::{self, Accepted};
use crate::client::payload::{MAX_TEXT_BYTES, Payload};
use crate::client::relay_url::RelayUrl;
use crate::client::store::{self, InviteRow, PeerRow};
use crate::client::{Client, ClientError, Incoming, peers};
use crate::crypto::{IdentityPublicKey, fingerprint};
use crate::protocol::{DeliveryStatus, EnvelopeId};

/// How often peers and open invites are re-read and links that gave up restarted.
const RELINK_EVERY: Duration = Duration::from_secs(30);
/// Pause after an engine error so a broken database cannot spin the loop.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Shared with the API.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// Every event, to every subscriber.
    pub(crate) events: broadcast::Sender<DaemonEvent>,
    /// Woken whenever a message is stored.
    pub(crate) arrived: Arc<Notify>,
    /// Link state per relay (a std mutex: held for a copy, never across an await).
    pub(crate) links: Arc<Mutex<BTreeMap<String, RelayStatus>>>,
    /// Envelope ids whose reply a `send` waits for (never leased to consumers).
    pub(crate) awaited: Arc<Mutex<HashSet<String>>>,
    /// The first events of this daemon, for a subscriber that asks for a
    /// replay: the consumer that started the daemon subscribes only after the
    /// links (and their `connected`, `paired`, `dropped`) are already up.
    pub(crate) early: Arc<Mutex<Vec<DaemonEvent>>>,
    /// Set by the web view's pause switch: no message is leased while true.
    pub(crate) paused: Arc<std::sync::atomic::AtomicBool>,
    /// Envelope ids whose reply a caller leases itself (`hold_reply_ms`),
    /// with when the hold ends: kept from other consumers until then.
    pub(crate) held: Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        let (events, _) = broadcast::channel(super::EVENT_BUFFER);
        Self {
            events,
            arrived: Arc::new(Notify::new()),
            links: Arc::new(Mutex::new(BTreeMap::new())),
            awaited: Arc::new(Mutex::new(HashSet::new())),
            early: Arc::new(Mutex::new(Vec::new())),
            paused: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            held: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn emit(&self, ev: DaemonEvent) {
        // Under the lock, so a replaying subscriber gets each event exactly once.
        let mut early = self.early.lock().expect("the early-events lock is never poisoned");
        if early.len() < super::EARLY_EVENTS {
            early.push(ev.clone());
        }
        let _ = self.events.send(ev);
    }

    /// Subscribe, with the early events when `replay`.
    pub(crate) fn subscribe(
        &self,
        replay: bool,
    ) -> (Vec<DaemonEvent>, broadcast::Receiver<DaemonEvent>) {
        let early = self.early.lock().expect("the early-events lock is never poisoned");
        let rx = self.events.subscribe();
        (if replay { early.clone() } else { Vec::new() }, rx)
    }

    pub(crate) fn awaited_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.awaited.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default();
        if let Ok(mut held) = self.held.lock() {
            let now = tokio::time::Instant::now();
            held.retain(|(_, until)| *until > now);
            ids.extend(held.iter().map(|(id, _)| id.clone()));
        }
        ids
    }
}

/// A message queued by [`Job::Send`].
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) peer: PeerRow,
    pub(crate) id: EnvelopeId,
    /// With `wait_reply`: the reply, once it arrives.
    pub(crate) reply: Option<oneshot::Receiver<ApiMessage>>,
}

/// What an ack with a reply achieved.
#[derive(Debug)]
pub(crate) enum Replied {
    /// Consumed; the reply (if any) is queued.
    Acked(Option<EnvelopeId>),
    /// Consumed earlier; nothing sent.
    AlreadyAcked,
    /// No message holds this lease.
    Unknown,
}

/// A call the engine runs.
#[derive(Debug)]
pub(crate) enum Job {
    Send {
        peer: String,
        text: String,
        wait_reply: bool,
        hold_reply: Option<Duration>,
        done: oneshot::Sender<Result<Queued, ClientError>>,
    },
    Ack {
        lease_id: String,
        reply: Option<String>,
        handler: Option<HandlerReport>,
        done: oneshot::Sender<Result<Replied, ClientError>>,
    },
    InviteCreate {
        relay: RelayUrl,
        via: Option<RelayUrl>,
        ttl: Duration,
        label: Option<String>,
        done: oneshot::Sender<Result<InviteRow, ClientError>>,
    },
    InviteAccept {
        invite: String,
        label: Option<String>,
        done: oneshot::Sender<Result<Accepted, ClientError>>,
    },
    InviteRevoke {
        id: String,
        done: oneshot::Sender<Result<(InviteRow, bool), ClientError>>,
    },
    PeerRemove {
        peer: String,
        done: oneshot::Sender<Result<(PeerRow, bool), ClientError>>,
    },
    RoomOpen {
        port: u16,
        local: RelayUrl,
        public: RelayUrl,
        ttl: Duration,
        label: Option<String>,
        done: oneshot::Sender<Result<super::room::Opened, ClientError>>,
    },
    RoomMoved {
        local: RelayUrl,
        public: RelayUrl,
        previous: String,
        invite_id: String,
        ttl: Duration,
        label: Option<String>,
        done: oneshot::Sender<Result<super::room::Moved, ClientError>>,
    },
}

struct Waiter {
    id: EnvelopeId,
    peer: IdentityPublicKey,
    tx: oneshot::Sender<ApiMessage>,
}

pub(crate) struct Engine {
    client: Client,
    jobs: mpsc::Receiver<Job>,
    shared: Shared,
    waiters: Vec<Waiter>,
    /// Highest inbox seq announced as `received`.
    announced: i64,
    /// Relays that had their first login (later logins are reconnects).
    seen_up: HashSet<String>,
    held_sends: HeldSends,
}

impl Engine {
    pub(crate) fn new(
        mut client: Client,
        jobs: mpsc::Receiver<Job>,
        shared: Shared,
    ) -> Result<Self, ClientError> {
        // Never give up on a relay while the daemon runs.
        client.set_link_options(LinkOptions {
            give_up_after: u32::MAX,
            yield_when_replaced: Duration::ZERO,
        });
        let announced = lease::last_seq(client.conn())?;
        Ok(Self {
            client,
            jobs,
            shared,
            waiters: Vec::new(),
            announced,
            seen_up: HashSet::new(),
            held_sends: HeldSends::default(),
        })
    }

    /// Dial every relay of the home and list them in the link table. Done
    /// before the daemon answers anyone: a consumer that asks for the status
    /// right after start sees the home's relays (not "no peers").
    pub(crate) fn start_links(&mut self) {
        self.relink();
    }

    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let mut relink = tokio::time::interval(RELINK_EVERY);
        relink.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            enum Step {
                Stop,
                Job(Job),
                Relink,
                Event(Result<Option<Incoming>, ClientError>),
                HeldExpire,
            }
            let held_until = self.held_sends.deadline();
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => Step::Stop,
                job = self.jobs.recv() => job.map_or(Step::Stop, Step::Job),
                _ = relink.tick() => Step::Relink,
                ev = self.client.next() => Step::Event(ev),
                () = sleep_until_some(held_until) => Step::HeldExpire,
            };
            match step {
                Step::Stop => break,
                Step::HeldExpire => {}
                Step::Job(job) => self.run_job(job).await,
                Step::Relink => self.relink(),
                Step::Event(Ok(Some(inc))) => self.on_incoming(inc),
                Step::Event(Ok(None)) => break,
                Step::Event(Err(e)) => {
                    tracing::warn!(error = %e, "engine error; continuing");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
            // A job or an event usually queued a frame for a link (a sealed
            // message, an ack). The links run on this thread: let them write
            // it before the inbox is read, or the relay (and the peer
            // waiting on it) waits for those reads too.
            tokio::task::yield_now().await;
            if let Err(e) = self.announce() {
                tracing::warn!(error = %e, "cannot read the inbox");
            }
            self.retry_held_sends();
        }
        tracing::debug!("daemon engine stopped");
    }

    fn relink(&mut self) {
        match self.client.connect_all() {
            Ok(relays) => {
                if let Ok(mut links) = self.shared.links.lock() {
                    for r in relays {
                        let up = self.client.is_up(&r);
                        let e = links.entry(r.as_str().to_owned()).or_default();
                        e.url = r.to_string();
                        e.up = up;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list relays to connect to"),
        }
    }

    fn set_link(&self, relay: &RelayUrl, f: impl FnOnce(&mut RelayStatus)) {
        if let Ok(mut links) = self.shared.links.lock() {
            let e = links.entry(relay.as_str().to_owned()).or_default();
            e.url = relay.to_string();
            f(e);
        }
    }

    fn peer_ref(&self, pk: &IdentityPublicKey) -> PeerRef {
        let row = store::get_peer(self.client.conn(), pk).ok().flatten();
        let safety = crate::crypto::safety_number(&self.client.identity().public(), pk);
        PeerRef {
            pk: pk.to_b64u(),
            verified: row.as_ref().is_some_and(|r| r.verified(&safety)),
            label: row.and_then(|r| r.label),
            fingerprint: fingerprint(pk),
            safety_number: None,
        }
    }

    /// Publish every text message stored since the last call, and hand the
    /// replies `send` waits for to their waiters (consuming them).
    fn announce(&mut self) -> Result<(), ClientError> {
        self.waiters.retain(|w| !w.tx.is_closed());
        let rows = lease::text_since(self.client.conn(), self.announced)?;
        if rows.is_empty() {
            self.sync_awaited();
            return Ok(());
        }
        for row in rows {
            self.announced = row.seq;
            let peer = store::get_peer(self.client.conn(), &row.peer)?;
            let message = ApiMessage::from_row(&row, peer.as_ref());
            self.shared.emit(DaemonEvent::Received { message: message.clone() });
            let waiter = self.waiters.iter().position(|w| {
                w.peer == row.peer
                    && row.reply_to == Some(w.id)
                    && row.state == store::InboxState::New
            });
            if let Some(i) = waiter {
                let w = self.waiters.swap_remove(i);
                // Consumed by the waiting `send`; lost with the OS it is only
                // offered again (at least once), so no fsync of its own.
                let seq = row.seq;
                if self.client.store().relaxed(|tx| store::inbox_done(tx, seq))? {
                    let _ = w.tx.send(message);
                }
            }
        }
        self.sync_awaited();
        self.shared.arrived.notify_waiters();
        Ok(())
    }

    fn sync_awaited(&self) {
        if let Ok(mut set) = self.shared.awaited.lock() {
            set.clear();
            set.extend(self.waiters.iter().map(|w| w.id.to_b64u()));
        }
    }

    fn on_incoming(&mut self, inc: Incoming) {
        let ev = match inc {
            Incoming::Message { relay, row, .. } => {
                // Stored already (store-then-ack); consumers take it through a lease.
                self.client.ack(&relay, &row.peer, &row.id);
                return;
            }
            Incoming::Up { relay, pending, .. } => {
                tracing::info!(relay = %relay, pending, "relay link up");
                self.set_link(&relay, |l| l.up = true);
                let first = self.seen_up.insert(relay.as_str().to_owned());
                let relay = relay.to_string();
                if first {
                    DaemonEvent::Connected { relay, pending }
                } else {
                    DaemonEvent::Reconnect { relay, pending }
                }
            }
            Incoming::Down { relay, reason, retry_in } => {
                tracing::info!(relay = %relay, %reason, ?retry_in, "relay link down; retrying");
                self.set_link(&relay, |l| {
                    l.up = false;
                    l.last_error = Some(reason.clone());
                });
                DaemonEvent::Disconnect {
                    relay: relay.to_string(),
                    reason,
                    retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                }
            }
            Incoming::Fatal(e) => {
                tracing::warn!(error = %e, "relay link gave up; retrying later");
                return;
            }
            Incoming::Paired { peer } => {
                let safety =
                    crate::crypto::safety_number(&self.client.identity().public(), &peer.pk);
                DaemonEvent::Paired {
                    peer: PeerRef {
                        pk: peer.pk.to_b64u(),
                        label: peer.label.clone(),
                        fingerprint: fingerprint(&peer.pk),
                        // A re-pairing of the same key keeps its mark.
                        verified: peer.verified(&safety),
                        safety_number: Some(safety),
                    },
                }
            }
            Incoming::Dropped { from, reason } => {
                DaemonEvent::Dropped { from: from.to_b64u(), reason }
            }
            Incoming::Sent { id, status } => {
                DaemonEvent::Sent { id: id.to_b64u(), status: send_status(status) }
            }
            Incoming::SendFailed { id, code, message } => {
                DaemonEvent::SendFailed { id: id.to_b64u(), code: code.as_str().into(), message }
            }
            Incoming::Undecryptable { id, peer } => DaemonEvent::SendFailed {
                id: id.to_b64u(),
                code: crate::client::events::UNDECRYPTABLE.into(),
                message: format!(
                    "{} could not decrypt this message (its session with us was reset or lost); pair again to reach it",
                    peer.fmt_short()
                ),
            },
            Incoming::Presence { peer, online } => {
                DaemonEvent::PeerOnline { peer: self.peer_ref(&peer), online }
            }
            Incoming::Reply { .. } => return,
        };
        self.shared.emit(ev);
    }

    async fn run_job(&mut self, job: Job) {
        match job {
            // These only use links the home has: `offer` dials its own.
            Job::Send { peer, text, wait_reply, hold_reply, done } => {
                let outcome = self.send(&peer, &text, wait_reply, hold_reply);
                if held_sends::unknown_name(&outcome) && !self.client.caught_up() {
                    self.held_sends.hold(peer, text, wait_reply, hold_reply, done);
                } else {
                    let _ = done.send(outcome);
                }
                return;
            }
            Job::Ack { lease_id, reply, handler, done } => {
                let _ = done.send(self.ack(&lease_id, reply, handler));
                return;
            }
            Job::InviteCreate { relay, via: Some(via), ttl, label, done } => {
                let r = invites::create_via(&mut self.client, &relay, &via, ttl, label).await;
                let _ = done.send(r);
            }
            Job::InviteCreate { relay, via: None, ttl, label, done } => {
                let r = invites::create(&mut self.client, &relay, ttl, label).await;
                let _ = done.send(r.map(|c| c.row));
            }
            Job::InviteAccept { invite, label, done } => {
                let r = invites::accept(&mut self.client, &invite, label).await;
                let _ = done.send(r);
            }
            Job::InviteRevoke { id, done } => {
                let r = invites::revoke(&mut self.client, &id).await;
                let _ = done.send(r);
            }
            Job::PeerRemove { peer, done } => {
                let r = peers::remove_and_unpair(&mut self.client, &peer).await;
                let _ = done.send(r);
            }
            Job::RoomOpen { port, local, public, ttl, label, done } => {
                let r =
                    super::room::open(&mut self.client, port, &local, &public, ttl, label).await;
                // Link the room's relay before answering: the room's consumer
                // reads the daemon's relays right after.
                self.relink();
                let _ = done.send(r);
            }
            Job::RoomMoved { local, public, previous, invite_id, ttl, label, done } => {
                let c = &mut self.client;
                let r =
                    super::room::moved(c, &local, &public, &previous, &invite_id, ttl, label).await;
                let _ = done.send(r);
            }
        }
        // These may have added a relay (accept, a room) or logged one in meanwhile.
        self.relink();
    }

    fn retry_held_sends(&mut self) {
        if self.held_sends.is_empty() {
            return;
        }
        let caught_up = self.client.caught_up();
        let mut held = std::mem::take(&mut self.held_sends);
        held.retry(caught_up, |h| self.send(&h.peer, &h.text, h.wait_reply, h.hold_reply));
        self.held_sends = held;
    }

    /// Seal into the outbox and offer; the API waits for the relay's `sent`.
    fn send(
        &mut self,
        query: &str,
        text: &str,
        wait_reply: bool,
        hold_reply: Option<Duration>,
    ) -> Result<Queued, ClientError> {
        let peer = peers::resolve(self.client.conn(), query)?;
        if text.len() > MAX_TEXT_BYTES {
            return Err(ClientError::TooLarge(text.len()));
        }
        let payload = Payload::Text { text: text.to_owned(), reply_to: None };
        let tx = self.client.store().immediate()?;
        let row = seal_in(&tx, &peer, &payload, None)?;
        tx.commit().map_err(store::StoreError::from)?;
        // Register before offering: the reply can come back within a millisecond.
        let reply = wait_reply.then(|| {
            let (tx, rx) = oneshot::channel();
            self.waiters.push(Waiter { id: row.id, peer: peer.pk, tx });
            self.sync_awaited();
            rx
        });
        if let (Some(hold), Ok(mut held)) = (hold_reply, self.shared.held.lock()) {
            held.push((row.id.to_b64u(), tokio::time::Instant::now() + hold));
        }
        self.client.offer(&row)?;
        Ok(Queued { peer, id: row.id, reply })
    }

    /// Consume the leased message; with a reply, seal it in the same
    /// transaction, so a message is answered at most once.
    fn ack(
        &mut self,
        lease_id: &str,
        reply: Option<String>,
        handler: Option<HandlerReport>,
    ) -> Result<Replied, ClientError> {
        if let Some(text) = &reply {
            if text.len() > MAX_TEXT_BYTES {
                return Err(ClientError::TooLarge(text.len()));
            }
        }
        let tx = self.client.store().immediate()?;
        let Some((seq, from, id)) = lease::leased_row(&tx, lease_id)? else {
            drop(tx);
            return Ok(match lease::ack(self.client.conn(), lease_id)? {
                lease::AckOutcome::Unknown => Replied::Unknown,
                _ => Replied::AlreadyAcked,
            });
        };
        let peer = store::get_peer(&tx, &from)?;
        let out = match (&reply, &peer) {
            (Some(text), Some(p)) => Some(seal_in(
                &tx,
                p,
                &Payload::Text { text: text.clone(), reply_to: Some(id) },
                None,
            )?),
            _ => None,
        };
        lease::consume(&tx, seq)?;
        tx.commit().map_err(store::StoreError::from)?;
        let (msg_id, from_s) = (id.to_b64u(), from.to_b64u());
        let ev = match (&out, reply, handler) {
            (Some(row), Some(text), _) => {
                self.client.offer(row)?;
                DaemonEvent::Replied { id: row.id.to_b64u(), reply_to: msg_id, to: from_s, text }
            }
            (_, _, Some(HandlerReport::Error { exit_code, signal, timed_out, stderr })) => {
                DaemonEvent::HandlerError {
                    id: msg_id,
                    from: from_s,
                    exit_code,
                    signal,
                    timed_out,
                    stderr,
                }
            }
            (_, _, Some(HandlerReport::NoReply)) => {
                DaemonEvent::NoReply { id: msg_id, from: from_s }
            }
            // A plain consumption (`listen`): nothing to report.
            _ => return Ok(Replied::Acked(None)),
        };
        self.shared.emit(ev);
        Ok(Replied::Acked(out.map(|r| r.id)))
    }
}

pub(crate) fn send_status(s: DeliveryStatus) -> SendStatus {
    match s {
        DeliveryStatus::Delivered => SendStatus::Delivered,
        DeliveryStatus::Stored => SendStatus::Stored,
    }
}
