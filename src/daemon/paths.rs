//! Where a home's daemon listens.
//!
//! The socket is `<home>/agentroom.sock`: inside the 0700 home, so the file
//! system is the access control. A Unix socket address holds at most
//! [`MAX_SOCKET_PATH`] bytes; for a home whose path is longer, the socket goes
//! to `$XDG_RUNTIME_DIR/agentroom/<hash>.sock` (or `/tmp/agentroom-<uid>/…`),
//! where `<hash>` is the first 16 hex digits of SHA-256 of the home's absolute
//! path. The fallback directory must be ours and 0700, or we refuse it.
//! `agentroom status` prints the path in use.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::DaemonError;
use crate::client::home::Home;

/// Socket file name in the home.
pub const SOCKET_FILE: &str = "agentroom.sock";
/// Bearer token of the loopback HTTP listener (`--http`), 0600.
pub const TOKEN_FILE: &str = "http-token";
/// `sun_path` is 108 bytes on Linux (104 on macOS) including the NUL: keep to
/// the smaller one so a home works the same on both.
pub const MAX_SOCKET_PATH: usize = 103;

/// The socket path of `home` (creating the fallback directory when needed).
pub fn socket_path(home: &Home) -> Result<PathBuf, DaemonError> {
    let direct = home.dir().join(SOCKET_FILE);
    if direct.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(direct);
    }
    let abs = std::path::absolute(home.dir()).unwrap_or_else(|_| home.dir().to_path_buf());
    let hash = hex::encode(sha2::Sha256::digest(abs.as_os_str().as_encoded_bytes()));
    let dir = fallback_dir();
    ensure_own_private_dir(&dir)?;
    Ok(dir.join(format!("{}.sock", &hash[..16])))
}

fn fallback_dir() -> PathBuf {
    match std::env::var_os(crate::env::XDG_RUNTIME_DIR).filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("agentroom"),
        None => std::env::temp_dir().join(format!("agentroom-{}", nix::unistd::getuid())),
    }
}

/// A shared directory such as /tmp: refuse one another user created for us.
fn ensure_own_private_dir(dir: &Path) -> Result<(), DaemonError> {
    let io = |source| DaemonError::Io { path: dir.to_path_buf(), source };
    crate::fsutil::ensure_private_dir(dir).map_err(io)?;
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    if !meta.is_dir()
        || meta.uid() != nix::unistd::getuid().as_raw()
        || meta.permissions().mode() & 0o077 != 0
    {
        return Err(DaemonError::UnsafeSocketDir(dir.to_path_buf()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_home_uses_its_own_socket_long_home_a_private_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        assert_eq!(socket_path(&home).unwrap(), dir.path().join("h").join(SOCKET_FILE));
        let long = Home::at(dir.path().join("x".repeat(120)));
        let p = socket_path(&long).unwrap();
        assert!(p.as_os_str().len() <= MAX_SOCKET_PATH, "{p:?}");
        assert_eq!(p, socket_path(&long).unwrap(), "stable");
        let mode = std::fs::metadata(p.parent().unwrap()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
