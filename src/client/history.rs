//! The conversation history: every text message sent and received, with its
//! peer, direction, ids, times and delivery state, plus the deletions that keep
//! it bounded: retention (`--retain 30d` on long-running commands) and per-peer
//! disappearing messages (`peers set PEER --expire 1h`).
//!
//! Rows are written in the same transaction that seals (outgoing) or decrypts
//! (incoming) a message, so the history never shows a message that was not
//! sent or received. This module is what `agentroom history` and the local
//! API's history endpoint call.

use std::time::Duration;

use rusqlite::Connection;

use super::store::{self, Store, StoreError};
use crate::crypto::IdentityPublicKey;

pub use super::store::{DeliveryState, Direction, HistoryEntry, Swept};

/// Which messages [`history`] returns.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only this peer (resolve a name with [`super::peers::resolve`]).
    pub peer: Option<IdentityPublicKey>,
    /// Only messages stored or sealed at or after this time (unix ms).
    pub since: Option<u64>,
    /// At most this many, the latest ones (`None`: all).
    pub limit: Option<u32>,
}

/// The messages matching `filter`, oldest first.
pub fn history(conn: &Connection, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>, StoreError> {
    store::query_history(conn, filter.peer.as_ref(), filter.since, filter.limit)
}

/// Delete what is past its time, as of `now_ms`: for each peer with
/// disappearing messages, its history, consumed inbox rows and finished outbox
/// rows older than its expiry; with `retain`, all history and consumed inbox
/// rows older than that. Takes the write lock only when something is due, so
/// an idle process can call it often.
pub fn sweep(
    store: &mut Store,
    retain: Option<Duration>,
    now_ms: u64,
) -> Result<Swept, StoreError> {
    let expiring = store::peer_expiries(store.conn())?;
    let retain_cut = retain.map(|d| now_ms.saturating_sub(millis(d)));
    let retain_due = match retain_cut {
        Some(cut) => store::any_older_than(store.conn(), cut)?,
        None => false,
    };
    if expiring.is_empty() && !retain_due {
        return Ok(Swept::default());
    }
    let tx = store.immediate()?;
    let mut total = Swept::default();
    for (pk, secs) in expiring {
        let cut = now_ms.saturating_sub(secs.saturating_mul(1000));
        add(&mut total, store::delete_peer_expired(&tx, &pk, cut)?);
    }
    if let (Some(cut), true) = (retain_cut, retain_due) {
        add(&mut total, store::delete_older_than(&tx, cut)?);
    }
    tx.commit()?;
    if total != Swept::default() {
        tracing::debug!(
            history = total.history,
            inbox = total.inbox,
            outbox = total.outbox,
            "deleted expired messages"
        );
    }
    Ok(total)
}

/// Turn disappearing messages on (`Some(expiry)`) or off for a peer. Existing
/// messages count too: they go at the next sweep once older than `expiry`.
pub fn set_expiry(
    conn: &Connection,
    peer: &IdentityPublicKey,
    expiry: Option<Duration>,
) -> Result<bool, StoreError> {
    // Whole seconds, at least one: `0s` would mean "delete at once", which is
    // what `peers remove` is for.
    let secs = expiry.map(|d| d.as_secs().max(1));
    store::set_peer_expiry(conn, peer, secs)
}

/// A peer's disappearing-message time, if on.
pub fn expiry(conn: &Connection, peer: &IdentityPublicKey) -> Result<Option<Duration>, StoreError> {
    Ok(store::peer_expiry(conn, peer)?.map(Duration::from_secs))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn add(total: &mut Swept, s: Swept) {
    total.history += s.history;
    total.inbox += s.inbox;
    total.outbox += s.outbox;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::store::{NewHistory, NewInbox, OutboxRow, PeerRole, PeerRow};
    use crate::protocol::{DeliveryStatus, EnvelopeId};

    fn peer(store: &Store, n: u8, label: &str) -> IdentityPublicKey {
        let pk = IdentityPublicKey::from_bytes(&[n; 32]).unwrap();
        let row = PeerRow {
            pk,
            label: Some(label.into()),
            role: PeerRole::Guest,
            relay_url: "ws://r/ws".into(),
            invite_id: "i".into(),
            created_at: 1,
            last_seen: None,
            verified_safety: None,
        };
        store::insert_peer(store.conn(), &row, b"{}").unwrap();
        pk
    }

    fn record(store: &Store, pk: &IdentityPublicKey, dir: Direction, id: u8, at: u64) {
        let m = NewHistory {
            peer: pk,
            direction: dir,
            id: &EnvelopeId([id; 16]),
            text: "t",
            reply_to: None,
            relay_ts: None,
            at,
        };
        store::insert_history(store.conn(), &m).unwrap();
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn filter_by_peer_since_and_limit() {
        let (_d, store) = open();
        let (a, b) = (peer(&store, 1, "a"), peer(&store, 2, "b"));
        record(&store, &a, Direction::Out, 1, 1_000);
        record(&store, &b, Direction::In, 2, 2_000);
        record(&store, &a, Direction::In, 3, 3_000);
        let all = history(store.conn(), &HistoryFilter::default()).unwrap();
        assert_eq!(all.iter().map(|e| e.at).collect::<Vec<_>>(), [1_000, 2_000, 3_000]);
        assert_eq!(all[0].label.as_deref(), Some("a"));
        assert_eq!(all[0].state, DeliveryState::Queued);
        assert_eq!(all[1].state, DeliveryState::Received);
        let f = HistoryFilter { peer: Some(a), ..Default::default() };
        assert_eq!(history(store.conn(), &f).unwrap().len(), 2);
        let f = HistoryFilter { since: Some(2_000), ..Default::default() };
        assert_eq!(history(store.conn(), &f).unwrap().len(), 2);
        // The latest N, still oldest first.
        let f = HistoryFilter { limit: Some(2), ..Default::default() };
        let got: Vec<u64> = history(store.conn(), &f).unwrap().iter().map(|e| e.at).collect();
        assert_eq!(got, [2_000, 3_000]);
    }

    #[test]
    fn delivery_state_moves_forward_only() {
        let (_d, store) = open();
        let a = peer(&store, 1, "a");
        record(&store, &a, Direction::Out, 1, 1);
        record(&store, &a, Direction::Out, 2, 2);
        let c = store.conn();
        store::history_sent(c, &EnvelopeId([1; 16]), DeliveryStatus::Stored, 5).unwrap();
        store::history_sent(c, &EnvelopeId([1; 16]), DeliveryStatus::Delivered, 6).unwrap();
        store::history_failed(c, &EnvelopeId([1; 16])).unwrap();
        // The peer answers message 2 before the relay's `sent` arrives.
        let m = NewHistory {
            peer: &a,
            direction: Direction::In,
            id: &EnvelopeId([9; 16]),
            text: "re",
            reply_to: Some(EnvelopeId([2; 16])),
            relay_ts: Some(7),
            at: 7,
        };
        store::insert_history(c, &m).unwrap();
        store::history_sent(c, &EnvelopeId([2; 16]), DeliveryStatus::Stored, 8).unwrap();
        let all = history(c, &HistoryFilter::default()).unwrap();
        assert_eq!((all[0].state, all[0].sent_at), (DeliveryState::Delivered, Some(5)));
        assert_eq!((all[1].state, all[1].sent_at), (DeliveryState::Delivered, Some(8)));
        assert_eq!(all[2].reply_to, Some(EnvelopeId([2; 16]).to_b64u()));
        assert_eq!(all[2].sent_at, Some(7), "in: the relay's accept time");
    }

    #[test]
    fn expired_text_leaves_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut store = Store::open(&path).unwrap();
        let a = peer(&store, 1, "a");
        let m = NewHistory {
            peer: &a,
            direction: Direction::In,
            id: &EnvelopeId([1; 16]),
            text: "the-launch-code-is-4815162342",
            reply_to: None,
            relay_ts: None,
            at: 1_000,
        };
        store::insert_history(store.conn(), &m).unwrap();
        let checkpoint = |s: &Store| {
            s.conn().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        };
        checkpoint(&store);
        let has = || {
            let bytes = std::fs::read(&path).unwrap();
            bytes.windows(29).any(|w| w == b"the-launch-code-is-4815162342")
        };
        assert!(has(), "the text is in the file before");
        set_expiry(store.conn(), &a, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(sweep(&mut store, None, 2_000).unwrap().history, 1);
        checkpoint(&store);
        assert!(!has(), "secure_delete overwrote it");
    }

    #[test]
    fn sweep_deletes_exactly_what_is_past_its_time() {
        let (_d, mut store) = open();
        let (a, b) = (peer(&store, 1, "a"), peer(&store, 2, "b"));
        assert!(set_expiry(store.conn(), &a, Some(Duration::from_secs(10))).unwrap());
        record(&store, &a, Direction::Out, 1, 100_000);
        record(&store, &a, Direction::In, 2, 105_000);
        record(&store, &b, Direction::In, 3, 100_000);
        for (n, state) in [(4u8, store::InboxState::Done), (5, store::InboxState::New)] {
            let m = NewInbox {
                peer: &a,
                id: &EnvelopeId([n; 16]),
                kind: "text",
                text: "x",
                reply_to: None,
                relay_ts: 1,
                state,
            };
            store::insert_inbox(store.conn(), &m, 100_000).unwrap();
        }
        for (n, sent) in [(6u8, true), (7, false)] {
            let row = OutboxRow {
                id: EnvelopeId([n; 16]),
                peer: a,
                relay_url: "ws://r/ws".into(),
                body: vec![1],
                claim: None,
            };
            store::insert_outbox(store.conn(), &row, None, 100).unwrap();
            if sent {
                store::outbox_sent(store.conn(), &row.id, 100).unwrap();
            }
        }
        // One millisecond early: nothing goes.
        assert_eq!(sweep(&mut store, None, 109_999).unwrap(), Swept::default());
        // At the time: the first message, the consumed inbox row and the sent outbox row.
        let s = sweep(&mut store, None, 110_000).unwrap();
        assert_eq!(s, Swept { history: 1, inbox: 1, outbox: 1 });
        let left = history(store.conn(), &HistoryFilter::default()).unwrap();
        assert_eq!(left.len(), 2, "a's later message and b's (no expiry) stay");
        assert_eq!(store::inbox_new(store.conn(), None).unwrap().len(), 1, "unread stays");
        assert_eq!(store::outbox_pending_count(store.conn()).unwrap(), 1, "pending stays");
        // Off: nothing more of a's goes; retention then takes everything old enough.
        assert!(set_expiry(store.conn(), &a, None).unwrap());
        assert_eq!(sweep(&mut store, None, 1_000_000).unwrap(), Swept::default());
        let s = sweep(&mut store, Some(Duration::from_secs(1)), 105_000 + 999).unwrap();
        assert_eq!(s.history, 1, "only b's message is a second old");
        let s = sweep(&mut store, Some(Duration::from_secs(1)), 106_000).unwrap();
        assert_eq!(s.history, 1);
        assert!(history(store.conn(), &HistoryFilter::default()).unwrap().is_empty());
        assert_eq!(
            store::inbox_new(store.conn(), None).unwrap().len(),
            1,
            "unread is never pruned"
        );
        assert!(
            !set_expiry(store.conn(), &IdentityPublicKey::from_bytes(&[9; 32]).unwrap(), None)
                .unwrap()
        );
    }
}
