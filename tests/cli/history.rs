//! History (both directions), `--since`, Markdown transcripts, disappearing
//! messages and retention: real binary, real relay, two homes.

use std::path::Path;

use serde_json::Value;

use crate::common::{Agent, Relay, echo_handler, pair, poll_until};

/// `history --json` lines.
fn history(agent: &Agent, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["history"];
    all.extend_from_slice(args);
    let lines = agent.json(&all);
    assert!(lines.iter().all(|v| v["event"] == "message"), "{lines:?}");
    lines
}

/// Rows about `peer` in a home's database, read directly (a running process
/// owns the home; WAL lets us read beside it): (history, inbox, outbox).
fn rows(home: &Path, peer: &str) -> (i64, i64, i64) {
    let db = rusqlite::Connection::open_with_flags(
        home.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let n = |table: &str| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {table} WHERE peer = ?1"), [peer], |r| r.get(0))
            .unwrap()
    };
    (n("history"), n("inbox"), n("outbox"))
}

/// Send from `guest` to the host running `serve` with the echo handler; wait for the answer.
fn round_trip(guest: &Agent, text: &str) -> (String, String) {
    let lines = guest.json(&["send", "host", text, "--wait-reply", "--timeout", "60s"]);
    let sent = lines.iter().find(|v| v["event"] == "sent").expect("sent");
    let reply = lines.iter().find(|v| v["event"] == "message").expect("reply");
    assert_eq!(reply["text"], format!("echo: {text}"));
    (sent["id"].as_str().unwrap().to_owned(), reply["id"].as_str().unwrap().to_owned())
}

#[test]
fn history_keeps_both_directions_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let (hpk, gpk) = pair(&relay, &host, &guest);
    let mut serve = host.spawn(&["serve", "--on-message", &echo_handler()]);
    serve.wait_event("connected");
    let (id, reply_id) = round_trip(&guest, "hello host");
    serve.wait_event("replied");

    let g = history(&guest, &[]);
    assert_eq!(g.len(), 2, "{g:?}");
    assert_eq!((&g[0]["direction"], &g[0]["text"]), (&"out".into(), &"hello host".into()));
    assert_eq!(g[0]["id"], id.as_str());
    assert_eq!(g[0]["peer"], hpk.as_str());
    assert_eq!(g[0]["label"], "host");
    // The answer proves delivery even if the relay said `stored`.
    assert_eq!(g[0]["state"], "delivered");
    assert_eq!((&g[1]["direction"], &g[1]["text"]), (&"in".into(), &"echo: hello host".into()));
    assert_eq!(g[1]["id"], reply_id.as_str());
    assert_eq!(g[1]["reply_to"], id.as_str());
    assert_eq!(g[1]["state"], "received");
    assert!(g[1]["sent_at"].as_u64().unwrap() > 0, "in: the relay's accept time");
    assert!(g[1].get("relay_ts").is_none(), "one name: sent_at");

    // The host's side mirrors it, with the serve reply recorded as sent text.
    // The relay's `sent` for the reply may still be on its way.
    poll_until("the relay to confirm the reply", || history(&host, &[])[1]["state"] != "queued");
    let h = history(&host, &["guest"]);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!((&h[0]["direction"], &h[0]["id"]), (&"in".into(), &id.as_str().into()));
    assert_eq!(h[0]["peer"], gpk.as_str());
    assert_eq!((&h[1]["direction"], &h[1]["text"]), (&"out".into(), &"echo: hello host".into()));
    assert_eq!((&h[1]["id"], &h[1]["reply_to"]), (&reply_id.as_str().into(), &id.as_str().into()));
    assert!(["stored", "delivered"].contains(&h[1]["state"].as_str().unwrap()), "{h:?}");
    assert_eq!(history(&host, &[&gpk[..10]]).len(), 2, "a key prefix names the peer too");

    // --since: an RFC 3339 time at the second message keeps only it; durations count back.
    let second = g[1]["at"].as_u64().unwrap();
    let t = chrono::DateTime::from_timestamp_millis(i64::try_from(second).unwrap()).unwrap();
    let rfc = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let since = history(&guest, &["--since", &rfc]);
    assert_eq!(since.len(), 1, "{since:?}");
    assert_eq!(since[0]["text"], "echo: hello host");
    assert_eq!(history(&guest, &["--since", "1h"]).len(), 2);
    assert!(history(&guest, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let last = history(&guest, &["--limit", "1"]);
    assert_eq!((last.len(), &last[0]["text"]), (1, &"echo: hello host".into()));

    // A readable transcript.
    let md = guest.ok(&["history", "host", "--format", "md"]);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines[0], "# Conversation with host", "{md}");
    assert!(lines[2].starts_with("**you → host** · ") && lines[2].ends_with("delivered"), "{md}");
    assert_eq!(lines[4], "> hello host", "{md}");
    assert!(lines[6].starts_with("**host → you** · "), "{md}");
    assert!(lines[6].ends_with(&format!("reply to `{}`", &id[..8])), "{md}");
    assert_eq!(lines[8], "> echo: hello host", "{md}");
    let text = guest.ok(&["history"]);
    assert!(text.contains("you → host [delivered]: hello host"), "{text}");

    // Bad input: a clear error, exit 2 for usage, 4 for an unknown peer.
    let (code, err) = guest.fails(&["history", "--since", "yesterday"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid time \"yesterday\""), "{err}");
    let (code, err) = guest.fails(&["history", "nobody"]);
    assert_eq!(code, 4, "{err}");
    let (_, err) = guest.fails(&["--json", "history", "--format", "md"]);
    assert!(err.contains("--json and --format md exclude each other"), "{err}");

    // Forgetting a peer forgets its history.
    drop(serve);
    host.json(&["peers", "remove", "guest"]);
    assert!(history(&host, &[]).is_empty());
    assert_eq!(rows(&host.home, &gpk), (0, 0, 0));
}

