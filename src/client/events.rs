//! What `listen` and `serve` report, one value per line of `--json` output.
//! Serialised with an `event` tag; the printer adds `ts`. Never a secret; message
//! text only in `message` (the user asked to see it) and `replied`.
//!
//! Names and fields follow the TypeScript agentroom where it has the same moment
//! (`serving`, `message{from,text}`, `send_error`, `handler_error{code}`,
//! `done{replies}`), with our richer fields beside them in the same object.

use serde::Serialize;

use super::store::{InboxRow, PeerRow};
use crate::crypto::{IdentityPublicKey, fingerprint};

/// The `send_error` code when the peer reported it could not decrypt a message
/// (a client-side code: the relay never sends it).
pub const UNDECRYPTABLE: &str = "undecryptable";

/// A peer as shown in events.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRef {
    /// b64u key (what `send` accepts).
    pub pk: String,
    /// Local label, if any.
    pub label: Option<String>,
    /// Fingerprint.
    pub fingerprint: String,
    /// The pair's safety number, where it matters (`paired`: compare it out of band).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_number: Option<String>,
    /// Marked verified (`agentroom peers verify`) for its current key.
    pub verified: bool,
}

impl PeerRef {
    /// From a key and an optional stored peer; `me` is our own key (the
    /// verified mark holds for the pair's current safety number only).
    pub fn new(me: &IdentityPublicKey, pk: &IdentityPublicKey, row: Option<&PeerRow>) -> Self {
        let safety = crate::crypto::safety_number(me, pk);
        Self {
            pk: pk.to_b64u(),
            label: row.and_then(|r| r.label.clone()),
            fingerprint: fingerprint(pk),
            safety_number: None,
            verified: row.is_some_and(|r| r.verified(&safety)),
        }
    }

    /// Label, or the short key.
    pub fn name(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.pk.chars().take(8).collect())
    }
}

/// A received message as shown to users and scripts.
#[derive(Debug, Clone, Serialize)]
pub struct MessageInfo {
    /// Envelope id (b64u).
    pub id: String,
    /// Sender key (b64u).
    pub from: String,
    /// Sender label.
    pub label: Option<String>,
    /// Sender fingerprint.
    pub fingerprint: String,
    /// Relay accept time, unix ms.
    pub sent_at: u64,
    /// Text.
    pub text: String,
    /// Envelope this answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

impl MessageInfo {
    /// From a stored row and its sender.
    pub fn new(row: &InboxRow, peer: Option<&PeerRow>) -> Self {
        Self {
            id: row.id.to_b64u(),
            from: row.peer.to_b64u(),
            label: peer.and_then(|p| p.label.clone()),
            fingerprint: fingerprint(&row.peer),
            sent_at: row.relay_ts,
            text: row.text.clone(),
            reply_to: row.reply_to.map(|r| r.to_b64u()),
        }
    }

    /// Label or short key.
    pub fn sender_name(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.from.chars().take(8).collect())
    }
}

