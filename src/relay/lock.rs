//! One relay per database: an exclusive `flock` on `<db>.lock`, held for the
//! relay's lifetime, with the holder's pid and port written inside.
//!
//! Two relays on one `relay.db` (a `room open` and a standalone `relay` in the
//! same home, say) would fight over SQLite's write lock and fail later with
//! `database is locked`, mid-traffic. The second one is refused at start instead,
//! with a message naming the first. `flock` is released by the kernel when the
//! holder dies (even by `kill -9`), so a stale file never blocks a restart: only
//! its contents linger, and they are rewritten by the next holder.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live relay holds the database.
    #[error(
        "another relay already uses {db} (pid {pid}, port {port}); stop it first, or give the standalone relay its own --db"
    )]
    Held {
        /// The database path.
        db: PathBuf,
        /// The holder's pid, as it recorded it (`?` if unreadable).
        pid: String,
        /// The holder's port (`?` while it is still binding).
        port: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases the database.
#[derive(Debug)]
pub(crate) struct DbLock {
    file: Flock<File>,
    path: PathBuf,
}

/// `<db>.lock` beside the database.
pub fn lock_file_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}

impl DbLock {
    /// Take the lock for `db` or report who holds it. Records our pid (port 0
    /// until [`Self::record_port`]).
    pub(crate) fn acquire(db: &Path) -> Result<Self, LockError> {
        let path = lock_file_path(db);
        let io = |source| LockError::Io { path: path.clone(), source };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::fsutil::PRIVATE_FILE_MODE)
            .open(&path)
            .map_err(io)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let (pid, port) = parse(&text);
                return Err(LockError::Held { db: db.to_path_buf(), pid, port });
            }
            Err((_, e)) => return Err(io(std::io::Error::from(e))),
        };
        let mut lock = Self { file, path };
        lock.write(0)?;
        Ok(lock)
    }

    /// Record the port we listen on, for the next relay's error message.
    pub(crate) fn record_port(&mut self, port: u16) -> Result<(), LockError> {
        self.write(port)
    }

    fn write(&mut self, port: u16) -> Result<(), LockError> {
        let line = format!("pid={} port={port}\n", std::process::id());
        let f: &mut File = &mut self.file;
        let r = f.set_len(0).and_then(|()| f.seek(SeekFrom::Start(0))).and_then(|_| {
            f.write_all(line.as_bytes())?;
            f.flush()
        });
        r.map_err(|source| LockError::Io { path: self.path.clone(), source })
    }
}

/// `pid=N port=P` → ("N", "P"); `?` for what is missing.
fn parse(text: &str) -> (String, String) {
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .map_or_else(|| String::from("?"), str::to_owned)
    };
    (field("pid="), field("port="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_first_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        let mut first = DbLock::acquire(&db).unwrap();
        first.record_port(4321).unwrap();
        let err = DbLock::acquire(&db).unwrap_err();
        let pid = std::process::id().to_string();
        assert!(
            matches!(&err, LockError::Held { pid: p, port, .. } if *p == pid && port == "4321"),
            "{err:?}"
        );
        assert!(err.to_string().contains(&format!("pid {pid}, port 4321")), "{err}");
        drop(first);
        DbLock::acquire(&db).unwrap();
    }

    #[test]
    fn parse_tolerates_garbage() {
        assert_eq!(parse("pid=12 port=80\n"), ("12".into(), "80".into()));
        assert_eq!(parse("junk"), ("?".into(), "?".into()));
        assert_eq!(parse("pid=1; port=x"), ("?".into(), "?".into()));
    }
}
