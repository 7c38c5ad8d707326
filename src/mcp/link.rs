//! The background half of `agentroom mcp`: one task owns the [`Client`], keeps
//! a link to every relay of this home up (reconnecting with the link's own
//! backoff), stores and acks incoming envelopes, and runs the tool calls that
//! need the engine (send, invites) one at a time.
//!
//! Tools that only read (next_message, ack, peers, status) use their own
//! database connection and the [`LinkSnapshot`], so they answer even while a
//! send waits for the relay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::client::connection::LinkOptions;
use crate::client::invites::{self, Accepted, CreatedInvite};
use crate::client::relay_url::RelayUrl;
use crate::client::send;
use crate::client::store::PeerRow;
use crate::client::{Client, ClientError, Incoming};
use crate::protocol::{DeliveryStatus, EnvelopeId};

/// How often the task re-reads peers and open invites and restarts links that
/// gave up (a relay that refused us, or one added by another process).
const RELINK_EVERY: Duration = Duration::from_secs(30);

/// Pause after an engine error so a broken database cannot spin the loop.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// How long `send` waits for the relay when its link is down at call time:
/// the message is in the outbox already, so the agent hears "queued" soon
/// instead of waiting out the full relay timeout.
const QUEUED_WAIT: Duration = Duration::from_secs(5);

/// A message handed to the engine.
#[derive(Debug)]
pub(crate) struct Sent {
    /// Recipient.
    pub(crate) peer: PeerRow,
    /// Envelope id.
    pub(crate) id: EnvelopeId,
    /// What the relay said; `None`: not yet, the message waits in the outbox
    /// and goes out when the link is back (reporting it as an error would make
    /// the agent send it twice).
    pub(crate) status: Option<DeliveryStatus>,
}

/// A tool call the engine runs.
#[derive(Debug)]
pub(crate) enum Job {
    /// `send` without waiting for a reply (replies are leased like any message).
    Send {
        /// Peer query.
        peer: String,
        /// Text.
        text: String,
        /// Answer.
        done: oneshot::Sender<Result<Sent, ClientError>>,
    },
    /// `invite_create`.
    InviteCreate {
        /// Relay.
        relay: RelayUrl,
        /// Lifetime.
        ttl: Duration,
        /// Label for the guest.
        label: Option<String>,
        /// Answer.
        done: oneshot::Sender<Result<CreatedInvite, ClientError>>,
    },
    /// `invite_accept`.
    InviteAccept {
        /// The invite string.
        invite: String,
        /// Label for the host.
        label: Option<String>,
        /// Answer.
        done: oneshot::Sender<Result<Accepted, ClientError>>,
    },
}

/// One relay's link as the tools report it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayLink {
    /// Logged in right now.
    pub(crate) up: bool,
    /// Why the link last went down, if it did.
    pub(crate) last_error: Option<String>,
    /// Envelopes the relay held for us at the last login.
    pub(crate) pending_at_login: Option<u64>,
}

/// What the link task publishes for the tools.
#[derive(Debug, Default)]
pub(crate) struct LinkSnapshot {
    /// By relay URL.
    pub(crate) relays: BTreeMap<String, RelayLink>,
}

/// The tools' handle on the link task.
#[derive(Debug, Clone)]
pub(crate) struct LinkHandle {
    jobs: mpsc::Sender<Job>,
    /// Woken whenever a message is stored.
    pub(crate) arrived: Arc<Notify>,
    /// Link state per relay.
    pub(crate) snapshot: Arc<Mutex<LinkSnapshot>>,
}

impl LinkHandle {
    /// Queue a job; `false` when the task has ended (server shutting down).
    pub(crate) async fn submit(&self, job: Job) -> bool {
        self.jobs.send(job).await.is_ok()
    }

    /// A copy of the link state.
    pub(crate) fn relays(&self) -> BTreeMap<String, RelayLink> {
        self.snapshot.lock().map(|s| s.relays.clone()).unwrap_or_default()
    }
}

