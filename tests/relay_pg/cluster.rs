//! Two relay processes (the real binary) on one PostgreSQL database.

use std::net::SocketAddr;
use std::path::PathBuf;

use agentroom::protocol::frames::InviteIdClaim;
use agentroom::protocol::{ClientFrame, ErrorCode, InviteHash, ServerFrame};
use sha2::Digest;

use crate::client::*;
use crate::process::{RelayProc, spawn_with};

/// Two nodes on a fresh database; `None` with `AGENTROOM_PG_TESTS=skip`.
fn two_nodes() -> Option<(RelayProc, RelayProc)> {
    if crate::pg::skipped() {
        return None;
    }
    let db = PathBuf::from(crate::pg::fresh_url());
    // A recipient may lag its sender by more than the default 500 queued envelopes
    // on a loaded machine; these tests are about order and loss, not quotas.
    let env = [("MAX_PENDING_MSGS", "5000")];
    Some((spawn_with(&db, false, &env), spawn_with(&db, true, &env)))
}

/// Host `host_n` on `host_at` publishes an invite; guest `guest_n` on `guest_at`
/// claims it with a first envelope the host receives (through the other node).
async fn pair_across(
    host_at: SocketAddr,
    guest_at: SocketAddr,
    host_n: u8,
    guest_n: u8,
) -> (Client, Client) {
    let (mut host, _) = Client::login(host_at, &identity(host_n)).await;
    let (mut guest, _) = Client::login(guest_at, &identity(guest_n)).await;
    let invite = [host_n ^ guest_n ^ 0x33; 16];
    let hash = InviteHash(sha2::Sha256::digest(invite).into());
    let rid = Some("pub".to_owned());
    host.send(&ClientFrame::InvitePublish {
        rid: rid.clone(),
        invite: hash,
        expires_at: now() + 600,
    })
    .await;
    assert_eq!(host.recv_np().await, ServerFrame::Ok { rid });
    let id = eid(0);
    let claim = Some(InviteIdClaim(invite));
    guest.send(&ClientFrame::Send { id, to: host.pk(), body: b"hi".to_vec(), claim }).await;
    assert_eq!(host.deliver(true).await.0, id);
    assert!(matches!(guest.recv_np().await, ServerFrame::Sent { id: i, .. } if i == id));
    (host, guest)
}

