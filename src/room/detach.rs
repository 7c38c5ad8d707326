//! `room open --detach`: run the room in the background and return once it is ready.
//!
//! The parent re-runs this binary with the same arguments minus `--detach` (plus a
//! hidden `--detached-child`), output appended to `<home>/room.log`, stdin closed.
//! The child calls `setsid()` first thing, so it leaves the terminal's session: no
//! SIGHUP when the terminal closes, no SIGINT from its Ctrl-C. The parent polls for
//! the child's state file (ready) or its exit (failure: the log's tail is shown).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::state::{self, RoomState};

/// The hidden flag that marks the re-spawned child.
pub const CHILD_FLAG: &str = "--detached-child";
/// How much of the log a failure report shows.
const LOG_TAIL_BYTES: u64 = 4096;
/// Between polls of the state file.
const POLL: Duration = Duration::from_millis(100);

/// Why the background room could not be started.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    /// The log file could not be opened.
    #[error("cannot open the room log {path}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// This binary could not be found or started again.
    #[error("cannot start the background room: {0}")]
    Spawn(std::io::Error),
    /// The child exited before it was ready.
    #[error(
        "the background room exited (status {status}) before it was ready; end of {log}:\n{tail}"
    )]
    Died {
        /// Its exit status.
        status: String,
        /// The log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// The child was not ready in time; it was stopped.
    #[error(
        "the background room was not ready after {after:?} and was stopped; end of {log}:\n{tail}"
    )]
    Timeout {
        /// How long we waited.
        after: Duration,
        /// The log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// Reading its state file failed.
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// The arguments for the child: ours without `--detach`, plus [`CHILD_FLAG`].
pub fn child_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = args.into_iter().skip(1).filter(|a| a != "--detach").collect();
    out.push(CHILD_FLAG.into());
    out
}

/// Start the background room: this binary with `args`, in `home`, logging to `log`.
pub fn spawn(home: &Path, log: &Path, args: &[OsString]) -> Result<Child, DetachError> {
    crate::fsutil::ensure_private_dir(home)
        .map_err(|source| DetachError::Log { path: home.to_path_buf(), source })?;
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log)
            .map_err(|source| DetachError::Log { path: log.to_path_buf(), source })
    };
    let (out, err) = (open()?, open()?);
    let exe = std::env::current_exe().map_err(DetachError::Spawn)?;
    Command::new(exe)
        .args(args)
        .env(crate::env::AGENTROOM_HOME, home)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(DetachError::Spawn)
}

/// In the child: leave the parent's session and process group.
pub fn become_session_leader() {
    if let Err(e) = nix::unistd::setsid() {
        tracing::warn!(error = %e, "setsid failed; the room stays in the terminal's session");
    }
}

/// Wait until the child has written its state file (ready), exited, or `timeout`
/// passed (then it is SIGTERMed, and SIGKILLed if it lingers).
pub async fn wait_ready(
    home: &Path,
    log: &Path,
    child: &mut Child,
    timeout: Duration,
) -> Result<RoomState, DetachError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(s) = state::read(home)?.filter(|s| s.pid == child.id()) {
            return Ok(s);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DetachError::Died {
                status: status.to_string(),
                log: log.to_path_buf(),
                tail: log_tail(log),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            stop_child(child).await;
            return Err(DetachError::Timeout {
                after: timeout,
                log: log.to_path_buf(),
                tail: log_tail(log),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn stop_child(child: &mut Child) {
    use nix::sys::signal::{Signal, kill};
    let Ok(pid) = i32::try_from(child.id()) else { return };
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// The last few KiB of the log, from a line start.
pub fn log_tail(log: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(log) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let text = if start > 0 { text.split_once('\n').map_or(&*text, |(_, r)| r) } else { &text };
    text.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_args_drop_detach_and_mark_the_child() {
        let args =
            ["agentroom", "room", "open", "--detach", "--tunnel", "none"].map(OsString::from);
        let out = child_args(args);
        assert_eq!(out, ["room", "open", "--tunnel", "none", CHILD_FLAG].map(OsString::from));
    }

    #[test]
    fn log_tail_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("room.log");
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&log, &text).unwrap();
        let tail = log_tail(&log);
        assert!(tail.ends_with("line 999"), "{tail}");
        assert!(tail.starts_with("line "), "{tail}");
        assert!(u64::try_from(tail.len()).unwrap() <= LOG_TAIL_BYTES);
        assert_eq!(log_tail(&dir.path().join("missing")), "");
    }
}
