//! The SQL behind each store command; run inside the store thread's transaction.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::store::{
    ClaimOutcome, InsertOutcome, PublishOutcome, StoreError, StoreOptions, StoredEnvelope,
};
use crate::crypto::IdentityPublicKey;
use crate::protocol::{EnvelopeId, InviteHash};

pub(super) fn pk(bytes: &[u8]) -> Result<IdentityPublicKey, rusqlite::Error> {
    IdentityPublicKey::from_bytes(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

fn ordered(a: IdentityPublicKey, b: IdentityPublicKey) -> (IdentityPublicKey, IdentityPublicKey) {
    if a <= b { (a, b) } else { (b, a) }
}

/// An envelope to queue.
pub(super) struct NewRow<'a> {
    pub(super) recipient: IdentityPublicKey,
    pub(super) sender: IdentityPublicKey,
    pub(super) id: EnvelopeId,
    pub(super) body: &'a [u8],
    pub(super) accepted_ms: u64,
    /// The relay's accept order (see `hub`).
    pub(super) ord: i64,
}

pub(super) fn insert(
    tx: &Transaction<'_>,
    counts: &mut HashMap<IdentityPublicKey, u64>,
    opts: &StoreOptions,
    row: &NewRow<'_>,
    enforce_limit: bool,
) -> Result<InsertOutcome, StoreError> {
    let &NewRow { recipient, sender, id, body, accepted_ms, ord } = row;
    let count = counts.get(&recipient).copied().unwrap_or(0);
    if !enforce_limit || count < opts.max_pending {
        let n = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO envelopes (recipient, sender, id, body, accepted_ms, ord) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                recipient.as_bytes(),
                sender.as_bytes(),
                id.0,
                body,
                i64::try_from(accepted_ms).unwrap_or(i64::MAX),
                ord
            ])?;
        if n == 1 {
            *counts.entry(recipient).or_insert(0) += 1;
            return Ok(InsertOutcome::Stored(ord));
        }
    }
    let existing = tx
        .prepare_cached("SELECT ord, recipient, body FROM envelopes WHERE sender = ?1 AND id = ?2")?
        .query_row(params![sender.as_bytes(), id.0], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?))
        })
        .optional()?;
    Ok(match existing {
        Some((seq, to, b)) if to == recipient.as_bytes() && b == body => {
            InsertOutcome::Duplicate(seq)
        }
        Some(_) => InsertOutcome::Conflict,
        None => InsertOutcome::QueueFull,
    })
}

pub(super) fn load(
    tx: &Transaction<'_>,
    recipient: IdentityPublicKey,
    after_ord: i64,
    limit: usize,
) -> Result<Vec<StoredEnvelope>, StoreError> {
    let mut s = tx.prepare_cached(
        "SELECT ord, sender, id, body, accepted_ms FROM envelopes \
         WHERE recipient = ?1 AND ord > ?2 ORDER BY ord LIMIT ?3",
    )?;
    let rows = s.query_map(
        params![recipient.as_bytes(), after_ord, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            let id: Vec<u8> = r.get(2)?;
            let id: [u8; 16] = id.try_into().map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Blob,
                    "envelope id is not 16 bytes".into(),
                )
            })?;
            Ok(StoredEnvelope {
                ord: r.get(0)?,
                sender: pk(&r.get::<_, Vec<u8>>(1)?)?,
                id: EnvelopeId(id),
                body: r.get(3)?,
                accepted_ms: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            })
        },
    )?;
    rows.collect::<Result<Vec<_>, _>>().map_err(StoreError::from)
}

