//! What makes `room stop` + `room open` (or Ctrl-C and a re-run) keep its guests:
//! the relay port is remembered in the home and bound again. The rest (invites
//! of the stopped room that point elsewhere are revoked, the last public relay
//! URL is kept so a change can be announced with a signed relay update) is the
//! daemon's part of a room (`daemon::room`).

use super::RoomError;
use super::stack::RoomStack;
use crate::client::ClientError;
use crate::client::home::Home;
use crate::client::store::{self, Store};
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

/// `agentroom peers update '…'`, ready to paste.
pub fn apply_command(update: &str) -> String {
    format!("agentroom peers update '{update}'")
}
