//! Finding cloudflared, or installing a verified copy in the home.
//!
//! Order: an explicit path (`--cloudflared-bin`), then `CLOUDFLARED_BIN`, then
//! `cloudflared` on `PATH`, then the managed copy `<home>/bin/cloudflared`, and only
//! then a download of the pinned official release, checked against the sha256 table
//! below before it is ever made executable. The file is written under a temporary
//! name and renamed into place only once verified, so a failed, truncated or
//! tampered download leaves nothing behind that a later run could pick up.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use url::Url;

/// The cloudflared release we download: pinned, never "latest", so the checksums
/// below stay meaningful. Bump the version and the table together.
pub const CLOUDFLARED_VERSION: &str = "2026.6.1";
/// Where the pinned release's assets live (asset name is appended).
pub const CLOUDFLARED_RELEASE_BASE: &str =
    "https://github.com/cloudflare/cloudflared/releases/download/2026.6.1/";
/// SHA-256 of each release asset we may download. Cloudflare publishes them in the
/// release notes; these were cross-checked against several independent projects
/// that pin the same release (see `cloudflared/README.md`). Only raw Linux binaries
/// are listed: macOS ships a `.tgz` (install with Homebrew instead).
pub const CLOUDFLARED_SHA256: &[(&str, &str)] = &[
    ("cloudflared-linux-amd64", "5861a10a438fe8ddcfebb3b830f83966cbf193edafce0fe2eeb198fbae1f7a22"),
    ("cloudflared-linux-arm64", "59816ce9b16db71f5bc2a86d59b3632a96c8c3ee934bde2bc8641ee83a6070eb"),
];
/// Largest download accepted: the real binary is ~40 MB; a server streaming
/// forever must not fill the disk.
pub const MAX_DOWNLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// A download that makes no progress for this long is abandoned.
const DOWNLOAD_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How to install cloudflared by hand, printed when we may not download.
pub const INSTALL_HINT: &str = "install cloudflared (macOS: `brew install cloudflared`; Linux: \
     https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/), \
     or pass --cloudflared-bin PATH / set CLOUDFLARED_BIN, or allow the managed download";

/// Errors from finding or installing cloudflared.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not found, and downloading is not allowed.
    #[error("cloudflared not found; {INSTALL_HINT}")]
    NotFound,
    /// An explicitly named binary does not exist or is not executable.
    #[error("cloudflared binary {0} does not exist or is not executable")]
    NotExecutable(PathBuf),
    /// No official binary is pinned for this OS and CPU.
    #[error("no pinned cloudflared download for {os}/{arch}; {INSTALL_HINT}")]
    UnsupportedPlatform {
        /// `std::env::consts::OS`.
        os: &'static str,
        /// `std::env::consts::ARCH`.
        arch: &'static str,
    },
    /// The asset has no entry in the checksum table.
    #[error("no pinned sha256 for {0}")]
    NoChecksum(String),
    /// The HTTP request failed, or the body ended early.
    #[error("cannot download {url}")]
    Http {
        /// The asset URL.
        url: Url,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("cannot download {url}: HTTP {status}")]
    Status {
        /// The asset URL.
        url: Url,
        /// The status it returned.
        status: reqwest::StatusCode,
    },
    /// The body is larger than [`MAX_DOWNLOAD_BYTES`].
    #[error("download of {0} exceeds {MAX_DOWNLOAD_BYTES} bytes; refused")]
    TooLarge(Url),
    /// The body is shorter than its declared length.
    #[error("download of {url} truncated: got {got} of {expected} bytes; refused and deleted")]
    Truncated {
        /// The asset URL.
        url: Url,
        /// Bytes received.
        got: u64,
        /// `Content-Length`.
        expected: u64,
    },
    /// The bytes do not hash to the pinned value.
    #[error(
        "checksum mismatch for {asset}: expected sha256 {expected}, got {actual}; refused and deleted"
    )]
    ChecksumMismatch {
        /// The asset name.
        asset: String,
        /// The pinned digest.
        expected: String,
        /// What we received.
        actual: String,
    },
    /// A local file operation failed.
    #[error("cannot write {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Where to download from and what to expect. Production uses [`ReleaseSource::official`];
/// tests point it at a local server.
#[derive(Debug, Clone)]
pub struct ReleaseSource {
    /// Base URL; the asset name is joined to it (keep the trailing `/`).
    pub base_url: Url,
    /// Asset name → lowercase hex sha256.
    pub checksums: Vec<(String, String)>,
}

