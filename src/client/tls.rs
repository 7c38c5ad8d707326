//! Which relays a client trusts over `wss://`, and what a failed handshake means.
//!
//! One root store serves every relay link of the process (`connection.rs`, so
//! `setup`, `invite accept`, `send`, `serve`, `mcp` and `room` alike). It holds,
//! in this order of loading (a root store is a set: any one of them suffices):
//! 1. the bundled Mozilla roots (`webpki-roots`), so a fresh container works;
//! 2. the operating system's store (`rustls-native-certs`: the distribution's CA
//!    bundle, honouring `SSL_CERT_FILE` / `SSL_CERT_DIR`), for company CAs that
//!    IT installed;
//! 3. every certificate in `--ca-file` / `AGENTROOM_CA_FILE` (PEM), for a
//!    private relay: a private CA, or a self-signed relay certificate pinned by
//!    giving its certificate (never its key) as the CA file.
//!
//! There is deliberately no switch that turns verification off.
//!
//! Why rustls-native-certs rather than rustls-platform-verifier: on Linux the
//! platform verifier is itself rustls' WebPKI verifier over the same native
//! roots, so it adds nothing there; and with one WebPKI verifier on every OS, a
//! refusal is always a typed [`rustls::CertificateError`] that [`TlsFailure`]
//! can classify (the platform verifiers of macOS and Windows report their own
//! error texts), and the bundled roots and the CA file go in the same store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// The process's client TLS configuration, set once by [`configure`].
static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// The CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("CA file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM `CERTIFICATE` block (or a malformed one).
    #[error("CA file {path}: no PEM certificate in it")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the file is not a usable trust anchor.
    #[error("CA file {path}: unusable certificate")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// [`configure`] was called twice with different files.
    #[error("TLS trust was already configured for this process")]
    AlreadyConfigured,
}

/// Why a TLS handshake with a relay failed, for the message that says what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsFailure {
    /// The chain does not end in a trusted root.
    UnknownIssuer,
    /// The certificate is valid, but not for the host in the URL.
    NameMismatch {
        /// The host the client dialled.
        host: String,
    },
    /// The certificate's validity ended.
    Expired,
    /// The certificate is not valid yet (or this machine's clock is behind).
    NotYetValid,
    /// The relay's certificate was revoked.
    Revoked,
    /// The server did not answer with TLS at all (a plain `ws://` relay, or another
    /// service on that port).
    NotTls,
    /// Another certificate or handshake failure.
    Other(rustls::Error),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str(
                "the relay's TLS certificate is not signed by a trusted authority; for a private \
                 or self-signed relay, pass its CA (or its own certificate) with --ca-file FILE \
                 or AGENTROOM_CA_FILE",
            ),
            Self::NameMismatch { host } => write!(
                f,
                "the relay's TLS certificate is not valid for {host}; use the host name the \
                 certificate was issued for in the relay URL"
            ),
            Self::Expired => f.write_str(
                "the relay's TLS certificate has expired; the relay's operator must renew it \
                 (or this machine's clock is wrong)",
            ),
            Self::NotYetValid => f.write_str(
                "the relay's TLS certificate is not valid yet; check this machine's clock",
            ),
            Self::Revoked => f.write_str("the relay's TLS certificate was revoked"),
            Self::NotTls => f.write_str(
                "the server did not answer with TLS: if the relay serves plain WebSocket, use \
                 ws:// (or check the port)",
            ),
            Self::Other(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl TlsFailure {
    /// Classify a rustls error; `host` is the host name the client dialled.
    pub fn from_rustls(e: &rustls::Error, host: &str) -> Self {
        let cert = match e {
            rustls::Error::InvalidCertificate(cert) => cert,
            // A plain HTTP answer parsed as a TLS record.
            rustls::Error::InvalidMessage(_) => return Self::NotTls,
            _ => return Self::Other(e.clone()),
        };
        match cert {
            CertificateError::UnknownIssuer => Self::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Self::NameMismatch { host: host.to_owned() }
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Self::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Self::NotYetValid
            }
            CertificateError::Revoked => Self::Revoked,
            _ => Self::Other(e.clone()),
        }
    }

    /// The TLS failure inside a WebSocket connect error, if that is what it was.
    pub(crate) fn from_ws(e: &tokio_tungstenite::tungstenite::Error, host: &str) -> Option<Self> {
        let tokio_tungstenite::tungstenite::Error::Io(io) = e else { return None };
        let inner = io.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(Self::from_rustls(inner, host))
    }
}

/// Set the process's trust once, before the first relay link: the bundled and OS
/// roots, plus `ca_file` when given. Links made before this use the default.
pub fn configure(ca_file: Option<&Path>) -> Result<(), TlsError> {
    let config = Arc::new(build(ca_file)?);
    CONFIG.set(config).map_err(|_| TlsError::AlreadyConfigured)
}

/// The configuration every relay link uses.
pub(crate) fn client_config() -> Arc<ClientConfig> {
    Arc::clone(CONFIG.get_or_init(|| {
        // Without a CA file nothing here can fail: bad OS certificates are skipped.
        Arc::new(build(None).expect("building the default TLS trust reads no file"))
    }))
}

/// A client configuration trusting the bundled roots, the OS store and `ca_file`.
pub fn build(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    super::connection::install_tls_provider();
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "skipping part of the OS certificate store");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "OS certificate store loaded");
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots
                .add(cert)
                .map_err(|source| TlsError::BadCertificate { path: path.to_path_buf(), source })?;
        }
    }
    Ok(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path)
        .map_err(|source| TlsError::Read { path: path.to_path_buf(), source })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate { path: path.to_path_buf() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_map_to_variants() {
        let e = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(
            TlsFailure::from_rustls(&e(CertificateError::UnknownIssuer), "h"),
            TlsFailure::UnknownIssuer
        );
        assert_eq!(
            TlsFailure::from_rustls(&e(CertificateError::NotValidForName), "relay.test"),
            TlsFailure::NameMismatch { host: "relay.test".into() }
        );
        assert_eq!(
            TlsFailure::from_rustls(&e(CertificateError::Expired), "h"),
            TlsFailure::Expired
        );
        let msg = TlsFailure::UnknownIssuer.to_string();
        assert!(msg.contains("--ca-file"), "{msg}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        assert!(matches!(build(Some(&path)), Err(TlsError::NoCertificate { .. })));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(build(Some(&missing)), Err(TlsError::Read { .. })));
    }
}
