//! The daemon's side of `room open`: what a room asks of the home's one
//! [`Client`] (recording its port and URLs, invites, guests of an earlier
//! room, `relay_moved` notices and signed relay updates). The engine runs
//! these as jobs, so a room works the same whether it started the daemon or
//! attached to one already running in its home.
//!
//! The room's invite advertises the public (tunnel) relay URL to the guest,
//! while the host's own records point at the loopback URL of the same relay:
//! the host's links, tokens and queued replies never depend on the tunnel (a
//! quick tunnel's URL changes on every restart). The relay routes by identity,
//! not by the URL a client dialled, so both meet.

use std::time::Duration;

use url::Url;

use crate::client::invites;
use crate::client::payload::Payload;
use crate::client::relay_url::RelayUrl;
use crate::client::store::{self, InviteRow};
use crate::client::{Client, ClientError, now_secs};

/// What [`open`] did.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) invite: InviteRow,
    pub(crate) relay_update: Option<String>,
}

/// A room is up at `local` (loopback) and `public` (for guests).
pub(crate) async fn open(
    client: &mut Client,
    port: u16,
    local: &RelayUrl,
    public: &RelayUrl,
    ttl: Duration,
    label: Option<String>,
) -> Result<Opened, ClientError> {
    let previous = remember(client, port, local, public)?;
    revoke_stale_invites(client, &previous, local, public)?;
    adopt_earlier_guests(client, local, public)?;
    let invite = invites::create_via(client, public, local, ttl, label).await?;
    let relay_update = relay_update(client, previous.public.as_deref(), public)?;
    Ok(Opened { invite, relay_update })
}

/// What [`moved`] did.
#[derive(Debug)]
pub(crate) struct Moved {
    pub(crate) peers_notified: usize,
    pub(crate) relay_update: Option<String>,
    pub(crate) invite: Option<InviteRow>,
    pub(crate) invite_open: bool,
}

/// The room's tunnel came back at `public`: tell the guests (sealed
/// `relay_moved`), sign a relay update, renew the invite if nobody took it.
pub(crate) async fn moved(
    client: &mut Client,
    local: &RelayUrl,
    public: &RelayUrl,
    previous: &str,
    invite_id: &str,
    ttl: Duration,
    label: Option<String>,
) -> Result<Moved, ClientError> {
    let peers_notified = announce_move(client, public)?;
    let relay_update = relay_update(client, Some(previous), public)?;
    let (mut invite, mut invite_open) = (None, false);
    if still_open(client, invite_id)? {
        match renew_invite(client, invite_id, public, local, ttl, label).await {
            Ok(row) => invite = Some(row),
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the invite");
                invite_open = still_open(client, invite_id)?;
            }
        }
    }
    Ok(Moved { peers_notified, relay_update, invite, invite_open })
}

/// What the previous room of this home used, read before this one records its own.
#[derive(Debug, Default)]
struct Previous {
    local: Option<String>,
    public: Option<String>,
}

/// Record this room's port and URLs for the next run; returns the previous ones.
fn remember(
    client: &Client,
    port: u16,
    local: &RelayUrl,
    public: &RelayUrl,
) -> Result<Previous, ClientError> {
    let conn = client.conn();
    let previous = Previous {
        local: store::get_setting(conn, store::ROOM_LOCAL_URL)?,
        public: store::get_setting(conn, store::ROOM_PUBLIC_URL)?,
    };
    store::set_setting(conn, store::ROOM_PORT, &port.to_string())?;
    store::set_setting(conn, store::ROOM_LOCAL_URL, local.as_str())?;
    store::set_setting(conn, store::ROOM_PUBLIC_URL, public.as_str())?;
    Ok(previous)
}

/// Revoke the unaccepted invites of the previous room when they name a relay URL
/// this room no longer serves: nobody can use them (the URL inside is dead), and
/// keeping them open would keep this home dialling a dead port. Invites made for
/// other relays (`invite create --relay …`) are left alone. Returns how many.
fn revoke_stale_invites(
    client: &Client,
    previous: &Previous,
    local: &RelayUrl,
    public: &RelayUrl,
) -> Result<usize, ClientError> {
    let stale: Vec<&str> = [previous.local.as_deref(), previous.public.as_deref()]
        .into_iter()
        .flatten()
        .filter(|u| *u != local.as_str() && *u != public.as_str())
        .collect();
    let mut n = 0;
    for invite in store::list_invites(client.conn())? {
        if invite.status == store::InviteStatus::Open
            && stale.contains(&invite.relay_url.as_str())
            && store::revoke_invite(client.conn(), &invite.id)?
        {
            tracing::info!(invite = %invite.id, relay = %invite.relay_url, "revoked an invite of the stopped room");
            n += 1;
        }
    }
    Ok(n)
}

