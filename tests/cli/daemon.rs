//! The per-home daemon: one owner of a home's relay link and inbox, its local
//! API, and consumers that share a home without handling a message twice.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Agent, BIN, Bg, DEADLINE, Relay, pair, poll_until, script};

/// A relay counter from its Prometheus `/metrics`.
fn relay_metric(relay: &Relay, name: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let line = format!("agentroom_relay_{name} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .trim()
        .parse()
        .unwrap()
}

/// Start `agentroom daemon` for `agent` and wait for its socket to answer.
fn start_daemon(agent: &Agent, extra: &[&str]) -> Bg {
    let mut args = vec!["daemon"];
    args.extend_from_slice(extra);
    let mut d = agent.spawn(&args);
    d.wait_event("daemon");
    d
}

/// One HTTP/1.1 request over the home's socket; returns (status, body).
fn over_socket(home: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(home.join("agentroom.sock")).unwrap();
    // One write: `write!` on the stream writes each piece on its own, and a
    // handler that takes no body may answer and close before the last one
    // (the body) is written, which then fails with EPIPE.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn two_serves_on_one_home_handle_each_message_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let runs = tmp.path().join("runs.log");
    let handler = script(
        tmp.path(),
        "count.sh",
        &format!("t=$(cat); echo \"$t\" >> {}; echo \"re:$t\"", runs.display()),
    );
    let mut a = host.spawn(&["serve", "--on-message", &handler]);
    a.wait_event("connected");
    let mut b = host.spawn(&["serve", "--on-message", &handler]);
    b.wait_event("connected");
    // An observer sees every message without taking any.
    let mut observer = host.spawn(&["listen", "--follow"]);
    observer.wait_event("connected");
    for i in 0..20 {
        guest.json(&["send", "host", &format!("m{i}")]);
    }
    let mut listen = guest.spawn(&["listen"]);
    let mut replies = Vec::new();
    while replies.len() < 20 {
        replies.push(listen.wait_event("message")["text"].as_str().unwrap().to_owned());
    }
    for _ in 0..20 {
        observer.wait_event("message");
    }
    replies.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("re:m{i}")).collect();
    want.sort();
    assert_eq!(replies, want, "one reply per message");
    let lines = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(lines.lines().count(), 20, "exactly 20 handler runs: {lines}");
    // No more replies trickle in.
    let extra = guest.json_any(&["listen", "--timeout", "2s"]);
    assert!(extra.iter().all(|v| v["event"] != "message"), "{extra:?}");
}

#[test]
fn a_handler_calling_send_reuses_the_daemons_link() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let handler = script(
        tmp.path(),
        "side.sh",
        &format!("t=$(cat); {BIN} send guest \"side:$t\" >/dev/null || exit 9; echo \"re:$t\""),
    );
    let mut serve = host.spawn(&["serve", "--on-message", &handler]);
    serve.wait_event("connected");
    let mut listen = guest.spawn(&["listen"]);
    listen.wait_event("connected");
    let before = relay_metric(&relay, "connections_total");
    guest.json(&["send", "host", "ping"]);
    let mut got = vec![
        listen.wait_event("message")["text"].as_str().unwrap().to_owned(),
        listen.wait_event("message")["text"].as_str().unwrap().to_owned(),
    ];
    got.sort();
    assert_eq!(got, ["re:ping", "side:ping"]);
    let replied = serve.wait_event("replied");
    assert_eq!(replied["text"], "re:ping");
    // The guest's `send` went through its own listen's daemon, the handler's
    // `send` through serve's: not one new relay connection.
    assert_eq!(relay_metric(&relay, "connections_total"), before);
    assert!(serve.seen.iter().all(|v| v["event"] != "disconnect"), "{:?}", serve.seen);
}