/// Send `n` numbered envelopes to `to` (a window of them unanswered at a time)
/// while acking what arrives; returns the bodies received, in arrival order.
async fn exchange(mut c: Client, to: agentroom::crypto::IdentityPublicKey, n: u32) -> Vec<u32> {
    const WINDOW: u32 = 64;
    let (mut next, mut answered, mut got) = (0u32, 0u32, Vec::new());
    while answered < n || got.len() < n as usize {
        while next < n && next - answered < WINDOW {
            c.send_env(eid(u64::from(next)), to, &next.to_be_bytes()).await;
            next += 1;
        }
        match c.recv_np().await {
            ServerFrame::Sent { .. } => answered += 1,
            ServerFrame::Deliver { id, from, body, .. } => {
                c.send(&ClientFrame::Ack { id, from }).await;
                got.push(u32::from_be_bytes(body.try_into().unwrap()));
            }
            f => panic!("unexpected {f:?}"),
        }
    }
    assert!(c.barrier().await.is_empty(), "nothing after the last envelope");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_each_way_across_two_nodes_in_order() {
    let Some((a, b)) = two_nodes() else { return };
    let (host, guest) = pair_across(b.addr, a.addr, 1, 2).await;
    let (host_pk, guest_pk) = (host.pk(), guest.pk());
    let g = tokio::spawn(exchange(guest, host_pk, 1000));
    let h = tokio::spawn(exchange(host, guest_pk, 1000));
    let want: Vec<u32> = (0..1000).collect();
    assert_eq!(h.await.unwrap(), want, "host on node B: guest's envelopes, in order, once");
    assert_eq!(g.await.unwrap(), want, "guest on node A: host's envelopes, in order, once");
    let wakeups = metric(b.addr, "agentroom_relay_cross_node_wakeups_total").await;
    assert!(wakeups > 0, "node B was woken by node A's commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_loses_nothing_its_clients_reconnect_elsewhere() {
    let Some((a, mut b)) = two_nodes() else { return };
    let (host, mut guest) = pair_across(b.addr, a.addr, 3, 4).await;
    // The host stays connected to B but reads nothing: every envelope is in flight
    // to it (committed, pushed towards its socket, never acked) when B dies.
    let ids: Vec<_> = (0..200u64).map(eid).collect();
    for id in &ids {
        guest.send_env(*id, host.pk(), &id.0).await;
    }
    for _ in &ids {
        assert!(matches!(guest.recv_np().await, ServerFrame::Sent { .. }));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    b.child.wait().unwrap();
    drop(host);
    let (mut host, pending) = Client::login(a.addr, &identity(3)).await;
    assert_eq!(pending, 200);
    for id in &ids {
        let (got, from, body) = host.deliver(true).await;
        assert_eq!((got, from, body.as_slice()), (*id, guest.pk(), &id.0[..]));
    }
    assert!(host.barrier().await.is_empty(), "each envelope exactly once");
    // And the pair still works from the surviving node.
    let id = eid(999);
    host.send_env(id, guest.pk(), b"back").await;
    assert_eq!(guest.deliver(true).await.0, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_identity_on_two_nodes_closes_the_older_connection() {
    let Some((a, b)) = two_nodes() else { return };
    // Each node names itself and its store in /health.
    let health = |addr| async move {
        let (status, body) = http_get(addr, "/health").await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((v["store"].as_str(), v["db"].as_str()), (Some("postgres"), Some("ok")));
        v["node"].as_str().unwrap().to_owned()
    };
    assert_ne!(health(a.addr).await, health(b.addr).await);
    let (mut older, _) = Client::login(a.addr, &identity(5)).await;
    older.barrier().await;
    let (mut newer, _) = Client::login(b.addr, &identity(5)).await;
    assert_eq!(older.close_code().await, Some(4001), "closed `replaced` by node A");
    assert!(newer.barrier().await.is_empty(), "the newer connection stays");
    let replaced = metric(a.addr, "agentroom_relay_cluster_replaced_total").await;
    assert_eq!(replaced, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_claimed_at_once_on_two_nodes_pairs_one_guest() {
    let Some((a, b)) = two_nodes() else { return };
    let (mut host, _) = Client::login(a.addr, &identity(6)).await;
    for round in 0..5u8 {
        // Two new guests each round, one per node.
        let (mut g1, _) = Client::login(a.addr, &identity(10 + 2 * round)).await;
        let (mut g2, _) = Client::login(b.addr, &identity(11 + 2 * round)).await;
        let invite = [round; 16];
        let hash = InviteHash(sha2::Sha256::digest(invite).into());
        let rid = Some(format!("p{round}"));
        host.send(&ClientFrame::InvitePublish {
            rid: rid.clone(),
            invite: hash,
            expires_at: now() + 600,
        })
        .await;
        assert_eq!(host.recv_np().await, ServerFrame::Ok { rid });
        let claim = |c: &Client| ClientFrame::Send {
            id: eid(u64::from(round)),
            to: identity(6).public(),
            body: c.pk().as_bytes().to_vec(),
            claim: Some(InviteIdClaim(invite)),
        };
        let (f1, f2) = (claim(&g1), claim(&g2));
        tokio::join!(g1.send(&f1), g2.send(&f2));
        // The host acks at once: a claim that went live is answered on that ack.
        let (r1, r2, (_, from, _)) = tokio::join!(g1.recv_np(), g2.recv_np(), host.deliver(true));
        let won = |f: &ServerFrame| matches!(f, ServerFrame::Sent { .. });
        let lost = |f: &ServerFrame| {
            matches!(f, ServerFrame::Error { code: ErrorCode::InviteClaimed, .. })
        };
        assert!(
            (won(&r1) && lost(&r2)) || (lost(&r1) && won(&r2)),
            "round {round}: exactly one claim wins: {r1:?} / {r2:?}"
        );
        assert_eq!(from, if won(&r1) { g1.pk() } else { g2.pk() });
    }
    // Only presence frames (guests coming and going on node A) may remain.
    let rest = host.barrier().await;
    assert!(
        rest.iter().all(|f| matches!(f, ServerFrame::Presence { .. })),
        "one envelope per round reached the host: {rest:?}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.db_path = format!("postgres://relay:hunter2@127.0.0.1:{port}/agentroom").into();
    let e = agentroom::relay::start(cfg).await.unwrap_err();
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push_str(&format!(": {s}"));
        src = s.source();
    }
    assert!(chain.starts_with("relay database postgres://relay:***@127.0.0.1:"), "{chain}");
    assert!(!chain.contains("hunter2"), "{chain}");
}

#[test]
fn the_binary_never_prints_the_database_password() {
    let url = "postgres://relay:hunter2@127.0.0.1:9/agentroom";
    let run = |args: &[&str], hmac: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_agentroom"));
        c.args(args).env("AGENTROOM_DB", url).env("LOG_LEVEL", "info").env_remove("HMAC_SECRET");
        if hmac {
            c.env("HMAC_SECRET", "k".repeat(32));
        }
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, help) = run(&["relay", "--help"], false);
    assert_eq!(code, Some(0));
    assert!(help.contains("postgres:// URL") && !help.contains("hunter2"), "{help}");
    let (code, err) = run(&["relay", "--port", "0"], false);
    assert_ne!(code, Some(0));
    assert!(err.contains("set HMAC_SECRET, the same on every relay node"), "{err}");
    let (code, err) = run(&["relay", "--port", "0"], true);
    assert_ne!(code, Some(0));
    assert!(err.contains("postgres://relay:***@127.0.0.1:9/agentroom"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_connects_over_verified_tls() {
    if crate::pg::skipped() {
        return;
    }
    let url = crate::pg::fresh_url();
    let db = PathBuf::from(format!("{url}?sslmode=require"));
    let ca = crate::pg::ca_file();
    // Without the CA the server's certificate is refused: a clear error, no start.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_agentroom"));
    c.args(["relay", "--port", "0", "--db"]).arg(&db).env("HMAC_SECRET", "k".repeat(32));
    let out = c.env_remove("AGENTROOM_DB_CA_FILE").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("relay database postgres://"), "{err}");
    assert!(err.contains("TLS handshake"), "{err}");
    // With it, the node runs, and every one of its connections is TLS.
    let ca = ca.to_str().unwrap();
    let node = spawn_with(&db, false, &[("AGENTROOM_DB_CA_FILE", ca)]);
    let (_host, _guest) = pair(node.addr, 20, 21).await;
    let name = crate::pg::db_name(&url);
    let sql = format!(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.datname = '{name}' \
         AND a.application_name = 'agentroom-relay'"
    );
    let counts = crate::pg::psql(&sql, "postgres");
    let (tls, all) = counts.trim().split_once('|').unwrap();
    assert!(all.parse::<u32>().unwrap() >= 2, "{counts}");
    assert_eq!(tls, all, "every connection of the node uses TLS: {counts}");
}
