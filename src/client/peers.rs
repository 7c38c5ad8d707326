//! Naming peers on the command line: a label, the full base64url key, or a
//! unique prefix (4+ characters) of the key or of the fingerprint.

use rusqlite::Connection;

use super::ClientError;
use super::store::{self, PeerRow};
use crate::crypto::{IdentityPublicKey, fingerprint};

/// Shortest prefix accepted, so a typo does not silently pick a peer.
const MIN_PREFIX: usize = 4;

/// Find exactly one peer for `query`.
pub fn resolve(conn: &Connection, query: &str) -> Result<PeerRow, ClientError> {
    let q = query.trim();
    let peers = store::list_peers(conn)?;
    if let Some(p) = peers.iter().find(|p| p.label.as_deref() == Some(q)) {
        return Ok(p.clone());
    }
    if let Ok(pk) = IdentityPublicKey::from_b64u(q) {
        return peers
            .into_iter()
            .find(|p| p.pk == pk)
            .ok_or_else(|| ClientError::UnknownPeer(q.to_owned()));
    }
    let norm = normalise_fp(q);
    if q.len() < MIN_PREFIX {
        return Err(ClientError::PrefixTooShort(q.to_owned()));
    }
    let matches: Vec<PeerRow> = peers
        .into_iter()
        .filter(|p| {
            p.pk.to_b64u().starts_with(q)
                || (norm.len() >= MIN_PREFIX
                    && normalise_fp(&fingerprint(&p.pk)).starts_with(&norm))
        })
        .collect();
    match matches.len() {
        0 => Err(match closest_label(conn, q)? {
            Some(near) => ClientError::UnknownPeerNear(q.to_owned(), near),
            None => ClientError::UnknownPeer(q.to_owned()),
        }),
        1 => {
            Ok(matches.into_iter().next().ok_or_else(|| ClientError::UnknownPeer(q.to_owned()))?)
        }
        n => Err(ClientError::AmbiguousPeer(q.to_owned(), n)),
    }
}

/// The label closest to `query` (edit distance at most a third of its length, at
/// least 2), for a "did you mean" hint.
fn closest_label(conn: &Connection, query: &str) -> Result<Option<String>, ClientError> {
    let q = query.to_lowercase();
    let best = store::list_peers(conn)?
        .into_iter()
        .filter_map(|p| p.label)
        .map(|l| (edit_distance(&q, &l.to_lowercase()), l))
        .min_by_key(|(d, _)| *d);
    let limit = (q.chars().count() / 3).max(2);
    Ok(best.filter(|(d, _)| *d <= limit).map(|(_, l)| l))
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

fn normalise_fp(s: &str) -> String {
    s.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_lowercase()).collect()
}

/// Like [`resolve`], but an unknown name first triggers a [`super::Client::sync`]:
/// a guest that accepted our invite while we were offline is learnt from its
/// queued hello, so `send guest …` works right after `invite create`.
pub async fn resolve_synced(
    client: &mut super::Client,
    query: &str,
) -> Result<PeerRow, ClientError> {
    match resolve(client.conn(), query) {
        Err(ClientError::UnknownPeer(_) | ClientError::UnknownPeerNear(..)) => {
            if let Err(e) = client.sync(SYNC_TIMEOUT).await {
                tracing::debug!(error = %e, "could not catch up with the relays");
            }
            resolve(client.conn(), query)
        }
        other => other,
    }
}

/// How long [`resolve_synced`] waits for relays (and the daemon holds a send
/// to an unknown name while its relays catch up).
pub(crate) const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Forget a peer locally and ask its relay to drop the pairing (best effort).
pub async fn remove(client: &mut super::Client, query: &str) -> Result<PeerRow, ClientError> {
    let peer = resolve_synced(client, query).await?;
    let tx = client.store().immediate()?;
    store::remove_peer(&tx, &peer.pk)?;
    tx.commit().map_err(store::StoreError::from)?;
    Ok(peer)
}

/// [`remove`], then ask the peer's relay to drop the pairing and its queued
/// envelopes (best effort, bounded). Returns the peer and whether the relay
/// confirmed. Used by `peers remove` directly and by the daemon.
pub async fn remove_and_unpair(
    client: &mut super::Client,
    query: &str,
) -> Result<(PeerRow, bool), ClientError> {
    let peer = remove(client, query).await?;
    let mut relay_told = false;
    if let Ok(relay) = super::relay_url::RelayUrl::parse(&peer.relay_url) {
        let pk = peer.pk;
        let frame = |rid| crate::protocol::ClientFrame::PeerRevoke { rid, peer: pk };
        if let Ok(rid) = client.request(&relay, frame) {
            relay_told = client
                .wait_for(UNPAIR_TIMEOUT, "the relay", |_, inc| match inc {
                    super::Incoming::Reply { rid: r, result } if *r == rid => {
                        Some(Ok(result.is_ok()))
                    }
                    _ => None,
                })
                .await
                .unwrap_or(false);
        }
    }
    Ok((peer, relay_told))
}