#[test]
fn disappearing_messages_go_in_serve_and_in_one_shot_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let (hpk, gpk) = pair(&relay, &host, &guest);
    let mut serve = host.spawn(&["serve", "--on-message", &echo_handler()]);
    serve.wait_event("connected");
    round_trip(&guest, "secret one");
    serve.wait_event("replied");
    let (h, i, _) = rows(&host.home, &gpk);
    assert_eq!(h, 2, "both directions are stored");
    assert!(i >= 1, "the read message (and the guest's hello) wait in the inbox");

    // Turned on while serve runs: only serve's own sweep can delete them, as no
    // other command runs on the host until they are gone.
    let v = &host.json(&["peers", "set", "guest", "--expire", "2s"])[0];
    assert_eq!((&v["event"], &v["expire_secs"]), (&"peer_updated".into(), &2.into()));
    poll_until("serve to delete the expired messages", || rows(&host.home, &gpk) == (0, 0, 0));
    let peers = host.json(&["peers"]);
    assert_eq!(peers[0]["expire_secs"], 2);
    assert!(host.ok(&["peers"]).contains("messages expire after 2s"));
    assert!(history(&host, &[]).is_empty());
    // Only the host chose that: the guest keeps its copy.
    assert_eq!(history(&guest, &[]).len(), 2);

    // `off` keeps new messages.
    let v = &host.json(&["peers", "set", "guest", "--expire", "off"])[0];
    assert_eq!(v["expire_secs"], Value::Null);
    round_trip(&guest, "kept");
    serve.wait_event("replied");
    assert_eq!(rows(&host.home, &gpk).0, 2);
    drop(serve);

    // No long-running process on the guest: each command sweeps when it starts.
    guest.json(&["peers", "set", "host", "--expire", "1s"]);
    poll_until("a one-shot command to delete expired messages", || history(&guest, &[]).is_empty());
    assert_eq!(rows(&guest.home, &hpk).0, 0);

    let (code, err) = host.fails(&["peers", "set", "guest", "--expire", "0s"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("under a second"), "{err}");
}

#[test]
fn retention_prunes_old_history_while_listening() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let (_, gpk) = pair(&relay, &host, &guest);
    guest.json(&["send", "host", "one"]);
    guest.json(&["send", "host", "two"]);
    let mut listen = host.spawn(&["listen"]);
    listen.wait_event("message");
    listen.wait_event("message");
    drop(listen);
    assert_eq!(history(&host, &[]).len(), 2, "without --retain everything is kept");

    let mut listen = host.spawn(&["listen", "--retain", "1s"]);
    poll_until("listen --retain to prune", || rows(&host.home, &gpk).0 == 0);
    assert_eq!(rows(&host.home, &gpk).1, 0, "read inbox rows go too");
    listen.sigkill();
    assert!(history(&host, &[]).is_empty());
}
