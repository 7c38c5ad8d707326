//! Leases on inbox rows: hand a host agent one message at a time and mark it
//! consumed only when the agent acks it.
//!
//! bot2bot's `claim_task` + `ack_task` keeps the claim on its server for 60 s;
//! ours lives in the local state database, so it survives a crash of the MCP
//! server as well as of the host. A leased row stays `new`: if no ack arrives
//! before `lease_until`, the next [`lease_next`] offers it again under a fresh
//! lease id (at-least-once to the agent; the ack makes it exactly-once). Each
//! lease is taken in an IMMEDIATE transaction, so two consumers of one home
//! (two `serve`, or `listen` beside an MCP server) never hold the same row.
//!
//! Moved here from `mcp/` when the daemon became the one owner of a home's
//! inbox: the daemon's `/v1/messages/next` and `/v1/messages/ack` use it.

use rusqlite::{Connection, OptionalExtension, params};

use crate::client::store::CachedSql;
use crate::client::store::{InboxRow, Store, StoreError};
use crate::crypto::{CryptoRng, IdentityPublicKey, SystemRng};
use crate::protocol::EnvelopeId;

/// One leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// What the agent passes to `ack`.
    pub lease_id: String,
    /// Local arrival order.
    pub seq: i64,
    /// Sender.
    pub peer: IdentityPublicKey,
    /// Sender's envelope id.
    pub id: EnvelopeId,
    /// Text.
    pub text: String,
    /// The envelope this answers.
    pub reply_to: Option<EnvelopeId>,
    /// Relay accept time, unix ms.
    pub relay_ts: u64,
    /// How many times this message has been leased, this one included (2+ means
    /// an earlier lease expired without an ack).
    pub delivery: u64,
    /// When this lease ends, unix ms.
    pub lease_until: u64,
}

/// What [`ack`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The message is consumed now.
    Acked,
    /// Already consumed by an earlier ack with this lease id (a retried call).
    AlreadyAcked,
    /// No message holds this lease: unknown id, or the lease expired and the
    /// message was leased again (ack the newer lease instead).
    Unknown,
}

/// Lease the oldest unconsumed text message (optionally from one peer) that is
/// not under a live lease, for `lease_ms` from `now_ms`. Messages answering one
/// of `awaited` (envelope ids a `send --wait-reply` waits on) are never leased:
/// they belong to that waiter.
pub fn lease_next(
    store: &mut Store,
    from: Option<&IdentityPublicKey>,
    now_ms: u64,
    lease_ms: u64,
    awaited: &[String],
) -> Result<Option<Leased>, StoreError> {
    lease_matching(store, from, None, now_ms, lease_ms, awaited)
}

/// Lease the reply to our envelope `reply_to` (a message naming it in its
/// `reply_to`), never an older unread message of the same peer.
pub fn lease_reply(
    store: &mut Store,
    reply_to: &EnvelopeId,
    now_ms: u64,
    lease_ms: u64,
) -> Result<Option<Leased>, StoreError> {
    lease_matching(store, None, Some(reply_to), now_ms, lease_ms, &[])
}

