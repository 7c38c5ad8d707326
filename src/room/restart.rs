//! What makes `room stop` + `room open` (or Ctrl-C and a re-run) keep its guests:
//! the relay port is remembered in the home and bound again, invites of the
//! stopped room that point elsewhere are revoked, and the last public relay URL
//! is kept so a change can be announced with a signed relay update.

use super::RoomError;
use super::stack::RoomStack;
use crate::client::home::Home;
use crate::client::relay_url::RelayUrl;
use crate::client::store::{self, Store};
use crate::client::{Client, ClientError};
use crate::relay::{RelayConfig, RelayError};
use crate::tunnel::TunnelOptions;

/// The port the last room of this home bound, if any.
pub fn last_port(home: &Home) -> Result<Option<u16>, ClientError> {
    let store = Store::open(&home.db_path())?;
    Ok(store::get_setting(store.conn(), store::ROOM_PORT)?.and_then(|p| p.parse().ok()))
}

/// Start the stack. With port 0 (the default), bind the home's last room port
/// first so every guest's relay URL stays valid; if another program took it
/// meanwhile, fall back to any free port (the caller then announces the move).
pub async fn start_stack(
    relay: RelayConfig,
    tunnel: TunnelOptions,
    last: Option<u16>,
) -> Result<RoomStack, RoomError> {
    if relay.bind.port() == 0 {
        if let Some(port) = last.filter(|p| *p != 0) {
            let mut reuse = relay.clone();
            reuse.bind.set_port(port);
            match RoomStack::start(reuse, tunnel.clone()).await {
                Err(RoomError::Relay(RelayError::Bind { source, .. })) => {
                    tracing::warn!(port, error = %source, "the room's last port is taken; using another");
                }
                other => return other,
            }
        }
    }
    RoomStack::start(relay, tunnel).await
}

/// What the previous room of this home used, read before this one records its own.
#[derive(Debug, Default)]
pub struct Previous {
    /// Its loopback relay URL.
    pub local: Option<String>,
    /// Its public relay URL.
    pub public: Option<String>,
}

/// Record this room's port and URLs for the next run; returns the previous ones.
pub fn remember(
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
/// keeping them open would keep this room dialling a dead port. Invites made for
/// other relays (`invite create --relay …`) are left alone. Returns how many.
pub fn revoke_stale_invites(
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
pub fn relay_update(
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

/// `agentroom peers update '…'`, ready to paste.
pub fn apply_command(update: &str) -> String {
    format!("agentroom peers update '{update}'")
}
