//! Protocol conformance details (issue 12 items 7 and 11): reused ids, `rid`
//! length, and behaviour PROTOCOL.md states that no other test pins down.

use agentroom::protocol::{ClientFrame, DeliveryStatus, ErrorCode, InviteHash, ServerFrame};

use crate::client::*;

async fn expect_sent(c: &mut Client, id: agentroom::protocol::EnvelopeId) -> DeliveryStatus {
    match c.recv_np().await {
        ServerFrame::Sent { id: i, status } if i == id => status,
        f => panic!("expected sent for {id:?}, got {f:?}"),
    }
}

async fn expect_error_for(c: &mut Client, id: agentroom::protocol::EnvelopeId, code: ErrorCode) {
    match c.recv_np().await {
        ServerFrame::Error { code: got, id: Some(i), .. } if i == id && got == code => {}
        f => panic!("expected {code:?} for {id:?}, got {f:?}"),
    }
}

#[tokio::test]
async fn reused_id_with_another_body_after_ack_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, mut guest) = pair(addr, 1, 2).await;
    // Live path: delivered, acked, then the id comes back with another body.
    let id = eid(1);
    guest.send_env(id, host.pk(), b"first").await;
    host.deliver(true).await;
    assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Delivered);
    guest.send_env(id, host.pk(), b"second").await;
    expect_error_for(&mut guest, id, ErrorCode::Conflict).await;
    // The same body is still an idempotent resend.
    guest.send_env(id, host.pk(), b"first").await;
    assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Delivered);
    // Stored path: queued while the host is offline, drained, acked, then reused.
    let host_pk = host.pk();
    host.close().await;
    let id2 = eid(2);
    guest.send_env(id2, host_pk, b"queued").await;
    assert_eq!(expect_sent(&mut guest, id2).await, DeliveryStatus::Stored);
    let (mut host, _) = Client::login(addr, &identity(1)).await;
    assert_eq!(host.deliver(true).await.0, id2);
    host.barrier().await;
    guest.send_env(id2, host_pk, b"changed").await;
    expect_error_for(&mut guest, id2, ErrorCode::Conflict).await;
    // Nothing of the conflicting sends reached the host.
    assert!(host.barrier().await.iter().all(|f| !matches!(f, ServerFrame::Deliver { .. })));
    // In flight (delivered live, not acked) and reused for another recipient.
    drop(guest);
    let (mut other, mut guest) = pair(addr, 3, 2).await;
    let id3 = eid(3);
    guest.send_env(id3, host_pk, b"in flight").await;
    assert_eq!(host.deliver(false).await.0, id3);
    guest.send_env(id3, other.pk(), b"in flight").await;
    expect_error_for(&mut guest, id3, ErrorCode::Conflict).await;
    assert!(other.barrier().await.iter().all(|f| !matches!(f, ServerFrame::Deliver { .. })));
    relay.shutdown().await;
}