#[test]
fn daemon_socket_lock_http_token_and_events() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut daemon = start_daemon(&host, &["--http", &addr]);
    let pid = daemon.child.id();
    let sock = host.home.join("agentroom.sock");
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&host.home).unwrap().permissions().mode() & 0o777, 0o700);
    let token_path = host.home.join("http-token");
    assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);

    // A second owner is refused with the running pid.
    let (code, stderr) = host.fails(&["daemon"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");

    // status through the socket names the daemon.
    let st = &host.json(&["status"])[0];
    assert_eq!(st["running"], true);
    assert_eq!(st["pid"], pid);

    // SSE: a received event per message.
    let mut events = UnixStream::connect(&sock).unwrap();
    write!(events, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut events = BufReader::new(events);
    let mut head = String::new();
    events.read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    guest.json(&["send", "host", "one"]);
    guest.json(&["send", "host", "two"]);
    let mut texts = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while texts.len() < 2 && Instant::now() < deadline {
        let mut line = String::new();
        if events.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            if v["event"] == "received" {
                texts.push(v["message"]["text"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(texts, ["one", "two"]);

    // Lease + ack over the socket; a second lease does not get the same message.
    let (code, body) = over_socket(&host.home, "POST", "/v1/messages/next", "{}");
    assert_eq!(code, 200, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(first["message"]["text"], "one");
    let (_, body) = over_socket(&host.home, "POST", "/v1/messages/next", "{}");
    let second: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(second["message"]["text"], "two");
    let ack = format!("{{\"lease_id\":{}}}", first["message"]["lease_id"]);
    let (code, body) = over_socket(&host.home, "POST", "/v1/messages/ack", &ack);
    assert_eq!((code, body.contains("\"acked\"")), (200, true), "{body}");
    let (code, _) = over_socket(&host.home, "POST", "/v1/messages/ack", "{\"lease_id\":\"nope\"}");
    assert_eq!(code, 404);
    let (code, body) = over_socket(&host.home, "POST", "/v1/messages/next", "{\"lease_ms\":5}");
    assert_eq!(code, 400, "{body}");

    // The OpenAPI document is served and matches the checked-in file.
    let (code, body) = over_socket(&host.home, "GET", "/v1/openapi.json", "");
    assert_eq!(code, 200);
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/openapi.json"))
            .unwrap();
    assert_eq!(served, serde_json::from_str::<serde_json::Value>(&file).unwrap());

    // Loopback HTTP: token and Host checked.
    let token = std::fs::read_to_string(&token_path).unwrap().trim().to_owned();
    let http = |host_header: &str, auth: Option<&str>| -> u16 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let auth = auth.map(|a| format!("Authorization: Bearer {a}\r\n")).unwrap_or_default();
        write!(
            s,
            "GET /v1/status HTTP/1.1\r\nHost: {host_header}\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(!out.to_ascii_lowercase().contains("access-control-allow-origin"), "{out}");
        out[9..12].parse().unwrap()
    };
    assert_eq!(http(&addr, None), 401);
    assert_eq!(http(&addr, Some("wrong")), 401);
    assert_eq!(http("evil.example", Some(&token)), 403);
    assert_eq!(http(&format!("evil.example:{port}"), Some(&token)), 403);
    assert_eq!(http(&addr, Some(&token)), 200);
    assert_eq!(http(&format!("localhost:{port}"), Some(&token)), 200);
    daemon.sigkill();
}

#[test]
fn killed_consumer_and_killed_daemon_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let mut daemon = start_daemon(&host, &[]);
    let started = tmp.path().join("started");
    let slow = script(
        tmp.path(),
        "slow.sh",
        &format!("cat > /dev/null; touch {}; sleep 30", started.display()),
    );
    // A consumer takes the message (lease = 1s timeout + margin) and dies mid-handler.
    let mut first = host.spawn(&["serve", "--on-message", &slow, "--timeout", "1s"]);
    first.wait_event("connected");
    guest.json(&["send", "host", "only once"]);
    poll_until("the first handler to start", || started.exists());
    first.sigkill();
    // The daemon dies too; a new one resumes from the home.
    daemon.sigkill();
    let runs = tmp.path().join("runs.log");
    let handler = script(
        tmp.path(),
        "ok.sh",
        &format!("t=$(cat); echo \"$t\" >> {}; echo \"got:$t\"", runs.display()),
    );
    let mut second = host.spawn(&["serve", "--on-message", &handler]);
    let replied = second.wait_event("replied");
    assert_eq!(replied["text"], "got:only once");
    let mut listen = guest.spawn(&["listen", "--once"]);
    assert_eq!(listen.wait_event("message")["text"], "got:only once");
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "only once\n", "handled once");
    let _ = Duration::ZERO;
}

#[test]
fn daemon_with_a_handler_answers_and_a_wait_reply_gets_that_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let mut daemon = start_daemon(&host, &["--on-message", "sed s/^/d:/"]);
    // The host learns the guest's name from its hello, which its daemon takes in.
    poll_until("the host to know the guest", || {
        host.json(&["peers"]).iter().any(|p| p["label"] == "guest")
    });
    // An older unread message from the host waits in the guest's inbox; the
    // guest's daemon must hand `--wait-reply` the answer to its own message.
    host.json(&["send", "guest", "older, unread"]);
    let mut guest_daemon = start_daemon(&guest, &[]);
    let out = guest.json(&["send", "host", "hi", "--wait-reply", "--timeout", "60s"]);
    let reply = out.iter().find(|v| v["event"] == "message").expect("a reply");
    assert_eq!(reply["text"], "d:hi");
    assert_eq!(reply["reply_to"], out[0]["id"]);
    let rest = guest.json(&["listen", "--once", "--timeout", "30s"]);
    assert_eq!(rest.iter().find(|v| v["event"] == "message").unwrap()["text"], "older, unread");
    daemon.wait_event("replied");
    guest_daemon.sigkill();
    daemon.sigkill();
}

#[test]
fn peers_remove_goes_through_the_running_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let mut daemon = start_daemon(&host, &[]);
    poll_until("the daemon's relay link", || {
        let (_, body) = over_socket(&host.home, "GET", "/v1/status", "");
        body.contains(r#""up":true"#)
    });
    let before = relay_metric(&relay, "connections_total");

    let out = host.json(&["peers", "remove", "guest"]);
    let removed = out.iter().find(|v| v["event"] == "peer_removed").unwrap();
    assert_eq!(removed["label"], "guest", "{out:?}");
    assert_eq!(removed["relay_confirmed"], true, "{out:?}");
    // The daemon's link did it: no second relay connection, no reconnect.
    assert_eq!(relay_metric(&relay, "connections_total"), before);
    let (status, body) = over_socket(&host.home, "GET", "/v1/peers", "");
    assert_eq!(status, 200);
    let peers: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(peers["peers"].as_array().unwrap().len(), 0, "{body}");
    // An unknown peer is a clear 404, and changes nothing.
    let (status, body) = over_socket(&host.home, "DELETE", "/v1/peers/nobody", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nobody"), "{body}");
    let (code, stderr) = host.fails(&["peers", "remove", "guest"]);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(relay_metric(&relay, "connections_total"), before);
    daemon.sigkill();
}

#[test]
fn the_pause_switch_is_announced_on_the_event_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Agent::new(tmp.path(), "host");
    host.setup();
    let daemon = start_daemon(&host, &[]);
    // Subscribe, then read the stream's `event:` lines on a thread.
    let mut s = UnixStream::connect(host.home.join("agentroom.sock")).unwrap();
    write!(s, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let (tx, events) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines().map_while(Result::ok) {
            let name = match line.strip_prefix("event: ") {
                Some(name) => name.to_owned(),
                // The status line: the daemon subscribed this stream before answering.
                None if line.starts_with("HTTP/1.1 200") => "subscribed".to_owned(),
                None => continue,
            };
            if tx.send(name).is_err() {
                break;
            }
        }
    });
    let next_event = || events.recv_timeout(DEADLINE).expect("an event");
    assert_eq!(next_event(), "subscribed");
    let (status, body) = over_socket(&host.home, "POST", "/v1/handler/pause", "{}");
    assert_eq!((status, body.contains(r#""paused":true"#)), (200, true), "{body}");
    assert_eq!(next_event(), "paused");
    // Pausing again changes nothing and says nothing; resuming is announced.
    over_socket(&host.home, "POST", "/v1/handler/pause", "{}");
    over_socket(&host.home, "POST", "/v1/handler/resume", "{}");
    assert_eq!(next_event(), "resumed");
    drop(daemon);
}

/// The guest accepted the host's invite while the host was away. A `send` to
/// the guest's label right after the host's daemon starts waits for the relay
/// to hand over the pairing message that teaches the label, as a `send` with
/// no daemon does, instead of answering "unknown peer". A name no relay
/// teaches is still refused once the relays have caught up.
#[test]
fn a_send_right_after_start_waits_for_the_pairing_the_relay_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let daemon = start_daemon(&host, &[]);
    let sent = host.json(&["send", "guest", "first words"]);
    assert_eq!(sent[0]["event"], "sent", "{sent:?}");
    let got = guest.json_any(&["listen", "--timeout", "2s"]);
    assert!(got.iter().any(|v| v["text"] == "first words"), "{got:?}");
    let (code, stderr) = host.fails(&["send", "nobody", "hello?"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("unknown peer"), "{stderr}");
    drop(daemon);
}
