//! The local API's request, response and event types. The OpenAPI document is
//! generated from these (utoipa), so it cannot drift from the code.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::lease::Leased;
use crate::client::store::{InboxRow, PeerRow};
use crate::crypto::{IdentityPublicKey, fingerprint, safety_number};
use rmcp::schemars::JsonSchema;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiMessage {
    /// Local arrival order.
    pub seq: i64,
    /// The sender's envelope id (b64u).
    pub id: String,
    /// Sender public key (b64u).
    pub from: String,
    /// Sender's local label.
    pub label: Option<String>,
    /// Sender fingerprint.
    pub fingerprint: String,
    /// Relay accept time, unix ms.
    pub sent_at: u64,
    /// Text.
    pub text: String,
    /// The envelope this answers (b64u).
    pub reply_to: Option<String>,
    /// With a lease: what `/v1/messages/ack` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// With a lease: when it ends, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<u64>,
    /// With a lease: how many times this message was leased (2+: an earlier lease expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<u64>,
}

impl ApiMessage {
    /// From a stored row.
    pub fn from_row(row: &InboxRow, peer: Option<&PeerRow>) -> Self {
        Self {
            seq: row.seq,
            id: row.id.to_b64u(),
            from: row.peer.to_b64u(),
            label: peer.and_then(|p| p.label.clone()),
            fingerprint: fingerprint(&row.peer),
            sent_at: row.relay_ts,
            text: row.text.clone(),
            reply_to: row.reply_to.map(|r| r.to_b64u()),
            lease_id: None,
            lease_until: None,
            delivery: None,
        }
    }

    /// From a lease.
    pub fn from_lease(m: &Leased, peer: Option<&PeerRow>) -> Self {
        Self {
            seq: m.seq,
            id: m.id.to_b64u(),
            from: m.peer.to_b64u(),
            label: peer.and_then(|p| p.label.clone()),
            fingerprint: fingerprint(&m.peer),
            sent_at: m.relay_ts,
            text: m.text.clone(),
            reply_to: m.reply_to.map(|r| r.to_b64u()),
            lease_id: Some(m.lease_id.clone()),
            lease_until: Some(m.lease_until),
            delivery: Some(m.delivery),
        }
    }

    /// Label, or the short key.
    pub fn sender_name(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.from.chars().take(8).collect())
    }
}

/// A peer as events name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerRef {
    /// Public key (b64u).
    pub pk: String,
    /// Local label.
    pub label: Option<String>,
    /// Fingerprint.
    pub fingerprint: String,
    /// The pair's safety number, on `paired` (compare it out of band).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_number: Option<String>,
    /// Marked verified (`agentroom peers verify`) for its current key.
    #[serde(default)]
    pub verified: bool,
}

/// A paired peer: the one shape of `agentroom peers --json` (each `peer`
/// event), `room status --json` (`peers`), the MCP `peers` and `status` tools
/// and `GET /v1/peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct PeerInfo {
    /// Public key (b64u): what `send` accepts as peer.
    pub pk: String,
    /// Local label, if any.
    pub label: Option<String>,
    /// Fingerprint.
    pub fingerprint: String,
    /// Safety number of this pair: the same on both sides; compare it out of
    /// band, then mark the peer verified (`agentroom peers verify`).
    pub safety_number: String,
    /// Marked verified after comparing this safety number; false again if either
    /// side's key changes.
    pub verified: bool,
    /// The peer's role: `host` (they invited us) or `guest` (we invited them).
    pub role: String,
    /// Relay URL we reach them through.
    pub relay: String,
    /// Pairing time, unix s.
    pub paired_at: u64,
    /// Last message from them, unix s.
    pub last_seen: Option<u64>,
    /// Messages from them not yet consumed (acked).
    pub unread: u64,
    /// Disappearing messages: this peer's messages are deleted this many
    /// seconds after each (null: kept).
    pub expire_secs: Option<u64>,
}

impl PeerInfo {
    /// Every paired peer of the store, oldest first; `me` is our own key (for
    /// the safety numbers).
    pub fn list(
        conn: &rusqlite::Connection,
        me: &IdentityPublicKey,
    ) -> Result<Vec<Self>, crate::client::store::StoreError> {
        use crate::client::store;
        let unread = store::inbox_new(conn, None)?;
        store::list_peers(conn)?
            .iter()
            .map(|p| {
                let n = unread.iter().filter(|m| m.peer == p.pk && m.kind == "text").count();
                let expire = store::peer_expiry(conn, &p.pk)?;
                Ok(Self::new(me, p, u64::try_from(n).unwrap_or(u64::MAX), expire))
            })
            .collect()
    }

