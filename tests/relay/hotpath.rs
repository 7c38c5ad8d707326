//! The relay's hot path (issue 17): the flat decoder for `send` and `ack` accepts
//! and refuses exactly what the general decoder does, whatever the JSON spelling;
//! live envelopes stay off the disk while their recipient is acking.

use agentroom::protocol::{ClientFrame, DeliveryStatus, ErrorCode, ServerFrame, b64, encode_frame};

use crate::client::*;

#[tokio::test]
async fn send_and_ack_in_any_json_spelling_are_routed_alike() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, mut guest) = pair(addr, 41, 42).await;
    let (to, from) = (host.pk().to_b64u(), guest.pk().to_b64u());

    // Compact, as the client writes it (the flat path).
    let (id1, body1) = (eid(1), vec![0xfb; 200]);
    guest.send_env(id1, host.pk(), &body1).await;
    // Keys reordered, spaces, an unknown field and an escaped key: serde's general
    // decoder takes it; the body is delivered unchanged all the same.
    let (id2, body2) = (eid(2), vec![0x3e, 0xff, 0x00]);
    let raw = format!(
        r#"{{ "b\u006fdy" : "{}", "future": {{"x": [1]}}, "to": "{to}", "id": "{}", "type": "send" }}"#,
        b64::encode(&body2),
        id2.to_b64u()
    );
    guest.send_raw(&raw).await;
    for (id, body) in [(id1, &body1), (id2, &body2)] {
        let (got_id, got_from, got_body) = host.deliver(false).await;
        assert_eq!((got_id, got_from.to_b64u(), &got_body), (id, from.clone(), body));
    }
    // Acks: one compact, one with an escaped key; each answers the sender.
    host.send(&ClientFrame::Ack { id: id1, from: guest.pk() }).await;
    host.send_raw(&format!(r#"{{"type":"ack","fr\u006fm":"{from}","id":"{}"}}"#, id2.to_b64u()))
        .await;
    for id in [id1, id2] {
        match guest.recv_np().await {
            ServerFrame::Sent { id: got, status } => {
                assert_eq!((got, status), (id, DeliveryStatus::Delivered));
            }
            f => panic!("expected sent, got {f:?}"),
        }
    }

    // Bodies the general decoder refuses are refused: padding, a non-canonical last
    // character (trailing bits set), a character outside base64url.
    for body in ["AQID=", "AR", "AQ+D"] {
        let bad = format!(r#"{{"type":"send","id":"{}","to":"{to}","body":"{body}"}}"#, eid(3));
        guest.send_raw(&bad).await;
        guest.expect_error(ErrorCode::BadFrame).await;
    }
    // A send frame with the fields of an ack is refused the same way too.
    let ack_shaped = encode_frame(&ClientFrame::Ack { id: eid(4), from: guest.pk() })
        .replace(r#""type":"ack""#, r#""type":"send""#);
    guest.send_raw(&ack_shaped).await;
    guest.expect_error(ErrorCode::BadFrame).await;
    assert!(host.barrier().await.is_empty(), "nothing refused was delivered");
    relay.shutdown().await;
}

/// A recipient that is behind but acking keeps its envelopes live past their ack
/// window (no insert and delete on a relay that is already behind: the p99 spread
/// of issue 17); one that stops acking has them committed after the window as before.
#[tokio::test]
async fn a_recipient_acking_late_keeps_envelopes_live_a_stalled_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    let window = std::time::Duration::from_secs(1);
    cfg.live_ack_window = window;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let addr = relay.local_addr();
    let (mut host, mut guest) = pair(addr, 43, 44).await;
    let stored_before = metric(addr, "agentroom_relay_envelopes_stored_total").await;

    let (a, b) = (eid(1), eid(2));
    guest.send_env(a, host.pk(), b"a").await;
    guest.send_env(b, host.pk(), b"b").await;
    assert_eq!(host.deliver(false).await.0, a);
    assert_eq!(host.deliver(false).await.0, b);
    // Half a window on, `a` is acked: the recipient is alive, only slow.
    tokio::time::sleep(window / 2).await;
    host.send(&ClientFrame::Ack { id: a, from: guest.pk() }).await;
    // `b`'s window passes unacked; acked half a window later, it was still live.
    tokio::time::sleep(window).await;
    host.send(&ClientFrame::Ack { id: b, from: guest.pk() }).await;
    for id in [a, b] {
        match guest.recv_np().await {
            ServerFrame::Sent { id: got, status } => {
                assert_eq!((got, status), (id, DeliveryStatus::Delivered), "kept live, not stored");
            }
            f => panic!("expected sent, got {f:?}"),
        }
    }
    assert_eq!(metric(addr, "agentroom_relay_envelopes_stored_total").await, stored_before);

    // Now the recipient stops acking: `c` is committed once its window passes.
    let c = eid(3);
    guest.send_env(c, host.pk(), b"c").await;
    assert_eq!(host.deliver(false).await.0, c);
    match guest.recv_np().await {
        ServerFrame::Sent { id, status } => assert_eq!((id, status), (c, DeliveryStatus::Stored)),
        f => panic!("expected sent stored, got {f:?}"),
    }
    relay.shutdown().await;
}