/// Build the task and its handle. The task future is not `Send` (the engine
/// holds a SQLite connection across awaits, as every client command does), so
/// the caller polls it beside the MCP service instead of spawning it. It runs
/// until `cancel` fires or every [`LinkHandle`] is dropped.
pub(crate) fn new(
    mut client: Client,
    cancel: CancellationToken,
) -> (LinkHandle, impl Future<Output = ()>) {
    // Never give up on a relay while the server runs: the host agent may call
    // next_message for hours, and the relay may come back at any time.
    client.set_link_options(LinkOptions::long_running());
    let (jobs, rx) = mpsc::channel(16);
    let handle = LinkHandle {
        jobs,
        arrived: Arc::new(Notify::new()),
        snapshot: Arc::new(Mutex::new(LinkSnapshot::default())),
    };
    let task = Task {
        client,
        jobs: rx,
        arrived: handle.arrived.clone(),
        snapshot: handle.snapshot.clone(),
    };
    (handle, task.run(cancel))
}

struct Task {
    client: Client,
    jobs: mpsc::Receiver<Job>,
    arrived: Arc<Notify>,
    snapshot: Arc<Mutex<LinkSnapshot>>,
}

enum Step {
    Stop,
    Job(Job),
    Relink,
    Event(Result<Option<Incoming>, ClientError>),
}

impl Task {
    async fn run(mut self, cancel: CancellationToken) {
        self.relink();
        let mut relink = tokio::time::interval(RELINK_EVERY);
        relink.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Pick a step first, then act on it: a job needs `&mut client`,
            // which the pending `next()` future borrows. `next()` is cancel-safe
            // (it only awaits channel receives and an interval tick).
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => Step::Stop,
                job = self.jobs.recv() => job.map_or(Step::Stop, Step::Job),
                _ = relink.tick() => Step::Relink,
                ev = self.client.next() => Step::Event(ev),
            };
            match step {
                Step::Stop => break,
                Step::Job(job) => self.run_job(job).await,
                Step::Relink => self.relink(),
                Step::Event(Ok(Some(inc))) => self.on_incoming(inc),
                Step::Event(Ok(None)) => break,
                Step::Event(Err(e)) => {
                    tracing::warn!(error = %e, "engine error; continuing");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
            // Messages may have been stored while a job waited on the relay.
            self.arrived.notify_waiters();
        }
        tracing::debug!("link task stopped");
    }

