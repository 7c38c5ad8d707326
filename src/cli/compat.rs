//! Spellings shared by several commands for the TypeScript agentroom's users.

use crate::client::relay_url::RelayUrl;
use crate::client::{Client, ClientError};

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
    client.redirect_all_relays(&server)?;
    Ok(Some(server))
}