/// How long [`remove_and_unpair`] waits for the relay's answer.
const UNPAIR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Apply a host-signed relay update (`arru1.…`, PROTOCOL.md §4.3): verify the
/// signature, require the signer to be a peer of ours and the update to be newer
/// than the last one applied, then point the peer (and its queued envelopes) at
/// the new relay. Changes nothing when refused. Returns the updated peer.
pub fn apply_relay_update(conn: &Connection, update: &str) -> Result<PeerRow, ClientError> {
    let u = crate::crypto::relay_update::verify(update)?;
    let relay = super::relay_url::RelayUrl::parse(&u.relay)?;
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
        .map_err(store::StoreError::from)?;
    let peer =
        store::get_peer(&tx, &u.host)?.ok_or_else(|| ClientError::UnknownPeer(u.host.to_b64u()))?;
    if u.seq <= store::relay_update_seq(&tx, &u.host)? {
        return Err(ClientError::StaleRelayUpdate(peer.display_name()));
    }
    store::set_peer_relay(&tx, &u.host, relay.as_str())?;
    store::set_relay_update_seq(&tx, &u.host, u.seq)?;
    tx.commit().map_err(store::StoreError::from)?;
    Ok(PeerRow { relay_url: relay.to_string(), ..peer })
}

/// Mark the peer named `query` verified (`verified`) or take the mark away.
/// With `compared` (the safety number the user read from the other side), the
/// mark is set only if it is the pair's safety number (spaces ignored). `me`
/// is our own key. Returns the updated peer.
pub fn set_verified(
    conn: &Connection,
    me: &IdentityPublicKey,
    query: &str,
    compared: Option<&str>,
    verified: bool,
) -> Result<PeerRow, ClientError> {
    let peer = resolve(conn, query)?;
    let safety = crate::crypto::safety_number(me, &peer.pk);
    if let Some(given) = compared {
        let digits = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        if digits(given) != digits(&safety) {
            return Err(ClientError::SafetyNumberMismatch(peer.display_name(), given.to_owned()));
        }
    }
    let mark = verified.then_some(safety.as_str());
    if !store::set_peer_verified(conn, &peer.pk, mark, super::now_secs())? {
        return Err(ClientError::UnknownPeer(query.to_owned()));
    }
    Ok(PeerRow { verified_safety: mark.map(str::to_owned), ..peer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::store::{PeerRole, Store};

    fn add(store: &Store, bytes: [u8; 32], label: Option<&str>) -> IdentityPublicKey {
        let pk = IdentityPublicKey::from_bytes(&bytes).unwrap();
        let row = PeerRow {
            pk,
            label: label.map(str::to_owned),
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

    #[test]
    fn label_key_prefix_and_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut a = [0u8; 32];
        a[31] = 1;
        let mut b = [0u8; 32];
        b[31] = 2;
        let pa = add(&store, a, Some("alice"));
        let pb = add(&store, b, None);
        let c = store.conn();
        assert_eq!(resolve(c, "alice").unwrap().pk, pa);
        assert_eq!(resolve(c, &pb.to_b64u()).unwrap().pk, pb);
        // Both keys start with many 'A's: a short prefix is ambiguous.
        assert!(matches!(resolve(c, "AAAAAAAA"), Err(ClientError::AmbiguousPeer(_, 2))));
        // A fingerprint prefix, typed with or without its spaces.
        let fp = fingerprint(&pb);
        assert_eq!(resolve(c, &fp[..9]).unwrap().pk, pb);
        assert_eq!(resolve(c, &fp[..9].replace(' ', "")).unwrap().pk, pb);
        assert!(matches!(resolve(c, "bobby"), Err(ClientError::UnknownPeer(_))));
        assert!(matches!(resolve(c, "AAA"), Err(ClientError::PrefixTooShort(_))), "too short");
        match resolve(c, "alcie") {
            Err(ClientError::UnknownPeerNear(q, near)) => {
                assert_eq!((q, near), ("alcie".into(), "alice".into()))
            }
            other => panic!("expected a suggestion, got {other:?}"),
        }
        let unknown = IdentityPublicKey::from_bytes(&[9; 32]).unwrap().to_b64u();
        assert!(matches!(resolve(c, &unknown), Err(ClientError::UnknownPeer(_))));
    }

    #[test]
    fn the_verified_mark_holds_for_the_compared_safety_number_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let c = store.conn();
        let pk = add(&store, [7; 32], Some("alice"));
        let me = IdentityPublicKey::from_bytes(&[1; 32]).unwrap();
        let safety = crate::crypto::safety_number(&me, &pk);
        // A wrong number changes nothing.
        let wrong = set_verified(c, &me, "alice", Some("00000 00000"), true);
        assert!(matches!(wrong, Err(ClientError::SafetyNumberMismatch(..))), "{wrong:?}");
        assert!(!store::get_peer(c, &pk).unwrap().unwrap().verified(&safety));
        // The right one, typed without spaces.
        set_verified(c, &me, "alice", Some(&safety.replace(' ', "")), true).unwrap();
        let row = store::get_peer(c, &pk).unwrap().unwrap();
        assert!(row.verified(&safety));
        // Our key changes: the pair's number is another one, and the mark is gone.
        let new_me = IdentityPublicKey::from_bytes(&[2; 32]).unwrap();
        assert!(!row.verified(&crate::crypto::safety_number(&new_me, &pk)));
        // Undo.
        set_verified(c, &me, "alice", None, false).unwrap();
        assert!(!store::get_peer(c, &pk).unwrap().unwrap().verified(&safety));
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("alice", "alice"), 0);
        assert_eq!(edit_distance("alcie", "alice"), 2);
        assert_eq!(edit_distance("bob", "bobby"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
