//! The real `agentroom relay` binary: startup line, SIGKILL after `sent`, restart.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use agentroom::protocol::{DeliveryStatus, ServerFrame};

use crate::client::*;

pub(crate) struct RelayProc {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn spawn(db: &std::path::Path, json: bool) -> RelayProc {
    spawn_with(db, json, &[])
}

/// [`spawn`] with extra environment variables.
pub(crate) fn spawn_with(db: &std::path::Path, json: bool, env: &[(&str, &str)]) -> RelayProc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentroom"));
    cmd.envs(env.iter().copied());
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .args(["relay", "--port", "0", "--db"])
        .arg(db)
        .env("HMAC_SECRET", "k".repeat(32))
        .env("RATE_LIMIT_DISABLED", "1")
        .env("LOG_LEVEL", "warn")
        .env_remove("PORT")
        .env_remove("BIND")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = if json {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "listening");
        assert_eq!(v["url"], format!("ws://127.0.0.1:{}/ws", v["port"]));
        v["port"].as_u64().unwrap() as u16
    } else {
        let url = line
            .strip_prefix("agentroom relay listening on ws://127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"));
        url.split('/').next().unwrap().parse().unwrap()
    };
    RelayProc { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
}

#[tokio::test]
async fn sigkill_after_sent_then_restart_still_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_of(dir.path());
    let mut relay = spawn(&db, false);
    let (host, mut guest) = pair(relay.addr, 1, 2).await;
    let host_pk = host.pk();
    host.close().await;
    let ids: Vec<_> = (0..50).map(eid).collect();
    for id in &ids {
        guest.send_env(*id, host_pk, &id.0).await;
    }
    for id in &ids {
        match guest.recv_np().await {
            ServerFrame::Sent { id: i, status } => {
                assert_eq!((i, status), (*id, DeliveryStatus::Stored));
            }
            f => panic!("{f:?}"),
        }
    }
    // Every `sent` is in; kill -9 with no chance to flush anything.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(relay.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    relay.child.wait().unwrap();
    drop(guest);

    let relay = spawn(&db, true);
    let (mut host, pending) = Client::login(relay.addr, &identity(1)).await;
    assert_eq!(pending, 50);
    for id in &ids {
        let (got, from, body) = host.deliver(true).await;
        assert_eq!((got, from), (*id, identity(2).public()));
        assert_eq!(body, id.0);
    }
    // Pairing survived the crash too.
    let (mut guest, _) = Client::login(relay.addr, &identity(2)).await;
    let id = eid(77);
    guest.send_env(id, host.pk(), b"after restart").await;
    assert_eq!(host.deliver(true).await.0, id);
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = spawn(&db_of(dir.path()), false);
    let (mut c, _) = Client::login(relay.addr, &identity(1)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(relay.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    c.expect_error(agentroom::protocol::ErrorCode::ShuttingDown).await;
    c.expect_closed().await;
    let status = relay.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
