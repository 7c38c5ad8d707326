//! Spellings shared by several commands for the TypeScript agentroom's users.

use crate::client::relay_url::RelayUrl;
use crate::client::{Client, ClientError, store};

/// `--server URL` on `send`, `listen` and `serve`. The TypeScript agentroom has one
/// relay per identity, named on each command; here every peer records the relay
/// it was paired through. `--server` therefore redirects: every peer's (and open
/// invite's) relay is dialled at `URL` instead (the same relay reached another way, e.g. a new
/// tunnel address). Returns the parsed URL.
pub(crate) fn redirect_relays(
    client: &mut Client,
    server: Option<&str>,
) -> Result<Option<RelayUrl>, ClientError> {
    let Some(server) = server else { return Ok(None) };
    let server = RelayUrl::parse(server)?;
    let mut urls: Vec<String> =
        store::list_peers(client.conn())?.into_iter().map(|p| p.relay_url).collect();
    urls.extend(store::open_invite_relays(client.conn(), crate::client::now_secs())?);
    for url in urls {
        let relay = RelayUrl::parse(&url)?;
        if relay != server {
            client.set_dial_override(&relay, server.clone());
        }
    }
    Ok(Some(server))
}
