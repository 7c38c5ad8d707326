//! `Invite::parse` on arbitrary text: never panics, and whatever parses re-encodes to a
//! string that parses to the same invite.
#![no_main]

use agentroom::crypto::Invite;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(invite) = Invite::parse(text) {
        let again = Invite::parse(&invite.encode()).expect("an invite's own encoding parses");
        assert_eq!(again, invite);
        let _ = invite.check_fresh(u64::from_le_bytes([data.len() as u8, 0, 0, 0, 0, 0, 0, 0]));
    }
});
