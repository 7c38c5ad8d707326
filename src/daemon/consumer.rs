//! `serve` and `listen` as consumers of the home's daemon: they lease messages
//! through the local API (claim → handle → ack), so any number of them share
//! one home and each message is handled by exactly one. The first of them to
//! start owns the home and runs the daemon in-process ([`run_attached`]).
//!
//! They print the same events as before (through [`Event`]): link changes
//! come from the daemon's event stream, messages and handler outcomes from
//! this consumer's own leases.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::types::*;
use super::{Attach, Daemon, DaemonClient, DaemonError, DaemonOptions, attach_or_own};
use crate::client::ClientError;
use crate::client::events::{Event, MessageInfo, PeerRef as EventPeer};
use crate::client::home::Home;
use crate::client::listen::ListenOptions;
use crate::client::payload::MAX_TEXT_BYTES;
use crate::handler::{self, HandlerCommand, HandlerError, HandlerOutcome, HandlerRequest};

/// Re-ask for work this often even without an event (leases that expired).
const POLL: Duration = Duration::from_secs(1);
/// A lease outlives the handler's timeout by this much (its kill grace, the
/// ack's round trip), so a live consumer never loses its message to another.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// `listen` holds a message only while printing it.
const LISTEN_LEASE_MS: u64 = 30_000;

/// Options of one `serve` (or `room open --on-message`) run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The handler and its timeout.
    pub handler: HandlerCommand,
    /// Open the conversation: (peer, text) sent once at start.
    pub seed: Option<(String, String)>,
    /// Stop after this many turns (stops two bots looping forever). A turn is a
    /// message we send: each reply, and the seed as turn 1 (the TypeScript meaning).
    pub max_turns: Option<u64>,
    /// Stop after the first message is handled, replied to or not.
    pub once: bool,
    /// Handlers running at once (replies may then go out of order).
    pub concurrency: usize,
}

/// Run `consume` against the home's daemon, starting one in-process when none
/// runs (this process then owns the home until `consume` ends). When the
/// daemon it used goes away (its owner stopped), attach again.
pub async fn run_attached<F, Fut, T>(
    home: &Home,
    opts: &DaemonOptions,
    cancel: CancellationToken,
    mut consume: F,
) -> Result<T, DaemonError>
where
    F: FnMut(DaemonClient, bool) -> Fut,
    Fut: Future<Output = Result<T, DaemonError>>,
{
    loop {
        let (dc, daemon, stop) = match attach_or_own(home, super::ATTACH_TIMEOUT).await? {
            Attach::Daemon(dc) => {
                if opts.retain.is_some() || opts.server.is_some() {
                    tracing::warn!(
                        "--retain and --server apply to the daemon this command starts; \
                         the home's running daemon keeps its own settings"
                    );
                }
                (dc, None, None)
            }
            Attach::Owner(lock) => {
                // Not a child of `cancel`: on a signal the consumer finishes
                // first (killing its handlers, printing `done`), then the daemon stops.
                let stop = CancellationToken::new();
                let d = Daemon::start(home, lock, opts, stop.clone()).await?;
                let dc = DaemonClient::connect(home).await?.ok_or(DaemonError::Stopped)?;
                (dc, Some(d), Some(stop))
            }
        };
        let owner = daemon.is_some();
        let result = consume(dc, owner).await;
        if let (Some(d), Some(stop)) = (daemon, stop) {
            stop.cancel();
            if let Err(e) = d.wait().await {
                tracing::warn!(error = %e, "daemon stopped with an error");
            }
        }
        match result {
            // The daemon went away (its owner stopped) mid-stream or mid-call.
            Err(DaemonError::Stopped | DaemonError::Api { status: 0, .. })
                if !cancel.is_cancelled() =>
            {
                tracing::info!("the home's daemon stopped; attaching again");
            }
            other => return other,
        }
    }
}