    /// One peer from its stored row.
    pub fn new(me: &IdentityPublicKey, p: &PeerRow, unread: u64, expire_secs: Option<u64>) -> Self {
        let safety = safety_number(me, &p.pk);
        Self {
            pk: p.pk.to_b64u(),
            label: p.label.clone(),
            fingerprint: fingerprint(&p.pk),
            verified: p.verified(&safety),
            safety_number: safety,
            role: p.role.name().to_owned(),
            relay: p.relay_url.clone(),
            paired_at: p.created_at,
            last_seen: p.last_seen,
            unread,
            expire_secs,
        }
    }

    /// Label, or the short key.
    pub fn display_name(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.pk.chars().take(8).collect())
    }
}

/// One relay link.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RelayStatus {
    /// Relay URL.
    pub url: String,
    /// Logged in right now.
    pub up: bool,
    /// Why it last went down.
    pub last_error: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// The daemon's process id.
    pub pid: u32,
    /// agentroom version.
    pub version: String,
    /// The home directory.
    pub home: String,
    /// The Unix socket path.
    pub socket: String,
    /// The loopback HTTP address, with `--http`.
    pub http: Option<String>,
    /// Our public key (b64u).
    pub pk: String,
    /// Our fingerprint.
    pub fingerprint: String,
    /// Relay links.
    pub relays: Vec<RelayStatus>,
    /// Unconsumed messages not under a lease.
    pub inbox_waiting: u64,
    /// Unconsumed messages under a live lease.
    pub inbox_leased: u64,
    /// Outgoing messages the relay has not taken yet.
    pub outbox_pending: u64,
}

/// `POST /v1/peers/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// Label, public key, or a unique prefix of the key or fingerprint.
    pub peer: String,
    /// The safety number read from the other side; when given, the mark is set
    /// only if it matches (spaces ignored), else the call fails and changes nothing.
    #[serde(default)]
    pub safety_number: Option<String>,
    /// `true` (default) marks the peer verified, `false` takes the mark away.
    #[serde(default = "yes")]
    pub verified: bool,
}

fn yes() -> bool {
    true
}

/// `GET /v1/peers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeersResponse {
    /// Paired peers.
    pub peers: Vec<PeerInfo>,
}

/// `POST /v1/send`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendRequest {
    /// Label, public key, or a unique prefix of the key or fingerprint.
    pub peer: String,
    /// Text (at most 60000 bytes).
    pub text: String,
    /// Wait this long for the reply to this message (one naming its id in `reply_to`).
    #[serde(default)]
    pub wait_reply_ms: Option<u64>,
    /// Wait this long for the relay to take it (default 30000); then `queued`.
    #[serde(default)]
    pub wait_sent_ms: Option<u64>,
    /// Keep the reply to this message away from `/v1/messages/next` for this
    /// long (ms): for a caller that leases that reply itself (the MCP server's
    /// `send` with `wait_reply_secs`), so a `serve` in the home cannot take it.
    #[serde(default)]
    pub hold_reply_ms: Option<u64>,
}

/// Where a sent message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    /// The peer is online and has it.
    Delivered,
    /// The relay holds it until the peer connects.
    Stored,
    /// In our outbox; it goes out when the relay is reachable (do not resend).
    Queued,
}

/// `POST /v1/send` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendResponse {
    /// Envelope id (b64u).
    pub id: String,
    /// Recipient key (b64u).
    pub to: String,
    /// Where the message is.
    pub status: SendStatus,
    /// The reply to this message, with `wait_reply_ms` (already consumed).
    pub reply: Option<ApiMessage>,
    /// Why no reply came in time, with `wait_reply_ms`.
    pub reply_error: Option<String>,
}

/// `POST /v1/messages/next`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct NextRequest {
    /// Only messages from this peer.
    #[serde(default)]
    pub from: Option<String>,
    /// Wait up to this long for a message (default 0, at most 300000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Lease length (default 60000, 1000..=3600000).
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

/// `POST /v1/messages/next` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NextResponse {
    /// The leased message, or null when none came in time.
    pub message: Option<ApiMessage>,
    /// Messages still waiting.
    pub remaining: u64,
}

/// What a handler made of a message (reported with the ack, for the event stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HandlerReport {
    /// Exit 0 with empty output.
    NoReply,
    /// Failed or timed out.
    Error {
        /// Exit code, if it exited.
        exit_code: Option<i32>,
        /// Signal, if killed by one.
        signal: Option<i32>,
        /// Whether it hit the timeout.
        timed_out: bool,
        /// Last part of its stderr.
        stderr: String,
    },
}

