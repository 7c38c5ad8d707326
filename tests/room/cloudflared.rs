//! `room open` behind the fake cloudflared in each of its modes, and `relay --tunnel`.

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::fixtures::{
    RoomProc, echo_handler, eventually, fake_with_modes, guest_accepts, guest_round_trip,
    public_key, recorded_pids, run, run_ok, state, wait_groups_gone,
};

/// `room open --json --on-message echo` behind the wrapper at `fake`.
fn open_behind(home: &std::path::Path, fake: &std::path::Path, extra: &[&str]) -> RoomProc {
    let handler = echo_handler();
    let mut args = vec!["room", "open", "--on-message", handler.as_str()];
    args.extend_from_slice(extra);
    let fake = fake.display().to_string();
    RoomProc::start(home, &args, &[("CLOUDFLARED_BIN", fake.as_str())])
}

#[test]
fn serves_through_the_tunnel_and_ctrl_c_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let fake = fake_with_modes(&dir.path().join("fake"), "serve", "serve");
    let mut room = open_behind(&home, &fake, &[]);
    let ready = room.wait_event("room_ready");
    assert_eq!(ready["tunnel"], "cloudflared");
    let public = ready["public_url"].as_str().unwrap();
    let relay = ready["relay"].as_str().unwrap();
    // The fake prints its proxy as the public URL: the invite names it, not the relay's port.
    assert_eq!(
        relay,
        format!("ws://{}/ws", public.trim_start_matches("http://").trim_end_matches('/'))
    );
    assert_ne!(ready["relay"], ready["local_url"]);
    let pgid = recorded_pids(&dir.path().join("fake"))[0];
    assert_eq!(state(&home).unwrap()["tunnel_pgid"], pgid);

    let accepted = guest_accepts(&guest, ready["invite"].as_str().unwrap());
    assert_eq!(accepted["relay"], relay, "the guest dials the tunnel");
    let reply = guest_round_trip(&guest, &public_key(&home), "hello through the tunnel");
    assert_eq!(reply, "echo: hello through the tunnel");

    room.signal(Signal::SIGINT);
    assert_eq!(room.wait_exit(), 130);
    assert_eq!(wait_groups_gone(&[pgid]), Vec::<i32>::new(), "cloudflared survived the room");
    assert!(state(&home).is_none());
}

/// `kill -9` of the room: cloudflared dies with it (parent-death signal) rather
/// than serving a public tunnel to a dead port until someone notices.
#[test]
fn kill_9_of_the_room_takes_cloudflared_down() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("host");
    let fake = fake_with_modes(&dir.path().join("fake"), "serve", "serve");
    let mut room = open_behind(&home, &fake, &[]);
    room.wait_event("room_ready");
    let pgid = recorded_pids(&dir.path().join("fake"))[0];
    room.signal(Signal::SIGKILL);
    room.wait_exit();
    assert_eq!(wait_groups_gone(&[pgid]), Vec::<i32>::new(), "cloudflared outlived the room");
}

#[test]
fn no_url_is_a_clear_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("host");
    let fake = fake_with_modes(&dir.path().join("fake"), "no-url", "no-url");
    let mut room = open_behind(&home, &fake, &["--tunnel-timeout", "2s"]);
    assert_eq!(room.wait_exit(), 3, "a tunnel failure is a network failure");
    let err = room.stderr();
    assert!(err.contains("no public URL within 2s"), "{err}");
    assert!(err.contains("Requesting new quick Tunnel"), "the child's last output is shown: {err}");
    assert!(state(&home).is_none());
    let pids = recorded_pids(&dir.path().join("fake"));
    assert_eq!(pids.len(), 1);
    assert_eq!(wait_groups_gone(&pids), Vec::<i32>::new());
}

