//! Invite lifecycle: URL forms, reuse, tampering, expiry, revocation.

use crate::common::{Agent, Relay, pair};

#[test]
fn reused_invite_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest, carol) = (
        Agent::new(tmp.path(), "host"),
        Agent::new(tmp.path(), "guest"),
        Agent::new(tmp.path(), "carol"),
    );
    host.setup();
    guest.setup();
    carol.setup();
    let invite = host.invite(&relay.url, "guest");
    guest.json(&["invite", "accept", &invite]);
    let (code, stderr) = carol.fails(&["invite", "accept", &invite]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already used"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    assert!(carol.json(&["peers"]).is_empty(), "no partial state");
    // The same guest accepting again is told it is already paired.
    let (code, stderr) = guest.fails(&["invite", "accept", &invite]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already paired"), "{stderr}");
}

#[test]
fn tampered_and_expired_invites_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    host.setup();
    guest.setup();
    let invite = host.invite(&relay.url, "g");
    // Flip one character of the payload (not the prefix).
    let mut chars: Vec<char> = invite.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    // A bad invite is bad input: exit 2, as in the TypeScript agentroom.
    let (code, stderr) = guest.fails(&["invite", "accept", &tampered]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invite"), "{stderr}");
    let (code, _) = guest.fails(&["invite", "accept", "ar1.garbage"]);
    assert_eq!(code, 2);
    assert!(guest.json(&["peers"]).is_empty());

    // 2s, not 1s: on a loaded machine a 1-second invite (whole seconds) could
    // already be past when the relay got it, and its publish was refused.
    let short = &host.json(&["invite", "create", "--relay", &relay.url, "--expires", "2s"])[0];
    let expired = short["invite"].as_str().unwrap().to_owned();
    let expires_at = short["expires_at"].as_u64().unwrap();
    let now =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    while now() <= expires_at {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, stderr) = guest.fails(&["invite", "accept", &expired]);
    assert_eq!(code, 2);
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(guest.json(&["peers"]).is_empty());
    // The untouched invite still works.
    guest.json(&["invite", "accept", &invite]);
}

#[test]
fn http_relay_urls_list_and_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    host.setup();
    guest.setup();
    // http:// with no path is the same relay as ws://…/ws; `--server` is the TS spelling.
    let http = format!("http://127.0.0.1:{}", relay.port);
    let created = &host.json(&["invite", "create", "--server", &http, "--label", "g"])[0];
    assert_eq!(created["relay"], relay.url.as_str());
    assert!(
        created["accept_command"].as_str().unwrap().starts_with("agentroom invite accept 'ar1.")
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let list = host.json(&["invite", "list"]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "open");

    let revoked = &host.json(&["invite", "revoke", &id[..8]])[0];
    assert_eq!(revoked["relay_confirmed"], true);
    assert_eq!(host.json(&["invite", "list"])[0]["status"], "revoked");
    let (code, stderr) = guest.fails(&["invite", "accept", created["invite"].as_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("revoked"), "{stderr}");

    // A default relay from setup, in https-less http form, serves `invite create`.
    host.json(&["setup", "--relay", &http]);
    let inv = &host.json(&["invite", "create"])[0];
    guest.json(&["invite", "accept", inv["invite"].as_str().unwrap()]);
    let _ = pair;
}

#[test]
fn a_second_connection_uses_the_token_fast_path() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let host = Agent::new(tmp.path(), "host");
    host.setup();
    let login = |_: ()| {
        let out = host
            .cmd()
            .env("LOG_LEVEL", "agentroom::client=info")
            .args(["invite", "create", "--relay", &relay.url])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(login(()).contains("\"resumed\":false"), "first login signs");
    let second = login(());
    assert!(second.contains("\"resumed\":true"), "{second}");
    assert!(!second.contains("v1."), "the token itself is never logged: {second}");
}
