//! `invite create` with no `--relay` on a running room: it uses the room's relay.

use serde_json::Value;

use crate::fixtures::{
    RoomProc, echo_handler, fake_with_modes, guest_accepts, guest_round_trip, public_key, run,
    run_ok,
};

#[test]
fn invite_create_finds_the_running_rooms_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let handler = echo_handler();
    let mut room = RoomProc::start(
        &home,
        &["room", "open", "--tunnel", "none", "--on-message", &handler],
        &[],
    );
    let ready = room.wait_event("room_ready");

    // No `setup --relay` in this home: the relay comes from the running room.
    let out =
        run_ok(&home, &["--json", "invite", "create", "--label", "second", "--expires", "1h"]);
    let created: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(created["event"], "invite_created", "{out}");
    assert_eq!(created["relay"], ready["local_url"], "{out}");
    let invite = created["invite"].as_str().unwrap();
    assert_ne!(invite, ready["invite"].as_str().unwrap());

    // A guest pairs through the new invite and the room's handler answers it.
    guest_accepts(&guest, invite);
    assert_eq!(guest_round_trip(&guest, &public_key(&home), "hi"), "echo: hi");

    run_ok(&home, &["room", "stop"]);
    room.wait_exit();
    // With the room gone (and no default relay) it is the usage error again.
    let after = run(&home, &["invite", "create"]);
    assert_eq!(after.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&after.stderr).contains("no relay"));
}

#[test]
fn invite_create_on_a_tunnelled_room_names_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let fake = fake_with_modes(&dir.path().join("fake"), "serve", "serve").display().to_string();
    let handler = echo_handler();
    let mut room = RoomProc::start(
        &home,
        &["room", "open", "--on-message", &handler],
        &[("CLOUDFLARED_BIN", fake.as_str())],
    );
    let ready = room.wait_event("room_ready");
    assert_ne!(ready["relay"], ready["local_url"]);

    let out = run_ok(&home, &["--json", "invite", "create", "--label", "second"]);
    let created: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    // The host keeps the loopback URL; the guest is sent through the tunnel.
    assert_eq!(created["relay"], ready["local_url"], "{out}");
    let accepted = guest_accepts(&guest, created["invite"].as_str().unwrap());
    assert_eq!(accepted["relay"], ready["relay"], "the guest dials the tunnel");
    assert_eq!(guest_round_trip(&guest, &public_key(&home), "via tunnel"), "echo: via tunnel");
}
