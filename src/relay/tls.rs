//! The relay's own TLS (`relay --tls-cert FILE --tls-key FILE`): a rustls server
//! whose certificate is swapped in place, without dropping a connection, when the
//! files change (checked every [`RELOAD_POLL`]) or on [`TlsCerts::reload`]
//! (the CLI calls it on SIGHUP). A reload that fails keeps the previous pair.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// How often the certificate and key files are checked for a change: certbot and
/// friends rewrite them every few weeks, so a minute's delay is harmless.
const RELOAD_POLL: Duration = Duration::from_secs(30);

/// The certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("TLS file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file has no PEM certificate.
    #[error("TLS certificate {path}: no PEM certificate in it")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file has no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("TLS key {path}: no PEM private key in it")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of an unsupported type, or does not belong to the certificate.
    #[error("TLS key {path} does not fit the certificate")]
    Mismatch {
        /// The key file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
}

/// The certificate and key files, and the pair currently served.
#[derive(Debug)]
pub struct TlsCerts {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: RwLock<Option<(SystemTime, SystemTime)>>,
}

impl TlsCerts {
    /// Load both files once; an error here stops the relay from starting.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsConfigError> {
        let key = load_pair(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(key),
            stamp: RwLock::new(stamps(cert_path, key_path)),
        }))
    }

    /// Read the files again and serve the new pair from the next handshake on.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let stamp = stamps(&self.cert_path, &self.key_path);
        let key = load_pair(&self.cert_path, &self.key_path)?;
        *self.current.write().expect("no thread panics while holding the TLS lock") = key;
        *self.stamp.write().expect("no thread panics while holding the TLS lock") = stamp;
        tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// The rustls server configuration (HTTP/1.1 only: `/ws` upgrades over it).
    pub(crate) fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        crate::client::connection::install_tls_provider();
        let mut c = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }

    /// Reload whenever either file's modification time changes, until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(RELOAD_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamps(&self.cert_path, &self.key_path);
            let seen = *self.stamp.read().expect("no thread panics while holding the TLS lock");
            if now.is_some() && now != seen {
                if let Err(e) = self.reload() {
                    tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the previous certificate");
                }
            }
        }
    }

    /// The DNS names (subject alternative names) of the certificate served now, in
    /// its order, wildcards left out: the names a guest can dial it by.
    pub fn dns_names(&self) -> Vec<String> {
        let current =
            Arc::clone(&self.current.read().expect("no thread panics while holding the TLS lock"));
        let Some(leaf) = current.cert.first() else { return Vec::new() };
        let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { return Vec::new() };
        cert.valid_dns_names().filter(|n| !n.starts_with('*')).map(str::to_owned).collect()
    }

    /// Whether the certificate served now is valid for `host` (a DNS name, an IP
    /// address, or an IPv6 address in brackets), as a client would check it.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(name) = rustls::pki_types::ServerName::try_from(host) else { return false };
        let current =
            Arc::clone(&self.current.read().expect("no thread panics while holding the TLS lock"));
        let Some(leaf) = current.cert.first() else { return false };
        rustls::server::ParsedCertificate::try_from(leaf)
            .is_ok_and(|c| rustls::client::verify_server_name(&c, &name).is_ok())
    }
}

impl ResolvesServerCert for TlsCerts {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().expect("no thread panics while holding the TLS lock")))
    }
}

fn stamps(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsConfigError::Read { path: p.to_path_buf(), source })
    };
    let cert_pem = read(cert_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsConfigError::NoCertificate { path: cert_path.to_path_buf() })?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate { path: cert_path.to_path_buf() });
    }
    let key_pem = zeroize::Zeroizing::new(read(key_path)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| TlsConfigError::NoKey { path: key_path.to_path_buf() })?;
    let mismatch = |source| TlsConfigError::Mismatch { path: key_path.to_path_buf(), source };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(mismatch)?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(mismatch)?;
    Ok(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        names_pair(dir, name, &["localhost"])
    }

    fn names_pair(dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let cert = rcgen::CertificateParams::new(names).unwrap().self_signed(&key).unwrap();
        let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn loads_a_pair_and_refuses_a_key_of_another_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = pair(dir.path(), "one");
        let (_, k2) = pair(dir.path(), "two");
        let certs = TlsCerts::load(&c1, &k1).unwrap();
        assert!(matches!(TlsCerts::load(&c1, &k2), Err(TlsConfigError::Mismatch { .. })));
        assert!(matches!(TlsCerts::load(&c1, &c1), Err(TlsConfigError::NoKey { .. })));
        assert!(matches!(TlsCerts::load(&k1, &k1), Err(TlsConfigError::NoCertificate { .. })));
        // A reload that fails keeps serving the previous pair.
        std::fs::write(&k1, "garbage").unwrap();
        assert!(certs.reload().is_err());
        let before = Arc::clone(&certs.current.read().unwrap());
        assert!(!before.cert.is_empty());
    }

    #[test]
    fn names_and_coverage_of_the_served_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) =
            names_pair(dir.path(), "n", &["*.lan.test", "relay.example.com", "127.0.0.1", "::1"]);
        let certs = TlsCerts::load(&c, &k).unwrap();
        assert_eq!(certs.dns_names(), ["relay.example.com"]);
        assert!(certs.covers("relay.example.com"));
        assert!(certs.covers("a.lan.test"));
        assert!(certs.covers("127.0.0.1"));
        assert!(certs.covers("[::1]"));
        assert!(!certs.covers("localhost"));
        assert!(!certs.covers("10.0.0.1"));
        assert!(!certs.covers("not a name"));
        let (c, k) = names_pair(dir.path(), "ip", &["127.0.0.1"]);
        assert!(TlsCerts::load(&c, &k).unwrap().dns_names().is_empty());
    }
}