#[test]
fn a_crash_gets_a_new_url_announced_and_peers_told() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let fake_dir = dir.path().join("fake");
    let fake = fake_with_modes(&fake_dir, "serve", "serve");
    let mut room = open_behind(&home, &fake, &[]);
    let ready = room.wait_event("room_ready");
    guest_accepts(&guest, ready["invite"].as_str().unwrap());
    room.wait_event("paired");

    // The tunnel dies (as if cloudflared crashed): the supervisor restarts it.
    let first = recorded_pids(&fake_dir)[0];
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();
    room.wait_event("tunnel_down");
    let changed = room.wait_event("tunnel_url_changed");
    assert_ne!(changed["relay"], ready["relay"]);
    assert_eq!(changed["peers_notified"], 1);
    assert!(
        !room.seen.iter().any(|e| e["event"] == "invite_renewed"),
        "an accepted invite is not renewed"
    );
    let update = room.wait_event("relay_update");
    assert_eq!(update["relay"], changed["relay"], "guests get a signed relay update");
    let st = state(&home).unwrap();
    assert_eq!(st["public_url"], changed["relay"]);
    assert_eq!(st["relay_update"], update["update"]);
    let second = recorded_pids(&fake_dir)[1];
    assert_eq!(st["tunnel_pgid"], second);
    // The sealed relay_moved waits in the relay for the (offline) guest.
    eventually("relay_moved queued for the guest", || {
        let out = run_ok(&home, &["--json", "room", "status"]);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        (v["relay_pending"].as_u64() >= Some(1)).then_some(())
    });

    room.signal(Signal::SIGTERM);
    assert_eq!(room.wait_exit(), 143);
    assert_eq!(wait_groups_gone(&[first, second]), Vec::<i32>::new());
}

#[test]
fn an_unaccepted_invite_is_renewed_for_the_new_url() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let fake_dir = dir.path().join("fake");
    // The real crash mode: banner, proxy, exit 1 after 2 s; then a steady one.
    let fake = fake_with_modes(&fake_dir, "crash-after-2s", "serve");
    let mut room = open_behind(&home, &fake, &[]);
    let ready = room.wait_event("room_ready");
    let changed = room.wait_event("tunnel_url_changed");
    assert_eq!(changed["peers_notified"], 0);
    let renewed = room.wait_event("invite_renewed");
    let invite = renewed["invite"].as_str().unwrap();
    assert_ne!(invite, ready["invite"].as_str().unwrap());
    assert_eq!(state(&home).unwrap()["invite"], invite);

    // The old invite is revoked; the new one pairs through the new URL and works.
    run_ok(&guest, &["setup"]);
    let old = run(&guest, &["invite", "accept", ready["invite"].as_str().unwrap()]);
    assert!(!old.status.success(), "the old invite names a dead URL and was revoked");
    let accepted = guest_accepts(&guest, invite);
    assert_eq!(accepted["relay"], changed["relay"]);
    let reply = guest_round_trip(&guest, &public_key(&home), "after the restart");
    assert_eq!(reply, "echo: after the restart");
    room.signal(Signal::SIGTERM);
    assert_eq!(room.wait_exit(), 143);
    assert_eq!(wait_groups_gone(&recorded_pids(&fake_dir)), Vec::<i32>::new());
}

#[test]
fn a_tunnel_that_ignores_sigterm_is_still_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("host");
    let fake_dir = dir.path().join("fake");
    let fake = fake_with_modes(&fake_dir, "ignore-term", "ignore-term");
    let mut room = open_behind(&home, &fake, &[]);
    room.wait_event("room_ready");
    let pgid = recorded_pids(&fake_dir)[0];
    assert!(crate::fixtures::live_group_members(pgid).len() >= 2, "fake + its sleep grandchild");
    let out = run_ok(&home, &["--json", "room", "stop"]);
    assert!(out.contains(r#""outcome":"stopped""#), "{out}");
    assert_eq!(room.wait_exit(), 143);
    assert_eq!(wait_groups_gone(&[pgid]), Vec::<i32>::new(), "SIGKILL reached the whole group");
    assert!(state(&home).is_none());
}

#[test]
fn relay_tunnel_prints_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("relay");
    let fake_dir = dir.path().join("fake");
    let fake = fake_with_modes(&fake_dir, "serve", "serve").display().to_string();
    let mut relay = RoomProc::start(
        &home,
        &["relay", "--port", "0", "--tunnel"],
        &[("CLOUDFLARED_BIN", fake.as_str())],
    );
    relay.wait_event("listening");
    let up = relay.wait_event("tunnel_ready");
    assert_eq!(up["tunnel"], "cloudflared");
    let public = up["public_url"].as_str().unwrap();
    assert!(up["relay"].as_str().unwrap().ends_with("/ws"));
    // The relay answers through the tunnel.
    let health = format!("{}health", public);
    let body = eventually("health through the tunnel", || {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1]).read().decode())", &health])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(body.contains(r#""status":"ok""#), "{body}");
    relay.signal(Signal::SIGTERM);
    relay.wait_exit();
    assert_eq!(wait_groups_gone(&recorded_pids(&fake_dir)), Vec::<i32>::new());
}

