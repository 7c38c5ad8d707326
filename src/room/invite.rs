//! The room's invite, made by the home's daemon (`POST /v1/room/open`): it
//! advertises the public (tunnel) relay URL to the guest, while the host's own
//! records point at the loopback URL of the same relay.

/// `agentroom invite accept '<invite>'`, ready to paste.
pub fn accept_command(encoded: &str) -> String {
    format!("agentroom invite accept '{encoded}'")
}
