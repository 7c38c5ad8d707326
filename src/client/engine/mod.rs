//! The client engine: one identity, its state database and its relay links.
//!
//! It turns relay frames into durable state and reports what happened as
//! [`Incoming`] values; command loops (`listen`, `serve`, `send`, invites) decide
//! what to show and when to ack. Invariants:
//! - a delivery is decrypted and stored in one IMMEDIATE transaction together
//!   with the advanced session, after checking `(peer, id)` was not stored
//!   before (so a redelivery is never decrypted or handled twice);
//! - an outgoing message is sealed and written to the outbox, with the advanced
//!   session, before any attempt to send it; every login re-sends the outbox.

mod inbound;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use sha2::Digest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connection::{LinkError, LinkEvent, LinkHandle, LinkOptions};
use super::home::Home;
use super::payload::Payload;
pub use super::receive::Received;
use super::receive::receive;
use super::relay_url::RelayUrl;
pub use super::seal::{seal_in, session_bytes};
use super::store::{self, InboxRow, OutboxRow, PeerRow, Store};
use super::{ClientError, now_secs};
use crate::crypto::{IdentityKeyPair, IdentityPublicKey};
use crate::protocol::{
    ClientFrame, DeliveryStatus, EnvelopeId, ErrorCode, InviteHash, ServerFrame,
};

