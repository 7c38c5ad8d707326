//! `listen`: stream decrypted messages. Store-then-ack: a message is committed
//! to the inbox before the relay is acked, then shown and marked done, so a
//! crash never loses one. Messages that arrived while nothing was listening
//! (stored by `send` or an earlier run) are shown first.

use std::time::Duration;

use super::events::{Event, MessageInfo, from_incoming};
use super::store::{self, InboxRow};
use super::{Client, ClientError, Incoming, peers};
use crate::crypto::IdentityPublicKey;

/// How often the inbox is re-read for messages another process of this home
/// stored (e.g. a `send --wait-reply` running beside `listen`).
const INBOX_POLL: Duration = Duration::from_secs(1);

/// Options of one listen run.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// Stop after the first message.
    pub once: bool,
    /// Only this peer (label, key or prefix).
    pub from: Option<String>,
    /// Stop after this long (None: never); an error if no message came at all.
    pub timeout: Option<Duration>,
}

/// Run until cancelled, or until the first message with `once`. Returns how
/// many messages were shown.
pub async fn listen(
    client: &mut Client,
    opts: &ListenOptions,
    emit: &mut dyn FnMut(Event),
) -> Result<u64, ClientError> {
    let from: Option<IdentityPublicKey> = match &opts.from {
        Some(q) => Some(peers::resolve(client.conn(), q)?.pk),
        None => None,
    };
    client.set_link_options(super::connection::LinkOptions::long_running());
    let mut shown = 0u64;
    if show_backlog(client, from.as_ref(), opts.once, &mut shown, emit)? {
        emit(Event::Done { count: shown, replies: None, reason: "once".into() });
        return Ok(shown);
    }
    let relays = client.connect_all()?;
    if relays.is_empty() {
        return Err(ClientError::NoPeers);
    }
    for relay in relays {
        // Links already up (a library caller connected earlier) get no new login event.
        if client.is_up(&relay) {
            emit(Event::Connected { relay: relay.to_string(), pending: 0 });
        }
    }
    let mut poll = tokio::time::interval(INBOX_POLL);
    let deadline = opts.timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let inc = tokio::select! {
            r = client.next() => r?,
            _ = poll.tick() => {
                if show_backlog(client, from.as_ref(), opts.once, &mut shown, emit)? {
                    break;
                }
                continue;
            }
            () = sleep_until(deadline) => {
                if shown == 0 {
                    return Err(ClientError::Timeout(opts.timeout.unwrap_or_default(), "a message"));
                }
                emit(Event::Done { count: shown, replies: None, reason: "timeout".into() });
                return Ok(shown);
            }
        };
        let Some(inc) = inc else {
            emit(Event::Done { count: shown, replies: None, reason: "cancelled".into() });
            return Ok(shown);
        };
        match inc {
            Incoming::Message { relay, row, .. } => {
                // Stored already: ack first (store-then-ack), then show.
                client.ack(&relay, &row.peer, &row.id);
                if from.is_none_or(|f| f == row.peer)
                    && show(client, &row, &mut shown, emit)?
                    && opts.once
                {
                    break;
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
    emit(Event::Done { count: shown, replies: None, reason: "once".into() });
    Ok(shown)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Show unconsumed inbox rows; true when `once` is satisfied.
fn show_backlog(
    client: &Client,
    from: Option<&IdentityPublicKey>,
    once: bool,
    shown: &mut u64,
    emit: &mut dyn FnMut(Event),
) -> Result<bool, ClientError> {
    for row in store::inbox_new(client.conn(), from)? {
        if show(client, &row, shown, emit)? && once {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Emit one message and mark it consumed; false if another process took it.
fn show(
    client: &Client,
    row: &InboxRow,
    shown: &mut u64,
    emit: &mut dyn FnMut(Event),
) -> Result<bool, ClientError> {
    if !store::inbox_done(client.conn(), row.seq)? {
        return Ok(false);
    }
    let peer = store::get_peer(client.conn(), &row.peer)?;
    emit(Event::Received { message: MessageInfo::new(row, peer.as_ref()) });
    *shown += 1;
    Ok(true)
}
