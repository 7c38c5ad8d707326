//! The client: identity, local state, relay links, invites and messaging (the
//! handler loop is the daemon's consumer). Library functions take a [`CancellationToken`] where they run
//! long, so `room open` can drive them without the CLI.
//!
//! [`CancellationToken`]: tokio_util::sync::CancellationToken

pub mod connection;
pub mod home;
pub mod identity;
pub mod relay_url;
pub mod store;
pub mod tls;

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub mod engine;
pub mod events;
pub mod history;
pub mod invites;
pub mod listen;
pub mod payload;
pub mod peers;
pub mod receive;
pub mod seal;
pub mod send;

pub use engine::{Client, Incoming};

use crate::protocol::ErrorCode;

/// An error and its causes on one line (`a: b: c`), for output that has no
/// error-chain printer (MCP results, events). Each variant says its cause once,
/// either in its message or as its source, so nothing repeats.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// How a failure should be reported (the CLI maps these to exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Anything else (bad invite, corrupt state, refused send).
    Failure,
    /// Bad arguments.
    Usage,
    /// Relay unreachable, connection lost, timed out.
    Network,
    /// No identity yet, or an unknown peer.
    NoSession,
}

/// Errors from client flows. One line each, written for the user.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Loading or creating the identity failed (missing → run setup).
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The state directory or config failed.
    #[error(transparent)]
    Home(#[from] home::HomeError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A relay URL did not parse.
    #[error(transparent)]
    RelayUrl(#[from] relay_url::RelayUrlError),
    /// A relay could not be reached or refused us.
    #[error(transparent)]
    Link(#[from] connection::LinkError),
    /// A pasted invite is malformed, forged or expired.
    #[error("invite refused: {0}")]
    Invite(crate::crypto::InviteError),
    /// A session operation failed (a damaged session record, or key trouble).
    #[error("session error: {0}")]
    Session(crate::crypto::SessionError),
    /// Nothing to listen to: no peers and no open invites.
    #[error(
        "no peers and no open invites yet: run `agentroom invite create` or `agentroom invite accept` first"
    )]
    NoPeers,
    /// No peer matches.
    #[error("unknown peer {0:?}: see `agentroom peers`")]
    UnknownPeer(String),
    /// No peer matches, but a label is close.
    #[error("unknown peer {0:?}: did you mean {1:?}? (see `agentroom peers`)")]
    UnknownPeerNear(String, String),
    /// A key or fingerprint prefix shorter than 4 characters.
    #[error("peer prefix {0:?} is too short (4+ characters of the key or fingerprint, or a label)")]
    PrefixTooShort(String),
    /// Several peers match a prefix.
    #[error("peer {0:?} is ambiguous ({1} peers match): use more characters or the label")]
    AmbiguousPeer(String, usize),
    /// No invite matches.
    #[error("unknown invite {0:?}: see `agentroom invite list`")]
    UnknownInvite(String),
    /// `invite create` without `--relay` and no default relay configured.
    #[error("no relay: pass --relay URL (or run `agentroom setup --relay URL` once)")]
    NoRelay,
    /// An invite we created ourselves.
    #[error("this is your own invite; give it to the other agent")]
    OwnInvite,
    /// Already paired with this identity.
    #[error("already paired with {0}; run `agentroom peers remove {0}` first to pair again")]
    AlreadyPaired(String),
    /// `peers verify PEER NUMBER` with a number that is not the pair's safety
    /// number: nothing is marked.
    #[error(
        "the safety number you gave is not the one of {0} ({1}): nothing was marked verified; \
         compare again with the peer over a channel you trust (a different number can mean \
         someone is in the middle)"
    )]
    SafetyNumberMismatch(String, String),
    /// The label is used by another peer.
    #[error("label {0:?} is already used by another peer")]
    LabelTaken(String),
    /// The relay refused the invite claim (already used, revoked, unknown, expired).
    #[error("invite refused by the relay: {}", invite_refusal(*.0))]
    InviteRefused(ErrorCode, String),
    /// A pasted relay update is malformed or forged.
    #[error("relay update refused: {0}")]
    RelayUpdate(#[from] crate::crypto::relay_update::RelayUpdateError),
    /// A relay update that is not newer than the one applied last.
    #[error(
        "relay update refused: it is not newer than the one already applied for {0} (replayed or out of order)"
    )]
    StaleRelayUpdate(String),
    /// The peer told us (signed notice) it could not decrypt the message.
    #[error(
        "{0} could not decrypt the message (its session with us was reset or lost); pair again to reach it"
    )]
    Undecryptable(String),
    /// The relay refused a message for good.
    #[error("relay refused the message: {code} ({1})", code = .0.as_str())]
    SendRefused(ErrorCode, String),
    /// The relay refused a request (publish, revoke).
    #[error("relay refused the request: {code} ({1})", code = .0.as_str())]
    RequestRefused(ErrorCode, String),
    /// A message above the size limit.
    #[error("message too large: {0} bytes (limit {max})", max = payload::MAX_TEXT_BYTES)]
    TooLarge(usize),
    /// Waited too long.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, &'static str),
    /// The operation was cancelled (Ctrl-C, shutdown).
    #[error("cancelled")]
    Cancelled,
}

fn invite_refusal(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InviteClaimed => {
            "this invite was already used by someone else (invites are single-use)"
        }
        ErrorCode::InviteExpired => "this invite has expired; ask for a new one",
        ErrorCode::InviteRevoked => "the host revoked this invite",
        ErrorCode::InviteUnknown => {
            "the relay does not know this invite (not published, or another relay)"
        }
        _ => "the relay refused the first message",
    }
}

impl ClientError {
    /// The exit class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::Identity(identity::IdentityError::Missing(_))
            | ClientError::UnknownPeer(_)
            | ClientError::UnknownPeerNear(..)
            | ClientError::PrefixTooShort(_)
            | ClientError::NoPeers
            | ClientError::AmbiguousPeer(..) => ErrorClass::NoSession,
            ClientError::Link(_) | ClientError::Timeout(..) => ErrorClass::Network,
            // A bad invite is bad input (exit 2, as in the TypeScript agentroom).
            ClientError::NoRelay | ClientError::RelayUrl(_) | ClientError::Invite(_) => {
                ErrorClass::Usage
            }
            _ => ErrorClass::Failure,
        }
    }
}

// The cause is printed in these variants' messages, so they are not `#[source]`
// (an error chain would print it twice); hence hand-written `From`s.
impl From<crate::crypto::InviteError> for ClientError {
    fn from(e: crate::crypto::InviteError) -> Self {
        Self::Invite(e)
    }
}

impl From<crate::crypto::SessionError> for ClientError {
    fn from(e: crate::crypto::SessionError) -> Self {
        Self::Session(e)
    }
}

#[cfg(test)]
mod tests;
