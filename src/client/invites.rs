//! Invites: create and publish (host), accept (guest), list, revoke.
//!
//! Creating stores the one-time prekey (secret) before publishing, and deletes
//! the invite again if the relay refuses it or cannot be reached, so a failed
//! command leaves nothing behind. Accepting connects first, then stores the
//! peer, its session and the `hello` envelope in one transaction, and rolls all
//! three back if the relay refuses the claim (used, revoked, expired, unknown).

use std::time::Duration;

use super::engine::{Incoming, invite_hash, seal_in, session_bytes};
use super::payload::Payload;
use super::relay_url::RelayUrl;
use super::store::{self, InviteRow, PeerRole, PeerRow};
use super::{Client, ClientError, now_secs};
use crate::crypto::{Invite, Session, SystemRng, fingerprint, safety_number};
use crate::protocol::ClientFrame;

/// How long a one-shot command waits for the relay to answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A freshly created invite.
#[derive(Debug)]
pub struct CreatedInvite {
    /// The stored row.
    pub row: InviteRow,
}

/// Create an invite for `relay`, valid for `ttl`, store it and publish it.
pub async fn create(
    client: &mut Client,
    relay: &RelayUrl,
    ttl: Duration,
    label: Option<String>,
) -> Result<CreatedInvite, ClientError> {
    let row = create_via(client, relay, relay, ttl, label).await?;
    Ok(CreatedInvite { row })
}

/// Create an invite that names `public` (signed into the invite string) but is
/// stored with, and published through, `local`: the same relay reached another way.
/// `room open` uses it so the host's own link never depends on the tunnel. A refused
/// or failed publish deletes the invite again: nothing is left behind.
pub async fn create_via(
    client: &mut Client,
    public: &RelayUrl,
    local: &RelayUrl,
    ttl: Duration,
    label: Option<String>,
) -> Result<InviteRow, ClientError> {
    if let Some(l) = &label {
        if store::label_taken(client.conn(), l)? {
            return Err(ClientError::LabelTaken(l.clone()));
        }
    }
    let now = now_secs();
    let expires_at = now.saturating_add(ttl.as_secs());
    let (invite, opk) =
        Invite::create(client.identity(), public.as_str(), expires_at, &mut SystemRng)?;
    let id = invite.id();
    let row = InviteRow {
        id: id.to_b64u(),
        label,
        relay_url: local.to_string(),
        encoded: invite.encode(),
        status: store::InviteStatus::Open,
        claimed_by: None,
        expires_at,
        created_at: now,
    };
    let opk_bytes = zeroize::Zeroizing::new(
        serde_json::to_vec(&opk).expect("a one-time prekey is hex strings: always serialises"),
    );
    store::insert_invite(client.conn(), &row, &opk_bytes)?;
    if let Err(e) = publish(client, local, &id.0, expires_at).await {
        store::delete_invite(client.conn(), &row.id)?;
        return Err(e);
    }
    Ok(row)
}

async fn publish(
    client: &mut Client,
    relay: &RelayUrl,
    id: &[u8; 16],
    expires_at: u64,
) -> Result<(), ClientError> {
    let hash = invite_hash(id);
    let rid = client.request(relay, |rid| ClientFrame::InvitePublish {
        rid,
        invite: hash,
        expires_at,
    })?;
    client
        .wait_for(REQUEST_TIMEOUT, "the relay to accept the invite", |_, inc| match inc {
            Incoming::Reply { rid: r, result } if *r == rid => {
                Some(result.clone().map_err(|(code, msg)| ClientError::RequestRefused(code, msg)))
            }
            _ => None,
        })
        .await
}

/// Revoke an open invite: delete its prekey locally (so it can never pair, even
/// if the relay is unreachable) and tell the relay. Returns the row and whether
/// the relay confirmed.
pub async fn revoke(
    client: &mut Client,
    id_or_prefix: &str,
) -> Result<(InviteRow, bool), ClientError> {
    let mut rows = store::find_invite(client.conn(), id_or_prefix)?;
    let row = match rows.len() {
        1 => rows.remove(0),
        _ => return Err(ClientError::UnknownInvite(id_or_prefix.to_owned())),
    };
    store::revoke_invite(client.conn(), &row.id)?;
    let id = crate::crypto::InviteId::from_b64u(&row.id)
        .map_err(|_| store::StoreError::BadRecord("invite"))?;
    let relay = RelayUrl::parse(&row.relay_url)?;
    let hash = invite_hash(&id.0);
    let rid = client.request(&relay, |rid| ClientFrame::InviteRevoke { rid, invite: hash })?;
    let confirmed = client
        .wait_for(REQUEST_TIMEOUT, "the relay to revoke the invite", |_, inc| match inc {
            Incoming::Reply { rid: r, result } if *r == rid => Some(Ok(result.is_ok())),
            _ => None,
        })
        .await;
    match confirmed {
        Ok(ok) => Ok((row, ok)),
        Err(e) => {
            tracing::warn!(error = %e, "invite revoked locally; the relay was not told");
            Ok((row, false))
        }
    }
}

