//! Sends to a name no peer has yet, held while a relay still hands over its
//! backlog: the pairing message that teaches us the name may be in it (a guest
//! accepted our invite while we were away). A command run with no daemon
//! waits the same way (`peers::resolve_synced`), for as long.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::engine::Queued;
use crate::client::{ClientError, peers};

/// One held `send`, with what the engine needs to try it again.
pub(super) struct HeldSend {
    pub(super) peer: String,
    pub(super) text: String,
    pub(super) wait_reply: bool,
    pub(super) hold_reply: Option<Duration>,
    done: oneshot::Sender<Result<Queued, ClientError>>,
    until: Instant,
}

#[derive(Default)]
pub(super) struct HeldSends(Vec<HeldSend>);

/// Whether `outcome` is a send refused for a name no peer has (yet).
pub(super) fn unknown_name<T>(outcome: &Result<T, ClientError>) -> bool {
    matches!(outcome, Err(ClientError::UnknownPeer(_) | ClientError::UnknownPeerNear(..)))
}

impl HeldSends {
    pub(super) fn hold(
        &mut self,
        peer: String,
        text: String,
        wait_reply: bool,
        hold_reply: Option<Duration>,
        done: oneshot::Sender<Result<Queued, ClientError>>,
    ) {
        let until = Instant::now() + peers::SYNC_TIMEOUT;
        self.0.push(HeldSend { peer, text, wait_reply, hold_reply, done, until });
    }

    /// When the first held send runs out of time.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.0.iter().map(|h| h.until).min()
    }

    /// Try each held send again with `send`: answered once its name is known,
    /// refused once every relay has `caught_up` without teaching it, or at
    /// its deadline. A send whose caller is gone is dropped.
    pub(super) fn retry(
        &mut self,
        caught_up: bool,
        mut send: impl FnMut(&HeldSend) -> Result<Queued, ClientError>,
    ) {
        let now = Instant::now();
        for h in std::mem::take(&mut self.0) {
            if h.done.is_closed() {
                continue;
            }
            let outcome = send(&h);
            if unknown_name(&outcome) && !caught_up && now < h.until {
                self.0.push(h);
            } else {
                let _ = h.done.send(outcome);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Sleeps until `at`, or forever without one.
pub(super) async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