/// How often pending outbox rows are offered to the relay again (covers
/// `queue_full`, `rate_limited` and frames lost with a dying socket).
const OUTBOX_RETRY: Duration = Duration::from_secs(10);
/// How long a one-shot command waits, in all, for its links to write what is
/// queued (acks) and close ([`Client::close_links`]).
pub const LINK_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the engine reports to a command loop.
#[derive(Debug)]
pub enum Incoming {
    /// Logged in to a relay (after a reconnect too); the outbox was re-sent.
    Up {
        /// Relay.
        relay: RelayUrl,
        /// Whether this was a reconnect.
        reconnect: bool,
        /// Envelopes the relay had queued for us.
        pending: u64,
    },
    /// A relay link dropped; it retries by itself.
    Down {
        /// Relay.
        relay: RelayUrl,
        /// Why.
        reason: String,
        /// Next attempt in.
        retry_in: Duration,
    },
    /// A link gave up.
    Fatal(LinkError),
    /// A text message is stored (state `new`). The caller acks it with
    /// [`Client::ack`] once it is shown or handled.
    Message {
        /// Relay it came through (where the ack goes).
        relay: RelayUrl,
        /// The stored row.
        row: InboxRow,
        /// False when the relay redelivered a message stored earlier and not yet consumed.
        fresh: bool,
        /// Part of the backlog the relay announced at login (sent while we were away).
        backlog: bool,
    },
    /// A guest accepted one of our invites (already acked).
    Paired {
        /// The new peer.
        peer: PeerRow,
    },
    /// An envelope could not be used and was acked away (stranger, undecryptable).
    Dropped {
        /// Sender.
        from: IdentityPublicKey,
        /// Why.
        reason: String,
    },
    /// The peer could not decrypt one of our envelopes (a signed notice from it):
    /// the message is lost to it; the outbox row is marked failed.
    Undecryptable {
        /// Our envelope id.
        id: EnvelopeId,
        /// The peer that could not read it.
        peer: IdentityPublicKey,
    },
    /// The relay has one of our envelopes.
    Sent {
        /// Envelope id.
        id: EnvelopeId,
        /// Delivered or stored.
        status: DeliveryStatus,
    },
    /// The relay refused one of our envelopes for good.
    SendFailed {
        /// Envelope id.
        id: EnvelopeId,
        /// Code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// A peer came online or left.
    Presence {
        /// Peer.
        peer: IdentityPublicKey,
        /// Online now.
        online: bool,
    },
    /// Answer to a request made with [`Client::request`].
    Reply {
        /// Request id.
        rid: String,
        /// `Err` carries the relay's code and message.
        result: Result<(), (ErrorCode, String)>,
    },
}

/// The engine.
#[derive(Debug)]
pub struct Client {
    home: Home,
    identity: Arc<IdentityKeyPair>,
    store: Store,
    links: HashMap<String, LinkHandle>,
    dial_overrides: HashMap<String, RelayUrl>,
    /// Relay keys served by another key's link because both dial the same place
    /// (the relay keeps one connection per identity: two links would evict each other).
    aliases: HashMap<String, String>,
    /// Per relay: queued deliveries announced in `welcome` and not yet received.
    backlog: HashMap<String, u64>,
    up: HashMap<String, bool>,
    events_tx: mpsc::UnboundedSender<LinkEvent>,
    events_rx: mpsc::UnboundedReceiver<LinkEvent>,
    cancel: CancellationToken,
    options: LinkOptions,
    next_rid: u64,
    retry: tokio::time::Interval,
    /// `--retain`: history older than this is deleted (None: keep).
    retain: Option<Duration>,
    /// Deletes expired plaintext while a loop waits in [`Self::next`].
    sweep: tokio::time::Interval,
}

impl Client {
    /// Open the identity and database of `home`. Links stop when `cancel` fires.
    pub fn open(home: &Home, cancel: CancellationToken) -> Result<Self, ClientError> {
        crate::crypto::init().map_err(super::identity::IdentityError::Key)?;
        super::connection::install_tls_provider();
        let identity = super::identity::load(home)?;
        let store = Store::open(&home.db_path())?;
        let mut sweep = tokio::time::interval_at(
            tokio::time::Instant::now() + crate::defaults::HISTORY_SWEEP_INTERVAL,
            crate::defaults::HISTORY_SWEEP_INTERVAL,
        );
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut retry = tokio::time::interval(OUTBOX_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut client = Self {
            home: home.clone(),
            identity: Arc::new(identity),
            store,
            links: HashMap::new(),
            dial_overrides: HashMap::new(),
            aliases: HashMap::new(),
            backlog: HashMap::new(),
            up: HashMap::new(),
            events_tx,
            events_rx,
            cancel,
            options: LinkOptions::default(),
            next_rid: 0,
            retry,
            retain: None,
            sweep,
        };
        // Disappearing messages go at the start of every command, long-running or not.
        client.sweep_expired();
        Ok(client)
    }

    /// The home this client runs in.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Our identity.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// The database.
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Read-only database access.
    pub fn conn(&self) -> &Connection {
        self.store.conn()
    }

    /// The cancellation token links and loops watch.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Keep history for `retain` only (`--retain`); the sweep runs now and then
    /// every [`crate::defaults::HISTORY_SWEEP_INTERVAL`] while [`Self::next`] waits.
    pub fn set_retention(&mut self, retain: Option<Duration>) -> Result<(), ClientError> {
        self.retain = retain;
        super::history::sweep(&mut self.store, retain, super::now_ms())?;
        Ok(())
    }

    /// Delete expired messages. Housekeeping: a busy database is tried again
    /// at the next tick rather than stopping the loop.
    fn sweep_expired(&mut self) {
        if let Err(e) = super::history::sweep(&mut self.store, self.retain, super::now_ms()) {
            tracing::warn!(error = %e, "could not delete expired messages; retrying");
        }
    }

    /// Set how hard new links try before reporting [`Incoming::Fatal`].
    pub fn set_link_options(&mut self, options: LinkOptions) {
        self.options = options;
    }

    /// Reach `relay` (the URL in invites, peers and the outbox) by dialling
    /// `dial` instead: for a host whose relay runs in-process behind a tunnel
    /// (`room open`), so its own traffic stays on loopback. Set before connecting.
    pub fn set_dial_override(&mut self, relay: &RelayUrl, dial: RelayUrl) {
        self.dial_overrides.insert(relay.as_str().to_owned(), dial);
    }

    /// `--server`: dial every peer's (and open invite's) relay at `server`
    /// instead (the same relay reached another way, e.g. a new tunnel address).
    pub fn redirect_all_relays(&mut self, server: &RelayUrl) -> Result<(), ClientError> {
        let mut urls: Vec<String> =
            store::list_peers(self.conn())?.into_iter().map(|p| p.relay_url).collect();
        urls.extend(store::open_invite_relays(self.conn(), now_secs())?);
        for url in urls {
            let relay = RelayUrl::parse(&url)?;
            if &relay != server {
                self.set_dial_override(&relay, server.clone());
            }
        }
        Ok(())
    }

    /// Start a link to `relay` unless one runs already.
    pub fn connect(&mut self, relay: &RelayUrl) -> Result<(), ClientError> {
        if self.links.contains_key(self.link_key(relay.as_str())) {
            return Ok(());
        }
        let dial =
            self.dial_overrides.get(relay.as_str()).cloned().unwrap_or_else(|| relay.clone());
        if let Some((key, _)) = self.links.iter().find(|(_, l)| l.dial() == &dial) {
            self.aliases.insert(relay.as_str().to_owned(), key.clone());
            return Ok(());
        }
        let token = store::get_token(self.store.conn(), relay.as_str(), now_secs())?
            .map(super::connection::SessionToken::new);
        let link = LinkHandle::spawn(
            relay.clone(),
            dial,
            Arc::clone(&self.identity),
            token,
            self.options,
            self.events_tx.clone(),
            self.cancel.child_token(),
        );
        self.links.insert(relay.as_str().to_owned(), link);
        Ok(())
    }

    /// Connect to every relay we may hear from: each peer's, each open invite's.
    pub fn connect_all(&mut self) -> Result<Vec<RelayUrl>, ClientError> {
        let mut urls: Vec<String> =
            store::list_peers(self.store.conn())?.into_iter().map(|p| p.relay_url).collect();
        urls.extend(store::open_invite_relays(self.store.conn(), now_secs())?);
        urls.sort();
        urls.dedup();
        let mut relays = Vec::new();
        for u in urls {
            let relay = RelayUrl::parse(&u)?;
            self.connect(&relay)?;
            relays.push(relay);
        }
        Ok(relays)
    }

    /// Close every link once the frames queued on it are written (acks above
    /// all), waiting at most [`LINK_CLOSE_TIMEOUT`] in all. For one-shot
    /// commands, before they cancel and exit; the store stays usable.
    pub async fn close_links(&mut self) {
        let deadline = tokio::time::Instant::now() + LINK_CLOSE_TIMEOUT;
        let links: Vec<(String, LinkHandle)> = self.links.drain().collect();
        self.aliases.clear();
        for (key, link) in links {
            // A link that is not logged in has nothing to write: drop it at once.
            if self.up.remove(&key).unwrap_or(false) {
                link.close(deadline.saturating_duration_since(tokio::time::Instant::now())).await;
            }
        }
        self.up.clear();
    }

    /// Whether `relay` is logged in right now.
    pub fn is_up(&self, relay: &RelayUrl) -> bool {
        self.up.get(self.link_key(relay.as_str())).copied().unwrap_or(false)
    }

    /// Whether every link is logged in and has handed over the backlog its
    /// relay announced at login (true with no links).
    pub fn caught_up(&self) -> bool {
        self.links.keys().all(|k| {
            self.up.get(k).copied().unwrap_or(false) && self.backlog.get(k).is_some_and(|n| *n == 0)
        })
    }

    /// The key of the link serving `relay`.
    fn link_key<'a>(&'a self, relay: &'a str) -> &'a str {
        self.aliases.get(relay).map_or(relay, String::as_str)
    }

    fn link(&self, relay: &RelayUrl) -> Option<&LinkHandle> {
        self.links.get(self.link_key(relay.as_str()))
    }

    /// Ack a stored message to the relay it came through.
    pub fn ack(&self, relay: &RelayUrl, from: &IdentityPublicKey, id: &EnvelopeId) {
        if let Some(link) = self.link(relay) {
            link.send(ClientFrame::Ack { id: *id, from: *from });
        }
    }

    /// Send a request frame built around a fresh `rid`; the answer comes back as
    /// [`Incoming::Reply`] with that rid.
    pub fn request(
        &mut self,
        relay: &RelayUrl,
        build: impl FnOnce(Option<String>) -> ClientFrame,
    ) -> Result<String, ClientError> {
        self.connect(relay)?;
        self.next_rid += 1;
        let rid = format!("r{}", self.next_rid);
        if let Some(link) = self.link(relay) {
            link.send(build(Some(rid.clone())));
        }
        Ok(rid)
    }

    /// Seal `payload` for `peer`, write it to the outbox with the advanced session
    /// (one transaction), then offer it to the relay. Returns the envelope id.
    pub fn queue(
        &mut self,
        peer: &PeerRow,
        payload: &Payload,
        claim: Option<[u8; 16]>,
    ) -> Result<EnvelopeId, ClientError> {
        let tx = self.store.immediate()?;
        let row = seal_in(&tx, peer, payload, claim)?;
        tx.commit().map_err(store::StoreError::from)?;
        self.offer(&row)?;
        Ok(row.id)
    }

    /// Our relay moved (say, a tunnel came back with a new URL): tell every peer
    /// reached through `from`, through `from` (where they still listen), and
    /// point them at `to` locally. Returns the envelope ids of the notices.
    pub fn announce_relay_moved(
        &mut self,
        from: &RelayUrl,
        to: &RelayUrl,
    ) -> Result<Vec<EnvelopeId>, ClientError> {
        let peers: Vec<PeerRow> = store::list_peers(self.store.conn())?
            .into_iter()
            .filter(|p| p.relay_url == from.as_str())
            .collect();
        let notice = Payload::RelayMoved { relay: to.to_string() };
        let mut ids = Vec::new();
        for peer in peers {
            let tx = self.store.immediate()?;
            store::set_peer_relay(&tx, &peer.pk, to.as_str())?;
            // Sealed after the move so it is the one row still addressed to `from`.
            let row = seal_in(&tx, &peer, &notice, None)?;
            tx.commit().map_err(store::StoreError::from)?;
            self.offer(&row)?;
            ids.push(row.id);
        }
        self.connect(to)?;
        Ok(ids)
    }

    /// Offer an outbox row to its relay (connecting if needed; a link that is
    /// not up yet sends it on login through [`Self::flush`]).
    pub fn offer(&mut self, row: &OutboxRow) -> Result<(), ClientError> {
        let relay = RelayUrl::parse(&row.relay_url)?;
        self.connect(&relay)?;
        if self.is_up(&relay) {
            if let Some(link) = self.link(&relay) {
                link.send(send_frame(row));
            }
        }
        Ok(())
    }

    /// Re-send every pending outbox row for `relay`, oldest first.
    pub fn flush(&mut self, relay: &RelayUrl) -> Result<usize, ClientError> {
        let rows = store::outbox_pending(self.store.conn(), relay.as_str())?;
        if let Some(link) = self.link(relay) {
            for row in &rows {
                link.send(send_frame(row));
            }
        }
        Ok(rows.len())
    }

    /// Wait for the next thing worth reporting. `None` once cancelled.
    pub async fn next(&mut self) -> Result<Option<Incoming>, ClientError> {
        loop {
            let ev = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ok(None),
                ev = self.events_rx.recv() => ev,
                _ = self.retry.tick() => {
                    let up: Vec<String> = self.up.iter().filter(|(_, v)| **v).map(|(k, _)| k.clone()).collect();
                    for u in up {
                        self.flush(&RelayUrl::parse(&u)?)?;
                    }
                    continue;
                }
                _ = self.sweep.tick() => {
                    self.sweep_expired();
                    continue;
                }
            };
            let Some(ev) = ev else { return Ok(None) };
            if let Some(incoming) = self.on_link_event(ev)? {
                return Ok(Some(incoming));
            }
        }
    }

