//! `room status` and `room stop`: talk to a running room through its state file,
//! its pid and its relay's `/health`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::Serialize;

use super::state::{self, RoomState, StateError};

/// How long `room stop` waits for a graceful exit before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What `room status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct RoomStatus {
    /// Whether a room process is alive.
    pub running: bool,
    /// The room's published state, when running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomState>,
    /// Seconds since the room started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    /// The relay's `/health` answer, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<serde_json::Value>,
    /// A state file was found whose process is gone; it has been removed.
    pub stale_cleaned: bool,
    /// Envelopes queued in the relay for absent recipients (from its `/health`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_pending: Option<u64>,
    /// Paired peers, from this home's client store (the shape of `peers --json`).
    pub peers: Vec<crate::daemon::types::PeerInfo>,
    /// Our envelopes not yet taken by a relay.
    pub outbox_pending: u64,
    /// Whether the room's invite still waits for a guest.
    pub invite_open: bool,
}

/// Peers, outbox size and whether `invite_id` (b64u) is still open, from the
/// home's client store; empty when there is none yet.
fn client_view(
    home: &Path,
    invite: Option<&str>,
) -> Result<(Vec<crate::daemon::types::PeerInfo>, u64, bool), crate::client::store::StoreError> {
    use crate::client::store;
    let db = crate::client::home::Home::at(home).db_path();
    if !db.exists() {
        return Ok((Vec::new(), 0, false));
    }
    let store = store::Store::open(&db)?;
    let home = crate::client::home::Home::at(home);
    // No identity yet: no peers either (pairing creates it).
    let peers = match crate::client::identity::load(&home) {
        Ok(pair) => crate::daemon::types::PeerInfo::list(store.conn(), &pair.public())?,
        Err(_) => Vec::new(),
    };
    let outbox = store::outbox_pending_count(store.conn())?;
    let now = now_unix();
    let open = match invite {
        Some(encoded) => store::list_invites(store.conn())?.iter().any(|r| {
            r.encoded == encoded && r.status == store::InviteStatus::Open && r.expires_at > now
        }),
        None => false,
    };
    Ok((peers, outbox, open))
}

/// Read the state file, check the pid, ask the relay for its health.
pub async fn status(home: &Path) -> Result<RoomStatus, StateError> {
    let mut room = state::read(home)?;
    let mut stale_cleaned = false;
    if room.as_ref().is_some_and(|r| !state::pid_alive(r.pid)) {
        state::remove(home)?;
        room = None;
        stale_cleaned = true;
    }
    let invite = room.as_ref().and_then(|r| r.invite.clone());
    let (peers, outbox_pending, invite_open) = match client_view(home, invite.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the client store");
            (Vec::new(), 0, false)
        }
    };
    let Some(room) = room else {
        return Ok(RoomStatus {
            running: false,
            room: None,
            uptime_secs: None,
            health: None,
            stale_cleaned,
            relay_pending: None,
            peers,
            outbox_pending,
            invite_open: false,
        });
    };
    let health = fetch_health(&room.health_url).await;
    let relay_pending = health.as_ref().and_then(|h| h.get("pending")).and_then(|v| v.as_u64());
    let uptime_secs = Some(now_unix().saturating_sub(room.started_at));
    Ok(RoomStatus {
        running: true,
        room: Some(room),
        uptime_secs,
        health,
        stale_cleaned,
        relay_pending,
        peers,
        outbox_pending,
        invite_open,
    })
}

async fn fetch_health(url: &str) -> Option<serde_json::Value> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().ok()?;
    let response = client.get(url).send().await.ok()?;
    let bytes = response.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How `room stop` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// No room was running (a stale state file, if any, was removed).
    NotRunning,
    /// The room exited after SIGTERM.
    Stopped,
    /// The room ignored SIGTERM for [`STOP_TIMEOUT`] and was SIGKILLed, with its tunnel group.
    Killed,
}

/// Signal the room with SIGTERM, wait up to `timeout`, SIGKILL if needed.
pub async fn stop(home: &Path, timeout: Duration) -> Result<StopOutcome, StateError> {
    let Some(room) = state::read(home)? else { return Ok(StopOutcome::NotRunning) };
    let Ok(pid) = i32::try_from(room.pid) else {
        state::remove(home)?;
        return Ok(StopOutcome::NotRunning);
    };
    if !state::pid_alive(room.pid) {
        state::remove(home)?;
        return Ok(StopOutcome::NotRunning);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    if wait_gone(room.pid, timeout).await {
        // A clean exit removes the file itself; make sure.
        state::remove(home)?;
        return Ok(StopOutcome::Stopped);
    }
    tracing::warn!(pid, "room ignored SIGTERM; sending SIGKILL");
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    if let Some(pgid) = room.tunnel_pgid.filter(|g| *g > 1) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    wait_gone(room.pid, Duration::from_secs(5)).await;
    state::remove(home)?;
    Ok(StopOutcome::Killed)
}

async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if !state::pid_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !state::pid_alive(pid)
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
