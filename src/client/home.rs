//! The client's state directory: where the identity, config and database live.
//!
//! Default `~/.config/agentroom` (or `$XDG_CONFIG_HOME/agentroom`), like the
//! TypeScript agentroom, so one machine has one identity unless `--home` says
//! otherwise. The directory is 0700 and every file in it 0600.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Errors about the state directory and its small JSON files.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Neither `--home`, `AGENTROOM_HOME`, `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("cannot find a home directory: pass --home DIR or set AGENTROOM_HOME")]
    NoHome,
    /// Reading, creating or writing a file failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A state file exists but does not parse.
    #[error("{path} is corrupt; move it away or restore it from a backup")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// A resolved state directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `explicit` (from `--home`/`AGENTROOM_HOME`) or the default location.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self, HomeError> {
        if let Some(dir) = explicit {
            return Ok(Self { dir });
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .ok_or(HomeError::NoHome)?;
        Ok(Self { dir: base.join("agentroom") })
    }

    /// A home at exactly `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `identity.json`: the Ed25519 seed (secret).
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join("identity.json")
    }

    /// `config.json`: default relay and other preferences.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// `state.db`: peers, sessions, invites, inbox, outbox.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("state.db")
    }

    /// Create the directory (0700) if needed.
    pub fn ensure(&self) -> Result<(), HomeError> {
        fsutil::ensure_private_dir(&self.dir)
            .map_err(|source| HomeError::Io { path: self.dir.clone(), source })
    }

    /// Read the config, or the default when there is none yet.
    pub fn load_config(&self) -> Result<Config, HomeError> {
        let path = self.config_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| HomeError::Corrupt { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(HomeError::Io { path, source }),
        }
    }

    /// Write the config atomically (0600).
    pub fn save_config(&self, config: &Config) -> Result<(), HomeError> {
        self.ensure()?;
        let path = self.config_path();
        let mut bytes =
            serde_json::to_vec_pretty(config).expect("the config is strings: always serialises");
        bytes.push(b'\n');
        fsutil::write_private_atomic(&path, &bytes).map_err(|source| HomeError::Io { path, source })
    }
}

/// User preferences kept in `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Relay used by `invite create` when `--relay` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_roundtrip_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        assert_eq!(home.load_config().unwrap(), Config::default());
        let cfg = Config { relay_url: Some("ws://127.0.0.1:1/ws".into()) };
        home.save_config(&cfg).unwrap();
        assert_eq!(home.load_config().unwrap(), cfg);
        std::fs::write(home.config_path(), b"{not json").unwrap();
        assert!(matches!(home.load_config(), Err(HomeError::Corrupt { .. })));
    }
}
