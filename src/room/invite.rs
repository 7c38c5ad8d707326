//! The room's invite, made by [`crate::client::invites::create_via`]: it advertises
//! the public (tunnel) relay URL to the guest, while the host's own records point at the loopback URL of the same relay.
//!
//! Why two URLs: the host's client talks to its in-process relay over loopback, so
//! its links, tokens and queued replies never depend on the tunnel (a quick tunnel's
//! URL changes on every restart). The guest only knows the public URL. The relay
//! routes by identity, not by the URL a client dialled, so both meet.

use crate::client::store;
use crate::client::{Client, ClientError, now_secs};

/// Whether the invite is still waiting for a guest (not claimed, revoked or expired).
pub fn still_open(client: &Client, id: &str) -> Result<bool, ClientError> {
    let rows = store::find_invite(client.conn(), id)?;
    Ok(rows
        .iter()
        .any(|r| r.id == id && r.status == store::InviteStatus::Open && r.expires_at > now_secs()))
}

/// `agentroom invite accept '<invite>'`, ready to paste.
pub fn accept_command(encoded: &str) -> String {
    format!("agentroom invite accept '{encoded}'")
}
