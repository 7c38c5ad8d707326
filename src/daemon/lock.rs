//! The home lock: one owner per home. An exclusive `flock` on
//! `<home>/daemon.lock` is held for as long as a process owns the home's relay
//! links, inbox and outbox (the daemon, or a one-shot command running without
//! one). The kernel drops the lock when the process dies, even by `kill -9`, so
//! a stale lock cannot exist; the pid written into the file only names the
//! holder in errors.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::DaemonError;
use crate::client::home::Home;

/// File name of the lock in the home.
pub const LOCK_FILE: &str = "daemon.lock";

/// A held home lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct HomeLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl HomeLock {
    /// Take the lock without waiting. [`DaemonError::Busy`] names the holder's pid.
    pub fn try_acquire(home: &Home) -> Result<Self, DaemonError> {
        home.ensure().map_err(|e| DaemonError::Client(e.into()))?;
        let path = home.dir().join(LOCK_FILE);
        let io = |source| DaemonError::Io { path: path.clone(), source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::fsutil::PRIVATE_FILE_MODE)
            .open(&path)
            .map_err(io)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut file) => {
                // Ours now: record who holds it (only for the error others print).
                file.set_len(0).map_err(io)?;
                file.rewind().map_err(io)?;
                file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(io)?;
                Ok(Self { _file: file, path })
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                Err(DaemonError::Busy { home: home.dir().to_path_buf(), pid: holder_pid(&path) })
            }
            Err((_, errno)) => Err(io(std::io::Error::from(errno))),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid the holder wrote, if readable.
fn holder_pid(path: &Path) -> Option<u32> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        let held = HomeLock::try_acquire(&home).unwrap();
        match HomeLock::try_acquire(&home) {
            Err(DaemonError::Busy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(held);
        HomeLock::try_acquire(&home).unwrap();
    }
}
