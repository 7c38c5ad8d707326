//! Invites and pairs on PostgreSQL: short transactions on the pool. A claim locks
//! the invite's row for its check-and-claim, so it is single-use across nodes.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{CHANNEL, PgError, PgStore, RECIPIENT_LOCK, cluster, i64_of, lock_key, pk};
use crate::crypto::IdentityPublicKey;
use crate::protocol::InviteHash;
use crate::relay::store::{ClaimOutcome, PublishOutcome, StoreError};

fn ordered(a: IdentityPublicKey, b: IdentityPublicKey) -> (IdentityPublicKey, IdentityPublicKey) {
    if a <= b { (a, b) } else { (b, a) }
}

impl PgStore {
    pub(crate) async fn publish(
        &self,
        host: IdentityPublicKey,
        hash: InviteHash,
        expires_at: u64,
        max_open: u64,
    ) -> Result<PublishOutcome, StoreError> {
        let t = Instant::now();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let host_b = host.as_bytes().as_slice();
        let hash_b = hash.0.as_slice();
        // Serialise one host's publishes, so two nodes cannot both pass the quota.
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&RECIPIENT_LOCK, &lock_key(&host)])
            .await?;
        let owner = tx.query_opt("SELECT host FROM invites WHERE hash = $1", &[&hash_b]).await?;
        let out = match owner {
            Some(row) if row.get::<_, &[u8]>(0) != host_b => PublishOutcome::Conflict,
            Some(_) => {
                tx.execute(
                    "UPDATE invites SET expires_at = $2 WHERE hash = $1 AND claimed_by IS NULL",
                    &[&hash_b, &i64_of(expires_at)],
                )
                .await?;
                PublishOutcome::Published
            }
            None => {
                let open: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM invites WHERE host = $1 AND claimed_by IS NULL \
                         AND NOT revoked AND expires_at > $2",
                        &[&host_b, &i64_of(crate::relay::now_secs())],
                    )
                    .await?
                    .get(0);
                if u64::try_from(open).unwrap_or(0) >= max_open {
                    PublishOutcome::Quota
                } else {
                    let n = tx
                        .execute(
                            "INSERT INTO invites (hash, host, expires_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (hash) DO NOTHING",
                            &[&hash_b, &host_b, &i64_of(expires_at)],
                        )
                        .await?;
                    // Lost a race with another host publishing the same hash.
                    if n == 1 { PublishOutcome::Published } else { PublishOutcome::Conflict }
                }
            }
        };
        tx.commit().await?;
        self.timed(t);
        Ok(out)
    }

    pub(crate) async fn revoke_invite(
        &self,
        host: IdentityPublicKey,
        hash: InviteHash,
    ) -> Result<bool, StoreError> {
        let t = Instant::now();
        let c = self.pool.get().await?;
        let n = c
            .execute(
                "UPDATE invites SET revoked = TRUE WHERE hash = $1 AND host = $2",
                &[&hash.0.as_slice(), &host.as_bytes().as_slice()],
            )
            .await?;
        self.timed(t);
        Ok(n > 0)
    }

    /// Single use across nodes: the invite's row is locked (`FOR UPDATE`) for the
    /// whole check-and-claim, so of two guests claiming at once on two nodes the
    /// second sees the first's claim.
    pub(crate) async fn claim(
        &self,
        host: IdentityPublicKey,
        guest: IdentityPublicKey,
        hash: InviteHash,
        now: u64,
    ) -> Result<ClaimOutcome, StoreError> {
        let t = Instant::now();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let hash_b = hash.0.as_slice();
        let guest_b = guest.as_bytes().as_slice();
        let row = tx
            .query_opt(
                "SELECT host, expires_at, revoked, claimed_by FROM invites WHERE hash = $1 \
                 FOR UPDATE",
                &[&hash_b],
            )
            .await?;
        let Some(row) = row else {
            return Ok(ClaimOutcome::Unknown);
        };
        if row.get::<_, &[u8]>(0) != host.as_bytes().as_slice() {
            return Ok(ClaimOutcome::Unknown);
        }
        if row.get::<_, bool>(2) {
            return Ok(ClaimOutcome::Revoked);
        }
        match row.get::<_, Option<&[u8]>>(3) {
            Some(g) if g != guest_b => return Ok(ClaimOutcome::Claimed),
            Some(_) => {}
            None => {
                if u64::try_from(row.get::<_, i64>(1)).unwrap_or(0) <= now {
                    return Ok(ClaimOutcome::Expired);
                }
                tx.execute(
                    "UPDATE invites SET claimed_by = $2 WHERE hash = $1",
                    &[&hash_b, &guest_b],
                )
                .await?;
            }
        }
        let (a, b) = ordered(host, guest);
        tx.execute(
            "INSERT INTO pairs (a, b, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&a.as_bytes().as_slice(), &b.as_bytes().as_slice(), &i64_of(now)],
        )
        .await?;
        tx.commit().await?;
        self.timed(t);
        Ok(ClaimOutcome::Paired)
    }

    /// Unpair, drop the queue between the two, and tell the other nodes (their
    /// hubs forget the pair when the notification arrives).
    pub(crate) async fn revoke_peer(
        &self,
        a: IdentityPublicKey,
        b: IdentityPublicKey,
    ) -> Result<u64, StoreError> {
        let t = Instant::now();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let (x, y) = ordered(a, b);
        let (a_b, b_b) = (a.as_bytes().as_slice(), b.as_bytes().as_slice());
        tx.execute(
            "DELETE FROM pairs WHERE a = $1 AND b = $2",
            &[&x.as_bytes().as_slice(), &y.as_bytes().as_slice()],
        )
        .await?;
        tx.execute(
            "UPDATE invites SET revoked = TRUE WHERE (host = $1 AND claimed_by = $2) \
             OR (host = $2 AND claimed_by = $1)",
            &[&a_b, &b_b],
        )
        .await?;
        let n = tx
            .execute(
                "DELETE FROM envelopes WHERE (recipient = $1 AND sender = $2) \
                 OR (recipient = $2 AND sender = $1)",
                &[&a_b, &b_b],
            )
            .await?;
        let note = cluster::Note::Unpair { node: self.node.to_string(), a, b }.encode();
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &note]).await?;
        tx.commit().await?;
        self.timed(t);
        let _ =
            self.metrics
                .pending_total
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
        Ok(n)
    }

    pub(crate) async fn pairs(
        &self,
    ) -> Result<Vec<(IdentityPublicKey, IdentityPublicKey)>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c.query("SELECT a, b FROM pairs", &[]).await?;
        rows.iter()
            .map(|r| Ok((pk(r.get(0))?, pk(r.get(1))?)))
            .collect::<Result<Vec<_>, PgError>>()
            .map_err(StoreError::Postgres)
    }

    pub(crate) async fn is_paired(
        &self,
        a: IdentityPublicKey,
        b: IdentityPublicKey,
    ) -> Result<bool, StoreError> {
        let t = Instant::now();
        let (x, y) = ordered(a, b);
        let c = self.pool.get().await?;
        let st =
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM pairs WHERE a = $1 AND b = $2)").await?;
        let yes: bool =
            c.query_one(&st, &[&x.as_bytes().as_slice(), &y.as_bytes().as_slice()]).await?.get(0);
        self.timed(t);
        Ok(yes)
    }
}
