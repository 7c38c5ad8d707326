//! `serve --on-message CMD`: answer every message with a handler.
//!
//! Exactly-once to the user: a message is stored (inbox, state `new`) when it
//! arrives but acked to the relay only after its handler ran and the reply was
//! sealed into the outbox, in the same transaction that marks it `done`. A
//! process killed mid-handler restarts with the message still `new` and runs it
//! again; a redelivered message that is already `done` is only re-acked. So the
//! peer gets exactly one reply per message.
//!
//! A library function with a cancellation token, so `room open` can run it
//! without the CLI.

use std::collections::{HashSet, VecDeque};

use tokio::task::JoinSet;

use super::engine::seal_in;
use super::events::{Event, MessageInfo, from_incoming};
use super::payload::{MAX_TEXT_BYTES, Payload};
use super::relay_url::RelayUrl;
use super::store::{self, InboxRow};
use super::{Client, ClientError, Incoming, peers};
use crate::crypto::fingerprint;
use crate::handler::{self, HandlerCommand, HandlerError, HandlerOutcome, HandlerRequest};
use crate::protocol::EnvelopeId;

/// How often the inbox is re-read for messages another process of this home stored.
const INBOX_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Options of one serve run.
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

type Finished = (InboxRow, Result<HandlerOutcome, HandlerError>);