/// One event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Logged in to a relay for the first time in this run.
    Connected {
        /// Relay URL.
        relay: String,
        /// Envelopes it had queued.
        pending: u64,
    },
    /// Logged in again after a drop.
    Reconnect {
        /// Relay URL.
        relay: String,
        /// Envelopes it had queued.
        pending: u64,
    },
    /// `serve` is up: handling messages from now on (the TypeScript `serving`).
    Serving {
        /// Our identity key (b64u).
        pk: String,
        /// The relays it logs in to.
        relays: Vec<String>,
    },
    /// A relay connection dropped; retrying.
    Disconnect {
        /// Relay URL.
        relay: String,
        /// Why.
        reason: String,
        /// Next attempt in (ms).
        retry_in_ms: u64,
    },
    /// A peer's presence changed.
    PeerOnline {
        /// The peer.
        peer: PeerRef,
        /// Online now.
        online: bool,
    },
    /// A guest accepted one of our invites.
    Paired {
        /// The new peer.
        peer: PeerRef,
    },
    /// A message arrived (flattened: `id`, `from`, `fingerprint`, `text`, ...).
    /// Named `message` as in the TypeScript agentroom.
    #[serde(rename = "message")]
    Received {
        /// The message.
        #[serde(flatten)]
        message: MessageInfo,
    },
    /// The handler answered (or `--seed` opened the conversation); the message is
    /// queued and sent when the relay is up.
    Replied {
        /// Envelope id of the reply.
        id: String,
        /// Message answered (`None` for the seed).
        reply_to: Option<String>,
        /// The `--seed` message (turn 1), not a handler's answer.
        seed: bool,
        /// Recipient.
        to: String,
        /// Reply text.
        text: String,
    },
    /// The handler exited 0 with empty output: nothing sent.
    NoReply {
        /// Message handled.
        id: String,
        /// Its sender.
        from: String,
    },
    /// The handler failed or timed out: nothing sent.
    HandlerError {
        /// Message handled.
        id: String,
        /// Its sender.
        from: String,
        /// Exit code, if it exited (the TypeScript name).
        code: Option<i32>,
        /// Exit code, if it exited.
        exit_code: Option<i32>,
        /// Signal, if killed by one.
        signal: Option<i32>,
        /// Whether it hit the timeout.
        timed_out: bool,
        /// Last part of its stderr.
        stderr: String,
    },
    /// A message of ours reached the relay.
    Sent {
        /// Envelope id.
        id: String,
        /// `delivered` or `stored`.
        status: String,
    },
    /// The relay refused a message of ours for good (the TypeScript `send_error`).
    #[serde(rename = "send_error")]
    SendFailed {
        /// Envelope id.
        id: String,
        /// Error code.
        code: String,
        /// Detail.
        message: String,
    },
    /// An envelope was dropped (stranger, undecryptable).
    Dropped {
        /// Sender key.
        from: String,
        /// Why.
        reason: String,
    },
    /// The loop ended.
    Done {
        /// Messages handled (serve) or shown (listen).
        count: u64,
        /// `serve`: messages sent, the seed included (the TypeScript `replies`).
        #[serde(skip_serializing_if = "Option::is_none")]
        replies: Option<u64>,
        /// Why it ended (`max_turns`, `once`, `cancelled`).
        reason: String,
    },
}

/// The event for an engine report that needs no command-specific handling.
pub fn from_incoming(client: &super::Client, inc: &super::Incoming) -> Option<Event> {
    use super::Incoming;
    let peer_ref = |pk: &IdentityPublicKey| {
        let row = super::store::get_peer(client.conn(), pk).ok().flatten();
        PeerRef::new(&client.identity().public(), pk, row.as_ref())
    };
    Some(match inc {
        Incoming::Up { relay, reconnect: false, pending } => {
            Event::Connected { relay: relay.to_string(), pending: *pending }
        }
        Incoming::Up { relay, reconnect: true, pending } => {
            Event::Reconnect { relay: relay.to_string(), pending: *pending }
        }
        Incoming::Down { relay, reason, retry_in } => Event::Disconnect {
            relay: relay.to_string(),
            reason: reason.clone(),
            retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        },
        Incoming::Presence { peer, online } => {
            Event::PeerOnline { peer: peer_ref(peer), online: *online }
        }
        Incoming::Paired { peer } => {
            let mut r = PeerRef::new(&client.identity().public(), &peer.pk, Some(peer));
            r.safety_number =
                Some(crate::crypto::safety_number(&client.identity().public(), &peer.pk));
            Event::Paired { peer: r }
        }
        Incoming::Sent { id, status } => Event::Sent {
            id: id.to_b64u(),
            status: match status {
                crate::protocol::DeliveryStatus::Delivered => "delivered".into(),
                crate::protocol::DeliveryStatus::Stored => "stored".into(),
            },
        },
        Incoming::SendFailed { id, code, message } => Event::SendFailed {
            id: id.to_b64u(),
            code: code.as_str().into(),
            message: message.clone(),
        },
        Incoming::Undecryptable { id, peer } => Event::SendFailed {
            id: id.to_b64u(),
            code: String::from(UNDECRYPTABLE),
            message: format!(
                "{} could not decrypt this message (its session with us was reset or lost); pair again to reach it",
                peer.fmt_short()
            ),
        },
        Incoming::Dropped { from, reason } => {
            Event::Dropped { from: from.to_b64u(), reason: reason.clone() }
        }
        Incoming::Message { .. } | Incoming::Fatal(_) | Incoming::Reply { .. } => return None,
    })
}