    fn relink(&mut self) {
        match self.client.connect_all() {
            Ok(relays) => {
                if let Ok(mut snap) = self.snapshot.lock() {
                    for r in relays {
                        let up = self.client.is_up(&r);
                        snap.relays.entry(r.as_str().to_owned()).or_default().up = up;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list relays to connect to"),
        }
    }

    fn set_link(&self, relay: &RelayUrl, f: impl FnOnce(&mut RelayLink)) {
        if let Ok(mut snap) = self.snapshot.lock() {
            f(snap.relays.entry(relay.as_str().to_owned()).or_default());
        }
    }

    fn on_incoming(&mut self, inc: Incoming) {
        match inc {
            Incoming::Message { relay, row, .. } => {
                // Stored already (store-then-ack); the agent gets it through a lease.
                self.client.ack(&relay, &row.peer, &row.id);
                tracing::info!(from = %row.peer.fmt_short(), seq = row.seq, "message stored");
                self.arrived.notify_waiters();
            }
            Incoming::Up { relay, pending, reconnect } => {
                tracing::info!(relay = %relay, pending, reconnect, "relay link up");
                self.set_link(&relay, |l| {
                    l.up = true;
                    l.pending_at_login = Some(pending);
                });
            }
            Incoming::Down { relay, reason, retry_in } => {
                tracing::info!(relay = %relay, %reason, ?retry_in, "relay link down; retrying");
                self.set_link(&relay, |l| {
                    l.up = false;
                    l.last_error = Some(reason);
                });
            }
            Incoming::Fatal(e) => {
                tracing::warn!(error = %e, "relay link gave up; retrying later");
                // The engine dropped the link; mark every relay it no longer reports up.
                let relays: Vec<String> = self
                    .snapshot
                    .lock()
                    .map(|s| s.relays.keys().cloned().collect())
                    .unwrap_or_default();
                for r in relays {
                    if let Ok(url) = RelayUrl::parse(&r) {
                        if !self.client.is_up(&url) {
                            self.set_link(&url, |l| {
                                l.up = false;
                                l.last_error = Some(e.to_string());
                            });
                        }
                    }
                }
            }
            Incoming::Paired { peer } => {
                tracing::info!(peer = %peer.pk.fmt_short(), "a guest accepted an invite");
            }
            Incoming::Dropped { from, reason } => {
                tracing::warn!(from = %from.fmt_short(), %reason, "dropped an envelope");
            }
            Incoming::Sent { .. }
            | Incoming::SendFailed { .. }
            | Incoming::Undecryptable { .. }
            | Incoming::Presence { .. }
            | Incoming::Reply { .. } => {}
        }
    }

    async fn run_job(&mut self, job: Job) {
        match job {
            Job::Send { peer, text, done } => {
                let _ = done.send(self.send(&peer, &text).await);
            }
            Job::InviteCreate { relay, ttl, label, done } => {
                let r = invites::create(&mut self.client, &relay, ttl, label).await;
                let _ = done.send(r);
            }
            Job::InviteAccept { invite, label, done } => {
                let r = invites::accept(&mut self.client, &invite, label).await;
                let _ = done.send(r);
            }
        }
        // A job may have added a relay (accept) or logged one in meanwhile.
        self.relink();
    }
}

impl Task {
    /// `send::send`, but a message the relay has not confirmed in time is
    /// reported as queued (it is durably in the outbox before the first await,
    /// so dropping the wait loses nothing).
    async fn send(&mut self, query: &str, text: &str) -> Result<Sent, ClientError> {
        let peer = crate::client::peers::resolve(self.client.conn(), query)?;
        let relay = RelayUrl::parse(&peer.relay_url)?;
        let before = last_outbox_seq(self.client.conn())?;
        let up = self.client.is_up(&relay);
        let attempt = send::send(&mut self.client, query, text, None);
        let result = if up {
            attempt.await
        } else {
            tokio::time::timeout(QUEUED_WAIT, attempt)
                .await
                .unwrap_or(Err(ClientError::Timeout(QUEUED_WAIT, "the relay")))
        };
        match result {
            Ok(out) => Ok(Sent { peer: out.peer, id: out.id, status: Some(out.status) }),
            Err(ClientError::Timeout(..)) => {
                let id = queued_id(self.client.conn(), &peer, before)?;
                tracing::info!(peer = %peer.pk.fmt_short(), "relay did not confirm; message queued");
                Ok(Sent { peer, id, status: None })
            }
            Err(e) => Err(e),
        }
    }
}

fn last_outbox_seq(conn: &rusqlite::Connection) -> Result<i64, ClientError> {
    conn.query_row("SELECT coalesce(max(seq), 0) FROM outbox", [], |r| r.get(0))
        .map_err(|e| ClientError::Store(e.into()))
}

/// The envelope `send` queued for `peer` after outbox row `after`.
fn queued_id(
    conn: &rusqlite::Connection,
    peer: &PeerRow,
    after: i64,
) -> Result<EnvelopeId, ClientError> {
    let id: String = conn
        .query_row(
            "SELECT id FROM outbox WHERE peer = ?1 AND seq > ?2 ORDER BY seq LIMIT 1",
            rusqlite::params![peer.pk.to_b64u(), after],
            |r| r.get(0),
        )
        .map_err(|e| ClientError::Store(e.into()))?;
    EnvelopeId::from_b64u(&id)
        .ok_or(ClientError::Store(crate::client::store::StoreError::BadRecord("outbox")))
}