/// Run until cancelled, `max_turns` turns or (`once`) one handled message.
/// Returns how many messages were handled.
pub async fn serve(
    client: &mut Client,
    opts: &ServeOptions,
    emit: &mut dyn FnMut(Event),
) -> Result<u64, ClientError> {
    let concurrency = opts.concurrency.max(1);
    client.set_link_options(super::connection::LinkOptions::long_running());
    let mut turns = 0u64;
    let mut seeded = None;
    if let Some((to, text)) = &opts.seed {
        let peer = peers::resolve_synced(client, to).await?;
        if text.len() > MAX_TEXT_BYTES {
            return Err(ClientError::TooLarge(text.len()));
        }
        let payload = Payload::Text { text: text.clone(), reply_to: None };
        let id = client.queue(&peer, &payload, None)?;
        seeded = Some((id, peer.pk.to_b64u(), text.clone()));
        turns = 1;
    }
    let relays = client.connect_all()?;
    if relays.is_empty() {
        return Err(ClientError::NoPeers);
    }
    emit(Event::Serving {
        pk: client.identity().public().to_b64u(),
        relays: relays.iter().map(ToString::to_string).collect(),
    });
    for relay in relays {
        // Links already up (a library caller connected earlier) get no new login event.
        if client.is_up(&relay) {
            emit(Event::Connected { relay: relay.to_string(), pending: 0 });
        }
    }
    let mut replies_in_flight: HashSet<EnvelopeId> = HashSet::new();
    if let Some((id, to, text)) = seeded {
        replies_in_flight.insert(id);
        emit(Event::Replied { id: id.to_b64u(), reply_to: None, seed: true, to, text });
    }
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut busy: HashSet<i64> = HashSet::new();
    let mut queue: VecDeque<InboxRow> = VecDeque::new();
    let mut handled = 0u64;
    let mut poll = tokio::time::interval(INBOX_POLL);
    // Handlers report their process group here as they start; it is recorded with
    // the message so a run after a kill -9 can end an orphan first.
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let reason = loop {
        let limit_hit = opts.max_turns.is_some_and(|m| turns >= m) || (opts.once && handled >= 1);
        // A running handler may still reply: count it as a turn until it is done.
        while !limit_hit
            && running.len() < concurrency
            && opts.max_turns.is_none_or(|m| turns + (running.len() as u64) < m)
            && !(opts.once && handled + (running.len() as u64) >= 1)
        {
            let Some(row) = queue.pop_front() else { break };
            if let Some((pgid, start)) = store::inbox_take_handler(client.conn(), row.seq)? {
                crate::process::end_orphaned_group(pgid, start);
            }
            let req = request_for(client, &row)?;
            let cmd = opts.handler.clone();
            tracing::info!(from = %row.peer.fmt_short(), "running handler");
            let started = started_tx.clone();
            running.spawn(async move {
                let seq = row.seq;
                let out = handler::run_reporting_group(&cmd, req, |g| {
                    let _ = started.send((seq, g));
                })
                .await;
                (row, out)
            });
        }
        if limit_hit && running.is_empty() && replies_in_flight.is_empty() {
            break if opts.once { "once" } else { "max_turns" };
        }
        tokio::select! {
            inc = client.next() => {
                let Some(inc) = inc? else { break "cancelled" };
                match inc {
                    Incoming::Message { row, .. } => {
                        if busy.insert(row.seq) {
                            emit(received(client, &row));
                            queue.push_back(row);
                        }
                    }
                    Incoming::Sent { id, status } => {
                        replies_in_flight.remove(&id);
                        if let Some(ev) = from_incoming(client, &Incoming::Sent { id, status }) {
                            emit(ev);
                        }
                    }
                    Incoming::SendFailed { id, code, message } => {
                        // Refused for good: do not wait for its `sent` before stopping.
                        replies_in_flight.remove(&id);
                        let inc = Incoming::SendFailed { id, code, message };
                        if let Some(ev) = from_incoming(client, &inc) {
                            emit(ev);
                        }
                    }
                    Incoming::Fatal(e) => return Err(e.into()),
                    other => {
                        if let Some(ev) = from_incoming(client, &other) {
                            emit(ev);
                        }
                    }
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((row, outcome)) = done else { continue };
                busy.remove(&row.seq);
                if let Some(id) = finish(client, &row, outcome, emit)? {
                    replies_in_flight.insert(id);
                    turns += 1;
                }
                handled += 1;
            }
            Some((seq, g)) = started_rx.recv() => {
                if busy.contains(&seq) {
                    store::inbox_set_handler(client.conn(), seq, g.pgid, g.leader_start)?;
                }
            }
            _ = poll.tick() => {
                for row in store::inbox_new(client.conn(), None)? {
                    if busy.insert(row.seq) {
                        emit(received(client, &row));
                        queue.push_back(row);
                    }
                }
            }
        }
    };
    // Cancelled: dropping `running` kills every handler's process group; their
    // messages stay `new` and unacked, and are handled on the next run.
    drop(running);
    emit(Event::Done { count: handled, replies: Some(turns), reason: reason.into() });
    Ok(handled)
}

fn received(client: &Client, row: &InboxRow) -> Event {
    let peer = store::get_peer(client.conn(), &row.peer).ok().flatten();
    Event::Received { message: MessageInfo::new(row, peer.as_ref()) }
}

/// The handler's stdin and environment for one message.
fn request_for(client: &Client, row: &InboxRow) -> Result<HandlerRequest, ClientError> {
    let peer = store::get_peer(client.conn(), &row.peer)?;
    let label = peer.as_ref().map_or_else(|| row.peer.fmt_short(), store::PeerRow::display_name);
    let (sender, own) = (row.peer.to_b64u(), client.identity().public().to_b64u());
    let (msg_id, fp) = (row.id.to_b64u(), fingerprint(&row.peer));
    let home = client.home().dir().display().to_string();
    let reply_to = row.reply_to.map(|r| r.to_b64u());
    let env = handler::env::MessageVars {
        sender_pk: &sender,
        own_pk: &own,
        sender_label: &label,
        msg_id: &msg_id,
        fingerprint: &fp,
        home: &home,
        reply_to: reply_to.as_deref(),
    }
    .to_env();
    Ok(HandlerRequest { text: row.text.clone(), env })
}

/// Record a handler's outcome: queue the reply and mark the message done in one
/// transaction, then ack. Returns the reply's envelope id.
fn finish(
    client: &mut Client,
    row: &InboxRow,
    outcome: Result<HandlerOutcome, HandlerError>,
    emit: &mut dyn FnMut(Event),
) -> Result<Option<EnvelopeId>, ClientError> {
    let from = row.peer.to_b64u();
    let msg_id = row.id.to_b64u();
    let peer = store::get_peer(client.conn(), &row.peer)?;
    let mut reply_id = None;
    let event = match outcome {
        Ok(HandlerOutcome::Reply(text)) if text.len() > MAX_TEXT_BYTES => Event::HandlerError {
            id: msg_id,
            from,
            code: Some(0),
            exit_code: Some(0),
            signal: None,
            timed_out: false,
            stderr: format!(
                "reply of {} bytes exceeds the {MAX_TEXT_BYTES}-byte limit; not sent",
                text.len()
            ),
        },
        Ok(HandlerOutcome::Reply(text)) => match &peer {
            Some(p) => {
                let tx = client.store().immediate()?;
                let out = seal_in(
                    &tx,
                    p,
                    &Payload::Text { text: text.clone(), reply_to: Some(row.id) },
                    None,
                )?;
                store::inbox_done(&tx, row.seq)?;
                tx.commit().map_err(store::StoreError::from)?;
                client.offer(&out)?;
                reply_id = Some(out.id);
                Event::Replied {
                    id: out.id.to_b64u(),
                    reply_to: Some(msg_id),
                    seed: false,
                    to: from,
                    text,
                }
            }
            None => {
                Event::Dropped { from, reason: "peer removed before the reply was sent".into() }
            }
        },
        Ok(HandlerOutcome::NoReply) => Event::NoReply { id: msg_id, from },
        Ok(HandlerOutcome::Failed { exit_code, signal, stderr_tail }) => Event::HandlerError {
            id: msg_id,
            from,
            code: exit_code,
            exit_code,
            signal,
            timed_out: false,
            stderr: stderr_tail,
        },
        Ok(HandlerOutcome::TimedOut { stderr_tail }) => Event::HandlerError {
            id: msg_id,
            from,
            code: None,
            exit_code: None,
            signal: None,
            timed_out: true,
            stderr: stderr_tail,
        },
        Err(e) => Event::HandlerError {
            id: msg_id,
            from,
            code: None,
            exit_code: None,
            signal: None,
            timed_out: false,
            stderr: super::error_text(&e),
        },
    };
    // Failed or empty runs are not retried: the handler saw the message once.
    store::inbox_done(client.conn(), row.seq)?;
    let relay = peer.as_ref().and_then(|p| RelayUrl::parse(&p.relay_url).ok());
    if let Some(relay) = relay {
        client.ack(&relay, &row.peer, &row.id);
    }
    emit(event);
    Ok(reply_id)
}
