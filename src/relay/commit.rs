//! Answering senders once their envelope is on disk, in the order it was queued.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

use super::Shared;
use super::hub::{Ctrl, CtrlTx, sent_frame};
use super::login::error_frame;
use super::store::{InsertOutcome, StoreError};
use crate::crypto::IdentityPublicKey;
use crate::protocol::{DeliveryStatus, EnvelopeId, ErrorCode};

/// How a committed insert is answered.
pub(crate) enum Kind {
    /// Routed to the queue: answer on this control channel, tell the hub.
    Queued(CtrlTx),
    /// A live envelope spilled after its ack window: answer unless acked meanwhile.
    Spill,
}

/// A connection's queue of commits to answer, in the order their inserts were
/// enqueued (pushed under the hub lock). Not bounded here: each entry stands for
/// an insert in the store's bounded queue, or one already refused by it.
#[derive(Clone)]
pub(crate) struct CommitTx(mpsc::UnboundedSender<Completion>);

impl std::fmt::Debug for CommitTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitTx").finish_non_exhaustive()
    }
}

impl CommitTx {
    /// A queue and its receiving end for [`answer_commits`].
    pub(super) fn new() -> (Self, mpsc::UnboundedReceiver<Completion>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Queue an answer; dropped only if the answering task is gone (shutdown).
    pub(super) fn push(&self, c: Completion) {
        let _ = self.0.send(c);
    }
}

/// An insert on its way to disk whose sender waits for `sent`.
pub(crate) struct Completion {
    pub(super) rx: tokio::sync::oneshot::Receiver<Result<InsertOutcome, StoreError>>,
    pub(super) to: IdentityPublicKey,
    pub(super) from: IdentityPublicKey,
    pub(super) id: EnvelopeId,
    pub(super) accepted: Instant,
    pub(super) kind: Kind,
}

/// One task per connection answers its store commits in the order they were
/// queued, so `sent` frames for stored envelopes keep the sender's order.
pub(super) async fn answer_commits(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Completion>,
) {
    while let Some(c) = rx.recv().await {
        let r = c.rx.await.unwrap_or(Err(StoreError::Closed));
        let ord = match r {
            Ok(InsertOutcome::Stored(s) | InsertOutcome::Duplicate(s)) => Some(s),
            _ => None,
        };
        match c.kind {
            Kind::Queued(ctrl) => {
                let frame = store_answer(&shared, c.id, &r, c.accepted);
                shared.hub.finish_store(&c.to, ord);
                ctrl.send(Ctrl::Frame(frame));
            }
            Kind::Spill => {
                let frame = spill_answer(&shared, c.id, &r);
                shared.hub.finish_spill(c.to, c.from, c.id, ord, frame);
            }
        }
    }
}

/// Like [`store_answer`] for a spilled live envelope (its latency is counted on
/// ack, or here only when it is answered `stored`).
fn spill_answer(
    shared: &Shared,
    id: EnvelopeId,
    r: &Result<InsertOutcome, StoreError>,
) -> Utf8Bytes {
    match r {
        Ok(InsertOutcome::Stored(_) | InsertOutcome::Duplicate(_)) => {
            shared.metrics.envelopes_stored.fetch_add(1, Ordering::Relaxed);
            sent_frame(id, DeliveryStatus::Stored)
        }
        _ => store_answer(shared, id, r, Instant::now()),
    }
}

/// The frame answering a `send` whose envelope went to the store.
fn store_answer(
    shared: &Shared,
    id: EnvelopeId,
    r: &Result<InsertOutcome, StoreError>,
    accepted: Instant,
) -> Utf8Bytes {
    let m = &shared.metrics;
    match r {
        Ok(InsertOutcome::Stored(_)) => {
            m.envelopes_stored.fetch_add(1, Ordering::Relaxed);
            m.delivery_latency.observe(accepted.elapsed());
            sent_frame(id, DeliveryStatus::Stored)
        }
        Ok(InsertOutcome::Duplicate(_)) => {
            m.envelopes_duplicate.fetch_add(1, Ordering::Relaxed);
            sent_frame(id, DeliveryStatus::Stored)
        }
        Ok(InsertOutcome::QueueFull) => {
            m.count_error(ErrorCode::QueueFull);
            error_frame(
                ErrorCode::QueueFull,
                "recipient's queue is full; retry later",
                Some(id),
                None,
            )
        }
        Ok(InsertOutcome::Conflict) => error_frame(
            ErrorCode::Conflict,
            "envelope id reused with a different body or recipient",
            Some(id),
            None,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "store insert failed");
            error_frame(ErrorCode::Internal, "storage fault; retry", Some(id), None)
        }
    }
}
