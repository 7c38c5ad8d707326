//! serve: exactly-once replies across a SIGKILL, handler failures, strangers.

use crate::common::{Agent, Relay, pair, poll_until, script};

#[test]
fn sigkill_during_handler_then_restart_gives_exactly_one_reply() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let marker = tmp.path().join("first-run");
    let runs = tmp.path().join("runs.log");
    // First run: note it, then hang (the client is killed meanwhile).
    let handler = script(
        tmp.path(),
        "slow-once.sh",
        &format!(
            r#"text=$(cat)
echo "$AGENTROOM_MSG_ID $text" >> {runs}
if [ ! -e {marker} ]; then echo $$ > {marker}; sleep 60; fi
echo "reply to $text""#,
            runs = runs.display(),
            marker = marker.display()
        ),
    );
    let mut serve = host.spawn(&["serve", "--on-message", &handler]);
    serve.wait_event("connected");
    let sent = &guest.json(&["send", "host", "one"])[0];
    let id = sent["id"].as_str().unwrap().to_owned();
    poll_until("the handler to start", || {
        marker.exists() && std::fs::read_to_string(&marker).is_ok_and(|s| !s.trim().is_empty())
    });
    serve.sigkill();
    // Clean up the orphaned first handler.
    let pid = std::fs::read_to_string(&marker).unwrap().trim().to_owned();
    let _ = std::process::Command::new("kill").arg(&pid).status();

    let mut serve = host.spawn(&["serve", "--on-message", &handler]);
    let replied = serve.wait_event("replied");
    assert_eq!(replied["reply_to"], id.as_str());
    assert_eq!(replied["text"], "reply to one");

    // A second message proves the order and that nothing else was queued.
    guest.json(&["send", "host", "two"]);
    let mut listen = guest.spawn(&["listen"]);
    let a = listen.wait_event("message");
    let b = listen.wait_event("message");
    assert_eq!(a["text"], "reply to one");
    assert_eq!(a["reply_to"], id.as_str());
    assert_eq!(b["text"], "reply to two");
    drop(listen);
    drop(serve);
    // The handler saw message one twice (killed once), and replied once.
    let log = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(log.lines().filter(|l| l.ends_with(" one")).count(), 2, "{log}");
    assert_eq!(log.lines().filter(|l| l.ends_with(" two")).count(), 1, "{log}");
}

#[test]
fn failing_silent_and_hanging_handlers_are_reported_and_serve_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let grandchild_pid = tmp.path().join("grandchild.pid");
    let handler = script(
        tmp.path(),
        "moody.sh",
        &format!(
            r#"text=$(cat)
case "$text" in
  fail) echo "boom: bad input" >&2; exit 1 ;;
  quiet) exit 0 ;;
  hang) sh -c 'trap "" TERM; echo $$ > {pidfile}; while :; do sleep 1; done' &
        sleep 60 ;;
  *) echo "got: $text from $AGENTROOM_PEER_LABEL" ;;
esac"#,
            pidfile = grandchild_pid.display()
        ),
    );
    let mut serve = host.spawn(&[
        "serve",
        "--on-message",
        &handler,
        "--handler-timeout",
        "2s",
        "--max-turns",
        "1",
    ]);
    serve.wait_event("connected");
    for text in ["fail", "quiet", "hang", "fine"] {
        guest.json(&["send", "host", text]);
    }
    let failed = serve.wait_event("handler_error");
    assert_eq!(failed["exit_code"], 1);
    assert_eq!(failed["code"], 1, "the TypeScript field");
    assert_eq!(failed["timed_out"], false);
    assert!(failed["stderr"].as_str().unwrap().contains("boom: bad input"));
    serve.wait_event("no_reply");
    let timed_out = serve.wait_event("handler_error");
    assert_eq!(timed_out["timed_out"], true);
    let replied = serve.wait_event("replied");
    assert_eq!(replied["text"], "got: fine from guest");
    let done = serve.wait_event("done");
    // Turns count replies: three runs without one did not end the loop.
    assert_eq!(done["count"], 4);
    assert_eq!(done["replies"], 1);
    assert_eq!(done["reason"], "max_turns");
    assert_eq!(serve.wait_exit(), Some(0));

    // The grandchild that ignored SIGTERM died with its process group.
    let pid = std::fs::read_to_string(&grandchild_pid).unwrap().trim().to_owned();
    poll_until("the grandchild to die", || {
        !std::process::Command::new("kill").args(["-0", &pid]).status().unwrap().success()
    });
    // The guest got exactly one message back.
    let lines = guest.json(&["listen", "--timeout", "1s"]);
    let texts: Vec<_> =
        lines.iter().filter(|v| v["event"] == "message").map(|v| v["text"].clone()).collect();
    assert_eq!(texts, vec![serde_json::json!("got: fine from guest")]);
}

#[test]
fn a_third_identity_cannot_reach_the_handler() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest, carol) = (
        Agent::new(tmp.path(), "host"),
        Agent::new(tmp.path(), "guest"),
        Agent::new(tmp.path(), "carol"),
    );
    let hpk = host.setup();
    guest.setup();
    carol.setup();
    let invite = host.invite(&relay.url, "guest");
    guest.json(&["invite", "accept", &invite, "--label", "host"]);
    let runs = tmp.path().join("runs.log");
    let handler = script(tmp.path(), "log.sh", &format!("cat >> {}; echo ok", runs.display()));
    let mut serve = host.spawn(&["serve", "--on-message", &handler]);
    serve.wait_event("connected");
    // Carol copied the invite: the relay refuses her claim, the host never hears her.
    let (code, stderr) = carol.fails(&["invite", "accept", &invite]);
    assert_eq!(code, 1, "{stderr}");
    // Carol knows the host's key but has no session: refused before anything is sent.
    let (code, stderr) = carol.fails(&["send", &hpk, "let me in"]);
    assert_eq!(code, 4, "{stderr}");
    guest.json(&["send", "host", "legit"]);
    let replied = serve.wait_event("replied");
    assert_eq!(replied["text"], "ok");
    assert!(
        serve.seen.iter().all(|v| v["event"] != "message" || v["text"] == "legit"),
        "{:?}",
        serve.seen
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "legit");
}

#[test]
fn concurrency_runs_handlers_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    let flag = tmp.path().join("second-started");
    // "first" can only finish once "second" has started: with one slot it would
    // hit its 30 s timeout instead.
    let handler = script(
        tmp.path(),
        "pairwise.sh",
        &format!(
            r#"text=$(cat)
if [ "$text" = first ]; then
  i=0; while [ ! -e {flag} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  [ -e {flag} ] && echo "first saw second" || echo "first alone"
else
  touch {flag}; echo "second done"
fi"#,
            flag = flag.display()
        ),
    );
    guest.json(&["send", "host", "first"]);
    guest.json(&["send", "host", "second"]);
    let mut serve =
        host.spawn(&["serve", "--on-message", &handler, "--concurrency", "2", "--max-turns", "2"]);
    assert_eq!(serve.wait_exit(), Some(0));
    let mut texts: Vec<String> = serve
        .seen
        .iter()
        .filter(|v| v["event"] == "replied")
        .map(|v| v["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, ["first saw second", "second done"]);
}
