//! `peers verify`: the mark after comparing safety numbers, shown on every
//! surface, refused on a wrong number, and gone when the peer's key changes.

use serde_json::Value;

use crate::common::{Agent, Relay, pair};

fn peer<'a>(peers: &'a [Value], pk: &str) -> &'a Value {
    peers.iter().find(|p| p["pk"] == pk).unwrap_or_else(|| panic!("no peer {pk} in {peers:?}"))
}

#[test]
fn verify_checks_the_number_marks_undoes_and_a_new_key_is_unverified() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(tmp.path());
    let (host, guest) = (Agent::new(tmp.path(), "host"), Agent::new(tmp.path(), "guest"));
    let (hpk, gpk) = pair(&relay, &host, &guest);
    let seen = guest.json(&["peers"]);
    assert_eq!(peer(&seen, &hpk)["verified"], false);
    let text = guest.ok(&["peers"]);
    assert!(
        text.contains("not verified") && text.contains("agentroom peers verify host"),
        "{text}"
    );
    // The number the other side reads out is the same one.
    let safety = peer(&host.json(&["peers"]), &gpk)["safety_number"].as_str().unwrap().to_owned();
    assert_eq!(peer(&seen, &hpk)["safety_number"], safety.as_str());

    // A wrong number: exit 1, nothing marked.
    let (code, stderr) = guest.fails(&["peers", "verify", "host", "12345 67890"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was marked verified"), "{stderr}");
    assert_eq!(peer(&guest.json(&["peers"]), &hpk)["verified"], false);
    // Unknown peer: exit 4.
    assert_eq!(guest.fails(&["peers", "verify", "nobody"]).0, 4);

    // The right number (spaces do not matter): marked, on every surface.
    let v = &guest.json(&["peers", "verify", "host", &safety.replace(' ', "")])[0];
    assert_eq!(v["event"], "peer_verified");
    assert_eq!(v["verified"], true);
    assert_eq!(v["pk"], hpk.as_str());
    assert_eq!(peer(&guest.json(&["peers"]), &hpk)["verified"], true);
    let text = guest.ok(&["peers"]);
    assert!(text.contains("(verified)") && !text.contains("not verified"), "{text}");
    // --undo takes it away; without a number it is marked again.
    assert_eq!(guest.json(&["peers", "verify", "host", "--undo"])[0]["verified"], false);
    assert_eq!(peer(&guest.json(&["peers"]), &hpk)["verified"], false);
    assert_eq!(guest.json(&["peers", "verify", "host"])[0]["verified"], true);
    // --undo with a number makes no sense: a usage error.
    assert_eq!(guest.fails(&["peers", "verify", "host", &safety, "--undo"]).0, 2);

    // The host verifies the guest; the guest then comes back with a new
    // identity: that key is a different peer, and it is not verified.
    assert_eq!(host.json(&["peers", "verify", &gpk])[0]["verified"], true);
    let out = guest.cmd().args(["--json", "setup", "--force", "--yes"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new_gpk = guest.json(&["whoami"])[0]["pk"].as_str().unwrap().to_owned();
    assert_ne!(new_gpk, gpk);
    let invite = host.invite(&relay.url, "guest-again");
    guest.json(&["invite", "accept", &invite, "--label", "host"]);
    let peers = host.json(&["peers"]);
    assert_eq!(peer(&peers, &new_gpk)["verified"], false, "a new key starts unverified");
    assert_ne!(peer(&peers, &new_gpk)["safety_number"], safety.as_str());
    // The guest's fresh pairing (its key changed) starts unverified too.
    let peers = guest.json(&["peers"]);
    assert_eq!(peer(&peers, &hpk)["verified"], false, "a new pairing starts unverified");
}
