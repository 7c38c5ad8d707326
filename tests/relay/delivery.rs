//! Invites, pairing, routing, store-and-forward, order, duplicates, queue limits.

use agentroom::protocol::frames::InviteIdClaim;
use agentroom::protocol::{
    ClientFrame, DeliveryStatus, EnvelopeId, ErrorCode, InviteHash, ServerFrame,
};
use sha2::Digest;

use crate::client::*;

fn hash(invite: [u8; 16]) -> InviteHash {
    InviteHash(sha2::Sha256::digest(invite).into())
}

async fn expect_sent(c: &mut Client, id: EnvelopeId) -> DeliveryStatus {
    match c.recv_np().await {
        ServerFrame::Sent { id: i, status } => {
            assert_eq!(i, id);
            status
        }
        f => panic!("expected sent for {id:?}, got {f:?}"),
    }
}

#[tokio::test]
async fn invite_claims_once_and_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, guest) = pair(addr, 1, 2).await;
    // A third identity tries the same invite: already claimed.
    let (mut intruder, _) = Client::login(addr, &identity(3)).await;
    let invite = [1 ^ 2 ^ 0x5a; 16];
    let id = eid(1);
    intruder
        .send(&ClientFrame::Send {
            id,
            to: host.pk(),
            body: b"x".to_vec(),
            claim: Some(InviteIdClaim(invite)),
        })
        .await;
    intruder.expect_error(ErrorCode::InviteClaimed).await;
    // The paired guest may retry its claim harmlessly.
    let mut guest = guest;
    let id2 = eid(2);
    guest
        .send(&ClientFrame::Send {
            id: id2,
            to: host.pk(),
            body: b"again".to_vec(),
            claim: Some(InviteIdClaim(invite)),
        })
        .await;
    let (got, _, _) = host.deliver(true).await;
    assert_eq!(got, id2);
    assert_eq!(expect_sent(&mut guest, id2).await, DeliveryStatus::Delivered);
    // The intruder's envelope never reached the host.
    assert!(host.barrier().await.is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn unknown_expired_and_revoked_invites_fail() {
    let dir = tempfile::tempdir().unwrap();
    // An expired invite, written straight into the real database while the relay
    // is down (it holds the file exclusively while running).
    relay(dir.path()).await.shutdown().await;
    insert_invite(dir.path(), &hash([8; 16]).0, identity(1).public().as_bytes(), now() - 10);
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, _) = Client::login(addr, &identity(1)).await;
    let (mut guest, _) = Client::login(addr, &identity(2)).await;
    let claim = |inv: [u8; 16]| ClientFrame::Send {
        id: eid(9),
        to: identity(1).public(),
        body: b"x".to_vec(),
        claim: Some(InviteIdClaim(inv)),
    };
    guest.send(&claim([7; 16])).await;
    guest.expect_error(ErrorCode::InviteUnknown).await;

    // Expired.
    guest.send(&claim([8; 16])).await;
    guest.expect_error(ErrorCode::InviteExpired).await;

    // Publishing in the past is refused too.
    host.send(&ClientFrame::InvitePublish {
        rid: Some("p".into()),
        invite: hash([5; 16]),
        expires_at: now() - 1,
    })
    .await;
    host.expect_error(ErrorCode::InviteExpired).await;

    // Revoked.
    host.send(&ClientFrame::InvitePublish {
        rid: Some("a".into()),
        invite: hash([6; 16]),
        expires_at: now() + 60,
    })
    .await;
    assert_eq!(host.recv_np().await, ServerFrame::Ok { rid: Some("a".into()) });
    host.send(&ClientFrame::InviteRevoke { rid: Some("r".into()), invite: hash([6; 16]) }).await;
    assert_eq!(host.recv_np().await, ServerFrame::Ok { rid: Some("r".into()) });
    guest.send(&claim([6; 16])).await;
    guest.expect_error(ErrorCode::InviteRevoked).await;
    // An invite published by the host is not claimable toward someone else.
    host.send(&ClientFrame::InvitePublish {
        rid: None,
        invite: hash([4; 16]),
        expires_at: now() + 60,
    })
    .await;
    assert_eq!(host.recv_np().await, ServerFrame::Ok { rid: None });
    let (third, _) = Client::login(addr, &identity(3)).await;
    guest
        .send(&ClientFrame::Send {
            id: eid(3),
            to: third.pk(),
            body: vec![1],
            claim: Some(InviteIdClaim([4; 16])),
        })
        .await;
    guest.expect_error(ErrorCode::InviteUnknown).await;
    assert!(host.barrier().await.is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn unpaired_sender_is_refused_and_nothing_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut a, _) = Client::login(addr, &identity(1)).await;
    let (mut b, _) = Client::login(addr, &identity(2)).await;
    let id = eid(1);
    a.send_env(id, b.pk(), b"hi").await;
    match a.recv_np().await {
        ServerFrame::Error { code: ErrorCode::NotPaired, id: Some(i), .. } => assert_eq!(i, id),
        f => panic!("{f:?}"),
    }
    assert!(b.barrier().await.is_empty());
    // After a peer_revoke, a pair is refused again.
    let (mut host, mut guest) = pair(addr, 3, 4).await;
    guest.send(&ClientFrame::PeerRevoke { rid: Some("x".into()), peer: host.pk() }).await;
    assert_eq!(guest.recv_np().await, ServerFrame::Ok { rid: Some("x".into()) });
    guest.send_env(eid(2), host.pk(), b"after").await;
    guest.expect_error(ErrorCode::NotPaired).await;
    assert!(host.barrier().await.iter().all(|f| !matches!(f, ServerFrame::Deliver { .. })));
    relay.shutdown().await;
}