fn lease_matching(
    store: &mut Store,
    from: Option<&IdentityPublicKey>,
    reply_to: Option<&EnvelopeId>,
    now_ms: u64,
    lease_ms: u64,
    awaited: &[String],
) -> Result<Option<Leased>, StoreError> {
    let awaited = serde_json::to_string(awaited).expect("a list of strings serialises");
    let tx = store.immediate()?;
    let row = tx
        .query_row_cached(
            "SELECT seq, peer, id, text, reply_to, relay_ts, deliveries FROM inbox
             WHERE state = 'new' AND kind = 'text'
               AND (?1 IS NULL OR peer = ?1)
               AND (lease_until IS NULL OR lease_until <= ?2)
               AND (reply_to IS NULL OR reply_to NOT IN (SELECT value FROM json_each(?3)))
               AND (?4 IS NULL OR reply_to = ?4)
             ORDER BY seq LIMIT 1",
            params![
                from.map(IdentityPublicKey::to_b64u),
                to_i64(now_ms),
                awaited,
                reply_to.map(EnvelopeId::to_b64u)
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((seq, peer, id, text, reply_to, relay_ts, deliveries)) = row else {
        return Ok(None);
    };
    let bad = || StoreError::BadRecord("inbox");
    let lease_id = new_lease_id(seq);
    let lease_until = now_ms.saturating_add(lease_ms);
    tx.execute_cached(
        "UPDATE inbox SET lease_id = ?2, lease_until = ?3, deliveries = deliveries + 1
         WHERE seq = ?1",
        params![seq, lease_id, to_i64(lease_until)],
    )?;
    tx.commit()?;
    Ok(Some(Leased {
        lease_id,
        seq,
        peer: IdentityPublicKey::from_b64u(&peer).map_err(|_| bad())?,
        id: EnvelopeId::from_b64u(&id).ok_or_else(bad)?,
        text,
        reply_to: reply_to.as_deref().and_then(EnvelopeId::from_b64u),
        relay_ts: u64::try_from(relay_ts).unwrap_or(0),
        delivery: u64::try_from(deliveries).unwrap_or(0).saturating_add(1),
        lease_until,
    }))
}

/// Mark the message under `lease_id` consumed. An ack after the lease ran out
/// still counts as long as nobody leased the message again meanwhile.
pub fn ack(conn: &Connection, lease_id: &str) -> Result<AckOutcome, StoreError> {
    let changed = conn.execute_cached(
        "UPDATE inbox SET state = 'done', lease_until = NULL WHERE lease_id = ?1 AND state = 'new'",
        [lease_id],
    )?;
    if changed > 0 {
        return Ok(AckOutcome::Acked);
    }
    let done = conn
        .query_row_cached(
            "SELECT 1 FROM inbox WHERE lease_id = ?1 AND state = 'done'",
            [lease_id],
            |_| Ok(()),
        )
        .optional()?;
    Ok(if done.is_some() { AckOutcome::AlreadyAcked } else { AckOutcome::Unknown })
}

/// The message under a live or expired lease `lease_id`, for an ack that
/// carries a reply: `Ok(Some((seq, peer, id)))` while it is unconsumed.
pub fn leased_row(
    conn: &Connection,
    lease_id: &str,
) -> Result<Option<(i64, IdentityPublicKey, EnvelopeId)>, StoreError> {
    let row = conn
        .query_row_cached(
            "SELECT seq, peer, id FROM inbox WHERE lease_id = ?1 AND state = 'new'",
            [lease_id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
        )
        .optional()?;
    let Some((seq, peer, id)) = row else { return Ok(None) };
    let bad = || StoreError::BadRecord("inbox");
    Ok(Some((
        seq,
        IdentityPublicKey::from_b64u(&peer).map_err(|_| bad())?,
        EnvelopeId::from_b64u(&id).ok_or_else(bad)?,
    )))
}

/// Mark the row under `lease_id` consumed (inside the caller's transaction).
pub fn consume(conn: &Connection, seq: i64) -> Result<(), StoreError> {
    conn.execute_cached(
        "UPDATE inbox SET state = 'done', lease_until = NULL WHERE seq = ?1",
        [seq],
    )?;
    Ok(())
}

/// Text messages stored after `seq`, in order (for the event stream).
pub fn text_since(conn: &Connection, seq: i64) -> Result<Vec<InboxRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq FROM inbox WHERE seq > ?1 AND kind = 'text' ORDER BY seq LIMIT 1000",
    )?;
    let seqs: Vec<i64> = stmt.query_map([seq], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(seqs.len());
    for s in seqs {
        if let Some(row) = row_by_seq(conn, s)? {
            out.push(row);
        }
    }
    Ok(out)
}

/// One inbox row by seq.
fn row_by_seq(conn: &Connection, seq: i64) -> Result<Option<InboxRow>, StoreError> {
    let row = conn
        .query_row_cached("SELECT peer, id FROM inbox WHERE seq = ?1", [seq], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    let Some((peer, id)) = row else { return Ok(None) };
    let bad = || StoreError::BadRecord("inbox");
    let peer = IdentityPublicKey::from_b64u(&peer).map_err(|_| bad())?;
    let id = EnvelopeId::from_b64u(&id).ok_or_else(bad)?;
    crate::client::store::inbox_seen(conn, &peer, &id)
}

/// End every lease: called when a daemon starts, since the consumers that held
/// them belonged to a daemon that is gone (one killed with its `serve`, say).
/// A consumer that survived and acks a released lease gets "unknown" once the
/// message was leased again, and its reply is not sent: answered at most once.
pub fn release_all(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute_cached(
        "UPDATE inbox SET lease_until = NULL WHERE state = 'new' AND lease_until IS NOT NULL",
        [],
    )?)
}

/// The highest inbox seq (0 when empty).
pub fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row_cached("SELECT coalesce(max(seq), 0) FROM inbox", [], |r| r.get(0))?)
}

