//! Pairing, messages both ways, offline delivery in order, reconnect.

use std::os::unix::fs::PermissionsExt;

use crate::common::{Agent, DEADLINE, Relay, echo_handler, pair};

#[test]
fn setup_pair_and_talk_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let (hpk, gpk) = pair(&relay, &host, &guest);

    // setup is idempotent and the identity is private.
    let again = &host.json(&["setup"])[0];
    assert_eq!(again["created"], false);
    assert_eq!(again["pk"], hpk.as_str());
    let mode = std::fs::metadata(host.home.join("identity.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&host.home).unwrap().permissions().mode() & 0o777, 0o700);
    let who = &host.json(&["whoami"])[0];
    assert_eq!(who["pk"], hpk.as_str());
    assert_eq!(who["fingerprint"].as_str().unwrap().len(), 39);

    // guest → host
    let sent = &guest.json(&["send", "host", "hello host"])[0];
    let id = sent["id"].as_str().unwrap().to_owned();
    let lines = host.json(&["listen", "--once"]);
    let msg = lines.iter().find(|v| v["event"] == "message").expect("received");
    assert_eq!(msg["id"], id.as_str());
    assert_eq!(msg["from"], gpk.as_str());
    assert_eq!(msg["label"], "guest");
    assert_eq!(msg["text"], "hello host");
    assert!(msg["ts"].as_u64().unwrap() > 0);
    assert_eq!(msg["fingerprint"].as_str().unwrap().len(), 39);
    assert!(lines.iter().any(|v| v["event"] == "paired"), "{lines:?}");

    // host → guest, text from stdin, peer named by key prefix.
    let out =
        host.cmd().args(["send", &gpk[..10], "-"]).write_stdin("hello guest\n").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = guest.json(&["listen", "--once", "--from", "host"]);
    let msg = lines.iter().find(|v| v["event"] == "message").unwrap();
    assert_eq!(msg["text"], "hello guest");
    assert_eq!(msg["from"], hpk.as_str());

    // Already consumed: nothing left in the inbox, peers show both sides.
    let peers = host.json(&["peers"]);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["pk"], gpk.as_str());
    assert_eq!(peers[0]["role"], "guest");
    assert!(peers[0]["last_seen"].as_u64().is_some());
    let human = guest.ok(&["peers"]);
    assert!(human.contains("host") && human.contains(&hpk), "{human}");
}

#[test]
fn offline_guest_gets_twenty_messages_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    // The host has not run since the guest accepted: `send` learns the guest
    // from the hello the relay queued.
    let mut ids = Vec::new();
    for i in 0..20 {
        let v = &host.json(&["send", "guest", &format!("message {i}")])[0];
        assert_eq!(v["status"], "stored", "guest is offline");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut listen = guest.spawn(&["listen"]);
    let mut got = Vec::new();
    while got.len() < 20 {
        let v = listen.wait_event("message");
        got.push((v["id"].as_str().unwrap().to_owned(), v["text"].as_str().unwrap().to_owned()));
    }
    let want: Vec<_> = ids.iter().cloned().zip((0..20).map(|i| format!("message {i}"))).collect();
    assert_eq!(got, want);
    // Acked after storing: a second listener gets none of them again.
    drop(listen);
    let again = guest.json_any(&["listen", "--timeout", "1s"]);
    assert!(again.iter().all(|v| v["event"] != "message"), "{again:?}");
}

#[test]
fn relay_restart_reconnects_and_queued_messages_go_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let mut serve = host.spawn(&["serve", "--on-message", &echo_handler()]);
    serve.wait_event("connected");
    serve.wait_event("paired");

    relay.stop();
    serve.wait_event("disconnect");
    // Relay down: send fails with the network class but keeps the message queued.
    let (code, stderr) = guest.fails(&["send", "host", "while you were out"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("queued"), "{stderr}");

    let port = relay.port;
    let _relay = Relay::start_on(&relay.dir, port);
    serve.wait_event("reconnect");
    // The guest's next connection flushes its outbox; the host answers.
    let mut listen = guest.spawn(&["listen", "--once"]);
    let v = listen.wait_event("message");
    assert_eq!(v["text"], "echo: while you were out");
    assert_eq!(listen.wait_exit(), Some(0));
    let replied = serve.wait_event("replied");
    assert_eq!(replied["text"], "echo: while you were out");
    let _ = DEADLINE;
}

#[test]
fn two_bots_talk_with_a_seed_until_max_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let mut a = host.spawn(&["serve", "--on-message", &echo_handler(), "--max-turns", "3"]);
    a.wait_event("connected");
    let mut b = guest.spawn(&[
        "serve",
        "--on-message",
        &echo_handler(),
        "--seed",
        "ping",
        "--to",
        "host",
        "--max-turns",
        "3",
    ]);
    assert_eq!(a.wait_exit(), Some(0));
    assert_eq!(b.wait_exit(), Some(0));
    let replies = |bg: &crate::common::Bg| -> Vec<String> {
        bg.seen
            .iter()
            .filter(|v| v["event"] == "replied")
            .map(|v| v["text"].as_str().unwrap().to_owned())
            .collect()
    };
    // Turns count what each side sends (the TypeScript meaning): the host sends
    // three replies; the guest's seed is its turn 1, then it replies twice.
    assert_eq!(
        replies(&a),
        ["echo: ping", "echo: echo: echo: ping", "echo: echo: echo: echo: echo: ping"]
    );
    assert_eq!(replies(&b), ["ping", "echo: echo: ping", "echo: echo: echo: echo: ping"]);
    let seed = b.seen.iter().find(|v| v["event"] == "replied").unwrap();
    assert_eq!(seed["seed"], true);
    assert_eq!(seed["reply_to"], serde_json::Value::Null);
    for (bg, handled) in [(&a, 3), (&b, 2)] {
        let done = bg.seen.iter().find(|v| v["event"] == "done").unwrap();
        assert_eq!(done["reason"], "max_turns");
        assert_eq!(done["count"], handled);
        assert_eq!(done["replies"], 3);
    }
}

#[test]
fn removed_peer_can_no_longer_send() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    guest.json(&["send", "host", "before"]);
    let removed = &host.json(&["peers", "remove", "guest"])[0];
    assert_eq!(removed["relay_confirmed"], true);
    assert!(host.json(&["peers"]).is_empty());
    let (code, stderr) = guest.fails(&["send", "host", "after"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not_paired"), "{stderr}");
}

#[test]
fn send_from_the_home_a_serve_is_running_in() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let mut serve = host.spawn(&["serve", "--on-message", &echo_handler()]);
    serve.wait_event("connected");
    // The host learns the guest's label from the pairing message, which the
    // relay holds for it and hands over after `connected`.
    serve.wait_event("paired");
    // These sends go through the daemon serve runs in-process: its relay link
    // is never replaced (no disconnect/reconnect in its events).
    for i in 0..3 {
        host.json(&["send", "guest", &format!("note {i}")]);
    }
    let sent = &guest.json(&["send", "host", "ping", "--wait-reply", "--timeout", "60s"]);
    let reply = sent.iter().find(|v| v["event"] == "message").unwrap();
    assert_eq!(reply["text"], "echo: ping");
    let lines = guest.json_any(&["listen", "--timeout", "1s"]);
    let notes: Vec<_> =
        lines.iter().filter(|v| v["event"] == "message").map(|v| v["text"].clone()).collect();
    assert_eq!(notes, ["note 0", "note 1", "note 2"]);
    assert!(serve.seen.iter().all(|v| v["event"] != "disconnect"), "{:?}", serve.seen);
}
