//! `room open` and the home's daemon: the room runs it in-process (a `serve` in
//! the same home becomes its client and shares the work) or uses the one already
//! running, and takes over when that one stops.

use std::collections::HashSet;
use std::path::Path;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::fixtures::{
    RoomProc, echo_handler, eventually, guest_accepts, guest_round_trip, next_message, public_key,
    run_ok,
};

/// A handler that records `<who> <message id>` in `runs` and answers `<who>: <text>`.
fn recording_handler(who: &str, runs: &Path) -> String {
    format!("echo \"{who} $AGENTROOM_MSG_ID\" >> '{}'; echo \"{who}: $(cat)\"", runs.display())
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// `agentroom --json status` of a home whose daemon runs.
fn daemon_status(home: &Path) -> Value {
    let out = run_ok(home, &["--json", "status"]);
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

#[test]
fn room_open_and_serve_in_one_home_handle_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    let runs = dir.path().join("runs");
    let room_handler = recording_handler("room", &runs);
    let mut room = RoomProc::start(
        &home,
        &["room", "open", "--tunnel", "none", "--on-message", &room_handler],
        &[],
    );
    let ready = room.wait_event("room_ready");
    guest_accepts(&guest, ready["invite"].as_str().unwrap());
    room.wait_event("paired");
    // A `serve` in the room's home is a client of the room's daemon.
    let serve_handler = recording_handler("serve", &runs);
    let mut serve = RoomProc::start(&home.clone(), &["serve", "--on-message", &serve_handler], &[]);
    serve.wait_event("serving");
    assert_eq!(daemon_status(&home)["pid"], room.pid(), "the room owns the home");

    let host = public_key(&home);
    const N: usize = 8;
    for i in 0..N {
        run_ok(&guest, &["send", &host, &format!("job {i}")]);
    }
    let mut replies: Vec<String> = (0..N).map(|_| next_message(&guest)).collect();
    replies.sort();
    let runs_now = lines(&runs);
    assert_eq!(runs_now.len(), N, "each message handled exactly once: {runs_now:?}");
    let ids: HashSet<&str> = runs_now.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(ids.len(), N, "{runs_now:?}");
    for i in 0..N {
        let text = format!("job {i}");
        let n = replies.iter().filter(|r| r.ends_with(&format!(": {text}"))).count();
        assert_eq!(n, 1, "one reply to {text:?}: {replies:?}");
    }
    // Nothing more comes: no message was answered twice.
    let extra = crate::fixtures::run(&guest, &["--json", "listen", "--once", "--timeout", "2s"]);
    let extra = String::from_utf8_lossy(&extra.stdout).into_owned();
    assert!(!extra.contains(r#""event":"message""#), "a second reply: {extra}");

    serve.signal(Signal::SIGTERM);
    assert_eq!(serve.wait_exit(), 143);
    room.signal(Signal::SIGTERM);
    assert_eq!(room.wait_exit(), 143);
}

#[test]
fn room_open_uses_the_running_daemon_and_takes_over_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (home, guest) = (dir.path().join("host"), dir.path().join("guest"));
    run_ok(&home, &["setup"]);
    let mut daemon = RoomProc::start(&home, &["daemon"], &[]);
    let pid = daemon.wait_event("daemon")["pid"].as_i64().unwrap();

    let handler = echo_handler();
    let mut room = RoomProc::start(
        &home,
        &["room", "open", "--tunnel", "none", "--on-message", &handler],
        &[],
    );
    let ready = room.wait_event("room_ready");
    let local = ready["local_url"].as_str().unwrap().to_owned();
    // The running daemon holds the link to the room's relay (the room opened none).
    let status = daemon_status(&home);
    assert_eq!(status["pid"], pid);
    let relays = status["relays"].as_array().unwrap();
    assert!(relays.iter().any(|r| r["url"] == local.as_str()), "{status}");
    guest_accepts(&guest, ready["invite"].as_str().unwrap());
    let host = public_key(&home);
    assert_eq!(guest_round_trip(&guest, &host, "one"), "echo: one");

    // The daemon stops: the room runs one itself and goes on serving.
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(), 143);
    eventually("the room to own the home", || {
        let out = crate::fixtures::run(&home, &["--json", "status"]);
        let v: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last()?).ok()?;
        (v["pid"] == room.pid()).then_some(())
    });
    assert_eq!(guest_round_trip(&guest, &host, "two"), "echo: two");
    room.signal(Signal::SIGTERM);
    assert_eq!(room.wait_exit(), 143);
}