/// Unconsumed text messages: `(waiting, leased)` at `now_ms`.
pub fn counts(conn: &Connection, now_ms: u64) -> Result<(u64, u64), StoreError> {
    Ok(conn.query_row_cached(
        "SELECT
           coalesce(sum(CASE WHEN lease_until IS NULL OR lease_until <= ?1 THEN 1 ELSE 0 END), 0),
           coalesce(sum(CASE WHEN lease_until > ?1 THEN 1 ELSE 0 END), 0)
         FROM inbox WHERE state = 'new' AND kind = 'text'",
        [to_i64(now_ms)],
        |r| {
            Ok((
                u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        },
    )?)
}

/// `<seq>.<16 hex>`: the seq makes it readable in logs, the random part makes
/// a stale id from an earlier lease of the same row useless.
fn new_lease_id(seq: i64) -> String {
    let mut r = [0u8; 8];
    SystemRng.fill(&mut r);
    format!("{seq}.{}", hex::encode(r))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::store::{self, NewInbox, Store};

    fn pk(n: u8) -> IdentityPublicKey {
        IdentityPublicKey::from_bytes(&[n; 32]).unwrap()
    }

    fn store_with(messages: &[(u8, u8, &str)]) -> (tempfile::TempDir, Store) {
        crate::crypto::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        for (peer, id, text) in messages {
            let m = NewInbox {
                peer: &pk(*peer),
                id: &EnvelopeId([*id; 16]),
                kind: "text",
                text,
                reply_to: None,
                relay_ts: 1,
                state: store::InboxState::New,
            };
            store::insert_inbox(store.conn(), &m, 1).unwrap();
        }
        (dir, store)
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("state.db")).unwrap()
    }

    #[test]
    fn lease_hides_a_message_until_it_expires_then_offers_it_again() {
        let (dir, _store) = store_with(&[(1, 1, "first"), (1, 2, "second")]);
        let mut db = open(&dir);
        let a = lease_next(&mut db, None, 1000, 500, &[]).unwrap().unwrap();
        assert_eq!((a.text.as_str(), a.delivery, a.lease_until), ("first", 1, 1500));
        let b = lease_next(&mut db, None, 1200, 500, &[]).unwrap().unwrap();
        assert_eq!(b.text, "second", "a live lease hides the first message");
        assert_eq!(lease_next(&mut db, None, 1400, 500, &[]).unwrap(), None);
        assert_eq!(counts(db.conn(), 1400).unwrap(), (0, 2));
        let again = lease_next(&mut db, None, 1500, 500, &[]).unwrap().unwrap();
        assert_eq!((again.seq, again.delivery), (a.seq, 2));
        assert_ne!(again.lease_id, a.lease_id);
        assert_eq!(ack(db.conn(), &a.lease_id).unwrap(), AckOutcome::Unknown, "stale lease");
        assert_eq!(ack(db.conn(), &again.lease_id).unwrap(), AckOutcome::Acked);
        assert_eq!(ack(db.conn(), &again.lease_id).unwrap(), AckOutcome::AlreadyAcked);
        // Consumed for good: never offered again, even long after.
        let next = lease_next(&mut db, None, 1_000_000, 500, &[]).unwrap().unwrap();
        assert_eq!(next.text, "second");
        assert_eq!(ack(db.conn(), &next.lease_id).unwrap(), AckOutcome::Acked);
        assert_eq!(lease_next(&mut db, None, 2_000_000, 500, &[]).unwrap(), None);
        assert_eq!(counts(db.conn(), 2_000_000).unwrap(), (0, 0));
    }

    #[test]
    fn a_reply_wait_gets_the_reply_not_an_older_unread_message() {
        crate::crypto::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut db = Store::open(&dir.path().join("state.db")).unwrap();
        let ours = EnvelopeId([9; 16]);
        for (id, reply_to, text) in [(1u8, None, "older, unread"), (2, Some(ours), "the answer")] {
            let m = NewInbox {
                peer: &pk(1),
                id: &EnvelopeId([id; 16]),
                kind: "text",
                text,
                reply_to,
                relay_ts: 1,
                state: store::InboxState::New,
            };
            store::insert_inbox(db.conn(), &m, 1).unwrap();
        }
        let got = lease_reply(&mut db, &ours, 0, 10).unwrap().unwrap();
        assert_eq!(got.text, "the answer");
        assert_eq!(lease_reply(&mut db, &ours, 0, 10).unwrap(), None, "leased once");
        // Consumers never take a reply a `send` waits for; the rest they do.
        let awaited = [ours.to_b64u()];
        let next = lease_next(&mut db, None, 100, 1000, &awaited).unwrap().unwrap();
        assert_eq!(next.text, "older, unread");
        assert_eq!(lease_next(&mut db, None, 200, 1000, &awaited).unwrap(), None);
    }

    #[test]
    fn late_ack_counts_while_nobody_leased_the_message_again() {
        let (dir, _store) = store_with(&[(1, 1, "only")]);
        let mut db = open(&dir);
        let a = lease_next(&mut db, None, 0, 10, &[]).unwrap().unwrap();
        assert_eq!(ack(db.conn(), &a.lease_id).unwrap(), AckOutcome::Acked);
        assert_eq!(lease_next(&mut db, None, 100, 10, &[]).unwrap(), None);
    }

    #[test]
    fn from_filter_and_unknown_ids() {
        let (dir, _store) = store_with(&[(1, 1, "from one"), (2, 2, "from two")]);
        let mut db = open(&dir);
        let m = lease_next(&mut db, Some(&pk(2)), 0, 10, &[]).unwrap().unwrap();
        assert_eq!(m.text, "from two");
        assert_eq!(lease_next(&mut db, Some(&pk(3)), 0, 10, &[]).unwrap(), None);
        assert_eq!(ack(db.conn(), "nope").unwrap(), AckOutcome::Unknown);
        // `listen` consuming a row directly also ends its lease's usefulness.
        assert!(store::inbox_done(db.conn(), m.seq).unwrap());
        assert_eq!(ack(db.conn(), &m.lease_id).unwrap(), AckOutcome::AlreadyAcked);
    }
}
