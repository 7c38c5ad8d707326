//! Abuse limits: logins per address, open invites per identity, invite lifetime.

use agentroom::protocol::{ClientFrame, ErrorCode, InviteHash, ServerFrame};
use futures_util::StreamExt;
use sha2::Digest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::client::*;

/// Login attempts in the probe: the issue's figure (all 1,000 passed before).
const PROBE_LOGINS: usize = 1000;

#[tokio::test]
#[allow(clippy::print_stderr)] // the probe's figure, for the report
async fn rapid_logins_from_one_address_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rate_limit = true; // the defaults: what a production relay runs with
    let (burst, rate) = (cfg.login_burst as usize, cfg.login_rate_per_sec);
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let addr = relay.local_addr();
    let kp = identity(1);
    let started = std::time::Instant::now();
    let (mut ok, mut limited) = (0usize, 0usize);
    let mut first_token = String::new();
    for _ in 0..PROBE_LOGINS {
        let mut c = Client::connect(addr, &kp).await;
        let f = c.login_frame(now());
        c.send(&f).await;
        match c.recv().await {
            ServerFrame::Welcome { token, .. } => {
                ok += 1;
                if first_token.is_empty() {
                    first_token = token;
                }
            }
            ServerFrame::Error { code: ErrorCode::RateLimited, .. } => {
                limited += 1;
                // Then a close the client can tell apart: 1013, try again later.
                let close = loop {
                    match c.ws.next().await {
                        Some(Ok(Message::Close(f))) => break f,
                        Some(Ok(_)) => {}
                        other => panic!("expected a close frame, got {other:?}"),
                    }
                };
                assert_eq!(close.map(|f| f.code), Some(CloseCode::Again));
            }
            f => panic!("unexpected {f:?}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("login probe: {ok} of {PROBE_LOGINS} logins passed, {limited} rate limited");
    assert_eq!(ok + limited, PROBE_LOGINS);
    // The burst passes; beyond it only the refill (plus one for rounding).
    assert!(ok >= burst, "the burst of {burst} must pass, got {ok}");
    assert!((ok as f64) <= burst as f64 + secs * f64::from(rate) + 1.0, "{ok} in {secs:.1} s");
    assert!(limited > 0);
    // A valid resume is not an attempt: it still passes with the budget spent.
    let mut fresh = Client::connect(addr, &kp).await;
    fresh.send(&ClientFrame::Resume { v: 1, token: first_token.clone() }).await;
    assert!(matches!(fresh.recv().await, ServerFrame::Welcome { .. }));
    // A failed one is, and is refused as such.
    let mut bad = Client::connect(addr, &kp).await;
    bad.send(&ClientFrame::Resume { v: 1, token: "v1.forged.token".into() }).await;
    bad.expect_error(ErrorCode::RateLimited).await;
    relay.shutdown().await;
}

fn hash(n: u8) -> InviteHash {
    InviteHash(sha2::Sha256::digest([n; 16]).into())
}

async fn publish(c: &mut Client, n: u8, expires_at: u64) -> ServerFrame {
    let rid = format!("p{n}");
    c.send(&ClientFrame::InvitePublish { rid: Some(rid), invite: hash(n), expires_at }).await;
    c.recv_np().await
}

fn is_ok(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::Ok { .. })
}

fn code(f: &ServerFrame) -> Option<ErrorCode> {
    match f {
        ServerFrame::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn open_invites_per_identity_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_invites_per_pk = 3;
    let relay = agentroom::relay::start(cfg).await.unwrap();
    let (mut host, _) = Client::login(relay.local_addr(), &identity(1)).await;
    let exp = now() + 600;
    for n in 1..=3 {
        assert!(is_ok(&publish(&mut host, n, exp).await));
    }
    assert_eq!(code(&publish(&mut host, 4, exp).await), Some(ErrorCode::InviteQuota));
    // Refreshing one already published is not a new invite.
    assert!(is_ok(&publish(&mut host, 2, exp + 60).await));
    // Another identity has its own quota.
    let (mut other, _) = Client::login(relay.local_addr(), &identity(2)).await;
    assert!(is_ok(&publish(&mut other, 9, exp).await));
    // Revoking one frees its slot.
    host.send(&ClientFrame::InviteRevoke { rid: Some("r".into()), invite: hash(1) }).await;
    assert!(is_ok(&host.recv_np().await));
    assert!(is_ok(&publish(&mut host, 4, exp).await));
    relay.shutdown().await;
}

#[tokio::test]
async fn invite_expiry_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let (mut host, _) = Client::login(relay.local_addr(), &identity(1)).await;
    let max = agentroom::defaults::MAX_INVITE_TTL.as_secs();
    assert!(is_ok(&publish(&mut host, 1, now() + max - 60).await));
    for far in [now() + max + 3600, (1 << 53) - 1] {
        assert_eq!(code(&publish(&mut host, 2, far).await), Some(ErrorCode::InviteTtlTooLong));
    }
    // Refused means not stored: a claim finds no such invite.
    let (mut guest, _) = Client::login(relay.local_addr(), &identity(2)).await;
    guest
        .send(&ClientFrame::Send {
            id: eid(1),
            to: host.pk(),
            body: vec![1],
            claim: Some(agentroom::protocol::frames::InviteIdClaim([2; 16])),
        })
        .await;
    guest.expect_error(ErrorCode::InviteUnknown).await;
    relay.shutdown().await;
}