#[tokio::test]
async fn offline_queue_delivered_in_order_on_connect() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (host, mut guest) = pair(addr, 1, 2).await;
    let host_pk = host.pk();
    host.close().await;
    let ids: Vec<EnvelopeId> = (0..20).map(eid).collect();
    for (i, id) in ids.iter().enumerate() {
        guest.send_env(*id, host_pk, format!("m{i}").as_bytes()).await;
    }
    for id in &ids {
        assert_eq!(expect_sent(&mut guest, *id).await, DeliveryStatus::Stored);
    }
    assert_eq!(relay.stats().pending, 20);
    let (mut host, pending) = Client::login(addr, &identity(1)).await;
    assert_eq!(pending, 20);
    for (i, id) in ids.iter().enumerate() {
        let (got, from, body) = host.deliver(true).await;
        assert_eq!((got, from), (*id, guest.pk()));
        assert_eq!(body, format!("m{i}").as_bytes());
    }
    // Acks are deletes; once committed the queue is empty.
    host.barrier().await;
    let _ = relay.metrics();
    for _ in 0..100 {
        if relay.stats().pending == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(relay.stats().pending, 0);
    relay.shutdown().await;
}

#[tokio::test]
async fn recipient_dropping_before_ack_gets_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, mut guest) = pair(addr, 1, 2).await;
    let id = eid(1);
    guest.send_env(id, host.pk(), b"important").await;
    let (got, _, _) = host.deliver(false).await; // read, never acked
    assert_eq!(got, id);
    // The ack window passes: the envelope is committed and the sender told `stored`.
    assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Stored);
    host.close().await;
    let (mut host, pending) = Client::login(addr, &identity(1)).await;
    assert_eq!(pending, 1);
    let (got, _, body) = host.deliver(true).await;
    assert_eq!((got, body.as_slice()), (id, &b"important"[..]));
    host.close().await;
    // Acked now: not delivered a third time.
    let (mut host, _) = Client::login(addr, &identity(1)).await;
    assert!(host.barrier().await.iter().all(|f| !matches!(f, ServerFrame::Deliver { .. })));
    relay.shutdown().await;
}

#[tokio::test]
async fn duplicate_ids_are_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, mut guest) = pair(addr, 1, 2).await;
    // Live: delivered and acked, then resent.
    let id = eid(1);
    guest.send_env(id, host.pk(), b"once").await;
    host.deliver(true).await;
    assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Delivered);
    guest.send_env(id, host.pk(), b"once").await;
    assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Delivered);
    assert!(host.barrier().await.is_empty());
    // Stored: the recipient is offline, the same id sent twice.
    let host_pk = host.pk();
    host.close().await;
    let id2 = eid(2);
    guest.send_env(id2, host_pk, b"twice").await;
    guest.send_env(id2, host_pk, b"twice").await;
    assert_eq!(expect_sent(&mut guest, id2).await, DeliveryStatus::Stored);
    assert_eq!(expect_sent(&mut guest, id2).await, DeliveryStatus::Stored);
    // Same id, different body: conflict.
    guest.send_env(id2, host_pk, b"other").await;
    guest.expect_error(ErrorCode::Conflict).await;
    let (mut host, pending) = Client::login(addr, &identity(1)).await;
    assert_eq!(pending, 1);
    host.deliver(true).await;
    assert!(host.barrier().await.is_empty());
    assert!(metric(addr, "agentroom_relay_envelopes_duplicate_total").await >= 2);
    relay.shutdown().await;
}

#[tokio::test]
async fn queue_full_is_reported_to_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_pending = 3;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let addr = relay.local_addr();
    let (host, mut guest) = pair(addr, 1, 2).await;
    let host_pk = host.pk();
    host.close().await;
    for i in 0..3 {
        let id = eid(i);
        guest.send_env(id, host_pk, b"q").await;
        assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Stored);
    }
    let id = eid(99);
    guest.send_env(id, host_pk, b"q").await;
    match guest.recv_np().await {
        ServerFrame::Error { code: ErrorCode::QueueFull, id: Some(i), .. } => assert_eq!(i, id),
        f => panic!("{f:?}"),
    }
    assert_eq!(metric(addr, "agentroom_relay_queue_full_total").await, 1);
    assert_eq!(metric(addr, "agentroom_relay_queue_depth").await, 3);
    relay.shutdown().await;
}

