//! The relay's storage seam: one [`Store`] in front of the SQLite store (embedded,
//! the default) and the PostgreSQL store (several relay nodes on one database).
//!
//! Selected by `AGENTROOM_DB`: a file path is SQLite, a `postgres://` (or
//! `postgresql://`) URL is PostgreSQL. An enum rather than a trait object: the two
//! stores are all there is, and the hub and connections keep calling the same
//! method names they always did (`store.insert(…)`, `store.load(…)`).

use std::path::Path;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::pg::{PgStore, PgUrl};
use super::store::{
    self, ClaimOutcome, InsertOutcome, PublishOutcome, StoreError, StoreOptions, StoredEnvelope,
};
use crate::crypto::IdentityPublicKey;
use crate::protocol::{EnvelopeId, InviteHash};

/// Where the relay keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file, held by one relay process.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database shared by every node.
    Postgres(PgUrl),
}

impl Backend {
    /// `postgres://…` and `postgresql://…` are PostgreSQL; anything else a file.
    pub fn of(db: &Path) -> Self {
        match db.to_str() {
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                Self::Postgres(PgUrl::new(s.to_owned()))
            }
            _ => Self::Sqlite(db.to_path_buf()),
        }
    }

    /// The database as it may be printed (a URL's password redacted).
    pub fn display(&self) -> String {
        match self {
            Self::Sqlite(p) => p.display().to_string(),
            Self::Postgres(u) => u.to_string(),
        }
    }
}

/// The relay's store: SQLite or PostgreSQL behind the same calls.
#[derive(Debug)]
pub(crate) enum Store {
    Sqlite(store::Store),
    Postgres(PgStore),
}

impl Store {
    /// The first `ord` the hub may give out. With PostgreSQL the hub's numbers only
    /// order live envelopes inside this process; stored rows take theirs from the
    /// database (see `pg::writer`).
    pub(crate) fn next_ord(&self) -> i64 {
        match self {
            Self::Sqlite(s) => s.next_ord(),
            Self::Postgres(_) => 1,
        }
    }

    /// Whether other relay nodes share this store (pairs, logins and new rows can
    /// appear without this process seeing them).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Queue an envelope; the receiver resolves after the commit. See
    /// [`store::Store::insert`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
        body: Vec<u8>,
        accepted_ms: u64,
        ord: i64,
        enforce_limit: bool,
    ) -> oneshot::Receiver<Result<InsertOutcome, StoreError>> {
        match self {
            Self::Sqlite(s) => {
                s.insert(recipient, sender, id, body, accepted_ms, ord, enforce_limit)
            }
            Self::Postgres(s) => s.insert(recipient, sender, id, body, accepted_ms, enforce_limit),
        }
    }

    /// Forget an acked envelope (fire and forget, after any insert queued before it).
    pub(crate) fn delete(
        &self,
        recipient: IdentityPublicKey,
        sender: IdentityPublicKey,
        id: EnvelopeId,
    ) {
        match self {
            Self::Sqlite(s) => s.delete(recipient, sender, id),
            Self::Postgres(s) => s.delete(recipient, sender, id),
        }
    }

    /// Queued envelopes for `recipient` with `ord > after_ord`, oldest first.
    pub(crate) async fn load(
        &self,
        recipient: IdentityPublicKey,
        after_ord: i64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        match self {
            Self::Sqlite(s) => s.load(recipient, after_ord, limit).await,
            Self::Postgres(s) => s.load(recipient, after_ord, limit).await,
        }
    }

    /// How many envelopes wait for `recipient`.
    pub(crate) async fn pending(&self, recipient: IdentityPublicKey) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.pending(recipient).await,
            Self::Postgres(s) => s.pending(recipient).await,
        }
    }

    /// Publish (or refresh) an invite.
    pub(crate) async fn publish(
        &self,
        host: IdentityPublicKey,
        hash: InviteHash,
        expires_at: u64,
        max_open: u64,
    ) -> Result<PublishOutcome, StoreError> {
        match self {
            Self::Sqlite(s) => s.publish(host, hash, expires_at, max_open).await,
            Self::Postgres(s) => s.publish(host, hash, expires_at, max_open).await,
        }
    }

    /// `false` when `host` has no such invite.
    pub(crate) async fn revoke_invite(
        &self,
        host: IdentityPublicKey,
        hash: InviteHash,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.revoke_invite(host, hash).await,
            Self::Postgres(s) => s.revoke_invite(host, hash).await,
        }
    }

    /// Claim `host`'s invite for `guest` (single use, also across nodes).
    pub(crate) async fn claim(
        &self,
        host: IdentityPublicKey,
        guest: IdentityPublicKey,
        hash: InviteHash,
        now: u64,
    ) -> Result<ClaimOutcome, StoreError> {
        match self {
            Self::Sqlite(s) => s.claim(host, guest, hash, now).await,
            Self::Postgres(s) => s.claim(host, guest, hash, now).await,
        }
    }

    /// Unpair and drop everything queued between the two; returns envelopes dropped.
    pub(crate) async fn revoke_peer(
        &self,
        a: IdentityPublicKey,
        b: IdentityPublicKey,
    ) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.revoke_peer(a, b).await,
            Self::Postgres(s) => s.revoke_peer(a, b).await,
        }
    }

    /// Every pair, for the hub at start.
    pub(crate) async fn pairs(
        &self,
    ) -> Result<Vec<(IdentityPublicKey, IdentityPublicKey)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.pairs().await,
            Self::Postgres(s) => s.pairs().await,
        }
    }

    /// Whether `a` and `b` are paired in the store. Only a shared store can know a
    /// pair the hub does not (claimed through another node); SQLite answers `false`.
    pub(crate) async fn is_paired(
        &self,
        a: IdentityPublicKey,
        b: IdentityPublicKey,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(false),
            Self::Postgres(s) => s.is_paired(a, b).await,
        }
    }

    /// A round trip to the database.
    pub(crate) async fn health(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.health().await,
            Self::Postgres(s) => s.health().await,
        }
    }

    /// Commit everything queued so far and stop.
    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }
}

/// Open the store `backend` names (migrating it), for a relay node called `node`.
pub(crate) async fn open(
    backend: &Backend,
    ca_file: Option<&Path>,
    opts: StoreOptions,
    metrics: Arc<Metrics>,
    node: Arc<str>,
) -> Result<Store, StoreError> {
    match backend {
        Backend::Sqlite(path) => {
            let path = path.clone();
            let s = tokio::task::spawn_blocking(move || store::Store::open(&path, opts, metrics))
                .await
                .map_err(|_| StoreError::Closed)??;
            Ok(Store::Sqlite(s))
        }
        Backend::Postgres(url) => {
            Ok(Store::Postgres(PgStore::open(url, ca_file, opts, metrics, node).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_by_scheme_and_url_redacted() {
        assert_eq!(Backend::of(Path::new("/a/relay.db")), Backend::Sqlite("/a/relay.db".into()));
        let b = Backend::of(Path::new("postgres://relay:hunter2@db:5432/agentroom"));
        assert!(matches!(b, Backend::Postgres(_)));
        assert_eq!(b.display(), "postgres://relay:***@db:5432/agentroom");
        assert!(!format!("{b:?}").contains("hunter2"));
        assert!(matches!(Backend::of(Path::new("postgresql://h/d")), Backend::Postgres(_)));
    }
}
