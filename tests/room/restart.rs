//! Day two (issue 10): restarting a room, a relay that is down at start, one relay
//! per database, and a fresh machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::fixtures::{
    RoomProc, echo_handler, guest_accepts, guest_round_trip, public_key, run, run_ok,
};

fn port_of(url: &str) -> u16 {
    url.trim_end_matches("/ws").rsplit(':').next().unwrap().parse().unwrap()
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Ten `room open` / Ctrl-C cycles in one home: the relay port is reused, so the
/// guest paired in the first run reaches every later one, and each message gets
/// its reply. Prints the time per cycle (the figure in the report).
#[test]
#[allow(clippy::print_stdout)] // the figure for the report
fn ten_room_open_ctrl_c_cycles_keep_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let handler = echo_handler();
    let args = ["room", "open", "--tunnel", "none", "--on-message", handler.as_str()];
    let mut first_url = None;
    let mut host_pk = String::new();
    let started = Instant::now();
    for cycle in 0..10 {
        let mut room = RoomProc::start(&home, &args, &[]);
        let ready = room.wait_event("room_ready");
        let url = ready["local_url"].as_str().unwrap().to_owned();
        match &first_url {
            None => {
                guest_accepts(&guest, ready["invite"].as_str().unwrap());
                room.wait_event("paired");
                host_pk = public_key(&home);
                first_url = Some(url);
            }
            Some(first) => assert_eq!(&url, first, "cycle {cycle}: the room's port is reused"),
        }
        let text = format!("message {cycle}");
        assert_eq!(guest_round_trip(&guest, &host_pk, &text), format!("echo: {text}"));
        room.signal(Signal::SIGINT);
        assert_eq!(room.wait_exit(), 130, "cycle {cycle}");
    }
    let took = started.elapsed();
    println!(
        "figure: 10 room open/Ctrl-C cycles with a round trip each: {:.1} s total, {:.0} ms per cycle",
        took.as_secs_f64(),
        took.as_secs_f64() * 100.0
    );
}

/// The room's last port is taken by another program: the new room binds another,
/// revokes the stopped room's unaccepted invite (its URL is dead) instead of
/// dialling it forever, and serves a guest through its fresh invite.
#[test]
fn a_restart_on_a_new_port_revokes_the_dead_invite_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let handler = echo_handler();
    let args = ["room", "open", "--tunnel", "none", "--on-message", handler.as_str()];
    let mut first = RoomProc::start(&home, &args, &[]);
    let ready = first.wait_event("room_ready");
    let old_id = ready["invite_id"].as_str().unwrap().to_owned();
    let old_port = port_of(ready["local_url"].as_str().unwrap());
    first.signal(Signal::SIGINT);
    assert_eq!(first.wait_exit(), 130);

    let _squatter = std::net::TcpListener::bind(("127.0.0.1", old_port)).unwrap();
    let mut second = RoomProc::start(&home, &args, &[]);
    let ready2 = second.wait_event("room_ready");
    assert_ne!(port_of(ready2["local_url"].as_str().unwrap()), old_port);
    let invites = json_lines(&run_ok(&home, &["--json", "invite", "list"]));
    let old = invites.iter().find(|v| v["id"] == old_id.as_str()).expect("old invite listed");
    assert_eq!(old["status"], "revoked", "{invites:?}");

    guest_accepts(&guest, ready2["invite"].as_str().unwrap());
    let reply = guest_round_trip(&guest, &public_key(&home), "after the move");
    assert_eq!(reply, "echo: after the move");
    assert!(second.child.try_wait().unwrap().is_none(), "the second room keeps running");
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait_exit(), 143);
}