impl ReleaseSource {
    /// The pinned official release.
    pub fn official() -> Self {
        Self {
            base_url: Url::parse(CLOUDFLARED_RELEASE_BASE)
                .expect("CLOUDFLARED_RELEASE_BASE is a valid URL"),
            checksums: CLOUDFLARED_SHA256
                .iter()
                .map(|(a, h)| ((*a).to_owned(), (*h).to_owned()))
                .collect(),
        }
    }
}

/// The release asset for the platform we run on, if one is pinned.
pub fn platform_asset() -> Result<&'static str, InstallError> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Ok("cloudflared-linux-amd64"),
        ("linux", "aarch64") => Ok("cloudflared-linux-arm64"),
        (os, arch) => Err(InstallError::UnsupportedPlatform { os, arch }),
    }
}

/// Everything the lookup depends on, so tests need not touch the process environment.
#[derive(Debug, Clone)]
pub struct BinarySearch {
    /// `--cloudflared-bin`, if given.
    pub explicit: Option<PathBuf>,
    /// The value of `CLOUDFLARED_BIN`, if set.
    pub env_bin: Option<PathBuf>,
    /// The value of `PATH`.
    pub path_var: Option<OsString>,
    /// The agentroom home; the managed copy is `<home>/bin/cloudflared`.
    pub home: PathBuf,
    /// Whether a missing binary may be downloaded.
    pub allow_download: bool,
    /// What to download.
    pub source: ReleaseSource,
}

impl BinarySearch {
    /// A search from this process's environment (`CLOUDFLARED_BIN`, `PATH`).
    pub fn from_env(explicit: Option<PathBuf>, home: PathBuf, allow_download: bool) -> Self {
        Self {
            explicit,
            // AGENTROOM_CLOUDFLARED is the TypeScript agentroom's name for it.
            env_bin: [crate::env::CLOUDFLARED_BIN, crate::env::AGENTROOM_CLOUDFLARED]
                .into_iter()
                .find_map(|var| std::env::var_os(var).filter(|v| !v.is_empty()))
                .map(PathBuf::from),
            path_var: std::env::var_os("PATH"),
            home,
            allow_download,
            source: ReleaseSource::official(),
        }
    }

    /// The managed copy's path.
    pub fn managed_path(&self) -> PathBuf {
        self.home.join("bin").join("cloudflared")
    }

    /// Finds cloudflared, downloading the pinned release if needed and allowed.
    pub async fn resolve(&self) -> Result<PathBuf, InstallError> {
        if let Some(path) = self.explicit.as_ref().or(self.env_bin.as_ref()) {
            return if is_executable(path) {
                Ok(path.clone())
            } else {
                Err(InstallError::NotExecutable(path.clone()))
            };
        }
        if let Some(found) = self.path_var.as_ref().and_then(|p| find_on_path(p, "cloudflared")) {
            return Ok(found);
        }
        let managed = self.managed_path();
        if is_executable(&managed) {
            return Ok(managed);
        }
        if !self.allow_download {
            return Err(InstallError::NotFound);
        }
        let asset = platform_asset()?;
        download_verified(&self.source, asset, &managed).await?;
        Ok(managed)
    }
}

use crate::process::is_executable_file as is_executable;

fn find_on_path(path_var: &OsString, name: &str) -> Option<PathBuf> {
    crate::process::find_on_path(path_var, name, crate::process::EmptyPathEntry::Skip)
}