/// Forward the daemon's link events; returns false when the stream ended.
fn forward(ev: DaemonEvent, announced: &mut HashSet<String>, emit: &mut dyn FnMut(Event)) {
    let peer = |p: PeerRef| EventPeer {
        pk: p.pk,
        label: p.label,
        fingerprint: p.fingerprint,
        safety_number: p.safety_number,
        verified: p.verified,
    };
    let out = match ev {
        DaemonEvent::Connected { relay, pending } | DaemonEvent::Reconnect { relay, pending }
            if announced.insert(relay.clone()) =>
        {
            Event::Connected { relay, pending }
        }
        DaemonEvent::Connected { relay, pending } | DaemonEvent::Reconnect { relay, pending } => {
            Event::Reconnect { relay, pending }
        }
        DaemonEvent::Disconnect { relay, reason, retry_in_ms } => {
            Event::Disconnect { relay, reason, retry_in_ms }
        }
        DaemonEvent::PeerOnline { peer: p, online } => Event::PeerOnline { peer: peer(p), online },
        DaemonEvent::Paired { peer: p } => Event::Paired { peer: peer(p) },
        DaemonEvent::Sent { id, status } => Event::Sent {
            id,
            status: match status {
                SendStatus::Delivered => "delivered".into(),
                SendStatus::Stored | SendStatus::Queued => "stored".into(),
            },
        },
        DaemonEvent::SendFailed { id, code, message } => Event::SendFailed { id, code, message },
        DaemonEvent::Dropped { from, reason } => Event::Dropped { from, reason },
        // Messages and handler outcomes are reported by whoever leased them.
        DaemonEvent::Received { .. }
        | DaemonEvent::Replied { .. }
        | DaemonEvent::NoReply { .. }
        | DaemonEvent::HandlerError { .. }
        | DaemonEvent::Lagged { .. }
        | DaemonEvent::Paused
        | DaemonEvent::Resumed => return,
    };
    emit(out);
}

/// Subscribe to events and report the relays already up as `connected`. Also
/// returns whether there is anything to hear from: a relay link, a peer or an
/// open invite. Read from the store, not from the links alone: a daemon this
/// command just started may not have opened its links yet.
async fn start_events(
    dc: &DaemonClient,
    replay: bool,
    announced: &mut HashSet<String>,
    emit: &mut dyn FnMut(Event),
) -> Result<(mpsc::Receiver<DaemonEvent>, bool), DaemonError> {
    let events = dc.events_from(replay).await?;
    let status = dc.status().await?;
    for r in &status.relays {
        if r.up && announced.insert(r.url.clone()) {
            emit(Event::Connected { relay: r.url.clone(), pending: 0 });
        }
    }
    let something = !status.relays.is_empty()
        || !dc.peers().await?.peers.is_empty()
        || dc.invites().await?.invites.iter().any(|i| i.status == "open");
    Ok((events, something))
}

fn message_info(m: &ApiMessage) -> MessageInfo {
    MessageInfo {
        id: m.id.clone(),
        from: m.from.clone(),
        label: m.label.clone(),
        fingerprint: m.fingerprint.clone(),
        sent_at: m.sent_at,
        text: m.text.clone(),
        reply_to: m.reply_to.clone(),
    }
}

type Finished = (ApiMessage, Result<HandlerOutcome, HandlerError>);

