//! `send`: seal, persist to the outbox, hand to the relay, return on `sent`.

use std::time::Duration;

use super::engine::Incoming;
use super::payload::{MAX_TEXT_BYTES, Payload};
use super::store::{self, InboxRow, PeerRow};
use super::{Client, ClientError, peers};
use crate::protocol::{DeliveryStatus, EnvelopeId};

/// How long `send` waits for the relay's `sent`.
pub const SENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What `send` achieved.
#[derive(Debug)]
pub struct SendOutcome {
    /// Recipient.
    pub peer: PeerRow,
    /// Envelope id.
    pub id: EnvelopeId,
    /// Delivered or stored.
    pub status: DeliveryStatus,
    /// The peer's answer, with `--wait-reply`.
    pub reply: Option<InboxRow>,
    /// Why no answer came (timeout, connection lost), with `--wait-reply`. The
    /// message itself was sent.
    pub reply_error: Option<ClientError>,
}

/// Send `text` to the peer named `to`; optionally wait up to `wait_reply` for
/// the peer's answer (see [`Progress::answers`]). The message is in the outbox before the
/// first attempt: if the relay is unreachable it stays queued and goes out on
/// the next connection (any command).
pub async fn send(
    client: &mut Client,
    to: &str,
    text: &str,
    wait_reply: Option<Duration>,
) -> Result<SendOutcome, ClientError> {
    let peer = peers::resolve_synced(client, to).await?;
    if text.len() > MAX_TEXT_BYTES {
        return Err(ClientError::TooLarge(text.len()));
    }
    let payload = Payload::Text { text: text.to_owned(), reply_to: None };
    let id = client.queue(&peer, &payload, None)?;
    let mut st =
        Progress { id, peer: peer.pk, want_reply: wait_reply.is_some(), status: None, reply: None };
    client
        .wait_for(SENT_TIMEOUT, "the relay to take the message", |c, inc| {
            st.observe(c, inc).or_else(|| st.status.is_some().then_some(Ok(())))
        })
        .await?;
    let mut reply_error = None;
    if let Some(limit) = wait_reply {
        if st.reply.is_none() {
            reply_error = client
                .wait_for(limit, "a reply", |c, inc| {
                    st.observe(c, inc).or_else(|| st.reply.is_some().then_some(Ok(())))
                })
                .await
                .err();
        }
    }
    let (status, reply) = (st.status, st.reply);
    let status = status.unwrap_or(DeliveryStatus::Stored);
    Ok(SendOutcome { peer, id, status, reply, reply_error })
}

/// What a `send` has seen so far.
struct Progress {
    id: EnvelopeId,
    peer: crate::crypto::IdentityPublicKey,
    want_reply: bool,
    status: Option<DeliveryStatus>,
    reply: Option<InboxRow>,
}

impl Progress {
    /// Whether `row` is the peer's answer: it names our message in `reply_to`,
    /// or names none and was not already waiting at the relay when we logged in
    /// (an agent that does not set `reply_to`). Older messages stay in the inbox
    /// for `listen`.
    fn answers(&self, row: &InboxRow, backlog: bool) -> bool {
        row.peer == self.peer
            && match row.reply_to {
                Some(r) => r == self.id,
                None => !backlog,
            }
    }

    /// Record `inc`; `Some(Err)` when the send failed. The reply can overtake our
    /// `sent` (the relay answers `delivered` only once the peer acked, and a
    /// handler may reply before that), so replies are caught in both phases.
    fn observe(&mut self, c: &mut Client, inc: &Incoming) -> Option<Result<(), ClientError>> {
        match inc {
            Incoming::Sent { id, status } if *id == self.id => self.status = Some(*status),
            Incoming::SendFailed { id, code, message } if *id == self.id => {
                return Some(Err(ClientError::SendRefused(*code, message.clone())));
            }
            Incoming::Undecryptable { id, peer } if *id == self.id => {
                return Some(Err(ClientError::Undecryptable(peer.fmt_short())));
            }
            Incoming::Message { relay, row, backlog, .. }
                if self.want_reply && self.reply.is_none() && self.answers(row, *backlog) =>
            {
                if let Err(e) = store::inbox_done(c.conn(), row.seq) {
                    return Some(Err(e.into()));
                }
                c.ack(relay, &row.peer, &row.id);
                self.reply = Some(row.clone());
            }
            _ => {}
        }
        None
    }
}
