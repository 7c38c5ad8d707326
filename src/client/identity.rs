//! The local identity: one Ed25519 keypair per home, created once by `setup`.
//!
//! Stored as `identity.json` (0600, written atomically) holding the 32-byte seed;
//! the public key is kept beside it only as a check that the file is intact.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::home::Home;
use crate::crypto::{IdentityKeyPair, SystemRng};
use crate::fsutil;

/// Identity file format version.
const IDENTITY_FILE_VERSION: u32 = 1;

/// Errors loading or creating the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No identity in this home yet.
    #[error("no identity in {0}: run `agentroom --home '{0}' setup` first")]
    Missing(std::path::PathBuf),
    /// The file exists but is not a valid identity.
    #[error("identity file {0} is corrupt; move it away or restore it from a backup")]
    Corrupt(std::path::PathBuf),
    /// The directory or file could not be read or written.
    #[error(transparent)]
    Home(#[from] super::home::HomeError),
    /// The key could not be derived (libsodium failure).
    #[error("cannot derive the identity key: {0}")]
    Key(crate::crypto::KeyError),
}

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    version: u32,
    /// b64u seed: the secret (wiped on drop).
    seed: String,
    /// b64u public key, to catch a damaged seed.
    public: String,
    created_at: u64,
}

impl Drop for IdentityFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
    }
}

/// Load the identity of `home`.
pub fn load(home: &Home) -> Result<IdentityKeyPair, IdentityError> {
    let path = home.identity_path();
    let bytes = match std::fs::read(&path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing(home.dir().to_path_buf()));
        }
        Err(source) => return Err(super::home::HomeError::Io { path, source }.into()),
    };
    let corrupt = || IdentityError::Corrupt(home.identity_path());
    let file: IdentityFile = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
    if file.version != IDENTITY_FILE_VERSION {
        return Err(corrupt());
    }
    let seed = crate::protocol::b64::decode_array::<32>(&file.seed).map(Zeroizing::new);
    let seed = seed.ok_or_else(corrupt)?;
    let pair = IdentityKeyPair::from_seed(&seed)?;
    if pair.public().to_b64u() != file.public {
        return Err(corrupt());
    }
    Ok(pair)
}

/// Load the identity, creating it first if this home has none. Returns whether it
/// was created now. Idempotent: an existing identity is never replaced.
pub fn load_or_create(home: &Home) -> Result<(IdentityKeyPair, bool), IdentityError> {
    match load(home) {
        Ok(pair) => return Ok((pair, false)),
        Err(IdentityError::Missing(_)) => {}
        Err(e) => return Err(e),
    }
    home.ensure()?;
    let pair = IdentityKeyPair::generate(&mut SystemRng)?;
    let file = IdentityFile {
        version: IDENTITY_FILE_VERSION,
        seed: crate::protocol::b64::encode(pair.seed()),
        public: pair.public().to_b64u(),
        created_at: super::now_secs(),
    };
    // Never write an empty identity file in place of a key: fail loudly instead.
    let bytes = Zeroizing::new(
        serde_json::to_vec_pretty(&file).expect("an identity file is strings and integers"),
    );
    let path = home.identity_path();
    fsutil::write_private_atomic(&path, &bytes)
        .map_err(|source| super::home::HomeError::Io { path, source })?;
    Ok((pair, true))
}

/// Forget this home's identity and everything tied to it: the identity file and
/// the state database (peers, sessions, queues, invites). `setup --force` then
/// creates a new identity. The relay database and `config.json` stay.
pub fn discard(home: &Home) -> Result<(), IdentityError> {
    let db = home.db_path();
    let mut paths = vec![home.identity_path(), db.clone()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        paths.push(p.into());
    }
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(super::home::HomeError::Io { path, source }.into()),
        }
    }
    Ok(())
}

// The cause is printed in these variants' messages, so they are not `#[source]`
// (an error chain would print it twice); hence hand-written `From`s.
impl From<crate::crypto::KeyError> for IdentityError {
    fn from(e: crate::crypto::KeyError) -> Self {
        Self::Key(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_0600_and_reloaded() {
        crate::crypto::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        assert!(matches!(load(&home), Err(IdentityError::Missing(_))));
        let (a, created) = load_or_create(&home).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&home).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
        let mode = std::fs::metadata(home.identity_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(home.identity_path(), b"{\"version\":1}").unwrap();
        assert!(matches!(load(&home), Err(IdentityError::Corrupt(_))));
        assert!(matches!(load_or_create(&home), Err(IdentityError::Corrupt(_))));
    }
}