/// `serve` and `listen` started while the relay is down report `disconnect` with
/// `retry_in_ms` and keep trying; once the room is back, messages flow.
#[test]
fn serve_and_listen_wait_for_a_relay_that_is_down_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let args = ["room", "open", "--tunnel", "none"];
    let mut room = RoomProc::start(&home, &args, &[]);
    let ready = room.wait_event("room_ready");
    guest_accepts(&guest, ready["invite"].as_str().unwrap());
    let guest_pk = public_key(&guest);
    // The host takes in the guest's hello, so it knows the guest before the relay stops.
    run_ok(&home, &["--json", "peers"]);
    room.signal(Signal::SIGINT);
    assert_eq!(room.wait_exit(), 130);

    // serve, relay down.
    let handler = echo_handler();
    let mut serve = RoomProc::start(&guest, &["serve", "--on-message", &handler], &[]);
    let down = serve.wait_event("disconnect");
    assert!(down["retry_in_ms"].as_u64().is_some(), "{down}");
    assert!(serve.child.try_wait().unwrap().is_none(), "serve keeps waiting");
    let mut room = RoomProc::start(&home, &args, &[]);
    room.wait_event("room_ready");
    run_ok(&home, &["send", &guest_pk, "are you there"]);
    serve.wait_event("replied");
    let out = run_ok(&home, &["--json", "listen", "--once", "--timeout", "60s"]);
    assert!(out.contains(r#""text":"echo: are you there""#), "{out}");
    serve.signal(Signal::SIGINT);
    assert_eq!(serve.wait_exit(), 130);
    room.signal(Signal::SIGINT);
    assert_eq!(room.wait_exit(), 130);

    // listen, relay down.
    let mut listen = RoomProc::start(&guest, &["listen", "--once"], &[]);
    let down = listen.wait_event("disconnect");
    assert!(down["retry_in_ms"].as_u64().is_some(), "{down}");
    let mut room = RoomProc::start(&home, &args, &[]);
    room.wait_event("room_ready");
    run_ok(&home, &["send", &guest_pk, "back again"]);
    let got = listen.wait_event("message");
    assert_eq!(got["text"], "back again");
    assert_eq!(listen.wait_exit(), 0);
    room.signal(Signal::SIGINT);
    assert_eq!(room.wait_exit(), 130);
}

/// One relay per database: a standalone relay on the room's `relay.db` is refused
/// with a message naming the room (its pid and port), and changes nothing.
#[test]
fn a_second_relay_on_the_same_database_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("host");
    let mut room = RoomProc::start(&home, &["room", "open", "--tunnel", "none"], &[]);
    let ready = room.wait_event("room_ready");
    let port = port_of(ready["local_url"].as_str().unwrap());
    let out = run(&home, &["relay", "--port", "0"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another relay already uses")
            && err.contains(&format!("pid {}, port {port}", room.pid())),
        "{err}"
    );
    assert!(room.child.try_wait().unwrap().is_none(), "the room is untouched");
    room.signal(Signal::SIGINT);
    assert_eq!(room.wait_exit(), 130);

    // The other way round: a standalone relay first, then a room in the same home.
    let mut relay = RoomProc::start(&home, &["relay", "--port", "0"], &[]);
    let listening = relay.wait_event("listening");
    let out = run(&home, &["room", "open", "--tunnel", "none"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let named = format!("pid {}, port {}", relay.pid(), listening["port"]);
    assert!(err.contains("another relay already uses") && err.contains(&named), "{err}");
    assert!(crate::fixtures::state(&home).is_none(), "no room state left behind");
    relay.signal(Signal::SIGTERM);
    relay.wait_exit();
}

/// `agentroom relay` on a fresh machine creates its home (0700) instead of failing
/// on the HMAC secret file.
#[test]
fn a_standalone_relay_creates_its_home() {
    use std::io::BufRead as _;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("fresh/home");
    let mut relay = std::process::Command::new(crate::fixtures::bin())
        .arg("--home")
        .arg(&home)
        .args(["--json", "relay", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(relay.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = relay.kill();
    let out = relay.wait_with_output().unwrap();
    assert!(
        line.contains(r#""event":"listening""#),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&home).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(home.join("relay.db").exists());
}

/// A room whose handler runs (a shell and its background child), its group
/// recorded with the message. Returns the room, the handler args and the group.
fn room_with_a_running_handler(dir: &Path) -> (RoomProc, Vec<String>, i32, PathBuf) {
    use crate::fixtures::{eventually, live_group_members};
    let (home, guest) = (dir.join("host"), dir.join("guest"));
    let runs = dir.join("runs");
    let handler = format!("echo $$ >> '{}'; sleep 600 & wait", runs.display());
    let args: Vec<String> = ["room", "open", "--tunnel", "none", "--on-message", handler.as_str()]
        .map(str::to_owned)
        .to_vec();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut room = RoomProc::start(&home, &argv, &[]);
    let ready = room.wait_event("room_ready");
    guest_accepts(&guest, ready["invite"].as_str().unwrap());
    run_ok(&guest, &["send", &public_key(&home), "work on this"]);
    let first = eventually("the handler to start", || read_runs(&runs).first().copied());
    eventually("the handler's background child", || {
        (live_group_members(first).len() >= 2).then_some(())
    });
    // The room records the group just after the spawn, while the handler already
    // runs: on a loaded machine the shell can fork its child first. The promise
    // is about a recorded group, so the kill waits for the record.
    let db = home.join("state.db");
    eventually("the room to record the handler's group", || {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .ok()?;
        let pgid: Option<i64> = conn
            .query_row("SELECT handler_pgid FROM inbox WHERE handler_pgid IS NOT NULL", [], |r| {
                r.get(0)
            })
            .ok()?;
        (pgid == Some(i64::from(first))).then_some(())
    });
    (room, args, first, runs)
}

fn read_runs(runs: &Path) -> Vec<i32> {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `kill -9` of `room open` while a handler runs: its handler guard ends the
/// handler's whole group at once, the background child included, then exits.
#[test]
fn kill_9_of_the_room_ends_its_handlers_whole_group() {
    use crate::fixtures::{alive, eventually, handler_guard_of, wait_groups_gone};
    let dir = tempfile::tempdir().unwrap();
    let (mut room, _, first, _) = room_with_a_running_handler(dir.path());
    let guard = handler_guard_of(room.pid()).expect("the room runs a handler guard");
    room.signal(Signal::SIGKILL);
    room.wait_exit();
    assert!(wait_groups_gone(&[first]).is_empty(), "the handler's group outlived the room");
    eventually("the guard to exit", || (!alive(guard)).then_some(()));
}

/// `kill -9` of `room open` and of its handler guard (`pkill -9 agentroom`):
/// nothing is left to end the handler's group, so the restarted room ends it
/// (from the group recorded with the message) before it runs the message
/// again, and no orphan runs beside the rerun.
#[test]
fn kill_9_leaves_no_orphaned_handler_running_beside_the_rerun() {
    use crate::fixtures::wait_groups_gone;
    use crate::fixtures::{alive, eventually, handler_guard_of, live_group_members};
    let dir = tempfile::tempdir().unwrap();
    let (mut room, args, first, runs) = room_with_a_running_handler(dir.path());
    let guard = handler_guard_of(room.pid()).expect("the room runs a handler guard");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(guard), Signal::SIGKILL).unwrap();
    room.signal(Signal::SIGKILL);
    room.wait_exit();
    eventually("the guard to die", || (!alive(guard)).then_some(()));
    assert!(live_group_members(first).len() >= 2, "the handler's group is orphaned for now");

    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut again = RoomProc::start(&dir.path().join("host"), &argv, &[]);
    again.wait_event("room_ready");
    let second = eventually("the message to run again", || read_runs(&runs).get(1).copied());
    assert_ne!(second, first);
    assert!(wait_groups_gone(&[first]).is_empty(), "the orphaned group was ended");
    assert!(alive(second), "the re-run is the one handler running");
    again.signal(Signal::SIGINT);
    assert_eq!(again.wait_exit(), 130);
    assert!(wait_groups_gone(&[second]).is_empty());
}

/// The room comes back at another URL (its port was taken): it prints a relay
/// update signed by the host; the guest applies it with `peers update` and talks
/// again. A forged update and a replay of the applied one are refused.
#[test]
fn a_moved_room_prints_a_signed_relay_update_the_guest_applies() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let handler = echo_handler();
    let args = ["room", "open", "--tunnel", "none", "--on-message", handler.as_str()];
    let mut first = RoomProc::start(&home, &args, &[]);
    let ready = first.wait_event("room_ready");
    guest_accepts(&guest, ready["invite"].as_str().unwrap());
    let host_pk = public_key(&home);
    assert_eq!(guest_round_trip(&guest, &host_pk, "before"), "echo: before");
    let old_port = port_of(ready["local_url"].as_str().unwrap());
    first.signal(Signal::SIGINT);
    assert_eq!(first.wait_exit(), 130);

    let _squatter = std::net::TcpListener::bind(("127.0.0.1", old_port)).unwrap();
    let mut second = RoomProc::start(&home, &args, &[]);
    let ready2 = second.wait_event("room_ready");
    let moved = second.wait_event("relay_update");
    assert_eq!(moved["relay"], ready2["relay"]);
    let update = moved["update"].as_str().unwrap().to_owned();
    assert_eq!(moved["apply_command"], format!("agentroom peers update '{update}'"));
    let status: Value =
        serde_json::from_str(run_ok(&home, &["--json", "room", "status"]).trim()).unwrap();
    assert_eq!(status["room"]["relay_update"], update.as_str(), "room status shows it too");

    // Forged: one character of the signed part changed.
    let mut forged = update.clone().into_bytes();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let out = run(&guest, &["peers", "update", std::str::from_utf8(&forged).unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("relay update refused"), "{out:?}");
    let peers = json_lines(&run_ok(&guest, &["--json", "peers"]));
    assert_eq!(peers[0]["relay"], ready["relay"], "a refused update changes nothing");

    let applied = json_lines(&run_ok(&guest, &["--json", "peers", "update", &update]));
    assert_eq!(applied[0]["event"], "peer_updated");
    assert_eq!(applied[0]["relay"], ready2["relay"]);
    assert_eq!(guest_round_trip(&guest, &host_pk, "after"), "echo: after");

    let replay = run(&guest, &["peers", "update", &update]);
    assert_eq!(replay.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&replay.stderr).contains("not newer"), "{replay:?}");
    second.signal(Signal::SIGINT);
    assert_eq!(second.wait_exit(), 130);

    // Back at the same URL: the update is shown again for guests that missed it.
    let mut third = RoomProc::start(&home, &args, &[]);
    assert_eq!(third.wait_event("room_ready")["relay"], ready2["relay"]);
    assert_eq!(third.wait_event("relay_update")["update"], update.as_str());
    assert_eq!(guest_round_trip(&guest, &host_pk, "third"), "echo: third");
    third.signal(Signal::SIGINT);
    assert_eq!(third.wait_exit(), 130);
}

/// Behind a quick tunnel every run gets a new public URL: the restarted room
/// prints a relay update, and the guest that applies it talks through the new tunnel.
#[test]
fn a_restart_behind_a_new_quick_tunnel_prints_a_relay_update() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let fake = crate::fixtures::fake_with_modes(&dir.path().join("fake"), "serve", "serve");
    let fake = fake.display().to_string();
    let env = [("CLOUDFLARED_BIN", fake.as_str())];
    let handler = echo_handler();
    let args = ["room", "open", "--on-message", handler.as_str()];
    let mut first = RoomProc::start(&home, &args, &env);
    let ready = first.wait_event("room_ready");
    guest_accepts(&guest, ready["invite"].as_str().unwrap());
    let host_pk = public_key(&home);
    assert_eq!(guest_round_trip(&guest, &host_pk, "one"), "echo: one");
    first.signal(Signal::SIGINT);
    assert_eq!(first.wait_exit(), 130);

    let mut second = RoomProc::start(&home, &args, &env);
    let ready2 = second.wait_event("room_ready");
    assert_eq!(ready2["local_url"], ready["local_url"], "the relay port is reused");
    assert_ne!(ready2["relay"], ready["relay"], "a new quick tunnel, a new URL");
    let moved = second.wait_event("relay_update");
    assert_eq!(moved["relay"], ready2["relay"]);
    run_ok(&guest, &["peers", "update", moved["update"].as_str().unwrap()]);
    assert_eq!(guest_round_trip(&guest, &host_pk, "two"), "echo: two");
    second.signal(Signal::SIGINT);
    assert_eq!(second.wait_exit(), 130);
}
