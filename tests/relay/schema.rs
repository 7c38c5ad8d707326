//! Real frames from a real relay session validate against `protocol/schemas/*.json`.

use std::collections::BTreeSet;

use agentroom::protocol::{ClientFrame, ErrorCode, ServerFrame};
use serde_json::Value;

use crate::client::*;

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/protocol/schemas/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&v).unwrap()
}

/// A session that makes the relay and the clients use every frame type.
async fn exercise_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    // challenge, login, welcome, invite_publish, ok, send+claim, deliver, ack, sent, presence
    let (host, mut guest) = pair(addr, 11, 12).await;
    // ping / pong
    guest.barrier().await;
    // error with an id (not_paired) and with a rid
    let (mut other, _) = Client::login(addr, &identity(13)).await;
    other.send_env(eid(1), host.pk(), b"x").await;
    other.expect_error(ErrorCode::NotPaired).await;
    other
        .send(&ClientFrame::InviteRevoke {
            rid: Some("nope".into()),
            invite: agentroom::protocol::InviteHash([0; 32]),
        })
        .await;
    other.expect_error(ErrorCode::InviteUnknown).await;
    // sent(stored), resume, offline delivery
    let token = host.token.clone().unwrap();
    let host_pk = host.pk();
    host.close().await;
    let id = eid(2);
    guest.send_env(id, host_pk, b"stored").await;
    assert!(matches!(guest.recv_np().await, ServerFrame::Sent { .. }));
    let mut host = Client::connect(addr, &identity(11)).await;
    host.send(&ClientFrame::Resume { v: 1, token }).await;
    assert!(matches!(host.recv().await, ServerFrame::Welcome { pending: 1, .. }));
    host.deliver(true).await;
    // peer_revoke
    host.send(&ClientFrame::PeerRevoke { rid: None, peer: guest.pk() }).await;
    assert_eq!(host.recv_np().await, ServerFrame::Ok { rid: None });
    relay.shutdown().await;
}

#[tokio::test]
async fn real_frames_match_the_schemas() {
    exercise_every_frame().await;
    let client = schema("client-frame");
    let server = schema("server-frame");
    let frames = CAPTURED.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    for (from_client, text) in &frames {
        let v: Value = serde_json::from_str(text).unwrap();
        let validator = if *from_client { &client } else { &server };
        if let Err(e) = validator.validate(&v) {
            panic!(
                "{} frame does not match its schema: {e}\n{text}",
                if *from_client { "client" } else { "server" }
            );
        }
        seen.insert((*from_client, v["type"].as_str().unwrap().to_owned()));
    }
    for t in
        ["login", "resume", "send", "ack", "invite_publish", "invite_revoke", "peer_revoke", "ping"]
    {
        assert!(seen.contains(&(true, t.to_owned())), "no client {t} frame exercised");
    }
    for t in ["challenge", "welcome", "sent", "deliver", "ok", "presence", "pong", "error"] {
        assert!(seen.contains(&(false, t.to_owned())), "no server {t} frame exercised");
    }
}

#[test]
fn schemas_reject_drifted_frames() {
    let server = schema("server-frame");
    let ok = serde_json::json!({"type":"sent","id":"AAAAAAAAAAAAAAAAAAAAAA","status":"stored"});
    assert!(server.is_valid(&ok));
    for bad in [
        serde_json::json!({"type":"sent","id":"AAAAAAAAAAAAAAAAAAAAAA","status":"maybe"}),
        serde_json::json!({"type":"sent","id":"short","status":"stored"}),
        serde_json::json!({"type":"deliver","id":"AAAAAAAAAAAAAAAAAAAAAA"}),
        serde_json::json!({"type":"nope"}),
    ] {
        assert!(!server.is_valid(&bad), "{bad}");
    }
}