/// `POST /v1/messages/ack`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AckRequest {
    /// From the leased message.
    pub lease_id: String,
    /// A reply, sealed and queued in the same transaction that consumes the
    /// message: a message is answered at most once.
    #[serde(default)]
    pub reply: Option<String>,
    /// What the handler did, when it did not reply.
    #[serde(default)]
    pub handler: Option<HandlerReport>,
}

/// Ack outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Consumed now.
    Acked,
    /// Consumed by an earlier ack of this lease (a retried call); no reply sent.
    AlreadyAcked,
}

/// `POST /v1/messages/ack` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AckResponse {
    /// Outcome.
    pub status: AckStatus,
    /// The reply's envelope id, when one was queued.
    pub reply_id: Option<String>,
}

/// An invite this identity created.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteInfo {
    /// Invite id (b64u).
    pub id: String,
    /// `open`, `claimed`, `revoked` or `expired`.
    pub status: String,
    /// Label for whoever accepts.
    pub label: Option<String>,
    /// Relay.
    pub relay: String,
    /// Expiry, unix s.
    pub expires_at: u64,
    /// Creation, unix s.
    pub created_at: u64,
    /// Who claimed it (b64u key).
    pub claimed_by: Option<String>,
}

/// `GET /v1/invites`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvitesResponse {
    /// Invites, oldest first.
    pub invites: Vec<InviteInfo>,
}

/// `POST /v1/invites`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InviteCreateRequest {
    /// Relay the guest will use (default: the home's configured relay).
    #[serde(default)]
    pub relay: Option<String>,
    /// Lifetime in seconds (default 86400).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Local name for whoever accepts.
    #[serde(default)]
    pub label: Option<String>,
    /// Reach `relay` by this URL instead (it is what this home records): the
    /// same relay by another route, as a room's loopback URL behind its tunnel.
    #[serde(default)]
    pub via: Option<String>,
}

/// `POST /v1/invites` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteCreated {
    /// Invite id.
    pub id: String,
    /// The invite string to hand over (secret until used).
    pub invite: String,
    /// Relay.
    pub relay: String,
    /// Expiry, unix s.
    pub expires_at: u64,
    /// Label.
    pub label: Option<String>,
}

/// `POST /v1/invites/accept`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteAcceptRequest {
    /// The invite string (`ar1.…`).
    pub invite: String,
    /// Local name for the host.
    #[serde(default)]
    pub label: Option<String>,
}

/// `POST /v1/invites/accept` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteAccepted {
    /// The host's key (b64u).
    pub peer: String,
    /// Label.
    pub label: Option<String>,
    /// The host's fingerprint.
    pub fingerprint: String,
    /// Safety number of the pair.
    pub safety_number: String,
    /// Relay.
    pub relay: String,
}

/// `DELETE /v1/invites/{id}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InviteRevoked {
    /// Invite id.
    pub id: String,
    /// Whether the relay confirmed (the key is deleted locally either way).
    pub relay_confirmed: bool,
}

/// What a failure means for the caller (the CLI maps it to its exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Anything else.
    Failure,
    /// Bad arguments.
    Usage,
    /// Relay unreachable or timed out.
    Network,
    /// No identity, unknown peer.
    NoSession,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// One sentence for a person.
    pub error: String,
    /// What kind of failure.
    pub class: ErrorClass,
}

/// One Server-Sent Event of `GET /v1/events`: the SSE `event:` field is the
/// `event` tag, `data:` this object as JSON. Every subscriber sees every event
/// (observers never consume messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DaemonEvent {
    /// Logged in to a relay (first time for this daemon).
    Connected {
        /// Relay URL.
        relay: String,
        /// Envelopes it had queued for us.
        pending: u64,
    },
    /// Logged in again after a drop.
    Reconnect {
        /// Relay URL.
        relay: String,
        /// Envelopes it had queued for us.
        pending: u64,
    },
    /// A relay link dropped; it retries by itself.
    Disconnect {
        /// Relay URL.
        relay: String,
        /// Why.
        reason: String,
        /// Next attempt in (ms).
        retry_in_ms: u64,
    },
    /// A peer came online or left.
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
    /// A message arrived and is stored.
    Received {
        /// The message.
        message: ApiMessage,
    },
    /// A message of ours reached the relay (`delivered` or `stored`).
    Sent {
        /// Envelope id.
        id: String,
        /// Where it is.
        status: SendStatus,
    },
    /// The relay refused a message of ours for good.
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
    /// A consumer answered a message; the reply is queued.
    Replied {
        /// Envelope id of the reply.
        id: String,
        /// Message answered.
        reply_to: String,
        /// Recipient.
        to: String,
        /// Reply text.
        text: String,
    },
    /// A consumer's handler gave no reply.
    NoReply {
        /// Message handled.
        id: String,
        /// Its sender.
        from: String,
    },
    /// A consumer's handler failed or timed out.
    HandlerError {
        /// Message handled.
        id: String,
        /// Its sender.
        from: String,
        /// Exit code, if it exited.
        exit_code: Option<i32>,
        /// Signal, if killed by one.
        signal: Option<i32>,
        /// Whether it hit the timeout.
        timed_out: bool,
        /// Last part of its stderr.
        stderr: String,
    },
    /// This subscriber fell behind and missed this many events.
    Lagged {
        /// Events skipped.
        missed: u64,
    },
    /// The handler was paused (the web view's switch, `POST
    /// /v1/handler/pause`): no message is leased until `resumed`.
    Paused,
    /// The handler was resumed: leasing goes on.
    Resumed,
}