/// An accepted invite.
#[derive(Debug)]
pub struct Accepted {
    /// The host, now a peer.
    pub peer: PeerRow,
    /// The host's fingerprint.
    pub fingerprint: String,
    /// The safety number of the pair (compare it out of band).
    pub safety_number: String,
    /// The relay announced the host online while the claim went through.
    pub host_online: bool,
}

/// Before `invite accept` in a home without an identity: check the invite, then
/// create the identity, as `room open` does for a host, so the one line a host
/// hands over works on a fresh machine. Returns the new fingerprint, or `None`
/// when the home had an identity. A bad invite creates nothing.
pub fn identity_for_accept(
    home: &super::home::Home,
    encoded: &str,
) -> Result<Option<String>, ClientError> {
    crate::crypto::init().map_err(super::identity::IdentityError::Key)?;
    let invite = Invite::parse(encoded)?;
    invite.check_fresh(now_secs())?;
    let (pair, created) = super::identity::load_or_create(home)?;
    Ok(created.then(|| fingerprint(&pair.public())))
}

/// Accept `encoded`: verify, connect, run X3DH, send the `hello` that claims
/// the invite, and wait for the relay to take it.
pub async fn accept(
    client: &mut Client,
    encoded: &str,
    label: Option<String>,
) -> Result<Accepted, ClientError> {
    accept_via(client, encoded, label, None).await
}

/// [`accept`], reaching the invite's relay at `server` instead of the URL signed
/// into the invite (the same relay reached another way: `invite accept --server`).
/// The peer keeps `server` as its relay.
pub async fn accept_via(
    client: &mut Client,
    encoded: &str,
    label: Option<String>,
    server: Option<&RelayUrl>,
) -> Result<Accepted, ClientError> {
    let invite = Invite::parse(encoded)?;
    invite.check_fresh(now_secs())?;
    let host = invite.host();
    if host == client.identity().public() {
        return Err(ClientError::OwnInvite);
    }
    if let Some(existing) = store::get_peer(client.conn(), &host)? {
        return Err(ClientError::AlreadyPaired(existing.display_name()));
    }
    if let Some(l) = &label {
        if store::label_taken(client.conn(), l)? {
            return Err(ClientError::LabelTaken(l.clone()));
        }
    }
    let relay = match server {
        Some(s) => s.clone(),
        None => RelayUrl::parse(invite.relay_url())?,
    };
    // Reach the relay before storing anything: unreachable leaves no state.
    client.connect(&relay)?;
    client
        .wait_for(REQUEST_TIMEOUT, "the relay", |c, inc| match inc {
            Incoming::Up { relay: r, .. } if r == &relay => Some(Ok(())),
            _ if c.is_up(&relay) => Some(Ok(())),
            _ => None,
        })
        .await?;
    let session = Session::initiate(client.identity(), &invite, &mut SystemRng)?;
    let peer = PeerRow {
        pk: host,
        label,
        role: PeerRole::Host,
        relay_url: relay.to_string(),
        invite_id: invite.id().to_b64u(),
        created_at: now_secs(),
        last_seen: None,
        verified_safety: None,
    };
    let tx = client.store().immediate()?;
    store::insert_peer(&tx, &peer, &session_bytes(&session))?;
    let hello = Payload::Hello { name: None };
    let row = seal_in(&tx, &peer, &hello, Some(invite.id().0))?;
    tx.commit().map_err(store::StoreError::from)?;
    client.offer(&row)?;
    let mut host_online = false;
    let sent = client
        .wait_for(REQUEST_TIMEOUT, "the relay to accept the invite claim", |_, inc| match inc {
            Incoming::Presence { peer, online } if *peer == host => {
                host_online = *online;
                None
            }
            Incoming::Sent { id, .. } if *id == row.id => Some(Ok(())),
            Incoming::SendFailed { id, code, message } if *id == row.id => {
                Some(Err(ClientError::InviteRefused(*code, message.clone())))
            }
            _ => None,
        })
        .await;
    if let Err(e) = sent {
        // No partial state: forget the peer, its session and the queued hello.
        let tx = client.store().immediate()?;
        store::remove_peer(&tx, &host)?;
        tx.commit().map_err(store::StoreError::from)?;
        return Err(e);
    }
    let me = client.identity().public();
    Ok(Accepted {
        fingerprint: fingerprint(&host),
        safety_number: safety_number(&me, &host),
        peer,
        host_online,
    })
}