pub(super) fn publish(
    tx: &Transaction<'_>,
    host: IdentityPublicKey,
    hash: InviteHash,
    expires_at: u64,
    max_open: u64,
) -> Result<PublishOutcome, StoreError> {
    let exp = i64::try_from(expires_at).unwrap_or(i64::MAX);
    let known: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM invites WHERE hash = ?1)", [hash.0], |r| {
            r.get(0)
        })?;
    if !known {
        let now = i64::try_from(super::now_secs()).unwrap_or(i64::MAX);
        let open: i64 = tx.query_row(
            "SELECT COUNT(*) FROM invites WHERE host = ?1 AND claimed_by IS NULL \
             AND revoked = 0 AND expires_at > ?2",
            params![host.as_bytes(), now],
            |r| r.get(0),
        )?;
        if u64::try_from(open).unwrap_or(0) >= max_open {
            return Ok(PublishOutcome::Quota);
        }
    }
    let n = tx.execute(
        "INSERT OR IGNORE INTO invites (hash, host, expires_at) VALUES (?1, ?2, ?3)",
        params![hash.0, host.as_bytes(), exp],
    )?;
    if n == 1 {
        return Ok(PublishOutcome::Published);
    }
    let owner: Vec<u8> =
        tx.query_row("SELECT host FROM invites WHERE hash = ?1", [hash.0], |r| r.get(0))?;
    if owner != host.as_bytes() {
        return Ok(PublishOutcome::Conflict);
    }
    tx.execute(
        "UPDATE invites SET expires_at = ?2 WHERE hash = ?1 AND claimed_by IS NULL",
        params![hash.0, exp],
    )?;
    Ok(PublishOutcome::Published)
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    host: IdentityPublicKey,
    guest: IdentityPublicKey,
    hash: InviteHash,
    now: u64,
) -> Result<ClaimOutcome, StoreError> {
    let row = tx
        .query_row(
            "SELECT host, expires_at, revoked, claimed_by FROM invites WHERE hash = ?1",
            [hash.0],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((owner, expires_at, revoked, claimed_by)) = row else {
        return Ok(ClaimOutcome::Unknown);
    };
    if owner != host.as_bytes() {
        return Ok(ClaimOutcome::Unknown);
    }
    if revoked {
        return Ok(ClaimOutcome::Revoked);
    }
    match claimed_by {
        Some(g) if g != guest.as_bytes() => return Ok(ClaimOutcome::Claimed),
        Some(_) => {}
        None => {
            if u64::try_from(expires_at).unwrap_or(0) <= now {
                return Ok(ClaimOutcome::Expired);
            }
            tx.execute(
                "UPDATE invites SET claimed_by = ?2 WHERE hash = ?1 AND claimed_by IS NULL",
                params![hash.0, guest.as_bytes()],
            )?;
        }
    }
    let (a, b) = ordered(host, guest);
    tx.execute(
        "INSERT OR IGNORE INTO pairs (a, b, created_at) VALUES (?1, ?2, ?3)",
        params![a.as_bytes(), b.as_bytes(), i64::try_from(now).unwrap_or(i64::MAX)],
    )?;
    Ok(ClaimOutcome::Paired)
}

pub(super) fn revoke_peer(
    tx: &Transaction<'_>,
    counts: &mut HashMap<IdentityPublicKey, u64>,
    a: IdentityPublicKey,
    b: IdentityPublicKey,
) -> Result<u64, StoreError> {
    let (x, y) = ordered(a, b);
    tx.execute("DELETE FROM pairs WHERE a = ?1 AND b = ?2", params![x.as_bytes(), y.as_bytes()])?;
    // The invite that made the pair can never re-create it.
    tx.execute(
        "UPDATE invites SET revoked = 1 WHERE (host = ?1 AND claimed_by = ?2) \
         OR (host = ?2 AND claimed_by = ?1)",
        params![a.as_bytes(), b.as_bytes()],
    )?;
    let mut dropped = 0u64;
    for (to, from) in [(a, b), (b, a)] {
        let n = tx.execute(
            "DELETE FROM envelopes WHERE recipient = ?1 AND sender = ?2",
            params![to.as_bytes(), from.as_bytes()],
        )? as u64;
        if n > 0 {
            if let Some(c) = counts.get_mut(&to) {
                *c = c.saturating_sub(n);
            }
            dropped += n;
        }
    }
    Ok(dropped)
}
