//! Day two (issue 10): re-pairing, a fresh guest, a damaged state file, the outbox.

use crate::common::{Agent, Relay, pair};

fn received<'a>(lines: &'a [serde_json::Value], text: &str) -> Option<&'a serde_json::Value> {
    lines.iter().find(|v| v["event"] == "message" && v["text"] == text)
}

/// The guest removes the host (as "already paired" tells it to) and accepts a new
/// invite: the host replaces the old session, reports `paired`, and reads every
/// message; nothing is dropped.
#[test]
fn re_pairing_after_peers_remove_replaces_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let (_hpk, gpk) = pair(&relay, &host, &guest);
    guest.json(&["send", "host", "first life"]);
    assert!(received(&host.json(&["listen", "--once"]), "first life").is_some());

    let invite = host.invite(&relay.url, "guest2");
    let (_, err) = guest.fails(&["invite", "accept", &invite]);
    assert!(err.contains("peers remove"), "{err}");
    guest.json(&["peers", "remove", "host"]);
    guest.json(&["invite", "accept", &invite, "--label", "host"]);
    guest.json(&["send", "host", "second life"]);

    let lines = host.json(&["listen", "--once", "--timeout", "60s"]);
    assert!(lines.iter().any(|v| v["event"] == "paired"), "{lines:?}");
    assert!(received(&lines, "second life").is_some(), "{lines:?}");
    let peers = host.json(&["peers"]);
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["pk"], gpk.as_str());
    assert_eq!(peers[0]["label"], "guest", "the label survives re-pairing");

    // And back: the host's reply uses the new session.
    host.json(&["send", "guest", "welcome back"]);
    let lines = guest.json(&["listen", "--once", "--timeout", "60s"]);
    assert!(received(&lines, "welcome back").is_some(), "{lines:?}");
}

/// The line a host hands over works on a fresh machine: `invite accept` creates
/// the identity when the home has none. A bad invite creates nothing.
#[test]
fn invite_accept_in_a_fresh_home_creates_the_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    host.setup();
    let (_, err) = guest.fails(&["invite", "accept", "ar1.not-an-invite"]);
    assert!(!err.contains("no identity"), "{err}");
    assert!(!guest.home.join("identity.json").exists(), "a bad invite creates nothing");

    let invite = host.invite(&relay.url, "bob");
    let lines = guest.json(&["invite", "accept", &invite, "--label", "alice"]);
    assert_eq!(lines[0]["event"], "identity_created", "{lines:?}");
    assert_eq!(lines[1]["event"], "invite_accepted", "{lines:?}");
    guest.json(&["send", "alice", "hello"]);
    assert!(received(&host.json(&["listen", "--once"]), "hello").is_some());
}

/// A 0-byte (or foreign) state.db is refused with the "move it away" advice and
/// left as it is, instead of silently becoming a new, empty store.
#[test]
fn an_empty_or_foreign_state_db_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::new(tmp.path(), "a");
    agent.setup();
    let db = agent.home.join("state.db");
    std::fs::remove_file(&db).unwrap();
    let _ = std::fs::remove_file(agent.home.join("state.db-wal"));
    let _ = std::fs::remove_file(agent.home.join("state.db-shm"));
    std::fs::write(&db, b"").unwrap();
    let (code, err) = agent.fails(&["peers"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not an agentroom database") && err.contains("move it away"), "{err}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left untouched");

    std::fs::remove_file(&db).unwrap();
    rusqlite::Connection::open(&db).unwrap().execute_batch("CREATE TABLE notes (x);").unwrap();
    let (_, err) = agent.fails(&["peers"]);
    assert!(err.contains("move it away"), "{err}");
}

/// Once the relay has acked an envelope, its ciphertext leaves the outbox.
#[test]
fn acked_outbox_rows_keep_no_ciphertext() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    for i in 0..5 {
        guest.json(&["send", "host", &format!("m{i}")]);
    }
    let conn = rusqlite::Connection::open(guest.home.join("state.db")).unwrap();
    let (sent, bytes): (i64, i64) = conn
        .query_row(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM outbox WHERE status = 'sent'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(sent >= 5, "{sent}");
    assert_eq!(bytes, 0, "sent rows keep no ciphertext");
}

/// Copy a home's state.db (checkpointed, so the file alone is the state).
fn snapshot(agent: &Agent) -> Vec<u8> {
    let db = agent.home.join("state.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    drop(conn);
    std::fs::read(&db).unwrap()
}

fn restore(agent: &Agent, bytes: &[u8]) {
    for ext in ["state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(agent.home.join(ext));
    }
    std::fs::write(agent.home.join("state.db"), bytes).unwrap();
}

/// The host restored an old state.db: its session is behind and the guest's next
/// message cannot be decrypted. The guest is told (signed notice): `send_error`
/// with code `undecryptable` for that very message, instead of silence.
#[test]
fn an_undecryptable_message_surfaces_to_its_sender() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    pair(&relay, &host, &guest);
    guest.json(&["send", "host", "m0"]);
    assert!(received(&host.json(&["listen", "--once"]), "m0").is_some());
    let backup = snapshot(&host);
    // Two round trips: both ratchets step past the backup.
    for i in 1..=2 {
        host.json(&["send", "guest", &format!("r{i}")]);
        assert!(received(&guest.json(&["listen", "--once"]), &format!("r{i}")).is_some());
        guest.json(&["send", "host", &format!("m{i}")]);
        assert!(received(&host.json(&["listen", "--once"]), &format!("m{i}")).is_some());
    }
    host.json(&["send", "guest", "r3"]);
    assert!(received(&guest.json(&["listen", "--once"]), "r3").is_some());
    restore(&host, &backup);
    let lost = guest.json(&["send", "host", "lost in a restore"]);
    let lost_id = lost[0]["id"].as_str().unwrap().to_owned();

    let mut h = host.spawn(&["listen"]);
    let dropped = h.wait_event("dropped");
    assert!(dropped["reason"].as_str().unwrap().contains("decrypt"), "{dropped}");
    let mut g = guest.spawn(&["listen"]);
    let failed = g.wait_event("send_error");
    assert_eq!(failed["id"], lost_id.as_str(), "{failed}");
    assert_eq!(failed["code"], "undecryptable", "{failed}");
}