    /// Catch up: connect to every relay we use and take in what they queued for
    /// us while we were away (a guest's hello, say), storing and acking it. Ends
    /// when every link is up with its backlog received, or at `timeout`.
    pub async fn sync(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let relays = self.connect_all()?;
        let caught_up = |c: &Self| {
            relays.iter().all(|r| {
                c.is_up(r) && c.backlog.get(c.link_key(r.as_str())).is_some_and(|n| *n == 0)
            })
        };
        if caught_up(self) {
            return Ok(());
        }
        self.wait_for(timeout, "the relay backlog", |c, _| caught_up(c).then_some(Ok(()))).await
    }

    /// Drive the engine until `f` picks an outcome, for one-shot commands. Text
    /// messages that arrive meanwhile are stored (they wait in the inbox for
    /// `listen`/`serve`) and acked; a link giving up ends the wait.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &'static str,
        mut f: impl FnMut(&mut Self, &Incoming) -> Option<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.next()).await;
            let incoming = match next {
                Err(_) => return Err(ClientError::Timeout(timeout, what)),
                Ok(r) => r?.ok_or(ClientError::Cancelled)?,
            };
            if let Some(result) = f(self, &incoming) {
                return result;
            }
            match incoming {
                Incoming::Message { relay, row, .. } => self.ack(&relay, &row.peer, &row.id),
                Incoming::Fatal(e) => return Err(e.into()),
                _ => {}
            }
        }
    }
}

fn send_frame(row: &OutboxRow) -> ClientFrame {
    ClientFrame::Send {
        id: row.id,
        to: row.peer,
        body: row.body.clone(),
        claim: row.claim.map(crate::protocol::frames::InviteIdClaim),
    }
}

/// SHA-256 of an invite id: what `invite_publish`/`invite_revoke` carry.
pub fn invite_hash(id: &[u8; 16]) -> InviteHash {
    InviteHash(sha2::Sha256::digest(id).into())
}