#[test]
fn an_unreachable_tunnel_is_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("host");
    let fake = fake_with_modes(&dir.path().join("fake"), "serve", "serve").display().to_string();
    // The banner names a URL nothing answers on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let mut room = RoomProc::start(
        &home,
        &["room", "open", "--probe-timeout", "1s"],
        &[("CLOUDFLARED_BIN", fake.as_str()), ("FAKE_CLOUDFLARED_URL", dead_url.as_str())],
    );
    let warning = room.wait_event("tunnel_unreachable");
    assert!(warning["error"].as_str().unwrap().contains("/health"), "{warning}");
    let ready = room.wait_event("room_ready");
    assert_eq!(ready["relay"], format!("{}/ws", dead_url.replace("http://", "ws://")));
    room.signal(Signal::SIGTERM);
    assert_eq!(room.wait_exit(), 143);
}

#[test]
fn a_connected_guest_follows_relay_moved() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let fake_dir = dir.path().join("fake");
    std::fs::create_dir_all(&fake_dir).unwrap();
    // The first tunnel "publishes" the relay's own port, a route that survives the
    // tunnel's death; the second one its real proxy. So the guest stays connected
    // across the restart and can be told where the relay went.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pids = fake_dir.join("pids");
    let script = format!(
        "#!/bin/sh\nif [ ! -s '{p}' ]; then export FAKE_CLOUDFLARED_URL=http://127.0.0.1:{port}; fi\n\
         echo $$ >> '{p}'\nexec '{fake}' \"$@\"\n",
        p = pids.display(),
        fake = crate::fixtures::fake_cloudflared().display()
    );
    let wrapper = fake_dir.join("cloudflared");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port_arg = port.to_string();
    let mut room = open_behind(&home, &wrapper, &["--port", &port_arg]);
    let ready = room.wait_event("room_ready");
    assert_eq!(ready["relay"], format!("ws://127.0.0.1:{port}/ws"));
    guest_accepts(&guest, ready["invite"].as_str().unwrap());
    room.wait_event("paired");
    // The guest listens (and so stays logged in) while the tunnel restarts.
    let mut listener = RoomProc::start(&guest, &["listen"], &[]);
    listener.wait_event("connected");

    let first = recorded_pids(&fake_dir)[0];
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let changed = room.wait_event("tunnel_url_changed");
    assert_eq!(changed["peers_notified"], 1);
    let new_relay = changed["relay"].as_str().unwrap().to_owned();
    // The guest's client applies relay_moved: its record of the host now names the new URL.
    eventually("the guest to follow relay_moved", || {
        let out = run_ok(&guest, &["--json", "peers"]);
        out.contains(&format!(r#""relay":"{new_relay}""#)).then_some(())
    });
    listener.signal(Signal::SIGTERM);
    listener.wait_exit();
    room.signal(Signal::SIGTERM);
    assert_eq!(room.wait_exit(), 143);
    assert_eq!(wait_groups_gone(&recorded_pids(&fake_dir)), Vec::<i32>::new());
}

#[test]
fn ctrl_c_while_waiting_for_the_url_stops_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("host");
    let fake_dir = dir.path().join("fake");
    let fake = fake_with_modes(&fake_dir, "no-url", "no-url");
    let mut room = open_behind(&home, &fake, &[]);
    let pgid =
        eventually("the tunnel child to start", || recorded_pids(&fake_dir).first().copied());
    room.signal(Signal::SIGINT);
    assert_eq!(room.wait_exit(), 130);
    assert_eq!(wait_groups_gone(&[pgid]), Vec::<i32>::new());
    assert!(state(&home).is_none());
}