#[tokio::test]
async fn rid_longer_than_64_characters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let (mut c, _) = Client::login(relay.local_addr(), &identity(1)).await;
    let long = "r".repeat(65);
    c.send_raw(&format!(r#"{{"type":"ping","rid":"{long}"}}"#)).await;
    match c.recv_np().await {
        ServerFrame::Error { code: ErrorCode::BadFrame, rid: None, .. } => {}
        f => panic!("expected bad_frame without an echo, got {f:?}"),
    }
    let ok = "r".repeat(64);
    c.send(&ClientFrame::Ping { rid: Some(ok.clone()) }).await;
    assert_eq!(c.recv_np().await, ServerFrame::Pong { rid: Some(ok) });
    relay.shutdown().await;
}

/// The error codes PROTOCOL.md §3.5 lists per frame, where no other test checks them.
#[tokio::test]
async fn documented_error_codes_per_frame() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut a, _) = Client::login(addr, &identity(1)).await;
    let (mut b, _) = Client::login(addr, &identity(2)).await;
    let hash = InviteHash(sha2::Sha256::digest([9u8; 16]).into());
    // invite_publish with expires_at in the past: invite_expired.
    let rid = Some("past".to_owned());
    a.send(&ClientFrame::InvitePublish { rid: rid.clone(), invite: hash, expires_at: 1 }).await;
    match a.recv_np().await {
        ServerFrame::Error { code: ErrorCode::InviteExpired, rid: r, .. } => assert_eq!(r, rid),
        f => panic!("{f:?}"),
    }
    // A hash another identity published: conflict.
    let rid = Some("mine".to_owned());
    a.send(&ClientFrame::InvitePublish { rid: rid.clone(), invite: hash, expires_at: now() + 60 })
        .await;
    assert_eq!(a.recv_np().await, ServerFrame::Ok { rid });
    let rid = Some("theirs".to_owned());
    b.send(&ClientFrame::InvitePublish { rid: rid.clone(), invite: hash, expires_at: now() + 60 })
        .await;
    match b.recv_np().await {
        ServerFrame::Error { code: ErrorCode::Conflict, rid: r, .. } => assert_eq!(r, rid),
        f => panic!("{f:?}"),
    }
    // Revoking another identity's invite: invite_unknown (and it stays claimable).
    let rid = Some("steal".to_owned());
    b.send(&ClientFrame::InviteRevoke { rid: rid.clone(), invite: hash }).await;
    match b.recv_np().await {
        ServerFrame::Error { code: ErrorCode::InviteUnknown, rid: r, .. } => assert_eq!(r, rid),
        f => panic!("{f:?}"),
    }
    // A second login on a logged-in socket: bad_frame, and the socket stays usable.
    let f = a.login_frame(now());
    a.send(&f).await;
    a.expect_error(ErrorCode::BadFrame).await;
    // A send while the claim is not answered yet: the claim's envelope and the one
    // after it are taken in order (the claim is settled before the next frame).
    let id1 = eid(1);
    let id2 = eid(2);
    b.send(&ClientFrame::Send {
        id: id1,
        to: a.pk(),
        body: b"claim".to_vec(),
        claim: Some(agentroom::protocol::frames::InviteIdClaim([9u8; 16])),
    })
    .await;
    b.send_env(id2, a.pk(), b"right after").await;
    assert_eq!(a.deliver(true).await.0, id1);
    assert_eq!(a.deliver(true).await.0, id2);
    relay.shutdown().await;
}

#[tokio::test]
async fn frame_above_four_times_the_limit_ends_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_frame = 1024;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let (mut c, _) = Client::login(relay.local_addr(), &identity(1)).await;
    // Up to 4x: answered `too_large`, the socket stays.
    c.send_raw(&format!(r#"{{"type":"ping","rid":"{}"}}"#, "x".repeat(2000))).await;
    c.expect_error(ErrorCode::TooLarge).await;
    assert!(c.barrier().await.is_empty());
    // Above 4x: no answer; the relay drops the TCP connection (no close frame).
    c.send_raw(&"x".repeat(4 * 1024 + 1)).await;
    assert_eq!(c.close_code().await, None);
    relay.shutdown().await;
}

#[tokio::test]
async fn relay_does_not_check_the_body_layout() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let (mut host, mut guest) = pair(relay.local_addr(), 1, 2).await;
    for body in [&b""[..], b"not a sealed envelope", &[0xff; 3]] {
        let id = eid(body.len() as u64);
        guest.send_env(id, host.pk(), body).await;
        let (got, _, delivered) = host.deliver(true).await;
        assert_eq!((got, delivered.as_slice()), (id, body));
        assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Delivered);
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn login_over_ipv6_signs_the_bracketed_origin() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.bind = "[::1]:0".parse().unwrap();
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let addr = relay.local_addr();
    // The Host header is `[::1]:port`; the signed origin must be the same text.
    let mut c = Client::connect(addr, &identity(1)).await;
    let ts = now();
    let origin = format!("[::1]:{}", addr.port());
    let sig = c.kp.sign(&agentroom::protocol::login_signed_bytes(&origin, &c.challenge, ts));
    let login = ClientFrame::Login { v: 1, identity: c.pk(), ts, signature: *sig.as_bytes() };
    c.send(&login).await;
    assert!(matches!(c.recv().await, ServerFrame::Welcome { .. }));
    relay.shutdown().await;
}
