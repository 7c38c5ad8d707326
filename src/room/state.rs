//! The room's state file (`<home>/room.json`, 0600): how `room status` and `room stop`,
//! run from another shell, find a running `room open`.
//!
//! The file is written atomically when the room is ready and again whenever its
//! public URL changes, and removed on a clean stop. A file whose pid is gone is
//! stale (the room crashed or was SIGKILLed) and is reported and cleaned as such.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// File name inside the home.
pub const STATE_FILE: &str = "room.json";
/// Version of the file's layout.
pub const STATE_VERSION: u32 = 1;

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but could not be read or written.
    #[error("room state file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not valid room state (corrupt or from an incompatible version).
    #[error("room state file {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What a running room publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    /// Layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// Process id of the `room open` process.
    pub pid: u32,
    /// Unix seconds when the room started.
    pub started_at: u64,
    /// The relay's loopback WebSocket URL.
    pub local_url: String,
    /// The relay's loopback health URL.
    pub health_url: String,
    /// The URL guests use (the tunnel's, or the local one with `--tunnel none`).
    pub public_url: String,
    /// `cloudflared`, `bore` or `none`.
    pub tunnel: String,
    /// Where a detached room writes its logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
    /// The handler command, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_message: Option<String>,
    /// Process group of the current tunnel child, so `room stop` can clean it up
    /// even if the room itself has to be SIGKILLed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_pgid: Option<i32>,
    /// The open invite, while nobody has accepted it (an invite carries no secret:
    /// public keys and a signature only), so `room status` and `--detach` can show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
    /// The relay URL on the LAN, when the relay listens on all interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan_url: Option<String>,
    /// The tunnel's own address, when it differs from `public_url` (a proxy in
    /// front, `--public-url`): where that proxy must forward to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_url: Option<String>,
    /// The signed relay update (`arru1.…`) for guests paired before the public URL
    /// changed, so `room status` and the MCP `status` tool can show it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_update: Option<String>,
}

/// `<home>/room.json`.
pub fn state_path(home: &Path) -> PathBuf {
    home.join(STATE_FILE)
}

/// Write the state atomically, mode 0600.
pub fn write(home: &Path, state: &RoomState) -> Result<(), StateError> {
    let path = state_path(home);
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|source| StateError::Corrupt { path: path.clone(), source })?;
    crate::fsutil::write_private_atomic(&path, &bytes)
        .map_err(|source| StateError::Io { path, source })
}

/// Read the state; `None` when no room has published one.
pub fn read(home: &Path) -> Result<Option<RoomState>, StateError> {
    let path = state_path(home);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io { path, source }),
    }
}

/// Remove the state file, if it is there.
pub fn remove(home: &Path) -> Result<(), StateError> {
    let path = state_path(home);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io { path, source }),
    }
}

/// The state of the room running in this home: `None` when no room has published
/// one or its process is gone (a stale file is left for `room status` to report).
pub fn running(home: &Path) -> Result<Option<RoomState>, StateError> {
    Ok(read(home)?.filter(|r| pid_alive(r.pid)))
}

/// Whether a process with this pid exists (EPERM means it exists but isn't ours).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) => !is_zombie(pid),
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// A zombie has exited but not been reaped; for our purposes it is gone.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RoomState {
        RoomState {
            version: STATE_VERSION,
            pid: std::process::id(),
            started_at: 1,
            local_url: "ws://127.0.0.1:1/ws".into(),
            health_url: "http://127.0.0.1:1/health".into(),
            public_url: "wss://x.trycloudflare.com/ws".into(),
            tunnel: "cloudflared".into(),
            log_file: None,
            on_message: Some("cat".into()),
            tunnel_pgid: None,
            invite: Some("ar1.x".into()),
            lan_url: None,
            tunnel_url: None,
            relay_update: None,
        }
    }

    #[test]
    fn roundtrip_remove_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), &sample()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(sample()));
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        std::fs::write(state_path(dir.path()), b"{not json").unwrap();
        assert!(matches!(read(dir.path()), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn own_pid_is_alive_and_absurd_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }
}