/// `serve`: lease, run the handler, ack with its reply. Returns the count.
pub async fn serve(
    dc: DaemonClient,
    owner: bool,
    home: &Home,
    opts: &ServeOptions,
    cancel: &CancellationToken,
    emit: &mut dyn FnMut(Event),
) -> Result<u64, DaemonError> {
    let concurrency = opts.concurrency.max(1);
    // Start the handler guard now rather than beside the first message's
    // handler, whose start it would slow down.
    handler::guard::prepare();
    // No handler timeout: the lease is renewed by nothing, so give it the longest
    // lease the API takes; a dead consumer's message is re-offered after it.
    let lease =
        opts.handler.timeout.map_or(Duration::from_secs(3600), |t| t.saturating_add(LEASE_MARGIN));
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).clamp(1_000, 3_600_000);
    let mut announced = HashSet::new();
    let (mut events, something) = start_events(&dc, owner, &mut announced, emit).await?;
    let status = dc.status().await?;
    let own = status.pk.clone();
    if opts.seed.is_none() && !something {
        return Err(ClientError::NoPeers.into());
    }
    emit(Event::Serving {
        pk: own.clone(),
        relays: status.relays.iter().map(|r| r.url.clone()).collect(),
    });
    let mut replies_in_flight: HashSet<String> = HashSet::new();
    // A turn is a message we send: each reply, and the seed as turn 1 (the
    // TypeScript agentroom's meaning).
    let mut turns = 0u64;
    if let Some((to, text)) = &opts.seed {
        let req = SendRequest {
            peer: to.clone(),
            text: text.clone(),
            wait_reply_ms: None,
            wait_sent_ms: Some(0),
            hold_reply_ms: None,
        };
        let sent = dc.send(&req).await?;
        turns = 1;
        replies_in_flight.insert(sent.id.clone());
        emit(Event::Replied {
            id: sent.id,
            reply_to: None,
            seed: true,
            to: sent.to,
            text: text.clone(),
        });
    }
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut handled = 0u64;
    let mut poll = tokio::time::interval(POLL);
    // Handlers report their process group as they start; the daemon records
    // it with the message, so whoever leases it after this consumer died
    // (kill -9) ends an orphaned group first.
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let reason = loop {
        let limit_hit = opts.max_turns.is_some_and(|m| turns >= m) || (opts.once && handled >= 1);
        // A running handler may still reply: count it as a turn until it is done.
        while !limit_hit
            && running.len() < concurrency
            && opts.max_turns.is_none_or(|m| turns + (running.len() as u64) < m)
            && !(opts.once && handled + (running.len() as u64) >= 1)
        {
            let req = NextRequest { from: None, wait_ms: Some(0), lease_ms: Some(lease_ms) };
            let next = dc.next(&req).await?;
            let Some(m) = next.message else { break };
            // Nothing else waiting: do not ask again while the handler starts
            // (a message stored after this look announces itself: `received`).
            let more = next.remaining > 0;
            emit(Event::Received { message: message_info(&m) });
            let cmd = opts.handler.clone();
            let req = request_for(home, &own, &m);
            tracing::info!(from = %m.sender_name(), "running handler");
            let (started, lease_id) = (started_tx.clone(), m.lease_id.clone());
            running.spawn(async move {
                // The handler's group dies with this process (handler::guard).
                let out = handler::run_reporting_group(&cmd, req, |g| {
                    if let Some(lease_id) = lease_id {
                        let _ = started.send(HandlerStartedRequest {
                            lease_id,
                            pgid: g.pgid,
                            leader_start: g.leader_start,
                        });
                    }
                })
                .await;
                (m, out)
            });
            if !more {
                break;
            }
        }
        if limit_hit && running.is_empty() && replies_in_flight.is_empty() {
            break if opts.once { "once" } else { "max_turns" };
        }
        tokio::select! {
            () = cancel.cancelled() => break "cancelled",
            ev = events.recv() => {
                let Some(ev) = ev else { return Err(DaemonError::Stopped) };
                match &ev {
                    DaemonEvent::Sent { id, .. } | DaemonEvent::SendFailed { id, .. } => {
                        replies_in_flight.remove(id);
                    }
                    _ => {}
                }
                forward(ev, &mut announced, emit);
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((m, outcome)) = done else { continue };
                if let Some(id) = finish(&dc, &m, outcome, emit).await? {
                    replies_in_flight.insert(id);
                    turns += 1;
                }
                handled += 1;
            }
            Some(req) = started_rx.recv() => {
                if let Err(e) = dc.handler_started(&req).await {
                    tracing::debug!(error = %e, "could not record the handler's process group");
                }
            }
            _ = poll.tick() => {}
        }
    };
    // Cancelled: dropping `running` kills every handler's process group; their
    // leases run out and the messages are offered again.
    drop(running);
    emit(Event::Done { count: handled, replies: Some(turns), reason: reason.into() });
    Ok(handled)
}