#[tokio::test]
async fn slow_reader_overflows_to_disk_without_loss_or_reorder() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.conn_queue = 4;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let addr = relay.local_addr();
    let (mut host, mut guest) = pair(addr, 1, 2).await;
    let n = 300u64;
    let ids: Vec<EnvelopeId> = (0..n).map(eid).collect();
    // The host reads nothing while the guest sends everything.
    for id in &ids {
        guest.send_env(*id, host.pk(), &id.0).await;
    }
    let mut sent = 0;
    while sent < n {
        match guest.recv_np().await {
            ServerFrame::Sent { .. } => sent += 1,
            f => panic!("unexpected {f:?} after {sent} sent"),
        }
    }
    // Now the host reads: every envelope exactly once, in order.
    for id in &ids {
        let (got, _, body) = host.deliver(true).await;
        assert_eq!(got, *id);
        assert_eq!(body, id.0);
    }
    assert!(host.barrier().await.is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn presence_announced_to_paired_peer() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, guest) = pair(addr, 1, 2).await;
    let gpk = guest.pk();
    guest.close().await;
    let frames = host.barrier().await;
    assert!(frames.contains(&ServerFrame::Presence { peer: gpk, online: false }), "{frames:?}");
    let (_guest, _) = Client::login(addr, &identity(2)).await;
    let frames = host.barrier().await;
    assert!(frames.contains(&ServerFrame::Presence { peer: gpk, online: true }), "{frames:?}");
    relay.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_sockets_and_keeps_queue() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (host, mut guest) = pair(addr, 1, 2).await;
    let host_pk = host.pk();
    host.close().await;
    let id = eid(1);
    guest.send_env(id, host_pk, b"kept").await;
    assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Stored);
    relay.shutdown().await;
    guest.expect_error(ErrorCode::ShuttingDown).await;
    guest.expect_closed().await;
    let relay = self::relay(dir.path()).await;
    let (mut host, pending) = Client::login(relay.local_addr(), &identity(1)).await;
    assert_eq!(pending, 1);
    assert_eq!(host.deliver(true).await.0, id);
    relay.shutdown().await;
}

#[tokio::test]
async fn unacked_live_envelope_follows_recipient_to_its_new_connection() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, mut guest) = pair(addr, 1, 2).await;
    for round in 0..5u64 {
        let id = eid(100 + round);
        guest.send_env(id, host.pk(), b"in flight").await;
        let (got, _, _) = host.deliver(false).await; // seen live, never acked
        assert_eq!(got, id);
        // Reconnect at once, racing the ack window: the new connection must get it.
        let (mut again, _) = Client::login(addr, &identity(1)).await;
        let (got, _, _) = again.deliver(true).await;
        assert_eq!(got, id, "round {round}");
        assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Stored);
        host.expect_closed().await;
        host = again;
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn ttl_sweep_drops_expired_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.pending_ttl = std::time::Duration::ZERO;
    cfg.sweep_interval = std::time::Duration::from_millis(20);
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let addr = relay.local_addr();
    let (host, mut guest) = pair(addr, 1, 2).await;
    let host_pk = host.pk();
    host.close().await;
    let id = eid(1);
    guest.send_env(id, host_pk, b"old").await;
    assert_eq!(expect_sent(&mut guest, id).await, DeliveryStatus::Stored);
    let deadline = std::time::Instant::now() + WAIT;
    // It was counted as queued when `sent` arrived; wait for the sweep to take it.
    while relay.stats().pending != 0 {
        assert!(std::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(metric(addr, "agentroom_relay_envelopes_expired_total").await >= 1);
    let (mut host, pending) = Client::login(addr, &identity(1)).await;
    assert_eq!(pending, 0);
    assert!(host.barrier().await.iter().all(|f| !matches!(f, ServerFrame::Deliver { .. })));
    relay.shutdown().await;
}

#[tokio::test]
async fn sender_that_reconnects_and_resends_gets_its_sent() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let addr = relay.local_addr();
    let (mut host, guest) = pair(addr, 1, 2).await;
    let mut guest = guest;
    for round in 0..5u64 {
        let id = eid(200 + round);
        guest.send_env(id, host.pk(), b"retry me").await;
        let (got, _, _) = host.deliver(false).await; // delivered live, not acked yet
        assert_eq!(got, id);
        // The sender's connection drops before any `sent`; it reconnects and resends.
        drop(guest);
        let (mut again, _) = Client::login(addr, &identity(2)).await;
        again.send_env(id, host.pk(), b"retry me").await;
        host.send(&ClientFrame::Ack { id, from: again.pk() }).await;
        let status = expect_sent(&mut again, id).await;
        assert!(matches!(status, DeliveryStatus::Stored | DeliveryStatus::Delivered));
        guest = again;
    }
    // Delivered once per id (the resend was suppressed).
    assert!(host.barrier().await.iter().all(|f| !matches!(f, ServerFrame::Deliver { .. })));
    relay.shutdown().await;
}
