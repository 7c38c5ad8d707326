//! The room's invite: it advertises the public (tunnel) relay URL to the guest,
//! while the host's own records point at the loopback URL of the same relay.
//!
//! Why two URLs: the host's client talks to its in-process relay over loopback, so
//! its links, tokens and queued replies never depend on the tunnel (a quick tunnel's
//! URL changes on every restart). The guest only knows the public URL. The relay
//! routes by identity, not by the URL a client dialled, so both meet.

use std::time::Duration;

use crate::client::engine::{Incoming, invite_hash};
use crate::client::invites::REQUEST_TIMEOUT;
use crate::client::relay_url::RelayUrl;
use crate::client::store::{self, InviteRow};
use crate::client::{Client, ClientError, now_secs};
use crate::crypto::{Invite, SystemRng};
use crate::protocol::ClientFrame;

/// Create an invite naming `public` (signed into the invite string), stored with
/// `local` as the relay this host uses for it, and publish it through `local`.
/// A refused or failed publish deletes it again: nothing is left behind.
pub async fn create(
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
        status: "open".into(),
        claimed_by: None,
        expires_at,
        created_at: now,
    };
    let opk_bytes = zeroize::Zeroizing::new(serde_json::to_vec(&opk).unwrap_or_default());
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

/// Whether the invite is still waiting for a guest (not claimed, revoked or expired).
pub fn still_open(client: &Client, id: &str) -> Result<bool, ClientError> {
    let rows = store::find_invite(client.conn(), id)?;
    Ok(rows.iter().any(|r| r.id == id && r.status == "open" && r.expires_at > now_secs()))
}

/// `agentroom invite accept '<invite>'`, ready to paste.
pub fn accept_command(encoded: &str) -> String {
    format!("agentroom invite accept '{encoded}'")
}