/// The handler's stdin and environment for one message (the handler module
/// scrubs everything else).
fn request_for(home: &Home, own: &str, m: &ApiMessage) -> HandlerRequest {
    let (label, home) = (m.sender_name(), home.dir().display().to_string());
    let env = handler::env::MessageVars {
        sender_pk: &m.from,
        own_pk: own,
        sender_label: &label,
        msg_id: &m.id,
        fingerprint: &m.fingerprint,
        home: &home,
        reply_to: m.reply_to.as_deref(),
    }
    .to_env();
    HandlerRequest { text: m.text.clone(), env }
}

/// Ack a handled message with its outcome; returns the reply's envelope id.
async fn finish(
    dc: &DaemonClient,
    m: &ApiMessage,
    outcome: Result<HandlerOutcome, HandlerError>,
    emit: &mut dyn FnMut(Event),
) -> Result<Option<String>, DaemonError> {
    let lease_id = m.lease_id.clone().expect("a leased message carries its lease id");
    let error = |exit_code, signal, timed_out, stderr: String| HandlerReport::Error {
        exit_code,
        signal,
        timed_out,
        stderr,
    };
    let (reply, report) = match outcome {
        Ok(HandlerOutcome::Reply(text)) if text.len() > MAX_TEXT_BYTES => {
            let why = format!(
                "reply of {} bytes exceeds the {MAX_TEXT_BYTES}-byte limit; not sent",
                text.len()
            );
            (None, error(Some(0), None, false, why))
        }
        Ok(HandlerOutcome::Reply(text)) => (Some(text), HandlerReport::NoReply),
        Ok(HandlerOutcome::NoReply) => (None, HandlerReport::NoReply),
        Ok(HandlerOutcome::Failed { exit_code, signal, stderr_tail }) => {
            (None, error(exit_code, signal, false, stderr_tail))
        }
        Ok(HandlerOutcome::TimedOut { stderr_tail }) => {
            (None, error(None, None, true, stderr_tail))
        }
        Err(e) => (None, error(None, None, false, crate::client::error_text(&e))),
    };
    let req = AckRequest {
        lease_id,
        reply: reply.clone(),
        handler: if reply.is_some() { None } else { Some(report.clone()) },
    };
    let out = match dc.ack(&req).await {
        Ok(out) => out,
        Err(DaemonError::Api { status: 404, message, .. }) => {
            tracing::warn!(%message, "lease lost before the ack; another consumer has the message");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if out.status == AckStatus::AlreadyAcked {
        return Ok(None);
    }
    let ev = match (reply, report, &out.reply_id) {
        (Some(text), _, Some(id)) => Event::Replied {
            id: id.clone(),
            reply_to: Some(m.id.clone()),
            seed: false,
            to: m.from.clone(),
            text,
        },
        (Some(_), _, None) => Event::Dropped {
            from: m.from.clone(),
            reason: "peer removed before the reply was sent".into(),
        },
        (None, HandlerReport::NoReply, _) => {
            Event::NoReply { id: m.id.clone(), from: m.from.clone() }
        }
        (None, HandlerReport::Error { exit_code, signal, timed_out, stderr }, _) => {
            Event::HandlerError {
                id: m.id.clone(),
                from: m.from.clone(),
                code: exit_code,
                exit_code,
                signal,
                timed_out,
                stderr,
            }
        }
    };
    emit(ev);
    Ok(out.reply_id)
}

/// `listen`: lease each message, print it, ack it (consuming). With `follow`,
/// observe instead: print every message the daemon receives, consuming none.
pub async fn listen(
    dc: DaemonClient,
    owner: bool,
    opts: &ListenOptions,
    follow: bool,
    cancel: &CancellationToken,
    emit: &mut dyn FnMut(Event),
) -> Result<u64, DaemonError> {
    let mut announced = HashSet::new();
    let (mut events, something) = start_events(&dc, owner, &mut announced, emit).await?;
    let from_pk = match &opts.from {
        Some(q) => {
            let peers = dc.peers().await?.peers;
            Some(resolve_peer(&peers, q)?)
        }
        None => None,
    };
    let mut shown = 0u64;
    let deadline = opts.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut poll = tokio::time::interval(POLL);
    let mut checked_empty = false;
    loop {
        if !follow {
            loop {
                let req = NextRequest {
                    from: from_pk.clone(),
                    wait_ms: Some(0),
                    lease_ms: Some(LISTEN_LEASE_MS),
                };
                let Some(m) = dc.next(&req).await?.message else { break };
                // Consume, then show (as `listen` always did): a listener
                // killed between the two loses the line on screen, never
                // shows a message twice.
                let lease_id = m.lease_id.clone().expect("a leased message carries its lease id");
                dc.ack(&AckRequest { lease_id, reply: None, handler: None }).await?;
                emit(Event::Received { message: message_info(&m) });
                shown += 1;
                if opts.once {
                    // Report what the daemon announced up to this message
                    // (a `paired` before it, say) before leaving.
                    catch_up(&mut events, m.seq, &mut announced, emit).await;
                    emit(Event::Done { count: shown, replies: None, reason: "once".into() });
                    return Ok(shown);
                }
            }
            if !checked_empty && shown == 0 && !something {
                return Err(ClientError::NoPeers.into());
            }
            checked_empty = true;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = sleep_until(deadline) => {
                if shown == 0 {
                    return Err(ClientError::Timeout(opts.timeout.unwrap_or_default(), "a message").into());
                }
                emit(Event::Done { count: shown, replies: None, reason: "timeout".into() });
                return Ok(shown);
            }
            ev = events.recv() => {
                let Some(ev) = ev else { return Err(DaemonError::Stopped) };
                if let (true, DaemonEvent::Received { message }) = (follow, &ev) {
                    if from_pk.as_ref().is_none_or(|f| *f == message.from) {
                        emit(Event::Received { message: message_info(message) });
                        shown += 1;
                        if opts.once {
                            emit(Event::Done { count: shown, replies: None, reason: "once".into() });
                            return Ok(shown);
                        }
                    }
                }
                forward(ev, &mut announced, emit);
            }
            _ = poll.tick() => {}
        }
    }
    emit(Event::Done { count: shown, replies: None, reason: "cancelled".into() });
    Ok(shown)
}

/// Forward events until the daemon's `received` for inbox row `seq` (bounded:
/// a daemon that never announces it costs [`CATCH_UP`] at most).
async fn catch_up(
    events: &mut mpsc::Receiver<DaemonEvent>,
    seq: i64,
    announced: &mut HashSet<String>,
    emit: &mut dyn FnMut(Event),
) {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        let done = matches!(&ev, DaemonEvent::Received { message } if message.seq >= seq);
        forward(ev, announced, emit);
        if done {
            return;
        }
    }
}

/// The longest [`catch_up`] waits.
const CATCH_UP: Duration = Duration::from_secs(2);

/// A peer query against the daemon's list: label, key, or a unique key prefix.
fn resolve_peer(peers: &[PeerInfo], q: &str) -> Result<String, DaemonError> {
    let q = q.trim();
    if let Some(p) = peers.iter().find(|p| p.label.as_deref() == Some(q) || p.pk == q) {
        return Ok(p.pk.clone());
    }
    let matches: Vec<&PeerInfo> =
        peers.iter().filter(|p| q.len() >= 4 && p.pk.starts_with(q)).collect();
    match matches.as_slice() {
        [one] => Ok(one.pk.clone()),
        [] => Err(ClientError::UnknownPeer(q.to_owned()).into()),
        many => Err(ClientError::AmbiguousPeer(q.to_owned(), many.len()).into()),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