impl DaemonEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            DaemonEvent::Connected { .. } => "connected",
            DaemonEvent::Reconnect { .. } => "reconnect",
            DaemonEvent::Disconnect { .. } => "disconnect",
            DaemonEvent::PeerOnline { .. } => "peer_online",
            DaemonEvent::Paired { .. } => "paired",
            DaemonEvent::Received { .. } => "received",
            DaemonEvent::Sent { .. } => "sent",
            DaemonEvent::SendFailed { .. } => "send_error",
            DaemonEvent::Dropped { .. } => "dropped",
            DaemonEvent::Replied { .. } => "replied",
            DaemonEvent::NoReply { .. } => "no_reply",
            DaemonEvent::HandlerError { .. } => "handler_error",
            DaemonEvent::Lagged { .. } => "lagged",
            DaemonEvent::Paused => "paused",
            DaemonEvent::Resumed => "resumed",
        }
    }
}

/// `POST /v1/room/open`: a `room open` in this home hands its relay to the
/// daemon. The daemon records the room's port and URLs, revokes invites of an
/// earlier room that name a URL nobody serves now, points guests of an earlier
/// room at this relay, and publishes the room's invite.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomOpenRequest {
    /// The room relay's port (bound again by the next room of this home).
    pub port: u16,
    /// Loopback relay URL: what this home dials.
    pub local: String,
    /// Public relay URL: what the invite names for the guest.
    pub public: String,
    /// Invite lifetime in seconds.
    pub invite_ttl_secs: u64,
    /// Local name for whoever accepts.
    #[serde(default)]
    pub label: Option<String>,
}

/// `POST /v1/room/open` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomOpened {
    /// The room's invite, published on its relay.
    pub invite: InviteCreated,
    /// A signed relay update (`arru1.…`) when the public URL changed since
    /// guests paired; they apply it with `agentroom peers update`.
    pub relay_update: Option<String>,
}

/// `POST /v1/room/moved`: the room's tunnel came back at a new public URL.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomMovedRequest {
    /// Loopback relay URL (unchanged).
    pub local: String,
    /// The new public relay URL.
    pub public: String,
    /// The public relay URL before the move.
    pub previous: String,
    /// The room's invite: renewed for the new URL while nobody accepted it.
    pub invite_id: String,
    /// Lifetime of a renewed invite, in seconds.
    pub invite_ttl_secs: u64,
    /// Local name for whoever accepts a renewed invite.
    #[serde(default)]
    pub label: Option<String>,
}

/// `POST /v1/room/moved` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomMoved {
    /// Guests a sealed `relay_moved` was queued for.
    pub peers_notified: u64,
    /// A signed relay update for the new URL, when guests are paired.
    pub relay_update: Option<String>,
    /// The renewed invite, when the old one was still open.
    pub invite: Option<InviteCreated>,
    /// Whether the old invite is still open (renewal failed): keep it.
    pub invite_open: bool,
}

/// `POST /v1/messages/started`: the handler for a leased message runs in this
/// process group. Recorded with the message, so whoever leases it next (after
/// the consumer died) ends what is left of the group first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HandlerStartedRequest {
    /// The lease the handler works under.
    pub lease_id: String,
    /// The handler's process group.
    pub pgid: i32,
    /// Start time of the group's leader (clock ticks since boot), to tell a
    /// reused pid from the handler.
    #[serde(default)]
    pub leader_start: Option<u64>,
}

/// `POST /v1/messages/started` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HandlerStarted {
    /// False when no message holds this lease any more.
    pub recorded: bool,
}

/// `DELETE /v1/peers/{peer}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerRemoved {
    /// The removed peer's key (b64u).
    pub pk: String,
    /// Its label.
    pub label: Option<String>,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Whether its relay confirmed dropping the pairing.
    pub relay_confirmed: bool,
}
