//! `Invite::parse` on arbitrary text: never panics, and whatever parses re-encodes to a
//! string that parses to the same invite.
//! Shared by the libFuzzer target and the stable runner (`tests/fuzz`).

use agentroom::crypto::Invite;

/// One input; `true` when it parsed as an invite (the runner keeps those).
pub(crate) fn run(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let Ok(invite) = Invite::parse(text) else { return false };
    let again = Invite::parse(&invite.encode()).expect("an invite's own encoding parses");
    assert_eq!(again, invite);
    let _ = invite.check_fresh(u64::from_le_bytes([data.len() as u8, 0, 0, 0, 0, 0, 0, 0]));
    true
}
