//! Private files written atomically: the only way agentroom writes state or secrets.
//!
//! A crash mid-write must never leave a torn identity or state file, and a secret
//! must never exist on disk with loose permissions, even briefly. So: create a temp
//! file in the same directory with mode 0600, write, fsync, rename over the target,
//! fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode for files holding secrets or private state.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode for directories holding them.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Create `dir` (and parents) with mode 0700 if missing; tighten an existing one we own.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR_MODE).create(dir)?;
    }
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

/// Create `dir` and any missing parents with mode 0700 (whatever the umask); a
/// directory that exists is left alone (an operator's `/var/lib/…` is theirs).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    // DirBuilder's mode is still masked by the umask, which only removes bits: 0700
    // stays 0700 or tighter under any umask, 000 included.
    fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR_MODE).create(dir)
}

/// Make a SQLite database private before it is opened: create `path` 0600 if
/// missing, and bring it and any `-wal`, `-shm` or `-journal` beside it (left by an
/// older version or a crash) down to 0600. SQLite creates those side files with the
/// database file's own mode, so they are born 0600 from then on.
pub fn private_sqlite_files(path: &Path) -> io::Result<()> {
    OpenOptions::new().create(true).append(true).mode(PRIVATE_FILE_MODE).open(path)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        let file = Path::new(&name);
        match fs::metadata(file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                fs::set_permissions(file, fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write `bytes` to `path` atomically with mode 0600 (temp file + fsync + rename + dir fsync).
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut suffix = [0u8; 6];
    crate::crypto::CryptoRng::fill(&mut crate::crypto::SystemRng, &mut suffix);
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), hex::encode(suffix)));
    let result = (|| {
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE_MODE).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Persist the rename itself.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_0600_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_private_atomic(&path, b"one").unwrap();
        write_private_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // No temp files left behind.
        let names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn sqlite_files_are_created_and_tightened_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let wal = dir.path().join("x.db-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o644)).unwrap();
        private_sqlite_files(&db).unwrap();
        for f in [&db, &wal] {
            assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{f:?}");
        }
        assert!(!dir.path().join("x.db-shm").exists(), "only existing side files are touched");
    }

    #[test]
    fn private_dir_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("a/b");
        ensure_private_dir(&home).unwrap();
        assert_eq!(fs::metadata(&home).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