/// Downloads `asset` from `source` to `dest` (mode 0700), verifying its sha256 first.
/// On any failure nothing is left at `dest` or at the temporary path.
pub async fn download_verified(
    source: &ReleaseSource,
    asset: &str,
    dest: &Path,
) -> Result<(), InstallError> {
    let expected = source
        .checksums
        .iter()
        .find(|(a, _)| a == asset)
        .map(|(_, h)| h.to_ascii_lowercase())
        .ok_or_else(|| InstallError::NoChecksum(asset.to_owned()))?;
    let url =
        source.base_url.join(asset).map_err(|_| InstallError::NoChecksum(asset.to_owned()))?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| InstallError::Io { path: dir.to_owned(), source })?;
    let tmp = dir.join(format!(".cloudflared.download-{}", std::process::id()));
    tracing::info!(%url, version = CLOUDFLARED_VERSION, "downloading cloudflared");
    let result = fetch_to(&url, &tmp).await.and_then(|actual| {
        if actual == expected {
            Ok(())
        } else {
            Err(InstallError::ChecksumMismatch { asset: asset.to_owned(), expected, actual })
        }
    });
    let result = result.and_then(|()| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))
            .and_then(|()| std::fs::rename(&tmp, dest))
            .map_err(|source| InstallError::Io { path: dest.to_owned(), source })
    });
    if let Err(e) = &result {
        let _ = std::fs::remove_file(&tmp);
        // The caller reports the error itself: info, so it is not printed twice.
        tracing::info!(error = %e, "cloudflared download refused");
    } else {
        tracing::info!(path = %dest.display(), "cloudflared installed and verified");
    }
    result
}

/// Streams `url` into a new 0600 file at `tmp`, returning the hex sha256 of the body.
async fn fetch_to(url: &Url, tmp: &Path) -> Result<String, InstallError> {
    let io_err = |source| InstallError::Io { path: tmp.to_owned(), source };
    let http_err = |source| InstallError::Http { url: url.clone(), source };
    let client = reqwest::Client::builder()
        .read_timeout(DOWNLOAD_READ_TIMEOUT)
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(http_err)?;
    let mut response = client.get(url.clone()).send().await.map_err(http_err)?;
    if !response.status().is_success() {
        return Err(InstallError::Status { url: url.clone(), status: response.status() });
    }
    let declared = response.content_length();
    if declared.is_some_and(|n| n > MAX_DOWNLOAD_BYTES) {
        return Err(InstallError::TooLarge(url.clone()));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // A connection closed before `Content-Length` bytes is a truncation.
            Err(_) if declared.is_some_and(|n| got < n) => {
                let expected = declared.unwrap_or_default();
                return Err(InstallError::Truncated { url: url.clone(), got, expected });
            }
            Err(e) => return Err(http_err(e)),
        };
        got += chunk.len() as u64;
        if got > MAX_DOWNLOAD_BYTES {
            return Err(InstallError::TooLarge(url.clone()));
        }
        hasher.update(&chunk);
        // A 40 MB binary: blocking writes of network-sized chunks are brief.
        file.write_all(&chunk).map_err(io_err)?;
    }
    if let Some(expected) = declared.filter(|&n| n != got) {
        return Err(InstallError::Truncated { url: url.clone(), got, expected });
    }
    file.sync_all().map_err(io_err)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_table_is_well_formed() {
        let source = ReleaseSource::official();
        assert!(source.base_url.as_str().contains(CLOUDFLARED_VERSION));
        assert!(source.base_url.as_str().ends_with('/'));
        for (asset, hash) in &source.checksums {
            assert_eq!(hash.len(), 64, "{asset}");
            assert!(hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert_eq!(
                source.base_url.join(asset).unwrap().as_str(),
                format!("{CLOUDFLARED_RELEASE_BASE}{asset}")
            );
        }
        if let Ok(asset) = platform_asset() {
            assert!(source.checksums.iter().any(|(a, _)| a == asset));
        }
    }

    #[tokio::test]
    async fn lookup_order_explicit_path_then_managed_then_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("my-cloudflared");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_dir = dir.path().join("pathdir");
        std::fs::create_dir(&path_dir).unwrap();
        let mut search = BinarySearch {
            explicit: None,
            env_bin: None,
            path_var: Some(path_dir.clone().into_os_string()),
            home: dir.path().join("home"),
            allow_download: false,
            source: ReleaseSource::official(),
        };
        assert!(matches!(search.resolve().await, Err(InstallError::NotFound)));

        std::fs::create_dir_all(search.managed_path().parent().unwrap()).unwrap();
        std::fs::copy(&fake, search.managed_path()).unwrap();
        assert_eq!(search.resolve().await.unwrap(), search.managed_path());

        std::fs::copy(&fake, path_dir.join("cloudflared")).unwrap();
        assert_eq!(search.resolve().await.unwrap(), path_dir.join("cloudflared"));

        search.env_bin = Some(fake.clone());
        assert_eq!(search.resolve().await.unwrap(), fake);

        search.explicit = Some(dir.path().join("missing"));
        assert!(matches!(search.resolve().await, Err(InstallError::NotExecutable(_))));
    }
}
