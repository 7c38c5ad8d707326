//! The background half of `agentroom mcp`: a client of the home's daemon (or
//! the daemon's owner when the MCP server is the first consumer of its home).
//! The daemon holds the relay links and stores every message; this task
//! follows its event stream (link state for `status`, a wake-up for waiting
//! `next_message` calls) and runs the tool calls that need the daemon (send,
//! invites) one at a time. Leases and acks use the same inbox table the daemon
//! leases from, so MCP tools, `serve` and `listen` in one home never get the
//! same message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::daemon::types::{
    DaemonEvent, InviteAcceptRequest, InviteAccepted, InviteCreateRequest, InviteCreated,
    SendRequest, SendResponse,
};
use crate::daemon::{DaemonClient, DaemonError};

/// How long `send` waits for the relay when its link is down at call time:
/// the message is in the outbox already, so the agent hears "queued" soon
/// instead of waiting out the full relay timeout.
const QUEUED_WAIT: Duration = Duration::from_secs(5);
/// How long `send` waits for the relay when its link is up.
const SENT_WAIT: Duration = Duration::from_secs(30);

/// A tool call the daemon runs.
#[derive(Debug)]
pub(crate) enum Job {
    /// `send` without waiting for a reply (replies are leased like any message).
    Send {
        /// Peer query.
        peer: String,
        /// The peer's relay (how long to wait depends on its link).
        relay: String,
        /// Text.
        text: String,
        /// `wait_reply_secs`: the daemon keeps the reply from other consumers
        /// this long, for this server to lease.
        hold_reply: Option<Duration>,
        /// Answer.
        done: oneshot::Sender<Result<SendResponse, DaemonError>>,
    },
    /// `invite_create`.
    InviteCreate {
        /// The request.
        req: InviteCreateRequest,
        /// Answer.
        done: oneshot::Sender<Result<InviteCreated, DaemonError>>,
    },
    /// `invite_accept`.
    InviteAccept {
        /// The request.
        req: InviteAcceptRequest,
        /// Answer.
        done: oneshot::Sender<Result<InviteAccepted, DaemonError>>,
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

/// Attach to the daemon and build the task and its handle. The task runs
/// until `cancel` fires or every [`LinkHandle`] is dropped.
pub(crate) async fn new(
    dc: DaemonClient,
    cancel: CancellationToken,
) -> Result<(LinkHandle, impl Future<Output = ()>), DaemonError> {
    let events = dc.events().await?;
    let status = dc.status().await?;
    let (jobs, rx) = mpsc::channel(16);
    let mut snap = LinkSnapshot::default();
    for r in status.relays {
        snap.relays.insert(
            r.url,
            RelayLink { up: r.up, last_error: r.last_error, pending_at_login: None },
        );
    }
    let handle =
        LinkHandle { jobs, arrived: Arc::new(Notify::new()), snapshot: Arc::new(Mutex::new(snap)) };
    let task = Task {
        dc,
        jobs: rx,
        events,
        arrived: handle.arrived.clone(),
        snapshot: handle.snapshot.clone(),
    };
    Ok((handle, task.run(cancel)))
}

struct Task {
    dc: DaemonClient,
    jobs: mpsc::Receiver<Job>,
    events: mpsc::Receiver<DaemonEvent>,
    arrived: Arc<Notify>,
    snapshot: Arc<Mutex<LinkSnapshot>>,
}

impl Task {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                job = self.jobs.recv() => match job {
                    Some(job) => self.run_job(job).await,
                    None => break,
                },
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => {
                        tracing::warn!("the home's daemon stopped; MCP tools can no longer send");
                        break;
                    }
                },
            }
        }
        tracing::debug!("link task stopped");
    }

    fn set_link(&self, relay: &str, f: impl FnOnce(&mut RelayLink)) {
        if let Ok(mut snap) = self.snapshot.lock() {
            f(snap.relays.entry(relay.to_owned()).or_default());
        }
    }

    fn on_event(&self, ev: DaemonEvent) {
        match ev {
            DaemonEvent::Received { .. } => self.arrived.notify_waiters(),
            DaemonEvent::Connected { relay, pending }
            | DaemonEvent::Reconnect { relay, pending } => {
                self.set_link(&relay, |l| {
                    l.up = true;
                    l.pending_at_login = Some(pending);
                });
            }
            DaemonEvent::Disconnect { relay, reason, .. } => self.set_link(&relay, |l| {
                l.up = false;
                l.last_error = Some(reason);
            }),
            _ => {}
        }
    }

    async fn run_job(&mut self, job: Job) {
        match job {
            Job::Send { peer, relay, text, hold_reply, done } => {
                let up = self.snapshot.lock().map(|s| s.relays.get(&relay).is_some_and(|l| l.up));
                let wait = if up.unwrap_or(false) { SENT_WAIT } else { QUEUED_WAIT };
                let req = SendRequest {
                    peer,
                    text,
                    wait_reply_ms: None,
                    wait_sent_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
                    // Beyond the wait itself: the relay's `sent` comes first.
                    hold_reply_ms: hold_reply.map(|h| {
                        u64::try_from(h.saturating_add(wait).as_millis()).unwrap_or(u64::MAX)
                    }),
                };
                let _ = done.send(self.dc.send(&req).await);
            }
            Job::InviteCreate { req, done } => {
                let _ = done.send(self.dc.invite_create(&req).await);
            }
            Job::InviteAccept { req, done } => {
                let _ = done.send(self.dc.invite_accept(&req).await);
            }
        }
        // A job may have added a relay (accept): refresh the link list.
        if let Ok(st) = self.dc.status().await {
            for r in st.relays {
                self.set_link(&r.url, |l| l.up = r.up);
            }
        }
        self.arrived.notify_waiters();
    }
}