#[test]
fn stop_kills_a_stuck_room_and_its_tunnel_group() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("host");
    let fake_dir = dir.path().join("fake");
    let fake = fake_with_modes(&fake_dir, "serve", "serve");
    let mut room = open_behind(&home, &fake, &[]);
    room.wait_event("room_ready");
    let pgid = recorded_pids(&fake_dir)[0];
    // A stuck room: stopped, it cannot act on SIGTERM.
    room.signal(Signal::SIGSTOP);
    let out = run_ok(&home, &["--json", "room", "stop", "--timeout", "1s"]);
    assert!(out.contains(r#""outcome":"killed""#), "{out}");
    assert_eq!(room.wait_exit(), 128 + 9);
    assert_eq!(wait_groups_gone(&[pgid]), Vec::<i32>::new(), "room stop killed the tunnel group");
    assert!(state(&home).is_none());
}

#[test]
fn no_download_without_cloudflared_says_how_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("host");
    let empty_path = dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty_path).unwrap();
    let path = empty_path.display().to_string();
    let mut room =
        RoomProc::start(&home, &["room", "open", "--no-download"], &[("PATH", path.as_str())]);
    assert_eq!(room.wait_exit(), 1);
    let err = room.stderr();
    assert!(
        err.contains("cloudflared not found") && err.contains("brew install cloudflared"),
        "{err}"
    );
    assert!(!home.join("bin/cloudflared").exists(), "nothing downloaded");
    assert!(state(&home).is_none());
}

#[test]
fn with_public_url_a_tunnel_restart_keeps_the_invite_and_tells_no_guest() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let fake_dir = dir.path().join("fake");
    let fake = fake_with_modes(&fake_dir, "crash-after-2s", "serve");
    // The proxy in front is the relay's own port here: what matters is that guests
    // dial --public-url, whatever the tunnel does.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let public = format!("ws://localhost:{port}/ws");
    let mut room =
        open_behind(&home, &fake, &["--port", &port.to_string(), "--public-url", &public]);
    let ready = room.wait_event("room_ready");
    assert_eq!(ready["relay_url"], public.as_str(), "{ready}");
    room.wait_event("tunnel_down");
    eventually("the warning about the tunnel's new address", || {
        room.stderr().contains("point the proxy behind --public-url at it").then_some(())
    });
    let st = eventually("the tunnel's new address in room.json", || {
        state(&home).filter(|st| st["tunnel_url"] != ready["public_url"])
    });
    assert!(url::Url::parse(st["tunnel_url"].as_str().unwrap()).is_ok(), "{st}");
    assert_eq!(st["public_url"], public.as_str());
    assert_eq!(st["invite"], ready["invite"], "the invite still names --public-url");

    let accepted = guest_accepts(&guest, ready["invite"].as_str().unwrap());
    assert_eq!(accepted["relay"], public.as_str());
    let reply = guest_round_trip(&guest, &public_key(&home), "behind the proxy");
    assert_eq!(reply, "echo: behind the proxy");
    room.signal(Signal::SIGTERM);
    room.wait_event("room_closed");
    assert_eq!(room.wait_exit(), 143);
    let moved = ["tunnel_url_changed", "invite_renewed", "relay_update"];
    assert!(!room.seen.iter().any(|v| moved.contains(&v["event"].as_str().unwrap_or(""))));
    assert_eq!(wait_groups_gone(&recorded_pids(&fake_dir)), Vec::<i32>::new());
}