/// When this room's public relay URL differs from `previous` and guests were
/// paired: a relay update signed by our identity for them to apply
/// (`agentroom peers update '…'`), since a guest whose only route was the old URL
/// cannot fetch the encrypted `relay_moved`. At an unchanged URL, the update an
/// earlier run printed for it, if any (a guest may not have applied it yet).
/// Records `public` as the room's URL and the update for the next run.
fn relay_update(
    client: &Client,
    previous: Option<&str>,
    public: &RelayUrl,
) -> Result<Option<String>, ClientError> {
    let conn = client.conn();
    store::set_setting(conn, store::ROOM_PUBLIC_URL, public.as_str())?;
    let guests = store::list_peers(conn)?.iter().any(|p| p.role == store::PeerRole::Guest);
    let Some(previous) = previous.filter(|_| guests) else { return Ok(None) };
    if previous == public.as_str() {
        let earlier = store::get_setting(conn, store::ROOM_RELAY_UPDATE)?;
        return Ok(earlier.filter(|u| {
            crate::crypto::relay_update::verify(u)
                .is_ok_and(|v| v.host == client.identity().public() && v.relay == public.as_str())
        }));
    }
    let update = crate::crypto::relay_update::sign(
        client.identity(),
        crate::client::now_ms(),
        public.as_str(),
    );
    store::set_setting(conn, store::ROOM_RELAY_UPDATE, &update)?;
    Ok(Some(update))
}

/// Queue a sealed `relay_moved` for every guest. They are offered on the
/// room's relay (the guests' mailbox) and re-sent on every login.
fn announce_move(client: &mut Client, public: &RelayUrl) -> Result<usize, ClientError> {
    let mut n = 0;
    for peer in store::list_peers(client.conn())? {
        if peer.role != store::PeerRole::Guest {
            continue;
        }
        let payload = Payload::RelayMoved { relay: public.to_string() };
        client.queue(&peer, &payload, None)?;
        tracing::info!(peer = %peer.pk.fmt_short(), "queued relay_moved");
        n += 1;
    }
    Ok(n)
}

/// Guests paired by an earlier room in this home point at that room's loopback
/// URL, a port nobody listens on any more. The relay database is the same file,
/// so point them at this room's relay and queue a `relay_moved` with the new
/// public URL for them.
fn adopt_earlier_guests(
    client: &mut Client,
    local: &RelayUrl,
    public: &RelayUrl,
) -> Result<usize, ClientError> {
    let mut n = 0;
    for peer in store::list_peers(client.conn())? {
        if peer.role != store::PeerRole::Guest
            || peer.relay_url == local.as_str()
            || !is_loopback_url(&peer.relay_url)
        {
            continue;
        }
        store::set_peer_relay(client.conn(), &peer.pk, local.as_str())?;
        let moved = store::PeerRow { relay_url: local.to_string(), ..peer };
        client.queue(&moved, &Payload::RelayMoved { relay: public.to_string() }, None)?;
        tracing::info!(peer = %moved.pk.fmt_short(), "guest of an earlier room moved to this relay");
        n += 1;
    }
    Ok(n)
}

/// Whether a relay URL names this machine (127.0.0.0/8, ::1, localhost).
fn is_loopback_url(url: &str) -> bool {
    match Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether the invite is still waiting for a guest (not claimed, revoked or expired).
fn still_open(client: &Client, id: &str) -> Result<bool, ClientError> {
    let rows = store::find_invite(client.conn(), id)?;
    Ok(rows
        .iter()
        .any(|r| r.id == id && r.status == store::InviteStatus::Open && r.expires_at > now_secs()))
}

/// Revoke the unaccepted invite and publish a fresh one for the new URL.
async fn renew_invite(
    client: &mut Client,
    old: &str,
    public: &RelayUrl,
    local: &RelayUrl,
    ttl: Duration,
    label: Option<String>,
) -> Result<InviteRow, ClientError> {
    if let Err(e) = invites::revoke(client, old).await {
        tracing::warn!(error = %e, "could not revoke the old invite");
    }
    invites::create_via(client, public, local, ttl, label).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("ws://127.0.0.1:4000/ws"));
        assert!(is_loopback_url("ws://127.1.2.3:4000/ws"));
        assert!(is_loopback_url("ws://[::1]:4000/ws"));
        assert!(is_loopback_url("ws://LOCALHOST:4000/ws"));
        assert!(!is_loopback_url("wss://x.trycloudflare.com/ws"));
        assert!(!is_loopback_url("ws://192.168.1.4:8787/ws"));
        assert!(!is_loopback_url("not a url"));
    }
}
